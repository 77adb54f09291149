// Beyond the mini-program: reconnection with backoff after an abnormal close, and
// heartbeat pings with a dead-peer timeout.

#include "test_server.hpp"

#include <gtest/gtest.h>

namespace {

using namespace tongdao;
using namespace tongdao::test;
using Strings = std::vector<std::string>;

ConnectSocketOptions opts(std::string url) {
    ConnectSocketOptions o;
    o.url = std::move(url);
    return o;
}
ConnectSocketOptions reconnecting(std::string url, int maxAttempts, int delayMs, int maxDelayMs = 30000) {
    auto o = opts(std::move(url));
    o.reconnect.enabled = true;
    o.reconnect.maxAttempts = maxAttempts;
    o.reconnect.initialDelay = Ms(delayMs);
    o.reconnect.maxDelay = Ms(maxDelayMs);
    o.reconnect.jitter = 0;
    return o;
}
CloseOptions closeWith(int code, std::string reason = {}) {
    CloseOptions o;
    o.code = code;
    o.reason = std::move(reason);
    return o;
}
SendOptions text(std::string s) {
    SendOptions o;
    o.data = std::move(s);
    return o;
}

// --- reconnect ------------------------------------------------------------------------------

TEST(Reconnect, OffByDefault) {
    ConnectSocketOptions o;
    EXPECT_FALSE(o.reconnect.enabled);
    EXPECT_EQ(o.heartbeat.interval.count(), 0);
}

TEST(Reconnect, AfterTheServerDropsTheConnection) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        if (p.index() == 0) return p.closeTcp(); // gone without a closing handshake
        p.echo();
    });
    Runtime rt;
    auto task = connectSocket(rt, reconnecting(server.url(), 3, 50));
    SocketTask* t = task.get();
    auto log = TaskLog::attach(*task);
    int opens = 0;
    task->onOpen([&, t](const OnOpenResult&) {
        if (++opens == 2) t->send(text("again"));
    });
    task->onMessage([t](const OnMessageResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "open", "text:again", "close:1000:"}));
    EXPECT_EQ(server.connections(), 2);
    EXPECT_EQ(server.messages(1), (std::vector<Rec>{{"text", "again"}}));
}

TEST(Reconnect, StateIsConnectingWhileWaiting) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        if (p.index() == 0) return p.closeTcp();
        p.echo();
    });
    Runtime rt;
    rt.start();
    auto task = connectSocket(rt, reconnecting(server.url(), 3, 1500));
    auto log = TaskLog::attach(*task);
    ASSERT_TRUE(log->waitFor("open"));
    ASSERT_TRUE(eventually([&] { return task->readyState() == SocketTask::CONNECTING; }));
    // Sends made while waiting are queued for the new connection.
    CallLog queued;
    task->send(queued.wired(text("queued")));
    EXPECT_TRUE(eventually([&] { return log->count("open") == 2; }));
    EXPECT_TRUE(log->waitFor("text:queued"));
    task->close({});
    EXPECT_TRUE(log->waitFor("close:"));
    rt.stop();
    EXPECT_EQ(queued.snapshot(), okCalls("sendSocketMessage"));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "open", "text:queued", "close:1000:"}));
}

TEST(Reconnect, GivesUpAfterMaxAttempts) {
    TestServer server([](Peer& p) {
        if (p.readRequest()) p.sendRaw(rejectResponse(404, "nothing here"));
    });
    Runtime rt;
    auto task = connectSocket(rt, reconnecting(server.url(), 2, 20));
    auto log = TaskLog::attach(*task);
    const auto t0 = Clock::now();
    EXPECT_TRUE(runFor(rt));
    EXPECT_GE(Clock::now() - t0, Ms(55)) << "20 ms then 40 ms between the attempts";
    EXPECT_EQ(log->snapshot(),
              (Strings{"error:reconnect failed after 2 attempts: connectSocket:fail handshake failed: server answered "
                       "404 Not Found",
                       "close:1006:"}));
    EXPECT_EQ(server.connections(), 3) << "the first attempt and two more";
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(Reconnect, GivesUpWhenTheServerIsGone) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.next(Ms(100));
        // The server goes away entirely: later connects are refused.
        p.server().stopListening();
        p.closeTcp();
    });
    Runtime rt;
    auto task = connectSocket(rt, reconnecting(server.url(), 3, 20));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open",
                                        "error:reconnect failed after 3 attempts: connectSocket:fail connect to "
                                        "127.0.0.1:" + std::to_string(server.port()) + " failed: Connection refused",
                                        "close:1006:"}));
    EXPECT_EQ(server.connections(), 1);
}

TEST(Reconnect, BackoffDoublesUpToMaxDelay) {
    TestServer server([](Peer& p) {
        if (p.readRequest()) p.sendRaw(rejectResponse(503, "busy"));
    });
    {
        // 100, 200, 400 ms.
        Runtime rt;
        auto task = connectSocket(rt, reconnecting(server.url(), 3, 100));
        const auto t0 = Clock::now();
        EXPECT_TRUE(runFor(rt));
        const auto ms = std::chrono::duration_cast<Ms>(Clock::now() - t0).count();
        EXPECT_GE(ms, 690);
        EXPECT_LT(ms, 3000);
    }
    {
        // 100, 150, 150 ms: capped.
        Runtime rt;
        auto task = connectSocket(rt, reconnecting(server.url(), 3, 100, 150));
        const auto t0 = Clock::now();
        EXPECT_TRUE(runFor(rt));
        const auto ms = std::chrono::duration_cast<Ms>(Clock::now() - t0).count();
        EXPECT_GE(ms, 390);
        EXPECT_LT(ms, 690);
    }
    EXPECT_EQ(server.connections(), 8);
}

