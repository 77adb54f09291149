// The mini-program's global socket functions: one connection at a time (a new
// connectSocket closes the old one), one listener of each kind (a later one replaces it),
// listeners kept across connections, errMsg when nothing is open. They run on
// defaultRuntime(), which the tests run with run().

#include "test_server.hpp"

#include "tongdao/client/wx.hpp"

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
SendOptions text(std::string s) {
    SendOptions o;
    o.data = std::move(s);
    return o;
}
CloseOptions closeWith(int code, std::string reason = {}) {
    CloseOptions o;
    o.code = code;
    o.reason = std::move(reason);
    return o;
}

class Wx : public ::testing::Test {
protected:
    void SetUp() override {
        wx::reset();
        EXPECT_TRUE(runFor(defaultRuntime()));
    }
    void TearDown() override {
        wx::reset();
        EXPECT_TRUE(runFor(defaultRuntime()));
        EXPECT_EQ(defaultRuntime().activeTasks(), 0u);
    }
    /** Records every global event, in order. */
    void recordAll() {
        wx::onSocketOpen([this](const OnOpenResult&) { add("open"); });
        wx::onSocketMessage([this](const OnMessageResult& r) { add(describeData(r.data)); });
        wx::onSocketError([this](const OnErrorResult& r) { add("error:" + r.errMsg); });
        wx::onSocketClose([this](const OnCloseResult& r) { add("close:" + std::to_string(r.code) + ":" + r.reason); });
    }
    void add(std::string s) {
        std::lock_guard l(m_);
        events_.push_back(std::move(s));
    }
    Strings events() {
        std::lock_guard l(m_);
        return events_;
    }
    std::mutex m_;
    Strings events_;
};

