// A server-side WebSocket over real sockets: messages of every size and shape echoed,
// pings and pongs, and handles used from other threads.
#include "support/server_harness.hpp"

#include <atomic>
#include <random>

namespace tongdao::test {
namespace {

/** An echo endpoint at /echo that records pings, pongs and closes. */
struct EchoServer {
    Probe probe;
    std::atomic<int> messages{0};
    TestServer ts;
    std::uint16_t port = 0;

    explicit EchoServer(WebSocketBehavior b = {}, ServerOptions o = testOptions()) : ts(o) {
        if (!b.message)
            b.message = [this](WebSocket& ws, std::string_view m, MessageKind k) {
                ++messages;
                ws.send(m, k);
            };
        if (!b.ping) b.ping = [this](WebSocket&, std::string_view p) { probe.add("ping:" + std::string(p)); };
        if (!b.pong) b.pong = [this](WebSocket&, std::string_view p) { probe.add("pong:" + std::string(p)); };
        if (!b.close)
            b.close = [this](WebSocket&, int code, std::string_view r) {
                probe.add("close:" + std::to_string(code) + ":" + std::string(r));
            };
        ts.server.ws("/echo", std::move(b));
        port = ts.start();
    }
};

std::string randomBytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    return s;
}

TEST(WebSocketEcho, TextAndBinaryComeBackWithTheirKind) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    ASSERT_TRUE(c.sendText("hello, 通道"));
    EXPECT_EQ(c.next(), text("hello, 通道"));
    const auto all = randomBytes(256, 1);
    ASSERT_TRUE(c.sendBinary(all));
    EXPECT_EQ(c.next(), binary(all));
}

TEST(WebSocketEcho, EmptyMessages) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    ASSERT_TRUE(c.sendText(""));
    EXPECT_EQ(c.next(), text(""));
    ASSERT_TRUE(c.sendBinary(""));
    EXPECT_EQ(c.next(), binary(""));
    EXPECT_EQ(s.messages.load(), 2);
}

TEST(WebSocketEcho, OneMebibyteEachWay) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    const auto big = randomBytes(1024 * 1024, 2);
    ASSERT_TRUE(c.sendBinary(big));
    const auto back = c.next(5000ms);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->type, "binary");
    EXPECT_EQ(back->data.size(), big.size());
    EXPECT_TRUE(back->data == big) << "the payload changed on the way";
    const std::string bigText(1024 * 1024, 'x');
    ASSERT_TRUE(c.sendText(bigText));
    const auto back2 = c.next(5000ms);
    ASSERT_TRUE(back2);
    EXPECT_EQ(back2->type, "text");
    EXPECT_TRUE(back2->data == bigText);
}

TEST(WebSocketEcho, ManyMessagesInOneWriteArriveInOrder) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    constexpr int count = 300;
    for (int i = 0; i < count; ++i)
        ASSERT_FALSE(c.engine().sendText("message " + std::to_string(i)));
    const auto wire = c.take();
    ASSERT_TRUE(c.sendRaw(wire)); // one write
    for (int i = 0; i < count; ++i) {
        auto r = c.next();
        ASSERT_TRUE(r) << "message " << i << " missing";
        ASSERT_EQ(*r, text("message " + std::to_string(i)));
    }
    EXPECT_EQ(s.messages.load(), count);
}

TEST(WebSocketEcho, FragmentedMessageIsReassembled) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    ASSERT_TRUE(c.sendFragment("frag", false));
    ASSERT_TRUE(c.sendFragment("men", false));
    ASSERT_TRUE(c.ping("between")); // RFC 6455 §5.4: control frames may come between fragments
    ASSERT_TRUE(c.sendFragment("ted", true));
    EXPECT_EQ(c.next(), pongEv("between"));
    EXPECT_EQ(c.next(), text("fragmented"));
    ASSERT_TRUE(c.sendFragment("bin", false, MessageKind::binary));
    ASSERT_TRUE(c.sendFragment("", true, MessageKind::binary));
    EXPECT_EQ(c.next(), binary("bin"));
    EXPECT_EQ(s.messages.load(), 2);
}

TEST(WebSocketEcho, FrameDribbledOneByteAtATime) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    ASSERT_FALSE(c.engine().sendText("slowly, byte by byte"));
    const auto wire = c.take();
    for (char b : wire) {
        ASSERT_TRUE(c.sendRaw(std::string_view(&b, 1)));
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(c.next(), text("slowly, byte by byte"));
}

TEST(WebSocketEcho, FramesSentWithTheHandshakeAreNotLost) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_FALSE(c.engine().sendText("first"));
    ASSERT_FALSE(c.engine().sendText("second"));
    const auto frames = c.take();
    ASSERT_TRUE(c.handshake("/echo", {}, {}, frames));
    EXPECT_EQ(c.next(), text("first"));
    EXPECT_EQ(c.next(), text("second"));
}

TEST(WebSocketControl, PingIsAnsweredWithItsPayloadAndSeenByTheHandler) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    ASSERT_TRUE(c.ping("abc"));
    EXPECT_EQ(c.next(), pongEv("abc"));
    ASSERT_TRUE(c.ping(""));
    EXPECT_EQ(c.next(), pongEv(""));
    EXPECT_TRUE(s.probe.waitFor("ping:abc"));
    EXPECT_TRUE(s.probe.waitFor("ping:"));
}

TEST(WebSocketControl, PongHandlerSeesThePayload) {
    EchoServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/echo"));
    ASSERT_TRUE(c.pong("unsolicited")); // RFC 6455 §5.5.3: allowed, needs no answer
    ASSERT_TRUE(c.sendText("fence"));
    EXPECT_EQ(c.next(), text("fence")); // nothing came back for the pong
    EXPECT_TRUE(s.probe.waitFor("pong:unsolicited"));
}

