// src/chat/auth: HS256 JWTs (RFC 7519, RFC 7515), base64url (RFC 4648 §5) and room patterns.
#include "chat/auth.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace tongdao::chat {
namespace {

constexpr std::int64_t now = 1764590400; // 2025-12-01
const std::string secret = "test-secret-of-the-chat-service";

std::string b64(std::string_view s) { return base64UrlEncode(s); }

std::string hex(std::string_view s) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

/** A token signed with HS256 under `key` (whatever the header says). */
std::string sign(std::string_view header, std::string_view claims, std::string_view key = secret) {
    std::string input = b64(header) + "." + b64(claims);
    return input + "." + b64(hmacSha256(key, input));
}

std::string hs256(std::string_view claims, std::string_view key = secret) {
    return sign(R"({"alg":"HS256","typ":"JWT"})", claims, key);
}

struct Verified {
    std::optional<Identity> id;
    std::string why;
};

Verified verify(std::string_view token, std::int64_t at = now, std::string key = secret) {
    Verified v;
    v.id = TokenVerifier(std::move(key)).verify(token, at, v.why);
    return v;
}

#define EXPECT_REFUSED(token, reason)                                                                               \
    do {                                                                                                            \
        const auto r_ = verify(token);                                                                              \
        EXPECT_FALSE(r_.id) << "accepted: " << (token);                                                            \
        EXPECT_EQ(r_.why, reason);                                                                                  \
    } while (0)

// --- primitives ---------------------------------------------------------------------------

TEST(AuthBase64, Rfc4648Vectors) {
    // RFC 4648 §10, without padding (JWTs use none).
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    for (const auto& [plain, enc] : vectors) {
        EXPECT_EQ(base64UrlEncode(plain), enc);
        EXPECT_EQ(base64UrlDecode(enc), std::optional<std::string>(plain));
    }
}

TEST(AuthBase64, UrlAlphabet) {
    EXPECT_EQ(base64UrlEncode("\xfb\xff"), "-_8");
    EXPECT_EQ(base64UrlDecode("-_8"), std::optional<std::string>("\xfb\xff"));
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    const auto enc = base64UrlEncode(all);
    EXPECT_EQ(enc.find_first_of("+/="), std::string::npos);
    EXPECT_EQ(base64UrlDecode(enc), std::optional<std::string>(all));
}

TEST(AuthBase64, RefusesMalformedInput) {
    for (const char* bad : {"Zg==", "Zm9=", "+w", "/w", "Z", "Zm9vY", "Zm 9v", "Zm9v\n", "Zm.v", "\xc3\xa9"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(base64UrlDecode(bad));
    }
}

TEST(AuthBase64, RefusesNonCanonicalTrailingBits) {
    // RFC 4648 §3.5: "Zg" is "f"; "Zh".."Zv" decode to the same byte with nonzero unused bits.
    EXPECT_EQ(base64UrlDecode("Zg"), std::optional<std::string>("f"));
    EXPECT_EQ(base64UrlDecode("Zm8"), std::optional<std::string>("fo"));
    for (const char* bad : {"Zh", "Zi", "Zv", "Zm9", "Zm9vYh"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(base64UrlDecode(bad));
    }
    EXPECT_FALSE(base64UrlDecode("Zm-")); // 'fo' + low bits 0b10
    EXPECT_FALSE(base64UrlDecode("Zm_"));
}

TEST(AuthHmac, Rfc4231Vectors) {
    // RFC 4231 test case 2.
    EXPECT_EQ(hex(hmacSha256("Jefe", "what do ya want for nothing?")),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    // RFC 4231 test case 6: a key longer than the block size.
    EXPECT_EQ(hex(hmacSha256(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    EXPECT_EQ(hmacSha256("", "").size(), 32u);
}

// --- tokens computed elsewhere ------------------------------------------------------------

// RFC 7515 Appendix A.1: an HS256 JWS with a given JWK key. Its claims have no `sub`, so
// verify() refuses it — but only after the signature passed (the order of the checks).
constexpr const char* rfcKey = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
constexpr const char* rfcInput = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
                                 ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
constexpr const char* rfcSignature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

TEST(AuthToken, Rfc7515AppendixA1) {
    const auto key = base64UrlDecode(rfcKey);
    ASSERT_TRUE(key);
    EXPECT_EQ(hex(*key), "0323354b2b0fa5bc837e0665777ba68f5ab328e6f054c928a90f84b2d2502ebf"
                         "d3fb5a92d20647ef968ab4c377623d223d2e2172052e4f08c0cd9af567d080a3");
    EXPECT_EQ(base64UrlEncode(hmacSha256(*key, rfcInput)), rfcSignature);

    const std::string token = std::string(rfcInput) + "." + rfcSignature;
    auto r = verify(token, 1300819379, *key);
    EXPECT_FALSE(r.id);
    EXPECT_EQ(r.why, "token has no valid sub"); // the signature and alg passed
    r = verify(token, 1300819379, "another key");
    EXPECT_FALSE(r.id);
    EXPECT_EQ(r.why, "token signature does not verify");
}

// Made with Python's hmac module, not with this code:
//   h = b64(b'{"alg":"HS256","typ":"JWT"}')
//   p = b64(b'{"sub":"alice","name":"Alice","exp":4102444800,"rooms":["lobby","team-*"]}')
//   s = b64(hmac.new(b'python-secret', (h + '.' + p).encode(), hashlib.sha256).digest())
constexpr const char* pythonToken =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwicm9vbXMiOlsibG9iYnkiLCJ0ZWFtLSoiXX0"
    ".v7UEPttV1OCJXNhCdIddZ0kZZAV5GdWT2swQmz4dBZY";

TEST(AuthToken, TokenMadeByPython) {
    const auto r = verify(pythonToken, now, "python-secret");
    ASSERT_TRUE(r.id) << r.why;
    EXPECT_EQ(r.id->user, "alice");
    EXPECT_EQ(r.id->name, "Alice");
    EXPECT_EQ(r.id->exp, 4102444800);
    EXPECT_FALSE(r.id->anyRoom);
    EXPECT_EQ(r.id->rooms, (std::vector<std::string>{"lobby", "team-*"}));
    EXPECT_TRUE(r.id->mayJoin("lobby"));
    EXPECT_TRUE(r.id->mayJoin("team-"));
    EXPECT_TRUE(r.id->mayJoin("team-red"));
    EXPECT_FALSE(r.id->mayJoin("lobby2"));
    EXPECT_FALSE(r.id->mayJoin("team"));
    EXPECT_EQ(verify(pythonToken, now, "python-secreT").why, "token signature does not verify");
    // And this code signs the same claims identically.
    EXPECT_EQ(sign(R"({"alg":"HS256","typ":"JWT"})",
                   R"({"sub":"alice","name":"Alice","exp":4102444800,"rooms":["lobby","team-*"]})", "python-secret"),
              pythonToken);
}

// --- claims -------------------------------------------------------------------------------

TEST(AuthToken, MinimalValidToken) {
    const auto r = verify(hs256(R"({"sub":"u1","exp":1764594000})"));
    ASSERT_TRUE(r.id) << r.why;
    EXPECT_EQ(r.id->user, "u1");
    EXPECT_EQ(r.id->name, "u1"); // the name defaults to sub
    EXPECT_EQ(r.id->exp, 1764594000);
    EXPECT_TRUE(r.id->anyRoom);
    EXPECT_TRUE(r.id->rooms.empty());
    EXPECT_TRUE(r.id->mayJoin("anything"));
    // The header's typ is not required; unknown claims are ignored.
    EXPECT_TRUE(verify(sign(R"({"alg":"HS256"})", R"({"sub":"u1","exp":1764594000,"iss":"x","aud":["y"]})")).id);
}

TEST(AuthToken, Expiry) {
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":1764590400})"), "token expired"); // exp == now
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":1764590399})"), "token expired");
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":0})"), "token expired");
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":-5})"), "token expired");
    EXPECT_TRUE(verify(hs256(R"({"sub":"u","exp":1764590401})")).id);
    // RFC 7519 §2: a NumericDate may have a fraction.
    const auto frac = verify(hs256(R"({"sub":"u","exp":1764590401.5})"));
    ASSERT_TRUE(frac.id) << frac.why;
    EXPECT_EQ(frac.id->exp, 1764590401);
}

