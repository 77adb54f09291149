// The client's address behind trusted proxies (src/server/forwarded.hpp): X-Forwarded-For
// walked from the right past trusted addresses, X-Real-IP without it, malformed entries and
// the bound, never the header of an untrusted peer; then through a real server: the
// upgrade request, the WebSocket and an HTTP handler see it, and setTrustedProxies changes it.
#include "server/detail.hpp"
#include "server/forwarded.hpp"
#include "support/server_harness.hpp"

#include <string>
#include <vector>

namespace tongdao::test {
namespace {

using detail::forwardedClient;
using detail::parseForwardedEntry;
using net::IpAddress;
using net::parseIpRanges;

IpAddress ip(std::string_view text) { return IpAddress::parse(text).value(); }

/** The client for `peer` and these header fields ({name, value} in order), as text; "" for none. */
std::string client(std::string_view peer, std::string_view trusted,
                   std::vector<std::pair<std::string_view, std::string_view>> fields) {
    protocol::http::HeaderList headers;
    for (const auto& [name, value] : fields) headers.add(name, value);
    const auto c = forwardedClient(ip(peer), parseIpRanges(trusted), headers);
    return c ? c->toString() : "";
}

constexpr std::string_view xff = "X-Forwarded-For";

TEST(ForwardedEntry, AddressesWithAndWithoutPorts) {
    EXPECT_EQ(parseForwardedEntry("203.0.113.7"), ip("203.0.113.7"));
    EXPECT_EQ(parseForwardedEntry("203.0.113.7:4711"), ip("203.0.113.7"));
    EXPECT_EQ(parseForwardedEntry("2001:db8::1"), ip("2001:db8::1"));
    EXPECT_EQ(parseForwardedEntry("[2001:db8::1]"), ip("2001:db8::1"));
    EXPECT_EQ(parseForwardedEntry("[2001:db8::1]:4711"), ip("2001:db8::1"));
    EXPECT_EQ(parseForwardedEntry("::ffff:192.0.2.1"), ip("192.0.2.1"));
    for (std::string_view bad : {"", "unknown", "_hidden", "example.com", "203.0.113.7:", "203.0.113.7:port",
                                 "203.0.113.7:123456", "[203.0.113.7]", "[2001:db8::1", "[2001:db8::1]x",
                                 "[2001:db8::1]:", "2001:db8::1:4711:x", "\"203.0.113.7\"", "203.0.113.7 x"})
        EXPECT_FALSE(parseForwardedEntry(bad)) << bad;
}

TEST(ForwardedClient, UntrustedPeerIsTheClient) {
    // The default: no proxy trusted, whatever the client sends.
    EXPECT_EQ(client("198.51.100.1", "", {{xff, "203.0.113.7"}, {"X-Real-IP", "203.0.113.8"}}), "");
    // A peer outside the ranges: its header is ignored.
    EXPECT_EQ(client("127.0.0.2", "127.0.0.1", {{xff, "198.51.100.1"}}), "");
    EXPECT_EQ(client("10.0.0.1", "::1", {{"X-Real-IP", "198.51.100.1"}}), "");
}

TEST(ForwardedClient, RightmostUntrustedEntry) {
    // nginx's $proxy_add_x_forwarded_for: what the client sent, then the client's address.
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, "203.0.113.7"}}), "203.0.113.7");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, "198.51.100.1, 203.0.113.7"}}), "203.0.113.7");
    // Proxies in a chain are passed over; a forged entry to their left is never reached.
    EXPECT_EQ(client("10.0.0.2", "10.0.0.0/8", {{xff, "198.51.100.1, 203.0.113.7, 10.0.0.9, 10.0.0.3"}}),
              "203.0.113.7");
    EXPECT_EQ(client("::1", "::1, 2001:db8::/32", {{xff, "2001:db8:ffff::1, 2001:db8::7"}}), "2001:db8:ffff::1");
    // Spaces and empty entries are nothing.
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, " 203.0.113.7 ,, ,\t"}}), "203.0.113.7");
    // Ports as some proxies write them.
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, "[2001:db8::1]:4711"}}), "2001:db8::1");
    // Several fields are one list, in order: the last field's last entry is the nearest.
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1, 10.0.0.0/8", {{xff, "203.0.113.7"}, {"x-forwarded-for", "10.0.0.5"}}),
              "203.0.113.7");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, "198.51.100.1"}, {"Host", "x"}, {xff, "203.0.113.7"}}),
              "203.0.113.7");
}

TEST(ForwardedClient, AllTrustedIsTheLeftmost) {
    EXPECT_EQ(client("127.0.0.1", "127.0.0.0/8", {{xff, "127.0.0.3, 127.0.0.2"}}), "127.0.0.3");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, "127.0.0.1"}}), "127.0.0.1");
}

TEST(ForwardedClient, MalformedEntryEndsTheWalk) {
    // What lies left of garbage is not believed: the address right of it is taken.
    EXPECT_EQ(client("10.0.0.1", "10.0.0.0/8", {{xff, "203.0.113.7, unknown, 10.0.0.4"}}), "10.0.0.4");
    EXPECT_EQ(client("10.0.0.1", "10.0.0.0/8", {{xff, "203.0.113.7, 10.0.0.4:x"}}), "");
    // A malformed entry to the left of the client is never read.
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, "garbage, 203.0.113.7"}}), "203.0.113.7");
    // Nothing usable in X-Forwarded-For: X-Real-IP, else the peer.
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, "unknown"}, {"X-Real-IP", "203.0.113.8"}}), "203.0.113.8");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, ""}}), "");
}

