#pragma once
// Masking, RFC 6455 §5.3: payload byte i is XORed with mask-key byte (i mod 4).
//
// The key travels as a 32-bit word loaded from its four bytes in memory order, so
// XORing whole words at a time is the same as XORing byte by byte. Small payloads
// (the common chat message) are masked inline; large ones go to a vectorised routine
// picked once at start-up for the CPU (AVX2 where present, else SSE2).

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tongdao::protocol::detail {

/** The key as it applies from byte `offset` of the payload on. */
constexpr std::uint32_t rotateMaskKey(std::uint32_t key, std::uint64_t offset) noexcept {
    const int shift = static_cast<int>((offset & 3) * 8);
    if constexpr (std::endian::native == std::endian::little) return std::rotr(key, shift);
    else return std::rotl(key, shift);
}

/** Masks `n` bytes in place from `from` to `to` (which may be the same buffer), large sizes. */
void maskLarge(std::byte* to, const std::byte* from, std::size_t n, std::uint32_t key) noexcept;

/**
 * XORs `n` bytes from `from` into `to` with `key`, which applies to the first byte.
 * `to == from` masks in place. Returns the key for the byte after the last one.
 */
inline std::uint32_t mask(std::byte* to, const std::byte* from, std::size_t n, std::uint32_t key) noexcept {
    if (n >= 64) {
        maskLarge(to, from, n, key);
    } else {
        const std::uint64_t k8 = (std::uint64_t{key} << 32) | key;
        std::size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            std::uint64_t w;
            std::memcpy(&w, from + i, 8);
            w ^= k8;
            std::memcpy(to + i, &w, 8);
        }
        std::uint32_t k = key;
        for (; i < n; ++i) {
            // Byte (i mod 4) of the key in memory order.
            std::byte kb;
            std::memcpy(&kb, reinterpret_cast<const std::byte*>(&k) + (i & 3), 1);
            to[i] = from[i] ^ kb;
        }
    }
    return rotateMaskKey(key, n);
}

} // namespace tongdao::protocol::detail
