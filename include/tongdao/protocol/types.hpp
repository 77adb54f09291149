#pragma once
/**
 * @file
 * The small vocabulary of RFC 6455: roles, opcodes, message kinds and close codes.
 */

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tongdao::protocol {

/** Which end of the connection the engine plays; it decides masking (RFC 6455 §5.3). */
enum class Role : std::uint8_t { client, server };

/** Frame opcodes, RFC 6455 §5.2. 0x3-0x7 and 0xB-0xF are reserved. */
enum class Opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

/** RFC 6455 §5.5: opcodes with the high bit set are control frames. */
constexpr bool isControl(Opcode op) noexcept { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }

/** RFC 6455 §5.2: the six opcodes defined; the other ten are reserved. */
constexpr bool isKnownOpcode(std::uint8_t op) noexcept {
    return op <= 0x2 || (op >= 0x8 && op <= 0xA);
}

/** What a data message carries. */
enum class MessageKind : std::uint8_t { text = 0x1, binary = 0x2 };

constexpr Opcode toOpcode(MessageKind k) noexcept { return static_cast<Opcode>(k); }

/** Named close codes, RFC 6455 §7.4.1 and the IANA registry. Plain integers travel too. */
namespace CloseCode {
inline constexpr std::uint16_t normal = 1000;          ///< purpose fulfilled
inline constexpr std::uint16_t goingAway = 1001;       ///< server shutdown, page navigated away
inline constexpr std::uint16_t protocolError = 1002;   ///< the peer broke the protocol
inline constexpr std::uint16_t unsupportedData = 1003; ///< a kind of data we cannot accept
inline constexpr std::uint16_t noStatus = 1005;        ///< reported, never sent: close frame had no code
inline constexpr std::uint16_t abnormal = 1006;        ///< reported, never sent: no close frame at all
inline constexpr std::uint16_t invalidPayload = 1007;  ///< e.g. text that is not UTF-8
inline constexpr std::uint16_t policyViolation = 1008; ///< generic refusal
inline constexpr std::uint16_t messageTooBig = 1009;   ///< over a size limit
inline constexpr std::uint16_t mandatoryExtension = 1010; ///< client: a required extension was not negotiated
inline constexpr std::uint16_t internalError = 1011;   ///< server: an unexpected condition
inline constexpr std::uint16_t serviceRestart = 1012;  ///< IANA registry
inline constexpr std::uint16_t tryAgainLater = 1013;   ///< IANA registry
inline constexpr std::uint16_t badGateway = 1014;      ///< IANA registry
inline constexpr std::uint16_t tlsHandshake = 1015;    ///< reported, never sent
} // namespace CloseCode

/**
 * RFC 6455 §7.4: whether `code` may appear in a close frame on the wire.
 * 1000-1003 and 1007-1014 (the registered ones) and 3000-4999 (libraries and
 * applications) are allowed; 1004 is reserved, 1005/1006/1015 are only ever
 * reported locally, the rest of 0-2999 is unassigned, 5000 and up is out of range.
 */
constexpr bool isValidWireCloseCode(std::uint32_t code) noexcept {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/** RFC 6455 §5.5: a control frame's payload is at most 125 bytes. */
inline constexpr std::size_t maxControlPayload = 125;

/** A close payload is a two-byte code plus a reason, so the reason is at most 123 bytes. */
inline constexpr std::size_t maxCloseReason = maxControlPayload - 2;

/** Bytes as the engine sees them. */
using Bytes = std::span<const std::byte>;
using MutableBytes = std::span<std::byte>;

inline Bytes asBytes(std::string_view s) noexcept {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view asString(Bytes b) noexcept {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

} // namespace tongdao::protocol
