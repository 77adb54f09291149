#pragma once
// Who a connection is: HS256 JSON Web Tokens (RFC 7519, RFC 7515) checked with OpenSSL's
// HMAC, and the room patterns a token may carry.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tongdao::chat {

struct Identity {
    std::string user;
    std::string name;
    std::int64_t exp = 0;               ///< seconds since the epoch; 0 = none (anonymous)
    bool anyRoom = true;                ///< false when the token lists its rooms
    std::vector<std::string> rooms;     ///< patterns; `*` matches any run of characters

    bool mayJoin(std::string_view room) const noexcept;
};

/** True when `room` matches `pattern`, where `*` stands for any run of characters. */
bool matchRoomPattern(std::string_view pattern, std::string_view room) noexcept;

class TokenVerifier {
public:
    explicit TokenVerifier(std::string secret) : secret_(std::move(secret)) {}

    /**
     * Checks signature (HS256 only: any other `alg`, `none` included, is refused), `exp`
     * (required), `nbf` and the claims' types. On failure returns nullopt and says why.
     */
    std::optional<Identity> verify(std::string_view token, std::int64_t nowSeconds, std::string& why) const;

private:
    std::string secret_;
};

/** base64url without padding (RFC 4648 §5), as JWTs use it; nullopt if malformed. */
std::optional<std::string> base64UrlDecode(std::string_view in);
std::string base64UrlEncode(std::string_view in);
/** HMAC-SHA-256 of `data` under `key`, raw bytes. */
std::string hmacSha256(std::string_view key, std::string_view data);

} // namespace tongdao::chat
