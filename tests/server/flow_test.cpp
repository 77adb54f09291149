// Limits and flow: the connection limit, backpressure with its send statuses and the
// drain handler, and idle timeouts with and without automatic pings.
#include "support/server_harness.hpp"

#include <algorithm>

namespace tongdao::test {
namespace {

TEST(Limits, MaxConnectionsRefusesTheThirdUntilOneLeaves) {
    Probe probe;
    TestServer ts; // one loop: the count is checked where it is kept
    WebSocketBehavior b;
    b.maxConnections = 2;
    b.message = echoMessage;
    b.close = [&](WebSocket&, int code, std::string_view) { probe.add("close:" + std::to_string(code)); };
    ts.server.ws("/ws", std::move(b));
    const auto port = ts.start();

    auto first = std::make_unique<WsClient>(port);
    WsClient second(port), third(port);
    ASSERT_TRUE(first->handshake("/ws"));
    ASSERT_TRUE(second.handshake("/ws"));
    EXPECT_FALSE(third.handshake("/ws"));
    EXPECT_EQ(third.reply().status, 503);
    EXPECT_EQ(third.reply().body, "too many connections\n");
    EXPECT_EQ(ts.server.stats().handshakeFailures["too many connections"], 1u);

    ASSERT_TRUE(first->close(1000));
    EXPECT_EQ(first->nextClose(), closeEv(1000));
    EXPECT_TRUE(first->waitEof());
    first.reset();
    ASSERT_TRUE(probe.waitFor("close:1000"));
    WsClient fourth(port);
    ASSERT_TRUE(fourth.handshake("/ws")) << fourth.reply().status;
    ASSERT_TRUE(fourth.sendText("in"));
    EXPECT_EQ(fourth.next(), text("in"));
}

// --- backpressure -------------------------------------------------------------------------

/**
 * On "flood", sends 64 KiB messages, one per loop turn (so each turn's output meets the
 * kernel), until a send is dropped; records each status and the backlog after it.
 */
struct FloodServer {
    static constexpr std::size_t limit = 256 * 1024;
    static constexpr std::size_t messageSize = 64 * 1024;

    Probe probe;
    std::mutex m;
    std::vector<SendStatus> statuses;
    std::vector<std::size_t> buffered;
    const std::string payload = std::string(messageSize, 'p');
    std::function<void(WebSocket&)> step;
    TestServer ts;
    std::uint16_t port = 0;

    explicit FloodServer(bool closeOnLimit) {
        step = [this](WebSocket& ws) {
            const auto st = ws.send(payload, MessageKind::binary);
            {
                std::lock_guard lock(m);
                statuses.push_back(st);
                buffered.push_back(ws.getBufferedAmount());
            }
            if (st == SendStatus::dropped) return probe.add("dropped");
            ws.handle().post(step); // the next send in a later turn
        };
        WebSocketBehavior b;
        b.maxBackpressure = limit;
        b.closeOnBackpressureLimit = closeOnLimit;
        b.message = [this](WebSocket& ws, std::string_view msg, MessageKind) {
            if (msg == "flood") return step(ws);
            const auto st = ws.sendText("after"); // msg == "status"
            ws.sendText("status " + std::to_string(static_cast<int>(st)));
        };
        b.drain = [this](WebSocket& ws) { probe.add("drain " + std::to_string(ws.getBufferedAmount())); };
        b.close = [this](WebSocket&, int code, std::string_view r) {
            probe.add("close:" + std::to_string(code) + ":" + std::string(r));
        };
        ts.server.ws("/ws", std::move(b));
        port = ts.start();
    }
    std::vector<SendStatus> sent() {
        std::lock_guard lock(m);
        return statuses;
    }
    std::size_t maxBuffered() {
        std::lock_guard lock(m);
        return buffered.empty() ? 0 : *std::max_element(buffered.begin(), buffered.end());
    }
};

std::size_t countOf(const std::vector<SendStatus>& v, SendStatus s) {
    return static_cast<std::size_t>(std::count(v.begin(), v.end(), s));
}

TEST(Backpressure, StatusesProgressAndTheBacklogStaysBounded) {
    FloodServer s(false);
    ClientOptions o;
    o.receiveBuffer = 4096; // a small window: the server's writes stall early
    WsClient c(s.port, o);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText("flood")); // then read nothing for a while
    ASSERT_TRUE(s.probe.waitFor("dropped", 8000ms));

    const auto st = s.sent();
    ASSERT_GE(st.size(), 3u);
    EXPECT_EQ(st.front(), SendStatus::success);
    EXPECT_EQ(st.back(), SendStatus::dropped);
    EXPECT_EQ(countOf(st, SendStatus::dropped), 1u);
    EXPECT_GE(countOf(st, SendStatus::backpressure), 1u);
    // success* backpressure+ dropped: once the kernel refused, nothing is "success" again.
    const auto firstBackpressure = std::find(st.begin(), st.end(), SendStatus::backpressure);
    EXPECT_EQ(std::find(firstBackpressure, st.end(), SendStatus::success), st.end());
    EXPECT_LE(s.maxBuffered(), FloodServer::limit + FloodServer::messageSize + protocol::maxFrameHeaderSize);
    EXPECT_GE(s.maxBuffered(), FloodServer::limit) << "the limit was reached";
    EXPECT_GE(s.ts.server.stats().backpressureDrops, 1u);