TEST(AuthToken, ExpIsRequiredAndNumeric) {
    EXPECT_REFUSED(hs256(R"({"sub":"u"})"), "token has no valid exp");
    for (const char* exp : {R"("1764594000")", "null", "true", "[1764594000]", "{}", "18446744073709551615"}) {
        SCOPED_TRACE(exp);
        EXPECT_REFUSED(hs256(std::string(R"({"sub":"u","exp":)") + exp + "}"), "token has no valid exp");
    }
}

TEST(AuthToken, NotBefore) {
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":1764594000,"nbf":1764590401})"), "token not valid yet");
    EXPECT_TRUE(verify(hs256(R"({"sub":"u","exp":1764594000,"nbf":1764590400})")).id); // nbf == now
    EXPECT_TRUE(verify(hs256(R"({"sub":"u","exp":1764594000,"nbf":1})")).id);
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":1764594000,"nbf":"soon"})"), "token not valid yet");
}

// Numeric dates beyond int64 (exp 1e300) are refused or taken, never converted with UB; run
// in a child process so that a sanitizer abort shows as a failure, not a crash of the binary.
TEST(AuthTokenDeathTest, HugeDoubleNumericDatesAreHandled) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const auto check = [](const std::string& claims) {
        const auto r = verify(hs256(claims));
        // Either accepted (a date far in the future) or refused as not a valid date.
        const bool fine = r.id ? r.id->exp > now : (r.why == "token has no valid exp" || r.why == "token not valid yet");
        std::exit(fine ? 0 : 3);
    };
    EXPECT_EXIT(check(R"({"sub":"u","exp":1e300})"), ::testing::ExitedWithCode(0), "");
    EXPECT_EXIT(check(R"({"sub":"u","exp":1764594000,"nbf":-1e300})"), ::testing::ExitedWithCode(0), "");
    EXPECT_EXIT(check(R"({"sub":"u","exp":9.3e18})"), ::testing::ExitedWithCode(0), "");
}

