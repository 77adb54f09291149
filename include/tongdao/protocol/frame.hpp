#pragma once
/**
 * @file
 * Frame headers, RFC 6455 §5.2: parsing and writing, nothing else.
 *
 *      0                   1                   2                   3
 *      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *     +-+-+-+-+-------+-+-------------+-------------------------------+
 *     |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *     |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *     |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *     | |1|2|3|       |K|             |                               |
 *     +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *     |     Extended payload length continued, if payload len == 127  |
 *     + - - - - - - - - - - - - - - - +-------------------------------+
 *     |                               |Masking-key, if MASK set to 1  |
 *     +-------------------------------+-------------------------------+
 */

#include "tongdao/error.hpp"
#include "tongdao/protocol/types.hpp"

#include <cstring>

namespace tongdao::protocol {

/** RSV bits as they sit in the first header byte. */
namespace Rsv {
inline constexpr std::uint8_t rsv1 = 0x40;
inline constexpr std::uint8_t rsv2 = 0x20;
inline constexpr std::uint8_t rsv3 = 0x10;
inline constexpr std::uint8_t all = 0x70;
} // namespace Rsv

/** The largest header: 2 + 8 bytes of length + 4 bytes of mask. */
inline constexpr std::size_t maxFrameHeaderSize = 14;

/** A parsed frame header. The mask key is kept in memory order, as four bytes loaded into a word. */
struct FrameHeader {
    std::uint64_t payloadLength = 0;
    std::uint32_t maskKey = 0;
    std::uint8_t opcode = 0; ///< raw 4-bit value; may be reserved, the caller decides
    std::uint8_t rsv = 0;    ///< the RSV bits, as `Rsv::` masks
    bool fin = false;
    bool masked = false;
    std::uint8_t size = 0;   ///< header bytes, 2 to 14
};

/**
 * Parses a header from `n` bytes at `p`.
 * @return the header size once complete, 0 if more bytes are needed.
 * @par Errors `nonMinimalLength` (RFC 6455 §5.2: "the minimal number of bytes MUST be
 *      used") and `badLength` (the 64-bit length's top bit set) are reported in `ec`;
 *      every other rule depends on context and is the caller's to check.
 */
inline std::size_t parseFrameHeader(const std::byte* p, std::size_t n, FrameHeader& h,
                                    std::error_code& ec) noexcept {
    if (n < 2) return 0;
    const auto b0 = static_cast<std::uint8_t>(p[0]);
    const auto b1 = static_cast<std::uint8_t>(p[1]);
    h.fin = (b0 & 0x80) != 0;
    h.rsv = static_cast<std::uint8_t>(b0 & Rsv::all);
    h.opcode = static_cast<std::uint8_t>(b0 & 0x0F);
    h.masked = (b1 & 0x80) != 0;
    std::size_t size = 2 + (h.masked ? 4u : 0u);
    const std::uint8_t len7 = b1 & 0x7F;
    if (len7 < 126) {
        if (n < size) return 0;
        h.payloadLength = len7;
    } else if (len7 == 126) {
        size += 2;
        if (n < size) return 0;
        h.payloadLength = (std::uint64_t{static_cast<std::uint8_t>(p[2])} << 8) | static_cast<std::uint8_t>(p[3]);
        if (h.payloadLength < 126) ec = error::nonMinimalLength;
    } else {
        size += 8;
        if (n < size) return 0;
        std::uint64_t len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(p[2 + i]);
        h.payloadLength = len;
        if (len >> 63) ec = error::badLength;
        else if (len <= 0xFFFF) ec = error::nonMinimalLength;
    }
    if (h.masked) std::memcpy(&h.maskKey, p + size - 4, 4);
    h.size = static_cast<std::uint8_t>(size);
    return size;
}

/** The header size for a payload of `length` bytes. */
constexpr std::size_t frameHeaderSize(std::uint64_t length, bool masked) noexcept {
    return (length < 126 ? 2u : length <= 0xFFFF ? 4u : 10u) + (masked ? 4u : 0u);
}

/**
 * Writes a header into `out` (room for `maxFrameHeaderSize` bytes) and returns its size.
 * `maskKey` is written only when `masked`; the payload is the caller's to mask.
 */
inline std::size_t writeFrameHeader(std::byte* out, bool fin, std::uint8_t rsv, Opcode opcode,
                                    std::uint64_t length, bool masked, std::uint32_t maskKey) noexcept {
    out[0] = static_cast<std::byte>((fin ? 0x80 : 0) | (rsv & Rsv::all) | static_cast<std::uint8_t>(opcode));
    const std::uint8_t m = masked ? 0x80 : 0;
    std::size_t size;
    if (length < 126) {
        out[1] = static_cast<std::byte>(m | length);
        size = 2;
    } else if (length <= 0xFFFF) {
        out[1] = static_cast<std::byte>(m | 126);
        out[2] = static_cast<std::byte>(length >> 8);
        out[3] = static_cast<std::byte>(length);
        size = 4;
    } else {
        out[1] = static_cast<std::byte>(m | 127);
        for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<std::byte>(length >> (56 - 8 * i));
        size = 10;
    }
    if (masked) {
        std::memcpy(out + size, &maskKey, 4);
        size += 4;
    }
    return size;
}

} // namespace tongdao::protocol