// --- handles ---------------------------------------------------------------------------

/** An endpoint that hands each connection's handle to the test. */
struct HandleServer {
    Probe probe;
    std::mutex m;
    std::vector<WebSocketHandle> handles;
    std::vector<WebSocketHandle> closeHandles; ///< made in the close handler
    EchoServer echo;

    HandleServer() : echo(behavior()) {}
    WebSocketBehavior behavior() {
        WebSocketBehavior b;
        b.open = [this](WebSocket& ws) {
            std::lock_guard lock(m);
            handles.push_back(ws.handle());
            probe.add("open");
        };
        b.close = [this](WebSocket& ws, int code, std::string_view) {
            {
                std::lock_guard lock(m);
                closeHandles.push_back(ws.handle());
            }
            probe.add("close:" + std::to_string(code));
        };
        return b;
    }
    WebSocketHandle handle(std::size_t i) {
        EXPECT_TRUE(probe.waitForPrefix("open", i + 1));
        std::lock_guard lock(m);
        return i < handles.size() ? handles[i] : WebSocketHandle{};
    }
};

TEST(WebSocketHandle, SendFromAnotherThread) {
    HandleServer s;
    WsClient c(s.echo.port);
    ASSERT_TRUE(c.handshake("/echo"));
    const auto h = s.handle(0);
    ASSERT_TRUE(h.valid());
    std::thread other([h] { h.send("from afar", MessageKind::text); });
    other.join();
    EXPECT_EQ(c.next(), text("from afar"));
    h.send(std::string("\x00\x01", 2), MessageKind::binary);
    EXPECT_EQ(c.next(), binary(std::string("\x00\x01", 2)));
}

TEST(WebSocketHandle, PostRunsOnTheConnectionsLoop) {
    HandleServer s;
    WsClient c(s.echo.port);
    ASSERT_TRUE(c.handshake("/echo"));
    const auto h = s.handle(0);
    h.post([&](WebSocket& ws) {
        s.probe.add(ws.loop().isInLoopThread() ? "ran in loop" : "ran elsewhere");
        ws.sendText("posted");
        ws.sendText("twice");
    });
    EXPECT_EQ(c.next(), text("posted"));
    EXPECT_EQ(c.next(), text("twice"));
    EXPECT_TRUE(s.probe.waitFor("ran in loop"));
    EXPECT_EQ(s.probe.count("ran elsewhere"), 0u);
}

TEST(WebSocketHandle, EndFromAnotherThread) {
    HandleServer s;
    WsClient c(s.echo.port);
    ASSERT_TRUE(c.handshake("/echo"));
    s.handle(0).end(4002, "later");
    EXPECT_EQ(c.next(), closeEv(4002, "later"));
    EXPECT_TRUE(c.waitEof());
    c.closeSocket();
    EXPECT_TRUE(s.probe.waitFor("close:4002"));
}

TEST(WebSocketHandle, HandleToAClosedConnectionDoesNothing) {
    HandleServer s;
    auto first = std::make_unique<WsClient>(s.echo.port);
    ASSERT_TRUE(first->handshake("/echo"));
    const auto stale = s.handle(0);
    ASSERT_TRUE(first->close(1000));
    EXPECT_EQ(first->next(), closeEv(1000));
    EXPECT_TRUE(first->waitEof());
    first.reset();
    ASSERT_TRUE(s.probe.waitFor("close:1000"));

    // One loop: the next connection takes the freed slot, with a new generation.
    WsClient second(s.echo.port);
    ASSERT_TRUE(second.handshake("/echo"));
    const auto fresh = s.handle(1);
    std::atomic<bool> ranOnStale{false};
    stale.send("stale", MessageKind::text);
    stale.post([&](WebSocket&) { ranOnStale = true; });
    stale.end(4003, "stale");
    fresh.send("fresh", MessageKind::text); // posted after the stale calls: runs after them
    EXPECT_EQ(second.next(), text("fresh"));
    ASSERT_TRUE(second.sendText("still open"));
    EXPECT_EQ(second.next(), text("still open"));
    EXPECT_FALSE(ranOnStale.load());

    // A handle made in the close handler (the slot was already freed) is as stale.
    ASSERT_TRUE(second.close(1000));
    EXPECT_EQ(second.next(), closeEv(1000));
    EXPECT_TRUE(second.waitEof());
    ASSERT_TRUE(s.probe.waitForPrefix("close:", 2));
    WsClient third(s.echo.port);
    ASSERT_TRUE(third.handshake("/echo"));
    const auto latest = s.handle(2);
    WebSocketHandle madeInClose;
    {
        std::lock_guard lock(s.m);
        ASSERT_EQ(s.closeHandles.size(), 2u);
        madeInClose = s.closeHandles[1];
    }
    ASSERT_TRUE(madeInClose.valid());
    madeInClose.send("stale", MessageKind::text);
    madeInClose.post([&](WebSocket&) { ranOnStale = true; });
    latest.send("latest", MessageKind::text);
    EXPECT_EQ(third.next(), text("latest"));
    EXPECT_FALSE(ranOnStale.load());

    const WebSocketHandle none;
    EXPECT_FALSE(none.valid());
    none.send("nowhere", MessageKind::text);
    none.post([&](WebSocket&) { ranOnStale = true; });
    none.end();
    EXPECT_FALSE(ranOnStale.load());
}

} // namespace
} // namespace tongdao::test