TEST(AuthToken, SubIsRequired) {
    EXPECT_REFUSED(hs256(R"({"exp":1764594000})"), "token has no valid sub");
    for (const std::string& sub : {std::string(R"("")"), std::string("42"), std::string("null"), std::string(R"(["a"])"),
                                  "\"" + std::string(129, 's') + "\""}) {
        SCOPED_TRACE(sub);
        EXPECT_REFUSED(hs256(R"({"exp":1764594000,"sub":)" + sub + "}"), "token has no valid sub");
    }
    const auto longest = verify(hs256(R"({"exp":1764594000,"sub":")" + std::string(128, 's') + "\"}"));
    ASSERT_TRUE(longest.id) << longest.why;
    EXPECT_EQ(longest.id->user, std::string(128, 's'));
    // A user id is a key of the stores' records: control characters are refused.
    for (const char* sub : {R"("a\nb")", R"("\u0000x")", R"("tab\t")", R"("del\u007f")"}) {
        SCOPED_TRACE(sub);
        EXPECT_REFUSED(hs256(std::string(R"({"exp":1764594000,"sub":)") + sub + "}"), "token's sub has a control character");
    }
    EXPECT_TRUE(verify(hs256(R"({"exp":1764594000,"sub":"张三 {x}"})")).id);
}

TEST(AuthToken, NameClaim) {
    auto r = verify(hs256(R"({"sub":"u7","name":"Zhang San 张三","exp":1764594000})"));
    ASSERT_TRUE(r.id) << r.why;
    EXPECT_EQ(r.id->user, "u7");
    EXPECT_EQ(r.id->name, "Zhang San 张三");
    for (const char* name : {R"("")", "5", "null", R"(["x"])"}) {
        SCOPED_TRACE(name);
        EXPECT_REFUSED(hs256(std::string(R"({"sub":"u","exp":1764594000,"name":)") + name + "}"),
                       "token name must be a non-empty string");
    }
}

