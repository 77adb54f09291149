// How server-side connections end: closing handshakes started by either side, aborts,
// protocol violations with their RFC 6455 close codes, and handlers that throw.
#include "support/server_harness.hpp"

namespace tongdao::test {
namespace {

/**
 * /ws: echoes, but some messages are commands: "end" → end(4001, "x"), "abort" →
 * close(), "boom" → throws, "bad-end" → reports what invalid end() calls return.
 */
struct CloseServer {
    Probe probe;
    TestServer ts;
    std::uint16_t port = 0;

    explicit CloseServer(WebSocketBehavior b = {}) {
        b.message = [this](WebSocket& ws, std::string_view m, MessageKind k) {
            probe.add("message:" + std::string(m.substr(0, 32)));
            if (m == "end") {
                const auto ec = ws.end(4001, "x");
                probe.add("end:" + std::to_string(ec.value()));
            } else if (m == "abort") {
                ws.close();
                probe.add(std::string("after close, open=") + (ws.isOpen() ? "1" : "0"));
            } else if (m == "boom") {
                throw std::runtime_error("boom");
            } else if (m == "bad-end") {
                std::string report;
                for (const auto& [code, reason] : std::vector<std::pair<int, std::string>>{
                         {1005, ""}, {1006, ""}, {1015, ""}, {999, ""}, {5000, ""}, {1004, ""},
                         {1000, std::string(124, 'r')}, {1000, "\xff"}}) {
                    report += std::to_string(ws.end(code, reason).value()) + ",";
                }
                ws.sendText(report);
            } else if (m.starts_with("end-code ")) {
                const int code = std::stoi(std::string(m.substr(9)));
                ws.sendText("end(" + std::to_string(code) + ") = " + std::to_string(ws.end(code, "q").value()));
            } else {
                ws.send(m, k);
            }
        };
        b.ping = [this](WebSocket&, std::string_view p) { probe.add("ping:" + std::string(p)); };
        b.close = [this](WebSocket&, int code, std::string_view r) {
            probe.add("close:" + std::to_string(code) + ":" + std::string(r));
        };
        ts.server.ws("/ws", std::move(b));
        port = ts.start();
    }
};

std::string errorValue(tongdao::error e) { return std::to_string(static_cast<int>(e)); }

TEST(ClientCloses, CloseIsEchoedAndReportedToTheHandler) {
    CloseServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.close(4000, "bye"));
    EXPECT_EQ(c.next(), closeEv(4000, "bye")); // RFC 6455 §5.5.1: echoed
    EXPECT_TRUE(c.waitEof());                  // §7.1.1: then the server closes TCP
    EXPECT_FALSE(c.wasReset());
    c.closeSocket();
    EXPECT_TRUE(s.probe.waitFor("close:4000:bye"));
    EXPECT_EQ(s.probe.countPrefix("close:"), 1u);
}

TEST(ClientCloses, CloseWithoutCodeIsReportedAs1005) {
    CloseServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendRaw(cframe(0x8, "")));
    EXPECT_EQ(c.next(), closeEv(1005)); // echoed without a code
    EXPECT_TRUE(c.waitEof());
    c.closeSocket();
    EXPECT_TRUE(s.probe.waitFor("close:1005:"));
}

TEST(ClientCloses, AbruptDisconnectIs1006) {
    CloseServer s;
    {
        WsClient reset(s.port);
        ASSERT_TRUE(reset.handshake("/ws"));
        ASSERT_TRUE(reset.sendText("hi"));
        EXPECT_EQ(reset.next(), text("hi"));
        reset.abort(); // RST
    }
    EXPECT_TRUE(s.probe.waitFor("close:1006:"));
    {
        WsClient fin(s.port);
        ASSERT_TRUE(fin.handshake("/ws"));
        fin.closeSocket(); // FIN without a close frame
    }
    EXPECT_TRUE(s.probe.waitUntil([](const auto& v) { return std::count(v.begin(), v.end(), "close:1006:") == 2; }));
}