TEST_F(Wx, SendAndReceiveOnTheOneConnection) {
    TestServer server(echoScript);
    recordAll();
    CallLog connectCalls, sendCalls, closeCalls;
    wx::onSocketOpen([&](const OnOpenResult&) {
        add("open");
        wx::sendSocketMessage(sendCalls.wired(text("hello wx")));
    });
    wx::onSocketMessage([&](const OnMessageResult& r) {
        add(describeData(r.data));
        wx::closeSocket(closeCalls.wired(closeWith(4000, "done")));
    });
    auto task = wx::connectSocket(connectCalls.wired(opts(server.url())));
    ASSERT_TRUE(task);
    EXPECT_TRUE(connectCalls.empty());
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(connectCalls.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(sendCalls.snapshot(), okCalls("sendSocketMessage"));
    EXPECT_EQ(closeCalls.snapshot(), okCalls("closeSocket"));
    EXPECT_EQ(events(), (Strings{"open", "text:hello wx", "close:4000:done"}));
    EXPECT_EQ(server.firstEvent(0, "close"), closeEv(4000, "done"));
}

TEST_F(Wx, ConnectAgainClosesTheFirst) {
    TestServer server(echoScript);
    int opens = 0;
    Strings closes;
    wx::onSocketOpen([&](const OnOpenResult&) {
        if (++opens == 1) {
            // The first is open: a second connectSocket closes it (1000) and takes its place.
            wx::connectSocket(opts(server.url("/second")));
        } else {
            wx::sendSocketMessage(text("to the second"));
        }
    });
    wx::onSocketMessage([&](const OnMessageResult&) { wx::closeSocket(); });
    wx::onSocketClose([&](const OnCloseResult& r) { closes.push_back(std::to_string(r.code)); });
    auto first = wx::connectSocket(opts(server.url("/first")));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(opens, 2);
    EXPECT_EQ(closes, (Strings{"1000", "1000"}));
    EXPECT_EQ(first->readyState(), SocketTask::CLOSED);
    ASSERT_EQ(server.connections(), 2);
    EXPECT_EQ(server.request(0)->target, "/first");
    EXPECT_EQ(server.request(1)->target, "/second");
    EXPECT_EQ(server.firstEvent(0, "close"), closeEv(1000, "")) << "the server saw the first closed with 1000";
    EXPECT_TRUE(server.messages(0).empty());
    EXPECT_EQ(server.messages(1), (std::vector<Rec>{{"text", "to the second"}}));
}

TEST_F(Wx, ConnectAgainBeforeTheFirstOpens) {
    TestServer server(echoScript);
    recordAll();
    auto first = wx::connectSocket(opts(server.url("/first")));
    auto second = wx::connectSocket(opts(server.url("/second")));
    EXPECT_NE(first, second);
    wx::onSocketOpen([&](const OnOpenResult&) {
        add("open");
        wx::closeSocket();
    });
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(first->readyState(), SocketTask::CLOSED);
    EXPECT_EQ(second->readyState(), SocketTask::CLOSED);
    const auto e = events();
    EXPECT_EQ(std::count(e.begin(), e.end(), "open"), 1) << ::testing::PrintToString(e);
    EXPECT_EQ(e.back(), "close:1000:");
}

TEST_F(Wx, CloseSocketWithNothingOpen) {
    CallLog calls;
    wx::closeSocket(calls.wired(CloseOptions{}));
    EXPECT_TRUE(calls.empty()) << "answered asynchronously";
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(calls.snapshot(), failCalls("closeSocket:fail WebSocket is not connected"));
}

TEST_F(Wx, SendSocketMessageWithNothingOpen) {
    CallLog calls;
    wx::sendSocketMessage(calls.wired(text("nobody")));
    EXPECT_TRUE(calls.empty()) << "answered asynchronously";
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(calls.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
}

TEST_F(Wx, CallsAfterTheConnectionClosed) {
    TestServer server(echoScript);
    wx::onSocketOpen([](const OnOpenResult&) { wx::closeSocket(); });
    wx::connectSocket(opts(server.url()));
    EXPECT_TRUE(runFor(defaultRuntime()));
    CallLog closeCalls, sendCalls;
    wx::closeSocket(closeCalls.wired(CloseOptions{}));
    wx::sendSocketMessage(sendCalls.wired(text("late")));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(closeCalls.snapshot(), failCalls("closeSocket:fail WebSocket is not connected"));
    EXPECT_EQ(sendCalls.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
}

TEST_F(Wx, SendBeforeOpenIsQueued) {
    TestServer server(echoScript);
    recordAll();
    wx::connectSocket(opts(server.url()));
    wx::sendSocketMessage(text("queued"));
    wx::onSocketMessage([&](const OnMessageResult& r) {
        add(describeData(r.data));
        wx::closeSocket();
    });
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(events(), (Strings{"open", "text:queued", "close:1000:"}));
}

TEST_F(Wx, ListenersStaySetAcrossConnections) {
    TestServer server(echoScript);
    int opens = 0, closes = 0;
    wx::onSocketOpen([&](const OnOpenResult&) {
        ++opens;
        wx::closeSocket();
    });
    wx::onSocketClose([&](const OnCloseResult&) {
        if (++closes == 1) wx::connectSocket(opts(server.url("/again")));
    });
    wx::connectSocket(opts(server.url("/once")));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(opens, 2);
    EXPECT_EQ(closes, 2);
    EXPECT_EQ(server.connections(), 2);
}

TEST_F(Wx, ALaterListenerReplacesTheEarlier) {
    TestServer server(echoScript);
    int first = 0, second = 0;
    wx::onSocketOpen([&](const OnOpenResult&) { ++first; });
    wx::onSocketOpen([&](const OnOpenResult&) {
        ++second;
        wx::closeSocket();
    });
    wx::connectSocket(opts(server.url()));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(first, 0);
    EXPECT_EQ(second, 1);
}

TEST_F(Wx, ListenerSetAfterConnectSocketCounts) {
    TestServer server(echoScript);
    wx::connectSocket(opts(server.url()));
    int opens = 0;
    wx::onSocketOpen([&](const OnOpenResult&) {
        ++opens;
        wx::closeSocket();
    });
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(opens, 1);
}

TEST_F(Wx, ErrorAndCloseWhenTheServerRefuses) {
    TestServer server([](Peer& p) {
        if (p.readRequest()) p.sendRaw(rejectResponse(404, "no"));
    });
    recordAll();
    CallLog calls;
    wx::connectSocket(calls.wired(opts(server.url())));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(calls.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(events(), (Strings{"error:connectSocket:fail handshake failed: server answered 404 Not Found", "close:1006:"}));
}

TEST_F(Wx, InvalidUrlFailsWithoutSocketEvents) {
    recordAll();
    CallLog calls;
    wx::connectSocket(calls.wired(opts("https://example.com/")));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(calls.snapshot(), failCalls("connectSocket:fail invalid url \"https://example.com/\""));
    EXPECT_TRUE(events().empty());
    CallLog send;
    wx::sendSocketMessage(send.wired(text("x")));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(send.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
}

TEST_F(Wx, ServerCloseReachesOnSocketClose) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendClose(4001, "bye");
        p.waitEof();
    });
    recordAll();
    wx::connectSocket(opts(server.url()));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(events(), (Strings{"open", "close:4001:bye"}));
}

TEST_F(Wx, ResetForgetsListenersAndTheConnection) {
    TestServer server(echoScript);
    int opens = 0;
    wx::onSocketOpen([&](const OnOpenResult&) { ++opens; });
    wx::reset();
    auto task = wx::connectSocket(opts(server.url()));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(opens, 0) << "the listener was forgotten";
    // reset() with a connection open: no callbacks from it afterwards, and run() ends.
    recordAll();
    wx::onSocketOpen([&](const OnOpenResult&) {
        add("open");
        wx::reset();
    });
    wx::connectSocket(opts(server.url("/two")));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(events(), (Strings{"open"}));
    CallLog calls;
    wx::sendSocketMessage(calls.wired(text("x")));
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(calls.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
}

TEST_F(Wx, CallsFromAnotherThread) {
    TestServer server(echoScript);
    defaultRuntime().start();
    recordAll();
    std::atomic<int> opens{0};
    wx::onSocketOpen([&](const OnOpenResult&) {
        add("open");
        ++opens;
    });
    wx::connectSocket(opts(server.url()));
    ASSERT_TRUE(eventually([&] { return opens.load() == 1; }));
    CallLog send;
    wx::sendSocketMessage(send.wired(text("threaded")));
    ASSERT_TRUE(eventually([&] {
        const auto e = events();
        return std::find(e.begin(), e.end(), "text:threaded") != e.end();
    }));
    CallLog close;
    wx::closeSocket(close.wired(CloseOptions{}));
    ASSERT_TRUE(close.waitCount(2));
    ASSERT_TRUE(eventually([&] { return events().size() == 3; }));
    defaultRuntime().stop();
    EXPECT_EQ(send.snapshot(), okCalls("sendSocketMessage"));
    EXPECT_EQ(close.snapshot(), okCalls("closeSocket"));
    EXPECT_EQ(events(), (Strings{"open", "text:threaded", "close:1000:"}));
}

} // namespace
