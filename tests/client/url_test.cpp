// WebSocket URIs (RFC 6455 §3) as the client parses them: scheme, host, port, target,
// and the Host header value; refusals for what is not a ws:// or wss:// URI.

#include "client/url.hpp"

#include <gtest/gtest.h>

namespace {

using tongdao::detail::parseUrl;

TEST(Url, WsDefaults) {
    const auto u = parseUrl("ws://example.com");
    ASSERT_TRUE(u);
    EXPECT_FALSE(u->secure);
    EXPECT_EQ(u->host, "example.com");
    EXPECT_EQ(u->port, 80);
    EXPECT_EQ(u->target, "/");
    EXPECT_EQ(u->hostHeader, "example.com");
}

TEST(Url, WssDefaults) {
    const auto u = parseUrl("wss://example.com/chat");
    ASSERT_TRUE(u);
    EXPECT_TRUE(u->secure);
    EXPECT_EQ(u->port, 443);
    EXPECT_EQ(u->target, "/chat");
    EXPECT_EQ(u->hostHeader, "example.com");
}

TEST(Url, SchemeIsCaseInsensitive) {
    const auto a = parseUrl("WS://h/");
    ASSERT_TRUE(a);
    EXPECT_FALSE(a->secure);
    const auto b = parseUrl("WsS://h/");
    ASSERT_TRUE(b);
    EXPECT_TRUE(b->secure);
}

TEST(Url, ExplicitPortAppearsInHost) {
    const auto u = parseUrl("ws://127.0.0.1:8080/echo");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "127.0.0.1");
    EXPECT_EQ(u->port, 8080);
    EXPECT_EQ(u->target, "/echo");
    EXPECT_EQ(u->hostHeader, "127.0.0.1:8080");
}

TEST(Url, DefaultPortWrittenOutIsLeftOutOfHost) {
    const auto ws = parseUrl("ws://h:80/");
    ASSERT_TRUE(ws);
    EXPECT_EQ(ws->port, 80);
    EXPECT_EQ(ws->hostHeader, "h");
    const auto wss = parseUrl("wss://h:443/");
    ASSERT_TRUE(wss);
    EXPECT_EQ(wss->port, 443);
    EXPECT_EQ(wss->hostHeader, "h");
}

TEST(Url, OtherSchemesDefaultPortIsKept) {
    const auto ws = parseUrl("ws://h:443/");
    ASSERT_TRUE(ws);
    EXPECT_EQ(ws->hostHeader, "h:443");
    const auto wss = parseUrl("wss://h:80/");
    ASSERT_TRUE(wss);
    EXPECT_EQ(wss->hostHeader, "h:80");
}

TEST(Url, PortBounds) {
    ASSERT_TRUE(parseUrl("ws://h:1/"));
    EXPECT_EQ(parseUrl("ws://h:1/")->port, 1);
    ASSERT_TRUE(parseUrl("ws://h:65535/"));
    EXPECT_EQ(parseUrl("ws://h:65535/")->port, 65535);
    EXPECT_FALSE(parseUrl("ws://h:0/"));
    EXPECT_FALSE(parseUrl("ws://h:65536/"));
    EXPECT_FALSE(parseUrl("ws://h:99999999999/"));
    EXPECT_FALSE(parseUrl("ws://h:-1/"));
    EXPECT_FALSE(parseUrl("ws://h:8o/"));
    EXPECT_FALSE(parseUrl("ws://h:+80/"));
}

TEST(Url, QueryIsPartOfTarget) {
    const auto u = parseUrl("ws://h:9000/chat?room=1&user=a");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->target, "/chat?room=1&user=a");
}

TEST(Url, QueryWithoutPathGetsSlash) {
    const auto u = parseUrl("ws://h?x=1");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "h");
    EXPECT_EQ(u->target, "/?x=1");
    const auto p = parseUrl("ws://h:81?x=1");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->port, 81);
    EXPECT_EQ(p->target, "/?x=1");
}