TEST(ForwardedClient, AtMostSoManyEntries) {
    std::string list = "203.0.113.7";
    for (std::size_t i = 0; i < detail::maxForwardedEntries; ++i) list += ", 10.0.0." + std::to_string(i + 1);
    // 32 trusted entries right of the client: the walk stops at the last of them.
    EXPECT_EQ(client("10.0.0.100", "10.0.0.0/8", {{xff, list}}), "10.0.0.1");
    // One trusted entry fewer, and the client is within reach.
    EXPECT_EQ(client("10.0.0.100", "10.0.0.0/8", {{xff, list.substr(0, list.rfind(','))}}), "203.0.113.7");
    // A long list of garbage costs at most the bound.
    std::string junk;
    for (int i = 0; i < 2000; ++i) junk += "x,";
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{xff, junk + "203.0.113.7"}}), "203.0.113.7");
}

TEST(ForwardedClient, RealIpWithoutForwardedFor) {
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{"X-Real-IP", "203.0.113.8"}}), "203.0.113.8");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{"x-real-ip", " 2001:db8::8 "}}), "2001:db8::8");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{"X-Real-IP", "203.0.113.8, 203.0.113.9"}}), "");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{"X-Real-IP", "unknown"}}), "");
    // X-Forwarded-For comes first when both are there.
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {{"X-Real-IP", "203.0.113.8"}, {xff, "203.0.113.7"}}), "203.0.113.7");
    EXPECT_EQ(client("127.0.0.1", "127.0.0.1", {}), "");
}

TEST(ForwardedClient, LogLineNamesBoth) {
    EXPECT_EQ(detail::describePeer("203.0.113.7", "127.0.0.1:50312"), "203.0.113.7 (via 127.0.0.1:50312)");
    EXPECT_EQ(detail::describePeer("", "127.0.0.1:50312"), "127.0.0.1:50312");
    EXPECT_EQ(detail::describePeer("203.0.113.7", ""), "203.0.113.7");
}

// --- through a server -------------------------------------------------------------------

/** /ws and GET /who, each reporting the addresses it sees to the probe. */
struct WhoServer {
    Probe probe;
    TestServer ts;
    std::uint16_t port = 0;

    explicit WhoServer(ServerOptions o) : ts(o) {
        WebSocketBehavior b;
        b.upgrade = [this](tongdao::UpgradeRequest& req, UpgradeResponse& res) {
            probe.add("upgrade " + req.clientAddress() + " " + req.remoteAddress().substr(0, 10));
            res.accept();
        };
        b.open = [this](WebSocket& ws) { probe.add("open " + ws.getClientAddress()); };
        ts.server.ws("/ws", std::move(b));
        ts.server.get("/who", [](const HttpRequest& req, HttpResponse& res) { res.text(req.clientAddress()); });
        port = ts.start();
    }
};

ServerOptions trusting(std::string_view ranges) {
    auto o = testOptions();
    o.trustedProxies = parseIpRanges(ranges);
    return o;
}

TEST(ForwardedServer, TrustedPeerNamesTheClient) {
    WhoServer s(trusting("127.0.0.1"));
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws", {}, {{"X-Forwarded-For", "198.51.100.1, 203.0.113.7"}}));
    EXPECT_TRUE(s.probe.waitFor("upgrade 203.0.113.7 127.0.0.1:"));
    EXPECT_TRUE(s.probe.waitFor("open 203.0.113.7"));
    WsClient h(s.port);
    auto r = h.request(requestText("/who", "X-Real-IP: 2001:db8::8\r\n"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "2001:db8::8");
    // Per request on a kept-alive connection: the next one names its own client, or none.
    r = h.request(requestText("/who"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "127.0.0.1");
}

TEST(ForwardedServer, UntrustedPeerIsItself) {
    WhoServer s(trusting("10.0.0.0/8, ::1"));
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws", {}, {{"X-Forwarded-For", "198.51.100.1"}, {"X-Real-IP", "198.51.100.2"}}));
    EXPECT_TRUE(s.probe.waitFor("upgrade 127.0.0.1 127.0.0.1:"));
    EXPECT_TRUE(s.probe.waitFor("open 127.0.0.1"));
    WsClient h(s.port);
    auto r = h.request(requestText("/who", "X-Forwarded-For: 198.51.100.1\r\n"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "127.0.0.1");
}

TEST(ForwardedServer, SetTrustedProxiesAppliesToWhatComesNext) {
    WhoServer s(testOptions()); // none trusted
    auto who = [&] {
        WsClient h(s.port);
        auto r = h.request(requestText("/who", "X-Forwarded-For: 203.0.113.7\r\n"));
        return r ? r->body : std::string("(no answer)");
    };
    EXPECT_EQ(who(), "127.0.0.1");
    s.ts.server.setTrustedProxies(parseIpRanges("127.0.0.0/8"));
    EXPECT_TRUE(eventually([&] { return who() == "203.0.113.7"; }));
    s.ts.server.setTrustedProxies({});
    EXPECT_TRUE(eventually([&] { return who() == "127.0.0.1"; }));
}

} // namespace
} // namespace tongdao::test
