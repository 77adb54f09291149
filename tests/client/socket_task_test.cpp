// SocketTask once connectSocket accepted it: send (text, ArrayBuffer, the queue before open),
// close (codes, reasons, before open, twice, from the server), the onOpen result, the
// order and timing of events, listeners added late, readyState.

#include "test_server.hpp"

#include <gtest/gtest.h>

namespace {

using namespace tongdao;
using namespace tongdao::test;

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
SendOptions binary(std::string_view s) {
    SendOptions o;
    o.data = ArrayBuffer(s.begin(), s.end());
    return o;
}
CloseOptions closeWith(int code, std::string reason = {}) {
    CloseOptions o;
    o.code = code;
    o.reason = std::move(reason);
    return o;
}
using Strings = std::vector<std::string>;

// --- send -----------------------------------------------------------------------------------

TEST(Send, TextAndBinaryRoundTrip) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    auto log = TaskLog::attach(*task);
    CallLog s1, s2;
    std::string big(200000, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    std::string bin("\x00\x01\xff\x80 binary", 11);
    task->onOpen([&, t](const OnOpenResult&) {
        t->send(s1.wired(text("héllo 你好")));
        t->send(s2.wired(binary(bin)));
        t->send(text(big));
    });
    int messages = 0;
    task->onMessage([&, t](const OnMessageResult&) {
        if (++messages == 3) t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(s1.snapshot(), okCalls("sendSocketMessage"));
    EXPECT_EQ(s2.snapshot(), okCalls("sendSocketMessage"));
    ASSERT_EQ(log->messages.size(), 3u);
    EXPECT_EQ(std::get<std::string>(log->messages[0]), "héllo 你好");
    ASSERT_TRUE(std::holds_alternative<ArrayBuffer>(log->messages[1]));
    EXPECT_EQ(std::get<ArrayBuffer>(log->messages[1]), ArrayBuffer(bin.begin(), bin.end()));
    EXPECT_EQ(std::get<std::string>(log->messages[2]), big);
    EXPECT_EQ(server.messages(0), (std::vector<Rec>{{"text", "héllo 你好"}, {"binary", bin}, {"text", big}}));
}

TEST(Send, LargeBinaryRoundTrip) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    ArrayBuffer big(3u << 20);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7 + i / 251);
    ArrayBuffer got;
    task->onOpen([&, t](const OnOpenResult&) {
        SendOptions o;
        o.data = big;
        t->send(o);
    });
    task->onMessage([&, t](const OnMessageResult& r) {
        got = std::get<ArrayBuffer>(r.data);
        t->close({});
    });
    EXPECT_TRUE(runFor(rt, Ms(8000)));
    EXPECT_EQ(got.size(), big.size());
    EXPECT_TRUE(got == big);
}

TEST(Send, InvalidUtf8TextFails) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    CallLog calls;
    task->onOpen([&, t](const OnOpenResult&) {
        t->send(calls.wired(text("\xff\xfe")));
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), failCalls("sendSocketMessage:fail text is not valid UTF-8"));
    EXPECT_TRUE(server.messages(0).empty());
}

TEST(Send, WhenClosedFails) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    ASSERT_EQ(task->readyState(), SocketTask::CLOSED);
    CallLog calls;
    task->send(calls.wired(text("late")));
    EXPECT_TRUE(calls.empty());
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
}

TEST(Send, WhileClosingFails) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    CallLog calls;
    task->onOpen([&, t](const OnOpenResult&) {
        t->close({});
        EXPECT_EQ(t->readyState(), SocketTask::CLOSING);
        t->send(calls.wired(text("after close")));
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
    EXPECT_TRUE(server.messages(0).empty());
}

TEST(Send, BeforeOpenIsQueuedAndLeavesFirstInOrder) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    CallLog q1, q2, q3;
    task->send(q1.wired(text("q1")));
    task->send(q2.wired(binary("q2")));
    task->send(q3.wired(text("q3")));
    EXPECT_TRUE(q1.empty()) << "nothing is answered before the loop runs";
    task->onOpen([t](const OnOpenResult&) { t->send(text("from onOpen")); });
    int n = 0;
    task->onMessage([&, t](const OnMessageResult&) {
        if (++n == 4) t->close({});
    });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(server.messages(0), (std::vector<Rec>{{"text", "q1"}, {"binary", "q2"}, {"text", "q3"},
                                                     {"text", "from onOpen"}}));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "text:q1", "binary:q2", "text:q3", "text:from onOpen", "close:1000:"}));
    EXPECT_EQ(q1.snapshot(), okCalls("sendSocketMessage"));
    EXPECT_EQ(q2.snapshot(), okCalls("sendSocketMessage"));
    EXPECT_EQ(q3.snapshot(), okCalls("sendSocketMessage"));
}

