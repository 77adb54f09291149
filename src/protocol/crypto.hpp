#pragma once
// The little cryptography the protocol needs: SHA-1 for the accept key and base64 (our own:
// the first EVP digest makes OpenSSL 3 load its provider, ~2 MB of pages and heap, for a
// hash that guards nothing here), and random bytes for keys and masks from libcrypto.
// Private to protocol/.

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace tongdao::protocol::detail {

/**
 * SHA-1 (RFC 3174) of `a` followed by `b`. Only for the handshake's accept key
 * (RFC 6455 §4.2.2), which proves nothing secret: SHA-1's weaknesses do not matter there.
 */
std::array<unsigned char, 20> sha1(std::string_view a, std::string_view b = {}) noexcept;

/** Standard base64 with padding (RFC 4648 §4). */
std::string base64Encode(std::span<const unsigned char> in);

/** The length of the data `s` decodes to, or -1 if it is not canonical padded base64. */
long base64DecodedSize(std::string_view s) noexcept;

/** Fills `out` from libcrypto's CSPRNG; aborts the process if the generator fails. */
void randomBytes(std::span<unsigned char> out) noexcept;

} // namespace tongdao::protocol::detail