TEST(ServerCloses, EndSendsCloseAndClosesTcpOnlyAfterTheEcho) {
    CloseServer s;
    ClientOptions o;
    o.autoFlush = false; // the test decides when the echo leaves
    WsClient c(s.port, o);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText("end"));
    EXPECT_EQ(c.next(), closeEv(4001, "x"));
    EXPECT_TRUE(s.probe.waitFor("end:0"));
    // Without our echo the server keeps the TCP connection (up to its close timeout).
    EXPECT_FALSE(c.waitEof(300ms));
    ASSERT_TRUE(c.flush()); // the echo the engine queued
    EXPECT_TRUE(c.waitEof(1500ms));
    EXPECT_FALSE(c.wasReset());
    c.closeSocket();
    EXPECT_TRUE(s.probe.waitFor("close:4001:x"));
}

TEST(ServerCloses, EndWithoutAnEchoTimesOut) {
    CloseServer s; // closeTimeout = 2
    ClientOptions o;
    o.autoFlush = false;
    WsClient c(s.port, o);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText("end"));
    EXPECT_EQ(c.next(), closeEv(4001, "x"));
    const auto begin = Clock::now();
    EXPECT_TRUE(c.waitEof(4000ms)); // RFC 6455 §7.1.1: the server does not wait forever
    EXPECT_GE(Clock::now() - begin, 900ms);
    EXPECT_TRUE(s.probe.waitFor("close:1006:"));
}

TEST(ServerCloses, CloseAbortsWithoutAFrame) {
    CloseServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText("abort"));
    EXPECT_TRUE(c.waitEof());
    EXPECT_EQ(c.next(100ms), std::nullopt) << "no close frame before the TCP close";
    EXPECT_TRUE(s.probe.waitFor("close:1006:"));
    EXPECT_TRUE(s.probe.waitFor("after close, open=0"));
}

TEST(ServerCloses, EndWithAnInvalidCodeOrReasonFailsAndSendsNothing) {
    CloseServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText("bad-end"));
    const auto sendable = errorValue(error::closeCodeNotSendable);
    const std::string expected = sendable + "," + sendable + "," + sendable + "," + sendable + "," + sendable + "," +
                                 sendable + "," + errorValue(error::closeReasonTooLong) + "," +
                                 errorValue(error::invalidUtf8ToSend) + ",";
    EXPECT_EQ(c.next(), text(expected)); // no close frame came first
    ASSERT_TRUE(c.sendText("still open"));
    EXPECT_EQ(c.next(), text("still open"));
}

// WebSocket::end takes an int: a code beyond 16 bits must be refused, not wrapped around
// to one that is allowed (66536 would become 1000).
TEST(ServerCloses, EndWithACodeBeyondSixteenBitsFails) {
    CloseServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText("end-code 66536")); // 65536 + 1000
    EXPECT_EQ(c.next(), text("end(66536) = " + errorValue(error::closeCodeNotSendable)));
    ASSERT_TRUE(c.sendText("end-code -64536")); // 1000 - 65536
    EXPECT_EQ(c.next(), text("end(-64536) = " + errorValue(error::closeCodeNotSendable)));
}

// --- protocol violations ------------------------------------------------------------------

/** Sends `wire` on a fresh connection and returns the close the server answers with. */
std::optional<Rec> closeFor(CloseServer& s, const ByteVec& wire) {
    WsClient c(s.port);
    if (!c.handshake("/ws")) return std::nullopt;
    c.sendRaw(wire);
    auto r = c.nextClose();
    EXPECT_TRUE(c.waitEof()) << "the server closes TCP after its close frame";
    return r;
}

