#include "mask.hpp"

#include <immintrin.h>

namespace tongdao::protocol::detail {
namespace {

using MaskFn = void (*)(std::byte*, const std::byte*, std::size_t, std::uint32_t) noexcept;

// Tail shared by both routines: whole words, then single bytes.
inline void maskTail(std::byte* to, const std::byte* from, std::size_t n, std::uint32_t key) noexcept {
    const std::uint64_t k8 = (std::uint64_t{key} << 32) | key;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, from + i, 8);
        w ^= k8;
        std::memcpy(to + i, &w, 8);
    }
    const auto* kb = reinterpret_cast<const std::byte*>(&key);
    for (; i < n; ++i) to[i] = from[i] ^ kb[i & 3];
}

void maskSse2(std::byte* to, const std::byte* from, std::size_t n, std::uint32_t key) noexcept {
    const __m128i k = _mm_set1_epi32(static_cast<int>(key));
    std::size_t i = 0;
    // Four registers a turn keeps two loads and two stores in flight each cycle.
    for (; i + 64 <= n; i += 64) {
        auto* s = reinterpret_cast<const __m128i*>(from + i);
        auto* d = reinterpret_cast<__m128i*>(to + i);
        __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1), c = _mm_loadu_si128(s + 2),
                e = _mm_loadu_si128(s + 3);
        _mm_storeu_si128(d, _mm_xor_si128(a, k));
        _mm_storeu_si128(d + 1, _mm_xor_si128(b, k));
        _mm_storeu_si128(d + 2, _mm_xor_si128(c, k));
        _mm_storeu_si128(d + 3, _mm_xor_si128(e, k));
    }
    for (; i + 16 <= n; i += 16) {
        auto v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + i));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(to + i), _mm_xor_si128(v, k));
    }
    maskTail(to + i, from + i, n - i, key); // 16 is a multiple of 4: the key has not rotated
}

__attribute__((target("avx2"))) void maskAvx2(std::byte* to, const std::byte* from, std::size_t n,
                                               std::uint32_t key) noexcept {
    const __m256i k = _mm256_set1_epi32(static_cast<int>(key));
    std::size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        auto* s = reinterpret_cast<const __m256i*>(from + i);
        auto* d = reinterpret_cast<__m256i*>(to + i);
        __m256i a = _mm256_loadu_si256(s), b = _mm256_loadu_si256(s + 1), c = _mm256_loadu_si256(s + 2),
                e = _mm256_loadu_si256(s + 3);
        _mm256_storeu_si256(d, _mm256_xor_si256(a, k));
        _mm256_storeu_si256(d + 1, _mm256_xor_si256(b, k));
        _mm256_storeu_si256(d + 2, _mm256_xor_si256(c, k));
        _mm256_storeu_si256(d + 3, _mm256_xor_si256(e, k));
    }
    for (; i + 32 <= n; i += 32) {
        auto v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(from + i));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(to + i), _mm256_xor_si256(v, k));
    }
    maskTail(to + i, from + i, n - i, key);
}

MaskFn pick() noexcept {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? maskAvx2 : maskSse2;
}

const MaskFn maskImpl = pick();

} // namespace

void maskLarge(std::byte* to, const std::byte* from, std::size_t n, std::uint32_t key) noexcept {
    maskImpl(to, from, n, key);
}

} // namespace tongdao::protocol::detail