TEST(Send, QueuedSendsFailWhenTheConnectFails) {
    TestServer server([](Peer& p) {
        if (p.readRequest()) p.sendRaw(rejectResponse(404, "no such path"));
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url("/missing")));
    CallLog q1, q2;
    task->send(q1.wired(text("q1")));
    task->send(q2.wired(binary("q2")));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(q1.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
    EXPECT_EQ(q2.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
    EXPECT_EQ(log->snapshot(),
              (Strings{"error:connectSocket:fail handshake failed: server answered 404 Not Found", "close:1006:"}));
}

TEST(Send, QueuedSendsFailWhenClosedBeforeOpen) {
    TestServer server([](Peer& p) {
        p.readRequest();
        p.idle();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    CallLog q1;
    task->send(q1.wired(text("q1")));
    task->close({});
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(q1.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
}

TEST(Send, NoQueueWhileConnectingFailsAtOnce) {
    TestServer server(echoScript);
    Runtime rt;
    auto o = opts(server.url());
    o.queueWhileConnecting = false;
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    CallLog early;
    task->send(early.wired(text("early")));
    task->onOpen([t](const OnOpenResult&) { t->send(text("on open")); });
    task->onMessage([t](const OnMessageResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(early.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
    EXPECT_EQ(server.messages(0), (std::vector<Rec>{{"text", "on open"}}));
}

TEST(Send, QueueBeforeOpenIsBounded) {
    TestServer server([](Peer& p) {
        p.readRequest();
        p.idle();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    CallLog fits, tooMuch;
    task->send(fits.wired(binary(std::string(10u << 20, 'a'))));
    task->send(tooMuch.wired(binary(std::string(7u << 20, 'b'))));
    task->close({});
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(tooMuch.snapshot(), failCalls("sendSocketMessage:fail too much queued before open"));
    EXPECT_EQ(fits.snapshot(), failCalls("sendSocketMessage:fail WebSocket is not connected"));
}

TEST(Send, BufferedAmountIsZeroWhenIdle) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    EXPECT_EQ(task->bufferedAmount(), 0u);
    task->onOpen([t](const OnOpenResult&) { t->send(text("x")); });
    std::size_t atMessage = 99;
    task->onMessage([&, t](const OnMessageResult&) {
        atMessage = t->bufferedAmount();
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(atMessage, 0u);
}

// --- close ------------------------------------------------------------------------------------

/** Opens, closes with `o` in onOpen, and returns (server close event, task log, call log). */
struct CloseRun {
    std::optional<Rec> serverSaw;
    Strings events;
    Strings calls;
};
CloseRun closeAfterOpen(CloseOptions o) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    CallLog calls;
    calls.wire(o);
    task->onOpen([&, t](const OnOpenResult&) { t->close(o); });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    server.waitEvent(0, "close");
    return {server.firstEvent(0, "close"), log->snapshot(), calls.snapshot()};
}

TEST(Close, DefaultIs1000) {
    const auto r = closeAfterOpen({});
    ASSERT_TRUE(r.serverSaw);
    EXPECT_EQ(*r.serverSaw, closeEv(1000, ""));
    EXPECT_EQ(r.events, (Strings{"open", "close:1000:"}));
    EXPECT_EQ(r.calls, okCalls("closeSocket"));
}

TEST(Close, AllowedCodesAndReasonReachTheServer) {
    for (int code : {1000, 3000, 3999, 4000, 4999}) {
        SCOPED_TRACE(code);
        const auto r = closeAfterOpen(closeWith(code, "done here"));
        ASSERT_TRUE(r.serverSaw);
        EXPECT_EQ(*r.serverSaw, closeEv(code, "done here"));
        EXPECT_EQ(r.events, (Strings{"open", "close:" + std::to_string(code) + ":done here"}));
        EXPECT_EQ(r.calls, okCalls("closeSocket"));
    }
}

TEST(Close, ReasonOf123BytesIsAllowed) {
    const std::string reason(123, 'r');
    const auto r = closeAfterOpen(closeWith(4000, reason));
    ASSERT_TRUE(r.serverSaw);
    EXPECT_EQ(*r.serverSaw, closeEv(4000, reason));
    EXPECT_EQ(r.calls, okCalls("closeSocket"));
}

TEST(Close, RefusedCodesLeaveTheConnectionOpen) {
    for (int code : {1001, 1002, 1005, 1006, 2999, 5000, 0, -1, 65536 + 1000}) {
        SCOPED_TRACE(code);
        TestServer server(echoScript);
        Runtime rt;
        auto task = connectSocket(rt, opts(server.url()));
        SocketTask* t = task.get();
        CallLog refused;
        int stateAfter = -1;
        task->onOpen([&, t](const OnOpenResult&) {
            t->close(refused.wired(closeWith(code)));
            stateAfter = t->readyState();
            t->send(text("still open"));
        });
        task->onMessage([t](const OnMessageResult&) { t->close({}); });
        auto log = TaskLog::attach(*task);
        EXPECT_TRUE(runFor(rt));
        EXPECT_EQ(refused.snapshot(), failCalls("closeSocket:fail The code must be either 1000, or between 3000 and 4999. " +
                                                std::to_string(code) + " is neither."));
        EXPECT_EQ(stateAfter, SocketTask::OPEN);
        EXPECT_EQ(log->snapshot(), (Strings{"open", "text:still open", "close:1000:"}));
        EXPECT_EQ(server.firstEvent(0, "close"), closeEv(1000, ""));
    }
}

TEST(Close, ReasonOver123BytesRefused) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    CallLog refused;
    int stateAfter = -1;
    task->onOpen([&, t](const OnOpenResult&) {
        t->close(refused.wired(closeWith(1000, std::string(124, 'r'))));
        stateAfter = t->readyState();
        t->close(closeWith(3001, "ok now"));
    });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(refused.snapshot(), failCalls("closeSocket:fail The message must not be greater than 123 bytes."));
    EXPECT_EQ(stateAfter, SocketTask::OPEN);
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:3001:ok now"}));
}

TEST(Close, MultibyteReasonCountsBytes) {
    // 42 three-byte characters = 126 bytes: over the limit although only 42 characters.
    std::string reason;
    for (int i = 0; i < 42; ++i) reason += "好";
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    CallLog refused;
    task->onOpen([&, t](const OnOpenResult&) {
        t->close(refused.wired(closeWith(4000, reason)));
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(refused.snapshot(), failCalls("closeSocket:fail The message must not be greater than 123 bytes."));
}

TEST(Close, BeforeOpenCancelsTheConnect) {
    TestServer server([](Peer& p) {
        if (!p.readRequest(Ms(1500))) return;
        std::this_thread::sleep_for(Ms(200));
        if (p.accept()) p.echo(Ms(1500));
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    CallLog closeCalls;
    auto log = TaskLog::attach(*task);
    task->close(closeCalls.wired(closeWith(4002, "changed my mind")));
    EXPECT_TRUE(closeCalls.empty());
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(closeCalls.snapshot(), okCalls("closeSocket"));
    EXPECT_EQ(log->snapshot(), (Strings{"close:4002:changed my mind"}));
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    EXPECT_EQ(rt.activeTasks(), 0u);
    // Nothing more, however long we wait: no late onOpen.
    std::this_thread::sleep_for(Ms(400));
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"close:4002:changed my mind"}));
}

TEST(Close, BeforeOpenWhileTheHandshakeIsUnderWay) {
    // The TCP connection is up and the request sent; the answer is late. close() cancels.
    TestServer server([](Peer& p) {
        if (!p.readRequest()) return;
        std::this_thread::sleep_for(Ms(300));
        if (p.accept()) p.echo(Ms(1500));
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    SocketTask* t = task.get();
    std::thread closer([&] {
        if (eventually([&] { return server.request(0).has_value(); })) t->close(closeWith(1000, "bye"));
    });
    EXPECT_TRUE(runFor(rt));
    closer.join();
    EXPECT_EQ(log->snapshot(), (Strings{"close:1000:bye"}));
    EXPECT_TRUE(server.waitEvent(0, "eof")) << "the client dropped the connection";
}

TEST(Close, WhenClosedFails) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    CallLog again;
    task->close(again.wired(CloseOptions{}));
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(again.snapshot(), failCalls("closeSocket:fail WebSocket is not connected"));
}

TEST(Close, TwiceWhileClosingIsOk) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    CallLog second;
    task->onOpen([&, t](const OnOpenResult&) {
        t->close(closeWith(4000, "first"));
        t->close(second.wired(closeWith(4001, "second")));
    });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(second.snapshot(), okCalls("closeSocket"));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:4000:first"}));
    EXPECT_EQ(server.firstEvent(0, "close"), closeEv(4000, "first"));
}

TEST(Close, ByTheServerReachesOnClose) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendClose(4001, "bye");
        p.waitEof();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:4001:bye"}));
    EXPECT_TRUE(server.waitScripts());
    // The client answered the close frame with the same code.
    EXPECT_EQ(server.firstEvent(0, "close"), closeEv(4001, "bye"));
}

TEST(Close, ByTheServerWithoutCode) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendClose(0);
        p.waitEof();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:1005:"}));
}

TEST(Close, ByTheServerWith1001) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendClose(1001, "going away");
        p.waitEof();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:1001:going away"}));
}

// --- the onOpen result ---------------------------------------------------------------------

TEST(OnOpen, HeaderHoldsThe101Fields) {
    TestServer server([](Peer& p) {
        if (p.handshake(true, {{"X-Server", "test 1"}, {"Set-Cookie", "a=b"}})) p.echo();
    });
    Runtime rt;
    auto o = opts(server.url());
    o.protocols = {"chat"};
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    std::optional<OnOpenResult> open;
    task->onOpen([&, t](const OnOpenResult& r) {
        open = r;
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    ASSERT_TRUE(open);
    const auto req = server.request(0);
    ASSERT_TRUE(req);
    const auto& h = open->header;
    EXPECT_EQ(h.at("Upgrade"), "websocket");
    EXPECT_EQ(h.at("Connection"), "Upgrade");
    EXPECT_EQ(h.at("Sec-WebSocket-Accept"), computeAcceptKey(req->key));
    EXPECT_EQ(h.at("Sec-WebSocket-Protocol"), "chat");
    EXPECT_EQ(h.at("X-Server"), "test 1");
    EXPECT_EQ(h.at("Set-Cookie"), "a=b");
    EXPECT_EQ(h.size(), 6u);
}

TEST(OnOpen, ProfileIsConsistent) {
    TestServer server([](Peer& p) {
        if (!p.readRequest()) return;
        std::this_thread::sleep_for(Ms(50));
        if (p.accept()) p.echo();
    });
    Runtime rt;
    using namespace std::chrono;
    const double before =
        static_cast<double>(duration_cast<microseconds>(system_clock::now().time_since_epoch()).count()) / 1000.0;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    std::optional<SocketProfile> p;
    task->onOpen([&, t](const OnOpenResult& r) {
        p = r.profile;
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    const double after =
        static_cast<double>(duration_cast<microseconds>(system_clock::now().time_since_epoch()).count()) / 1000.0;
    ASSERT_TRUE(p);
    EXPECT_GE(p->fetchStart, before - 1);
    EXPECT_LE(p->fetchStart, after);
    EXPECT_LE(p->fetchStart, p->domainLookUpStart);
    EXPECT_LE(p->domainLookUpStart, p->domainLookUpEnd);
    EXPECT_LE(p->domainLookUpEnd, p->connectStart);
    EXPECT_LE(p->connectStart, p->connectEnd);
    EXPECT_LE(p->connectEnd, after);
    for (double v : {p->rtt, p->handshakeCost, p->cost}) EXPECT_GE(v, 0.0);
    EXPECT_NEAR(p->rtt, p->connectEnd - p->connectStart, 0.01);
    EXPECT_GE(p->handshakeCost, 45.0) << "the server waited 50 ms before answering";
    EXPECT_GE(p->cost, p->handshakeCost);
    EXPECT_GE(p->cost, p->connectEnd - p->fetchStart - 0.01);
    EXPECT_LE(p->cost, after - p->fetchStart + 0.01);
}

TEST(OnOpen, FramesThatComeWithThe101AreDelivered) {
    TestServer server([](Peer& p) {
        if (!p.readRequest()) return;
        // The 101 and a first message in one write.
        std::string bytes = acceptResponse(p.request().key);
        const auto f = frame(0x1, "welcome");
        bytes.append(reinterpret_cast<const char*>(f.data()), f.size());
        if (!p.sendRaw(bytes)) return;
        p.startWebSocket();
        p.echo();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    task->onMessage([t](const OnMessageResult&) { t->close({}); });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "text:welcome", "close:1000:"}));
}

// --- events: timing, order, late listeners, readyState -------------------------------------

TEST(Events, NoneBeforeConnectSocketReturns) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendText("hello");
        p.echo();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    // Listeners are registered on the loop: nothing can have happened yet.
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(log->snapshot().empty());
    EXPECT_EQ(task->readyState(), SocketTask::CONNECTING);
    SocketTask* t = task.get();
    task->onMessage([t](const OnMessageResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "text:hello", "close:1000:"}));
}

TEST(Events, ReadyStateTransitions) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    EXPECT_EQ(task->readyState(), SocketTask::CONNECTING);
    std::vector<int> states;
    task->onOpen([&, t](const OnOpenResult&) {
        states.push_back(t->readyState());
        t->close({});
        states.push_back(t->readyState());
    });
    task->onClose([&, t](const OnCloseResult&) { states.push_back(t->readyState()); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(states, (std::vector<int>{SocketTask::OPEN, SocketTask::CLOSING, SocketTask::CLOSED}));
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
}

TEST(Events, ListenersAddedAfterOpenGetIt) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    int lateOpens = 0;
    task->onOpen([&, t](const OnOpenResult&) {
        // Added during onOpen, after the event: called at once.
        t->onOpen([&](const OnOpenResult&) { ++lateOpens; });
        t->send(text("ping me"));
    });
    task->onMessage([&, t](const OnMessageResult&) {
        t->onOpen([&](const OnOpenResult&) { ++lateOpens; });
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(lateOpens, 2);
}

TEST(Events, ListenersAddedAfterCloseGetIt) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close(closeWith(3333, "r")); });
    EXPECT_TRUE(runFor(rt));
    std::vector<std::string> late;
    task->onClose([&](const OnCloseResult& r) { late.push_back(std::to_string(r.code) + ":" + r.reason); });
    task->onClose([&](const OnCloseResult& r) { late.push_back(std::to_string(r.code) + ":" + r.reason); });
    EXPECT_TRUE(late.empty()) << "not before the loop runs";
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(late, (Strings{"3333:r", "3333:r"}));
}

TEST(Events, ErrorListenerAddedAfterTheErrorGetsIt) {
    TestServer server([](Peer& p) {
        if (p.readRequest()) p.sendRaw(rejectResponse(403, "forbidden"));
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    EXPECT_TRUE(runFor(rt));
    ASSERT_EQ(task->readyState(), SocketTask::CLOSED);
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(),
              (Strings{"error:connectSocket:fail handshake failed: server answered 403 Forbidden", "close:1006:"}));
}

TEST(Events, SeveralListenersRunInOrder) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendText("m");
        p.echo();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    Strings order;
    task->onOpen([&](const OnOpenResult&) { order.push_back("open1"); });
    task->onOpen([&](const OnOpenResult&) { order.push_back("open2"); });
    task->onMessage([&](const OnMessageResult&) { order.push_back("msg1"); });
    task->onMessage([&, t](const OnMessageResult&) {
        order.push_back("msg2");
        t->close({});
    });
    task->onClose([&](const OnCloseResult&) { order.push_back("close1"); });
    task->onClose([&](const OnCloseResult&) { order.push_back("close2"); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(order, (Strings{"open1", "open2", "msg1", "msg2", "close1", "close2"}));
}

TEST(Events, AThrowingListenerDoesNotStopTheOthers) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    bool second = false;
    task->onOpen([](const OnOpenResult&) { throw std::runtime_error("listener failure"); });
    task->onOpen([&, t](const OnOpenResult&) {
        second = true;
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_TRUE(second);
}

TEST(Events, MessagesBeforeAnyListenerAreKept) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendText("one");
        p.sendBinary("two");
        p.echo();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    auto log = std::make_shared<TaskLog>();
    std::thread later;
    task->onOpen([&, t, log](const OnOpenResult&) {
        // The listener comes 150 ms after open, from another thread.
        later = std::thread([t, log] {
            std::this_thread::sleep_for(Ms(150));
            t->onMessage([t, log](const OnMessageResult& r) {
                std::lock_guard l(log->m);
                log->entries.push_back(describeData(r.data));
                if (log->entries.size() == 2) t->close({});
            });
        });
    });
    EXPECT_TRUE(runFor(rt));
    if (later.joinable()) later.join();
    EXPECT_EQ(log->snapshot(), (Strings{"text:one", "binary:two"}));
}

TEST(Events, DroppingThePointerDoesNotClose) {
    TestServer server(echoScript);
    Runtime rt;
    auto log = std::make_shared<TaskLog>();
    {
        auto task = connectSocket(rt, opts(server.url()));
        std::weak_ptr<SocketTask> weak = task;
        task->onOpen([weak](const OnOpenResult&) {
            if (auto t = weak.lock()) t->send(text("still here"));
        });
        task->onMessage([weak, log](const OnMessageResult& r) {
            {
                std::lock_guard l(log->m);
                log->entries.push_back(describeData(r.data));
            }
            if (auto t = weak.lock()) t->close({});
        });
    }
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"text:still here"}));
    EXPECT_EQ(server.firstEvent(0, "close"), closeEv(1000, ""));
}

} // namespace
