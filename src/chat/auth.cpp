#include "auth.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <openssl/crypto.h>

#include <cmath>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace tongdao::chat {

namespace json = boost::json;

bool matchRoomPattern(std::string_view p, std::string_view s) noexcept {
    // Greedy wildcard match with backtracking to the last star: linear in practice.
    std::size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
    while (si < s.size()) {
        if (pi < p.size() && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < p.size() && p[pi] == s[si]) {
            ++pi;
            ++si;
        } else if (star != std::string_view::npos) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

bool Identity::mayJoin(std::string_view room) const noexcept {
    if (anyRoom) return true;
    for (const auto& p : rooms)
        if (matchRoomPattern(p, room)) return true;
    return false;
}

std::optional<std::string> base64UrlDecode(std::string_view in) {
    static constexpr auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '-') return 62;
        if (c == '_') return 63;
        return -1;
    };
    if (in.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(in.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = value(c);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    // RFC 4648 §3.5: the unused low bits must be zero (one encoding per value).
    if (bits && (acc & ((1u << bits) - 1))) return std::nullopt;
    return out;
}

std::string base64UrlEncode(std::string_view in) {
    static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char ch : in) {
        const auto c = static_cast<unsigned char>(ch);
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += table[(acc >> bits) & 63];
        }
    }
    if (bits) out += table[(acc << (6 - bits)) & 63];
    return out;
}

std::string hmacSha256(std::string_view key, std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
         data.size(), md, &len);
    return std::string(reinterpret_cast<const char*>(md), len);
}

namespace {

std::optional<json::object> jsonPart(std::string_view part) {
    const auto text = base64UrlDecode(part);
    if (!text) return std::nullopt;
    std::error_code ec;
    json::parse_options opts;
    opts.max_depth = 8;
    auto v = json::parse(*text, ec, {}, opts);
    if (ec || !v.is_object()) return std::nullopt;
    return std::move(v.get_object());
}

std::optional<std::int64_t> numericDate(const json::value& v) {
    if (v.is_int64()) return v.get_int64();
    if (v.is_uint64() && v.get_uint64() < (1ull << 62)) return static_cast<std::int64_t>(v.get_uint64());
    // RFC 7519 §2 allows fractions; a value no int64 can hold is not a date we take.
    if (v.is_double() && std::abs(v.get_double()) < 9e18) return static_cast<std::int64_t>(v.get_double());
    return std::nullopt;
}

} // namespace

std::optional<Identity> TokenVerifier::verify(std::string_view token, std::int64_t now, std::string& why) const {
    if (token.size() > 8192) {
        why = "token too long";
        return std::nullopt;
    }
    const auto dot1 = token.find('.');
    const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
        why = "token is not a JWS compact serialisation";
        return std::nullopt;
    }
    const auto header = jsonPart(token.substr(0, dot1));
    const auto* alg = header ? header->if_contains("alg") : nullptr;
    if (!alg || !alg->is_string() || alg->get_string() != "HS256") {
        why = "token must be signed with HS256";
        return std::nullopt;
    }
    const auto sig = base64UrlDecode(token.substr(dot2 + 1));
    const auto expected = hmacSha256(secret_, token.substr(0, dot2));
    if (!sig || sig->size() != expected.size() || CRYPTO_memcmp(sig->data(), expected.data(), expected.size()) != 0) {
        why = "token signature does not verify";
        return std::nullopt;
    }
    const auto claims = jsonPart(token.substr(dot1 + 1, dot2 - dot1 - 1));
    if (!claims) {
        why = "token claims are not a JSON object";
        return std::nullopt;
    }
    Identity id;
    const auto* sub = claims->if_contains("sub");
    if (!sub || !sub->is_string() || sub->get_string().empty() || sub->get_string().size() > 128) {
        why = "token has no valid sub";
        return std::nullopt;
    }
    for (const char c : sub->get_string()) {
        // A user id is a key and a field of the stores' records: no control characters.
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            why = "token's sub has a control character";
            return std::nullopt;
        }
    }
    id.user = std::string(sub->get_string());
    const auto* exp = claims->if_contains("exp");
    const auto expValue = exp ? numericDate(*exp) : std::nullopt;
    if (!expValue) {
        why = "token has no valid exp";
        return std::nullopt;
    }
    if (*expValue <= now) {
        why = "token expired";
        return std::nullopt;
    }
    id.exp = *expValue;
    if (const auto* nbf = claims->if_contains("nbf")) {
        const auto v = numericDate(*nbf);
        if (!v || *v > now) {
            why = "token not valid yet";
            return std::nullopt;
        }
    }
    id.name = id.user;
    if (const auto* name = claims->if_contains("name")) {
        if (!name->is_string() || name->get_string().empty() || name->get_string().size() > 128) {
            why = "token name must be a non-empty string";
            return std::nullopt;
        }
        id.name = std::string(name->get_string());
    }
    if (const auto* rooms = claims->if_contains("rooms")) {
        if (!rooms->is_array() || rooms->get_array().size() > 256) {
            why = "token rooms must be an array of at most 256 patterns";
            return std::nullopt;
        }
        id.anyRoom = false;
        for (const auto& p : rooms->get_array()) {
            if (!p.is_string() || p.get_string().size() > 128) {
                why = "token rooms must be strings";
                return std::nullopt;
            }
            id.rooms.emplace_back(p.get_string());
        }
    }
    return id;
}

} // namespace tongdao::chat