TEST(AuthToken, RoomsClaim) {
    auto r = verify(hs256(R"({"sub":"u","exp":1764594000,"rooms":["support.*","lobby"]})"));
    ASSERT_TRUE(r.id) << r.why;
    EXPECT_FALSE(r.id->anyRoom);
    EXPECT_TRUE(r.id->mayJoin("lobby"));
    EXPECT_TRUE(r.id->mayJoin("support.42"));
    EXPECT_FALSE(r.id->mayJoin("support"));
    EXPECT_FALSE(r.id->mayJoin("lobby.x"));

    r = verify(hs256(R"({"sub":"u","exp":1764594000,"rooms":[]})"));
    ASSERT_TRUE(r.id) << r.why;
    EXPECT_FALSE(r.id->anyRoom);
    EXPECT_FALSE(r.id->mayJoin("lobby")); // an empty list allows nothing

    r = verify(hs256(R"({"sub":"u","exp":1764594000,"rooms":["*"]})"));
    ASSERT_TRUE(r.id) << r.why;
    EXPECT_TRUE(r.id->mayJoin("any.room:at-all"));

    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":1764594000,"rooms":"lobby"})"),
                   "token rooms must be an array of at most 256 patterns");
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":1764594000,"rooms":null})"),
                   "token rooms must be an array of at most 256 patterns");
    EXPECT_REFUSED(hs256(R"({"sub":"u","exp":1764594000,"rooms":["a",1]})"), "token rooms must be strings");
    std::string many = R"({"sub":"u","exp":1764594000,"rooms":[)";
    for (int i = 0; i < 257; ++i) many += std::string(i ? "," : "") + "\"r" + std::to_string(i) + "\"";
    EXPECT_REFUSED(hs256(many + "]}"), "token rooms must be an array of at most 256 patterns");
}

TEST(AuthPattern, MatchRoomPattern) {
    struct Case {
        const char* pattern;
        const char* room;
        bool match;
    };
    const Case cases[] = {
        {"lobby", "lobby", true},   {"lobby", "lobby2", false}, {"lobby", "lobb", false}, {"lobby", "Lobby", false},
        {"*", "x", true},           {"*", "", true},            {"*", "a.b:c-d_e", true}, {"", "", true},
        {"", "x", false},           {"a*b", "ab", true},        {"a*b", "axxb", true},    {"a*b", "axxbc", false},
        {"a*b", "ba", false},       {"a*b", "abab", true},      {"*x*", "x", true},       {"*x*", "axb", true},
        {"*x*", "abc", false},      {"*x*", "xxxx", true},      {"**", "abc", true},      {"a**", "a", true},
        {"team-*", "team-", true},  {"team-*", "team", false},  {"*-end", "x-end", true}, {"*-end", "x-ends", false},
        {"a*b*c", "aXbYc", true},   {"a*b*c", "acb", false},    {"a*a*a", "aaa", true},   {"a*a*a", "aa", false},
    };
    for (const auto& c : cases)
        EXPECT_EQ(matchRoomPattern(c.pattern, c.room), c.match) << "'" << c.pattern << "' vs '" << c.room << "'";
    // Backtracking stays fast on a pathological pattern.
    EXPECT_FALSE(matchRoomPattern("*a*a*a*a*a*a*a*a*b", std::string(64, 'a')));
}

// --- refusals -----------------------------------------------------------------------------

TEST(AuthToken, OnlyHs256) {
    const std::string claims = R"({"sub":"u","exp":1764594000})";
    // alg none, unsigned and signed.
    const std::string none = b64(R"({"alg":"none"})") + "." + b64(claims) + ".";
    EXPECT_REFUSED(none, "token must be signed with HS256");
    EXPECT_REFUSED(sign(R"({"alg":"none"})", claims), "token must be signed with HS256");
    for (const char* header : {R"({"alg":"HS512"})", R"({"alg":"HS384"})", R"({"alg":"RS256"})", R"({"alg":"hs256"})",
                               R"({"alg":"HS256 "})", R"({"alg":null})", R"({"alg":["HS256"]})", R"({"typ":"JWT"})",
                               "[]", "not json", R"({"alg":"HS256")"}) {
        SCOPED_TRACE(header);
        EXPECT_REFUSED(sign(header, claims), "token must be signed with HS256");
    }
    // An HS512 signature (64 bytes) under an HS256 header does not pass either.
    const std::string input = b64(R"({"alg":"HS256"})") + "." + b64(claims);
    EXPECT_REFUSED(input + "." + b64(hmacSha256(secret, input) + hmacSha256(secret, input)),
                   "token signature does not verify");
}