    // Reading again: every message that was not dropped arrives whole, then drain runs.
    const std::size_t expected = st.size() - 1;
    for (std::size_t i = 0; i < expected; ++i) {
        const auto r = c.next(5000ms);
        ASSERT_TRUE(r) << "message " << i << " of " << expected;
        ASSERT_EQ(r->type, "binary");
        ASSERT_EQ(r->data.size(), FloodServer::messageSize);
    }
    EXPECT_TRUE(s.probe.waitForPrefix("drain "));
    EXPECT_TRUE(s.probe.waitFor("drain 0")) << "the backlog is gone";
    ASSERT_TRUE(c.sendText("status"));
    EXPECT_EQ(c.next(), text("after"));
    EXPECT_EQ(c.next(), text("status " + std::to_string(static_cast<int>(SendStatus::success))));
}

TEST(Backpressure, CloseOnBackpressureLimitClosesInsteadOfDropping) {
    FloodServer s(true);
    ClientOptions o;
    o.receiveBuffer = 4096;
    WsClient c(s.port, o);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.sendText("flood"));
    ASSERT_TRUE(s.probe.waitFor("dropped", 8000ms));
    const auto st = s.sent();
    EXPECT_EQ(st.back(), SendStatus::dropped);
    // What was queued before the limit still arrives, then the close frame.
    std::size_t messages = 0;
    std::optional<Rec> r;
    while ((r = c.next(5000ms)) && r->type == "binary") ++messages;
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, closeEv(1008, "backpressure limit"));
    EXPECT_EQ(messages, st.size() - 1);
    EXPECT_TRUE(c.waitEof());
    c.closeSocket();
    EXPECT_TRUE(s.probe.waitFor("close:1008:backpressure limit"));
}

// --- idle timeouts --------------------------------------------------------------------------

struct IdleServer {
    Probe probe;
    TestServer ts;
    std::uint16_t port = 0;

    IdleServer(std::uint32_t idleTimeout, bool pings) {
        WebSocketBehavior b;
        b.idleTimeout = idleTimeout;
        b.sendPingsAutomatically = pings;
        b.message = echoMessage;
        b.pong = [this](WebSocket&, std::string_view) { probe.add("pong"); };
        b.close = [this](WebSocket&, int code, std::string_view r) {
            probe.add("close:" + std::to_string(code) + ":" + std::string(r));
        };
        ts.server.ws("/ws", std::move(b));
        port = ts.start();
    }
};

TEST(IdleTimeout, ClientThatAnswersPingsStaysOpen) {
    IdleServer s(2, true);
    WsClient c(s.port); // the engine answers pings by itself
    ASSERT_TRUE(c.handshake("/ws"));
    const auto until = Clock::now() + 4500ms;
    int pings = 0;
    while (Clock::now() < until) {
        const auto r = c.next(std::chrono::duration_cast<Millis>(until - Clock::now()));
        if (!r) break;
        ASSERT_EQ(r->type, "ping") << "only pings while silent, got " << *r;
        ++pings;
    }
    EXPECT_FALSE(c.eof());
    EXPECT_GE(pings, 2) << "pinged about once a second";
    EXPECT_GE(s.probe.count("pong"), 2u);
    ASSERT_TRUE(c.sendText("still here"));
    EXPECT_EQ(c.nextMessage(), "still here");
    EXPECT_EQ(s.probe.countPrefix("close:"), 0u);
}

TEST(IdleTimeout, ClientThatIgnoresPingsIsClosed) {
    IdleServer s(2, true);
    ClientOptions o;
    o.autoPong = false;
    WsClient c(s.port, o);
    ASSERT_TRUE(c.handshake("/ws"));
    const auto begin = Clock::now();
    const auto ping = c.next(3000ms);
    ASSERT_TRUE(ping);
    EXPECT_EQ(ping->type, "ping");
    const auto r = c.next(3000ms);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, closeEv(1001, "idle timeout"));
    const auto elapsed = Clock::now() - begin;
    EXPECT_GE(elapsed, 900ms);
    EXPECT_LE(elapsed, 4000ms);
    EXPECT_TRUE(c.waitEof());
    c.closeSocket();
    EXPECT_TRUE(s.probe.waitFor("close:1001:idle timeout"));
}

TEST(IdleTimeout, WithoutPingsASilentClientIsClosedAfterTheTimeout) {
    IdleServer s(2, false);
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    const auto begin = Clock::now();
    const auto r = c.next(4000ms);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, closeEv(1001, "idle timeout")) << "no ping before it";
    const auto elapsed = Clock::now() - begin;
    EXPECT_GE(elapsed, 900ms);
    EXPECT_LE(elapsed, 3500ms);
    EXPECT_TRUE(c.waitEof());
}

TEST(IdleTimeout, TrafficFromTheClientKeepsItOpen) {
    IdleServer s(2, false);
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    for (int i = 0; i < 7; ++i) { // 3.5 s, longer than the timeout
        std::this_thread::sleep_for(500ms);
        ASSERT_TRUE(c.sendText(std::to_string(i)));
        ASSERT_EQ(c.next(), text(std::to_string(i)));
    }
    EXPECT_EQ(s.probe.countPrefix("close:"), 0u);
}

} // namespace
} // namespace tongdao::test
