// The server as a whole: graceful shutdown with open clients, and the counters behind
// stats() and prometheusMetrics().
#include "support/server_harness.hpp"

namespace tongdao::test {
namespace {

struct CountingServer {
    Probe probe;
    TestServer ts;
    std::uint16_t port = 0;

    explicit CountingServer(ServerOptions o = testOptions()) : ts(o) {
        WebSocketBehavior b;
        b.message = echoMessage;
        b.close = [this](WebSocket&, int code, std::string_view r) {
            probe.add("close:" + std::to_string(code) + ":" + std::string(r));
        };
        ts.server.ws("/ws", std::move(b));
        port = ts.start();
    }
};

TEST(Shutdown, EveryClientGetsGoingAwayAndJoinReturns) {
    CountingServer s(testOptions(2));
    std::vector<std::unique_ptr<WsClient>> clients;
    for (int i = 0; i < 6; ++i) {
        clients.push_back(std::make_unique<WsClient>(s.port));
        ASSERT_TRUE(clients.back()->handshake("/ws"));
        ASSERT_TRUE(clients.back()->sendText("hi"));
        ASSERT_EQ(clients.back()->next(), text("hi"));
    }
    std::thread stopper([&] { s.ts.server.shutdown(); }); // thread-safe, from anywhere
    stopper.join();
    for (auto& c : clients) {
        EXPECT_EQ(c->next(), closeEv(1001, "going away")); // the engine echoes it
        EXPECT_TRUE(c->waitEof());
        c->closeSocket();
    }
    const auto joined = s.ts.stop(5000ms);
    EXPECT_LE(joined, 3000ms);
    EXPECT_EQ(s.probe.count("close:1001:going away"), clients.size()) << "every close handler ran";
}

TEST(Shutdown, ClientsThatDoNotAnswerAreClosedAfterTheShutdownTimeout) {
    auto o = testOptions(2);
    o.shutdownTimeout = 1;
    o.closeTimeout = 10; // so the shutdown timeout is what ends them
    CountingServer s(o);
    std::vector<std::unique_ptr<WsClient>> clients;
    for (int i = 0; i < 4; ++i) {
        ClientOptions co;
        co.autoFlush = false; // never echo the close
        clients.push_back(std::make_unique<WsClient>(s.port, co));
        ASSERT_TRUE(clients.back()->handshake("/ws"));
    }
    const auto joined = s.ts.stop(5000ms);
    EXPECT_LE(joined, 3500ms);
    for (auto& c : clients) {
        EXPECT_EQ(c->next(), closeEv(1001, "going away"));
        EXPECT_TRUE(c->waitEof());
    }
    EXPECT_EQ(s.probe.countPrefix("close:"), clients.size());
}

TEST(Shutdown, WithNoConnectionsIsImmediateAndIdempotent) {
    CountingServer s;
    WsClient http(s.port);
    ASSERT_TRUE(http.sendRaw("GET /health HTTP/1.1\r\n")); // half a request, open
    std::this_thread::sleep_for(50ms);
    s.ts.server.shutdown();
    s.ts.server.shutdown();
    const auto joined = s.ts.stop(5000ms);
    EXPECT_LE(joined, 1500ms);
    EXPECT_TRUE(http.waitEof(1000ms)) << "HTTP connections are closed too";
}

TEST(Stats, ConnectionsAndMessagesAreCounted) {
    CountingServer s;
    EXPECT_EQ(s.ts.server.stats().connectionsTotal, 0u);
    auto a = std::make_unique<WsClient>(s.port);
    WsClient b(s.port);
    ASSERT_TRUE(a->handshake("/ws"));
    ASSERT_TRUE(b.handshake("/ws"));
    for (const auto* m : {"one", "two", "three"}) {
        ASSERT_TRUE(a->sendText(m));
        ASSERT_EQ(a->next(), text(m));
    }
    ASSERT_TRUE(b.sendBinary("1234"));
    ASSERT_EQ(b.next(), binary("1234"));
    auto st = s.ts.server.stats();
    EXPECT_EQ(st.connectionsOpen, 2u);
    EXPECT_EQ(st.connectionsTotal, 2u);
    EXPECT_EQ(st.messagesIn, 4u);
    EXPECT_EQ(st.messagesOut, 4u);
    EXPECT_EQ(st.bytesIn, 3u + 3u + 5u + 4u);
    EXPECT_EQ(st.bytesOut, 3u + 3u + 5u + 4u);
    EXPECT_EQ(st.httpRequests, 2u) << "the two upgrades";
    EXPECT_TRUE(st.handshakeFailures.empty());

    ASSERT_TRUE(a->close(1000));
    EXPECT_TRUE(a->waitEof());
    a.reset();
    ASSERT_TRUE(s.probe.waitFor("close:1000:"));
    st = s.ts.server.stats();
    EXPECT_EQ(st.connectionsOpen, 1u);
    EXPECT_EQ(st.connectionsTotal, 2u);
}

TEST(Stats, HandshakeFailuresByReason) {
    CountingServer s;
    for (int i = 0; i < 2; ++i) {
        WsClient c(s.port);
        const auto r = c.request(requestText("/ws"));
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 426);
    }
    {
        WsClient c(s.port);
        const auto r = c.request(upgradeText("/ws", {}, "8"));
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 426);
    }
    {
        WsClient c(s.port);
        const auto r = c.request(upgradeText("/elsewhere"));
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 404);
    }
    const auto st = s.ts.server.stats();
    EXPECT_EQ(st.handshakeFailures.at(std::string(describe(error::noUpgrade))), 2u);
    EXPECT_EQ(st.handshakeFailures.at(std::string(describe(error::badSecVersion))), 1u);
    EXPECT_EQ(st.handshakeFailures.at("no endpoint"), 1u);
    EXPECT_EQ(st.handshakeFailures.size(), 3u);
    EXPECT_EQ(st.connectionsTotal, 0u);
    EXPECT_EQ(st.httpRequests, 4u);
}

TEST(Stats, PrometheusMetricsShowTheCounters) {
    CountingServer s;
    WsClient ws(s.port);
    ASSERT_TRUE(ws.handshake("/ws"));
    ASSERT_TRUE(ws.sendText("hello"));
    ASSERT_EQ(ws.next(), text("hello"));
    {
        WsClient c(s.port);
        const auto r = c.request(requestText("/ws"));
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 426);
    }
    const auto metrics = s.ts.server.prometheusMetrics();
    EXPECT_NE(metrics.find("# TYPE tongdao_connections_open gauge\ntongdao_connections_open 1\n"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("# TYPE tongdao_connections_total counter\ntongdao_connections_total 1\n"), std::string::npos);
    EXPECT_NE(metrics.find("\ntongdao_messages_received_total 1\n"), std::string::npos);
    EXPECT_NE(metrics.find("\ntongdao_messages_sent_total 1\n"), std::string::npos);
    EXPECT_NE(metrics.find("\ntongdao_bytes_received_total 5\n"), std::string::npos);
    EXPECT_NE(metrics.find("\ntongdao_http_requests_total 2\n"), std::string::npos);
    EXPECT_NE(metrics.find("tongdao_handshake_failures_total{reason=\"" + std::string(describe(error::noUpgrade)) +
                        "\"} 1\n"),
              std::string::npos)
        << metrics;
}

} // namespace
} // namespace tongdao::test