TEST(Violations, CloseCode1005OnTheWireIs1002) {
    CloseServer s;
    const auto r = closeFor(s, cframe(0x8, closePayload(1005)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 1002);
    EXPECT_TRUE(s.probe.waitForPrefix("close:1002:"));
}

TEST(Violations, OversizeMessageIs1009) {
    WebSocketBehavior b;
    b.maxPayloadLength = 1024;
    CloseServer s(b);
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText(std::string(1024, 'a'))); // at the limit: fine
    EXPECT_EQ(c.next(), text(std::string(1024, 'a')));
    ASSERT_TRUE(c.sendText(std::string(1025, 'a')));
    const auto r = c.next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->type, "close");
    EXPECT_EQ(r->code, 1009);
    EXPECT_TRUE(c.waitEof());
    EXPECT_EQ(s.probe.countPrefix("message:"), 1u);

    // Also when the size is only reached by fragments.
    WsClient f(s.port);
    ASSERT_TRUE(f.handshake("/ws"));
    ASSERT_TRUE(f.sendFragment(std::string(600, 'b'), false));
    ASSERT_TRUE(f.sendFragment(std::string(600, 'b'), true));
    const auto r2 = f.nextClose();
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->code, 1009);
}

TEST(Violations, InvalidUtf8TextIs1007) {
    CloseServer s;
    const auto r = closeFor(s, cframe(0x1, "ok \xff\xfe"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 1007);
    EXPECT_EQ(s.probe.countPrefix("message:"), 0u);
}

TEST(Violations, UnmaskedClientFrameIs1002) {
    CloseServer s;
    const auto r = closeFor(s, frame(0x1, "plain", true, false));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 1002);
    EXPECT_EQ(s.probe.countPrefix("message:"), 0u);
}

TEST(Violations, ReservedOpcodeIs1002) {
    CloseServer s;
    const auto r = closeFor(s, cframe(0x3, "?"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 1002);
}

// --- handlers that throw ------------------------------------------------------------------

TEST(ThrowingHandlers, MessageHandlerThatThrowsClosesWith1011) {
    CloseServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_FALSE(c.engine().sendText("boom"));
    ASSERT_FALSE(c.engine().sendText("after the throw"));
    ASSERT_TRUE(c.flush());
    const auto r = c.next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->type, "close") << "the message after the throw must not be echoed: " << *r;
    EXPECT_EQ(r->code, 1011);
    EXPECT_TRUE(c.waitEof());
    c.closeSocket();
    EXPECT_TRUE(s.probe.waitForPrefix("close:1011"));
    EXPECT_EQ(s.probe.count("message:after the throw"), 0u) << "no handler runs after a throw";
}

TEST(ThrowingHandlers, OpenHandlerThatThrowsClosesWith1011) {
    WebSocketBehavior b;
    b.open = [](WebSocket&) { throw std::runtime_error("open failed"); };
    CloseServer s(b);
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    const auto r = c.nextClose();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 1011);
    EXPECT_TRUE(c.waitEof());
}

// After the connection is closed from a handler, the rest of what arrived in the same
// read is still parsed; no handler (ping and pong included) may run after the close handler.
TEST(ServerCloses, NoHandlerRunsAfterTheCloseHandler) {
    CloseServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    // Built by hand: the engine would send the ping ahead of the data.
    ASSERT_TRUE(c.sendRaw(concat({cframe(0x1, "abort"), cframe(0x9, "late"), cframe(0x1, "later")})));
    EXPECT_TRUE(c.waitEof());
    ASSERT_TRUE(s.probe.waitFor("close:1006:"));
    std::this_thread::sleep_for(100ms);
    const auto items = s.probe.items();
    const auto closeAt = std::find(items.begin(), items.end(), "close:1006:");
    ASSERT_NE(closeAt, items.end());
    for (auto it = closeAt + 1; it != items.end(); ++it)
        EXPECT_TRUE(!it->starts_with("ping:") && !it->starts_with("message:"))
            << "a handler ran after the close handler: " << *it;
}

} // namespace
} // namespace tongdao::test