TEST(Url, Ipv6Literal) {
    const auto u = parseUrl("ws://[::1]:9000/x");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "::1");
    EXPECT_EQ(u->port, 9000);
    EXPECT_EQ(u->target, "/x");
    EXPECT_EQ(u->hostHeader, "[::1]:9000");
}

TEST(Url, Ipv6LiteralDefaultPort) {
    const auto u = parseUrl("wss://[2001:db8::7]/");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "2001:db8::7");
    EXPECT_EQ(u->port, 443);
    EXPECT_EQ(u->hostHeader, "[2001:db8::7]");
}

TEST(Url, Ipv4MappedIpv6Literal) {
    const auto u = parseUrl("ws://[::ffff:127.0.0.1]:80/");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "::ffff:127.0.0.1");
    EXPECT_EQ(u->hostHeader, "[::ffff:127.0.0.1]");
}

TEST(Url, BadIpv6Literals) {
    EXPECT_FALSE(parseUrl("ws://[::1/"));       // no closing bracket
    EXPECT_FALSE(parseUrl("ws://[]/"));         // empty
    EXPECT_FALSE(parseUrl("ws://[zz::1]/"));    // not hex
    EXPECT_FALSE(parseUrl("ws://[::1]x/"));     // junk after the bracket
    EXPECT_FALSE(parseUrl("ws://[::1]:0/"));
    EXPECT_FALSE(parseUrl("ws://::1/"));        // unbracketed
}

TEST(Url, FragmentRefused) {
    EXPECT_FALSE(parseUrl("ws://h/#frag"));
    EXPECT_FALSE(parseUrl("ws://h/path?q=1#frag"));
    EXPECT_FALSE(parseUrl("ws://h#"));
}

TEST(Url, UserinfoRefused) {
    EXPECT_FALSE(parseUrl("ws://user@h/"));
    EXPECT_FALSE(parseUrl("ws://user:pass@h:80/"));
    EXPECT_FALSE(parseUrl("wss://@h/"));
}

TEST(Url, AtSignInPathIsFine) {
    const auto u = parseUrl("ws://h/users/@me");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "h");
    EXPECT_EQ(u->target, "/users/@me");
}

TEST(Url, BadSchemes) {
    for (const char* s : {"http://h/", "https://h/", "ftp://h/", "wss:/h/", "ws:h", "ws//h", "h:80",
                          "", "://h/", "wsx://h/", "w://h/", " ws://h/"})
        EXPECT_FALSE(parseUrl(s)) << s;
}

TEST(Url, NoHostRefused) {
    EXPECT_FALSE(parseUrl("ws://"));
    EXPECT_FALSE(parseUrl("ws:///path"));
    EXPECT_FALSE(parseUrl("ws://:80/"));
    EXPECT_FALSE(parseUrl("ws://?x"));
}

TEST(Url, SpacesAndControlsRefused) {
    EXPECT_FALSE(parseUrl("ws://h/a b"));
    EXPECT_FALSE(parseUrl("ws://h/a\r\nX-Injected: 1"));
    EXPECT_FALSE(parseUrl("ws://h/\t"));
    EXPECT_FALSE(parseUrl(std::string_view("ws://h/\0x", 8)));
    EXPECT_FALSE(parseUrl("ws://h/\x7f"));
}

TEST(Url, BadHostCharactersRefused) {
    EXPECT_FALSE(parseUrl("ws://h%41/"));
    EXPECT_FALSE(parseUrl("ws://h!/"));
    EXPECT_FALSE(parseUrl("ws://a,b/"));
}

TEST(Url, HostNamesWithDashesAndDots) {
    const auto u = parseUrl("wss://chat-1.example.com:8443/ws");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "chat-1.example.com");
    EXPECT_EQ(u->hostHeader, "chat-1.example.com:8443");
}

} // namespace
