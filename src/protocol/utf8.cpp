#include "tongdao/protocol/utf8.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tongdao::protocol {
namespace {

// A shift-based DFA: each state is a bit offset (a multiple of 6) into a 64-bit row,
// one row per input byte, and the next state is (row >> state) & 63. One load and
// one shift a byte, no branch. The error state is 0, so its row slice is always 0
// and an error is sticky.
//
// RFC 3629 §4, the well-formed byte sequences:
//   00-7F | C2-DF 80-BF | E0 A0-BF 80-BF | E1-EC 80-BF 80-BF | ED 80-9F 80-BF
//   | EE-EF 80-BF 80-BF | F0 90-BF 80-BF 80-BF | F1-F3 80-BF{3} | F4 80-8F 80-BF 80-BF
enum : std::uint8_t {
    ERR = Utf8Validator::errorState,
    ACC = Utf8Validator::acceptState,
    T1 = 12, // one continuation byte to go
    T2 = 18, // two to go
    T3 = 24, // three to go
    E0 = 30, // after E0: A0-BF (no overlong three-byte forms)
    ED = 36, // after ED: 80-9F (no surrogates)
    F0 = 42, // after F0: 90-BF (no overlong four-byte forms)
    F4 = 48, // after F4: 80-8F (nothing past U+10FFFF)
};

constexpr std::uint8_t next(std::uint8_t state, unsigned b) {
    const bool cont = b >= 0x80 && b <= 0xBF;
    switch (state) {
    case ACC:
        if (b < 0x80) return ACC;
        if (b >= 0xC2 && b <= 0xDF) return T1;
        if (b == 0xE0) return E0;
        if (b == 0xED) return ED;
        if (b >= 0xE1 && b <= 0xEF) return T2;
        if (b == 0xF0) return F0;
        if (b >= 0xF1 && b <= 0xF3) return T3;
        if (b == 0xF4) return F4;
        return ERR;
    case T1: return cont ? ACC : ERR;
    case T2: return cont ? T1 : ERR;
    case T3: return cont ? T2 : ERR;
    case E0: return (b >= 0xA0 && b <= 0xBF) ? T1 : ERR;
    case ED: return (b >= 0x80 && b <= 0x9F) ? T1 : ERR;
    case F0: return (b >= 0x90 && b <= 0xBF) ? T2 : ERR;
    case F4: return (b >= 0x80 && b <= 0x8F) ? T2 : ERR;
    default: return ERR;
    }
}

constexpr std::array<std::uint64_t, 256> makeTable() {
    std::array<std::uint64_t, 256> t{};
    constexpr std::uint8_t states[] = {ACC, T1, T2, T3, E0, ED, F0, F4};
    for (unsigned b = 0; b < 256; ++b)
        for (auto s : states) t[b] |= std::uint64_t{next(s, b)} << s;
    return t;
}

constexpr auto table = makeTable();

inline std::uint8_t step(std::uint8_t state, std::byte b) noexcept {
    return static_cast<std::uint8_t>((table[static_cast<std::uint8_t>(b)] >> state) & 63);
}

// Length of the leading run of ASCII, in whole 16-byte blocks (SSE2 is always there on x86-64).
inline std::size_t asciiPrefix(const std::byte* p, std::size_t n) noexcept {
    std::size_t i = 0;
#if defined(__x86_64__)
    for (; i + 64 <= n; i += 64) {
        auto* s = reinterpret_cast<const __m128i*>(p + i);
        __m128i any = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(s), _mm_loadu_si128(s + 1)),
                                   _mm_or_si128(_mm_loadu_si128(s + 2), _mm_loadu_si128(s + 3)));
        if (_mm_movemask_epi8(any) != 0) break;
    }
    for (; i + 16 <= n; i += 16)
        if (_mm_movemask_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i))) != 0) break;
#else
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
#endif
    return i;
}

} // namespace

bool Utf8Validator::feed(const std::byte* p, std::size_t n) noexcept {
    std::uint8_t s = state_;
    std::size_t i = 0;
    while (i < n) {
        if (s == ACC) {
            i += asciiPrefix(p + i, n - i);
            if (i == n) break;
        }
        // Run the DFA over the next block: a non-ASCII run is usually followed by more of it.
        const std::size_t end = n - i < 16 ? n : i + 16;
        for (; i < end; ++i) s = step(s, p[i]);
        if (s == ERR) break;
    }
    state_ = s;
    return s != ERR;
}

bool isValidUtf8(std::span<const std::byte> b) noexcept {
    Utf8Validator v;
    return v.feed(b) && v.complete();
}

} // namespace tongdao::protocol
