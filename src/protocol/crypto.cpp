#include "crypto.hpp"

#include <openssl/rand.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>

namespace tongdao::protocol::detail {

namespace {

std::uint32_t rotl(std::uint32_t x, int n) noexcept { return (x << n) | (x >> (32 - n)); }

// RFC 3174 §6.1: one 64-byte block into the state.
void sha1Block(std::uint32_t h[5], const unsigned char* p) noexcept {
    std::uint32_t w[80];
    for (int t = 0; t < 16; ++t)
        w[t] = std::uint32_t{p[4 * t]} << 24 | std::uint32_t{p[4 * t + 1]} << 16 | std::uint32_t{p[4 * t + 2]} << 8 |
               std::uint32_t{p[4 * t + 3]};
    for (int t = 16; t < 80; ++t) w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; ++t) {
        std::uint32_t f, k;
        if (t < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (t < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (t < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        const std::uint32_t temp = rotl(a, 5) + f + e + w[t] + k;
        e = d;
        d = c;
        c = rotl(b, 30);
        b = a;
        a = temp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

} // namespace

std::array<unsigned char, 20> sha1(std::string_view a, std::string_view b) noexcept {
    std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char block[64];
    std::size_t used = 0;
    const std::uint64_t bits = (std::uint64_t{a.size()} + b.size()) * 8;
    for (std::string_view part : {a, b}) {
        for (char ch : part) {
            block[used++] = static_cast<unsigned char>(ch);
            if (used == 64) {
                sha1Block(h, block);
                used = 0;
            }
        }
    }
    // RFC 3174 §4: a 1 bit, zeros, then the length in bits, big-endian, to fill the block.
    block[used++] = 0x80;
    if (used > 56) {
        std::memset(block + used, 0, 64 - used);
        sha1Block(h, block);
        used = 0;
    }
    std::memset(block + used, 0, 56 - used);
    for (int i = 0; i < 8; ++i) block[56 + i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    sha1Block(h, block);
    std::array<unsigned char, 20> out{};
    for (std::size_t i = 0; i < 20; ++i) out[i] = static_cast<unsigned char>(h[i / 4] >> (24 - 8 * (i % 4)));
    return out;
}

std::string base64Encode(std::span<const unsigned char> in) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve(4 * ((in.size() + 2) / 3));
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v = std::uint32_t{in[i]} << 16 | std::uint32_t{in[i + 1]} << 8 | in[i + 2];
        for (int s = 18; s >= 0; s -= 6) out += alphabet[(v >> s) & 63];
    }
    if (const std::size_t rest = in.size() - i; rest != 0) {
        // RFC 4648 §4: the last group is padded with '='.
        const std::uint32_t v = std::uint32_t{in[i]} << 16 | (rest == 2 ? std::uint32_t{in[i + 1]} << 8 : 0);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

long base64DecodedSize(std::string_view s) noexcept {
    if (s.empty() || s.size() % 4 != 0) return -1;
    std::size_t pad = 0;
    if (s.back() == '=') pad = s[s.size() - 2] == '=' ? 2 : 1;
    for (std::size_t i = 0; i < s.size() - pad; ++i) {
        const char c = s[i];
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                        c == '/';
        if (!ok) return -1;
    }
    return static_cast<long>(s.size() / 4 * 3 - pad);
}

void randomBytes(std::span<unsigned char> out) noexcept {
    if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
        // Without a working CSPRNG, keys and masks would be predictable (RFC 6455 §10.3).
        std::fputs("tongdao: RAND_bytes failed\n", stderr);
        std::abort();
    }
}

} // namespace tongdao::protocol::detail