TEST(AuthToken, TamperedOrWronglySigned) {
    const auto good = hs256(R"({"sub":"alice","exp":1764594000})");
    ASSERT_TRUE(verify(good).id);
    const auto dot1 = good.find('.'), dot2 = good.rfind('.');
    // Claims swapped for others, signature kept.
    const std::string tampered =
        good.substr(0, dot1 + 1) + b64(R"({"sub":"admin","exp":1764594000})") + good.substr(dot2);
    EXPECT_REFUSED(tampered, "token signature does not verify");
    // One character of the claims changed.
    std::string flipped = good;
    flipped[dot1 + 3] = flipped[dot1 + 3] == 'A' ? 'B' : 'A';
    EXPECT_REFUSED(flipped, "token signature does not verify");
    // Another secret.
    EXPECT_REFUSED(hs256(R"({"sub":"alice","exp":1764594000})", "other-secret"), "token signature does not verify");
    const auto r = verify(good, now, "");
    EXPECT_FALSE(r.id);
    EXPECT_EQ(r.why, "token signature does not verify");
    // Signature truncated, extended, empty, or not base64url.
    EXPECT_REFUSED(good.substr(0, good.size() - 1), "token signature does not verify");
    EXPECT_REFUSED(good + "A", "token signature does not verify");
    EXPECT_REFUSED(good.substr(0, dot2 + 1), "token signature does not verify");
    EXPECT_REFUSED(good.substr(0, dot2 + 1) + "+/+/", "token signature does not verify");
    EXPECT_REFUSED(good + "=", "token signature does not verify");
}

TEST(AuthToken, NonCanonicalSignatureIsRefused) {
    const auto good = hs256(R"({"sub":"alice","exp":1764594000})");
    // 32 bytes in 43 characters: the last character carries 2 unused bits, zero in the canonical form.
    const std::string sig = good.substr(good.rfind('.') + 1);
    ASSERT_EQ(sig.size(), 43u);
    static constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const auto last = alphabet.find(sig.back());
    ASSERT_EQ(last & 3, 0u);
    std::string other = good;
    other.back() = alphabet[last | 1];
    // A lenient decoder would give the same 32 bytes; this one refuses the text.
    EXPECT_FALSE(base64UrlDecode(other.substr(other.rfind('.') + 1)));
    EXPECT_REFUSED(other, "token signature does not verify");
}

TEST(AuthToken, BadBase64InHeaderOrClaims) {
    const std::string claims = b64(R"({"sub":"u","exp":1764594000})");
    // Header not base64url: its alg cannot be read.
    std::string input = "eyJ+bGciOiJIUzI1NiJ9." + claims;
    EXPECT_REFUSED(input + "." + b64(hmacSha256(secret, input)), "token must be signed with HS256");
    // Claims not base64url, though correctly signed.
    input = b64(R"({"alg":"HS256"})") + ".eyJzdWIi+" + claims.substr(9);
    EXPECT_REFUSED(input + "." + b64(hmacSha256(secret, input)), "token claims are not a JSON object");
    // Claims with non-canonical trailing bits, correctly signed.
    input = b64(R"({"alg":"HS256"})") + "." + claims;
    ASSERT_NE(claims.size() % 4, 0u) << claims; // so its last character has unused bits
    const std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    input.back() = alphabet[alphabet.find(input.back()) | 1];
    EXPECT_REFUSED(input + "." + b64(hmacSha256(secret, input)), "token claims are not a JSON object");
}

TEST(AuthToken, ClaimsMustBeAJsonObject) {
    for (const char* claims : {"[]", R"("sub")", "42", "not json", R"({"sub":"u","exp":1764594000)", ""}) {
        SCOPED_TRACE(claims);
        EXPECT_REFUSED(sign(R"({"alg":"HS256"})", claims), "token claims are not a JSON object");
    }
    // Nested deeper than the parser allows for claims.
    EXPECT_REFUSED(sign(R"({"alg":"HS256"})", R"({"sub":"u","exp":1764594000,"x":[[[[[[[[[[1]]]]]]]]]]})"),
                   "token claims are not a JSON object");
}

TEST(AuthToken, Structure) {
    const auto good = hs256(R"({"sub":"u","exp":1764594000})");
    for (const std::string& bad : {std::string(""), std::string("abc"), std::string("a.b"), good + ".x", "." + good,
                                  std::string("..."), std::string("a.b.c.d")}) {
        SCOPED_TRACE(bad);
        EXPECT_REFUSED(bad, "token is not a JWS compact serialisation");
    }
    EXPECT_REFUSED(std::string(8193, 'a'), "token too long");
    EXPECT_REFUSED("..", "token must be signed with HS256");
}

} // namespace
} // namespace tongdao::chat
