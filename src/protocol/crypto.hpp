#pragma once
// The little cryptography the protocol needs, from libcrypto: SHA-1 for the accept key,
// base64, and random bytes for keys and masks. Private to protocol/.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace tongdao::protocol::detail {

/** Standard base64 with padding (RFC 4648 §4). */
std::string base64Encode(std::span<const unsigned char> in);

/** The length of the data `s` decodes to, or -1 if it is not canonical padded base64. */
long base64DecodedSize(std::string_view s) noexcept;

/** Fills `out` from libcrypto's CSPRNG; aborts the process if the generator fails. */
void randomBytes(std::span<unsigned char> out) noexcept;

} // namespace tongdao::protocol::detail
