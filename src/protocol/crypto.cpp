#include "crypto.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

namespace tongdao::protocol::detail {

std::string base64Encode(std::span<const unsigned char> in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
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