TEST(Reconnect, NotAfterTheApplicationCloses) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, reconnecting(server.url(), 3, 20));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close(closeWith(4000)); });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    std::this_thread::sleep_for(Ms(100));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:4000:"}));
    EXPECT_EQ(server.connections(), 1);
}

TEST(Reconnect, CloseDuringTheDelayCancelsIt) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        if (p.index() == 0) return p.closeTcp();
        p.echo();
    });
    Runtime rt;
    rt.start();
    // A long delay, so that the test thread surely acts within it even on a loaded machine.
    auto task = connectSocket(rt, reconnecting(server.url(), 3, 2000));
    auto log = TaskLog::attach(*task);
    ASSERT_TRUE(log->waitFor("open"));
    ASSERT_TRUE(eventually([&] { return task->readyState() == SocketTask::CONNECTING; }));
    CallLog closeCalls;
    task->close(closeCalls.wired(closeWith(4000, "stop")));
    ASSERT_TRUE(log->waitFor("close:"));
    std::this_thread::sleep_for(Ms(2300));
    rt.stop();
    EXPECT_EQ(closeCalls.snapshot(), okCalls("closeSocket"));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:4000:stop"}));
    EXPECT_EQ(server.connections(), 1) << "the pending reconnection was cancelled";
}

// "Reconnection after an abnormal close" (socket_task.hpp): a server's clean close is not one.
class ReconnectAfterCleanClose : public ::testing::TestWithParam<int> {};

TEST_P(ReconnectAfterCleanClose, DoesNotReconnect) {
    const int code = GetParam();
    TestServer server([code](Peer& p) {
        if (!p.handshake()) return;
        p.sendClose(code, "bye");
        p.waitEof(Ms(1500));
    });
    Runtime rt;
    auto task = connectSocket(rt, reconnecting(server.url(), 3, 20));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt, Ms(2000))) << "still reconnecting after a clean close";
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:" + std::to_string(code) + ":bye"}));
    EXPECT_EQ(server.connections(), 1);
}

INSTANTIATE_TEST_SUITE_P(Codes, ReconnectAfterCleanClose, ::testing::Values(1000, 4001));

// --- heartbeat -------------------------------------------------------------------------------

TEST(Heartbeat, TimeoutWhenThePeerNeverAnswers) {
    ServerOptions so;
    so.autoPong = false;
    TestServer server([](Peer& p) {
        if (p.handshake()) p.idle();
    }, so);
    Runtime rt;
    auto o = opts(server.url());
    o.heartbeat.interval = Ms(100);
    o.heartbeat.timeout = Ms(200);
    auto task = connectSocket(rt, o);
    auto log = TaskLog::attach(*task);
    Clock::time_point opened{};
    task->onOpen([&](const OnOpenResult&) { opened = Clock::now(); });
    EXPECT_TRUE(runFor(rt));
    const auto ms = std::chrono::duration_cast<Ms>(Clock::now() - opened).count();
    EXPECT_EQ(log->snapshot(), (Strings{"open", "error:heartbeat timeout: no answer within 200 ms", "close:1006:"}));
    EXPECT_GE(ms, 280);
    EXPECT_LT(ms, 100 + 200 + 1500);
    EXPECT_TRUE(server.waitEvent(0, "ping")) << "the client pinged";
    EXPECT_TRUE(server.waitEvent(0, "eof")) << "and then dropped the connection";
}

TEST(Heartbeat, KeepsAHealthyConnectionOpen) {
    TestServer server([](Peer& p) {
        if (p.handshake()) p.echo();
    });
    Runtime rt;
    rt.start();
    auto o = opts(server.url());
    o.heartbeat.interval = Ms(50);
    o.heartbeat.timeout = Ms(150);
    auto task = connectSocket(rt, o);
    auto log = TaskLog::attach(*task);
    ASSERT_TRUE(log->waitFor("open"));
    std::this_thread::sleep_for(Ms(700));
    EXPECT_EQ(task->readyState(), SocketTask::OPEN);
    task->close({});
    ASSERT_TRUE(log->waitFor("close:"));
    rt.stop();
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:1000:"}));
    int pings = 0;
    for (const auto& r : server.events(0)) pings += r.type == "ping" ? 1 : 0;
    EXPECT_GE(pings, 3);
}

TEST(Heartbeat, AnyTrafficCountsAsAnAnswer) {
    // The server never answers pings but keeps talking: the peer is alive.
    ServerOptions so;
    so.autoPong = false;
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        const auto end = Clock::now() + Ms(800);
        while (Clock::now() < end) {
            if (!p.sendText("tick")) return;
            auto r = p.next(Ms(40));
            if (r && (r->type == "close" || r->type == "eof")) return;
        }
        p.sendClose(4000, "done");
        p.waitEof();
    }, so);
    Runtime rt;
    auto o = opts(server.url());
    o.heartbeat.interval = Ms(100);
    o.heartbeat.timeout = Ms(200);
    auto task = connectSocket(rt, o);
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->count("error:"), 0u) << ::testing::PrintToString(log->snapshot());
    EXPECT_EQ(log->count("close:4000:done"), 1u);
}

TEST(Heartbeat, OffSendsNoPings) {
    TestServer server(echoScript);
    Runtime rt;
    rt.start();
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    ASSERT_TRUE(log->waitFor("open"));
    std::this_thread::sleep_for(Ms(300));
    task->close({});
    ASSERT_TRUE(log->waitFor("close:"));
    rt.stop();
    EXPECT_FALSE(server.firstEvent(0, "ping"));
}

} // namespace
