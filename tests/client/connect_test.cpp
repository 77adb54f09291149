// connectSocket: which calls are accepted (success/complete "connectSocket:ok") and which
// fail (fail/complete with the mini-program's errMsg), always after connectSocket returns;
// what the opening request carries; the connect timeout; the cap on connections.

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

/** A port nothing listens on (bound, then closed). */
std::uint16_t deadPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

/** Connects with `o`, expecting the call to fail with `errMsg` after connectSocket returns. */
void expectRefused(ConnectSocketOptions o, const std::string& errMsg) {
    Runtime rt;
    CallLog calls;
    calls.wire(o);
    auto task = connectSocket(rt, std::move(o));
    ASSERT_TRUE(task);
    EXPECT_TRUE(calls.empty()) << "a callback ran before connectSocket returned";
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), failCalls(errMsg));
    EXPECT_EQ(log->count("open"), 0u);
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    EXPECT_EQ(rt.activeTasks(), 0u);
}

// --- the URL ------------------------------------------------------------------------------

TEST(ConnectSocket, InvalidUrlFailsAfterReturning) {
    for (std::string url : {"http://127.0.0.1:1/", "https://h/", "127.0.0.1:80", "", "ws://", "ws://h/#frag",
                            "ws://user:pw@h/", "ws://h:0/", "ws://h:65536/", "ws://[::1/", "ws://h/a b",
                            "wss//h/", "ftp://h/"}) {
        SCOPED_TRACE(url);
        expectRefused(opts(url), "connectSocket:fail invalid url \"" + url + "\"");
    }
}

TEST(ConnectSocket, InvalidUrlsAllFailInOneRun) {
    // Several refused calls on one runtime: each gets its own answer, none before run().
    Runtime rt;
    std::vector<std::unique_ptr<CallLog>> calls;
    const std::vector<std::string> urls{"http://x/", "ws://x/#y", "ws://u@x/"};
    for (const auto& u : urls) {
        calls.push_back(std::make_unique<CallLog>());
        connectSocket(rt, calls.back()->wired(opts(u)));
    }
    for (auto& c : calls) EXPECT_TRUE(c->empty());
    EXPECT_TRUE(runFor(rt));
    for (std::size_t i = 0; i < urls.size(); ++i)
        EXPECT_EQ(calls[i]->snapshot(), failCalls("connectSocket:fail invalid url \"" + urls[i] + "\""));
}

// --- accepted calls -----------------------------------------------------------------------

TEST(ConnectSocket, AcceptedCallSucceedsAfterReturning) {
    TestServer server(echoScript);
    Runtime rt;
    CallLog calls;
    auto task = connectSocket(rt, calls.wired(opts(server.url())));
    EXPECT_TRUE(calls.empty()) << "a callback ran before connectSocket returned";
    EXPECT_EQ(task->readyState(), SocketTask::CONNECTING);
    EXPECT_EQ(rt.activeTasks(), 1u);
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(log->snapshot(), (std::vector<std::string>{"open", "close:1000:"}));
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(ConnectSocket, SuccessComesBeforeOpen) {
    TestServer server(echoScript);
    Runtime rt;
    std::vector<std::string> order;
    auto o = opts(server.url());
    o.success = [&](const GeneralCallbackResult& r) { order.push_back("success:" + r.errMsg); };
    o.complete = [&](const GeneralCallbackResult& r) { order.push_back("complete:" + r.errMsg); };
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    task->onOpen([&, t](const OnOpenResult&) {
        order.push_back("open");
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(order, (std::vector<std::string>{"success:connectSocket:ok", "complete:connectSocket:ok", "open"}));
}

TEST(ConnectSocket, MethodOtherThanGetFails) {
    auto o = opts("ws://127.0.0.1:1/");
    o.method = "POST";
    expectRefused(o, "connectSocket:fail invalid method \"POST\"");
}

TEST(ConnectSocket, MethodGetInAnyCaseIsAccepted) {
    TestServer server(echoScript);
    Runtime rt;
    CallLog calls;
    auto o = calls.wired(opts(server.url()));
    o.method = "get";
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), okCalls("connectSocket"));
    ASSERT_TRUE(server.request(0));
    EXPECT_EQ(server.request(0)->method, "GET");
}

TEST(ConnectSocket, RefererHeaderRefused) {
    for (const char* name : {"Referer", "referer", "REFERER"}) {
        SCOPED_TRACE(name);
        auto o = opts("ws://127.0.0.1:1/");
        o.header[name] = "https://example.com/";
        expectRefused(o, "connectSocket:fail header Referer is not allowed");
    }
}

TEST(ConnectSocket, RefererHeaderRefusedEvenWithAppid) {
    auto o = opts("ws://127.0.0.1:1/");
    o.appid = "wx0123456789";
    o.version = "1";
    o.header["Referer"] = "https://servicewechat.com/other/1/page-frame.html";
    expectRefused(o, "connectSocket:fail header Referer is not allowed");
}

TEST(ConnectSocket, HandshakeFieldsRefused) {
    for (const char* name : {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                             "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol", "sec-websocket-accept"}) {
        SCOPED_TRACE(name);
        auto o = opts("ws://127.0.0.1:1/");
        o.header[name] = "x";
        expectRefused(o, std::string("connectSocket:fail header ") + name + " is not allowed");
    }
}

TEST(ConnectSocket, HeaderInjectionRefused) {
    auto o = opts("ws://127.0.0.1:1/");
    o.header["X-A"] = "1\r\nX-Injected: 2";
    expectRefused(o, "connectSocket:fail invalid header \"X-A\"");
    auto bad = opts("ws://127.0.0.1:1/");
    bad.header["Bad Name"] = "1";
    expectRefused(bad, "connectSocket:fail invalid header \"Bad Name\"");
}

TEST(ConnectSocket, InvalidProtocolRefused) {
    auto o = opts("ws://127.0.0.1:1/");
    o.protocols = {"chat", "not a token"};
    expectRefused(o, "connectSocket:fail invalid protocol \"not a token\"");
}

TEST(ConnectSocket, RequestLineAndHost) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url("/chat/room?id=7&x=%20")));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    const auto req = server.request(0);
    ASSERT_TRUE(req);
    EXPECT_EQ(req->method, "GET");
    EXPECT_EQ(req->target, "/chat/room?id=7&x=%20");
    EXPECT_EQ(req->header("Host"), "127.0.0.1:" + std::to_string(server.port()));
    EXPECT_EQ(req->count("Host"), 1u);
    EXPECT_EQ(req->header("Sec-WebSocket-Version"), "13");
    EXPECT_EQ(req->count("Referer"), 0u) << "no appid: no Referer";
    EXPECT_EQ(req->count("Sec-WebSocket-Protocol"), 0u);
}

TEST(ConnectSocket, AppidAndVersionMakeTheReferer) {
    TestServer server(echoScript);
    Runtime rt;
    auto o = opts(server.url());
    o.appid = "wxabcdef0123456789";
    o.version = "42";
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    const auto req = server.request(0);
    ASSERT_TRUE(req);
    EXPECT_EQ(req->header("Referer"), "https://servicewechat.com/wxabcdef0123456789/42/page-frame.html");
    EXPECT_EQ(req->count("Referer"), 1u);
}

TEST(ConnectSocket, CustomHeadersReachTheServer) {
    TestServer server(echoScript);
    Runtime rt;
    auto o = opts(server.url());
    o.header = {{"content-type", "application/json"}, {"X-Token", "abc 123"}, {"User-Agent", "mini/1.0"}};
    o.data = {{"ignored", "yes"}};
    o.forceCellularNetwork = true;
    o.tcpNoDelay = true;
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    const auto req = server.request(0);
    ASSERT_TRUE(req);
    EXPECT_EQ(req->header("content-type"), "application/json");
    EXPECT_EQ(req->header("X-Token"), "abc 123");
    EXPECT_EQ(req->header("User-Agent"), "mini/1.0");
    EXPECT_EQ(req->count("User-Agent"), 1u) << "the application's User-Agent replaces the default";
    EXPECT_EQ(req->target, "/") << "legacy `data` is ignored";
}

TEST(ConnectSocket, ProtocolsReachTheServerAndTheChoiceIsReported) {
    TestServer server([](Peer& p) {
        if (!p.readRequest()) return;
        p.accept(p.request().protocols.size() > 1 ? p.request().protocols[1] : "");
        p.echo();
    });
    Runtime rt;
    auto o = opts(server.url());
    o.protocols = {"chat.v2", "superchat", "json"};
    auto task = connectSocket(rt, o);
    EXPECT_EQ(task->protocol(), "");
    std::string atOpen;
    SocketTask* t = task.get();
    task->onOpen([&, t](const OnOpenResult& r) {
        atOpen = t->protocol();
        EXPECT_EQ(r.header.count("Sec-WebSocket-Protocol"), 1u);
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(atOpen, "superchat");
    EXPECT_EQ(task->protocol(), "superchat");
    const auto req = server.request(0);
    ASSERT_TRUE(req);
    EXPECT_EQ(req->protocols, (std::vector<std::string>{"chat.v2", "superchat", "json"}));
}

TEST(ConnectSocket, NoProtocolChosenIsEmpty) {
    TestServer server([](Peer& p) {
        if (p.handshake(false)) p.echo();
    });
    Runtime rt;
    auto o = opts(server.url());
    o.protocols = {"chat"};
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    bool opened = false;
    task->onOpen([&, t](const OnOpenResult&) {
        opened = true;
        t->close({});
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_TRUE(opened);
    EXPECT_EQ(task->protocol(), "");
}

TEST(ConnectSocket, HostNameIsResolved) {
    TestServer server(echoScript);
    Runtime rt;
    auto task = connectSocket(rt, opts("ws://localhost:" + std::to_string(server.port()) + "/"));
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
    EXPECT_EQ(req->header("Host"), "localhost:" + std::to_string(server.port()));
    const auto& p = open->profile;
    EXPECT_LE(p.fetchStart, p.domainLookUpStart);
    EXPECT_LE(p.domainLookUpStart, p.domainLookUpEnd);
    EXPECT_LE(p.domainLookUpEnd, p.connectStart);
}

TEST(ConnectSocket, ConnectionRefused) {
    const auto port = deadPort();
    Runtime rt;
    CallLog calls;
    auto task = connectSocket(rt, calls.wired(opts("ws://127.0.0.1:" + std::to_string(port) + "/")));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), okCalls("connectSocket")) << "the call was accepted; the socket failed";
    EXPECT_EQ(log->snapshot(),
              (std::vector<std::string>{"error:connectSocket:fail connect to 127.0.0.1:" + std::to_string(port) +
                                            " failed: Connection refused",
                                        "close:1006:"}));
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
}

// --- timeout ------------------------------------------------------------------------------

TEST(ConnectSocket, TimeoutDefaultsToSixtySeconds) {
    ConnectSocketOptions o;
    EXPECT_EQ(o.timeout, 60000);
}

TEST(ConnectSocket, TimeoutWhenTheServerNeverAnswers) {
    TestServer server([](Peer& p) {
        p.readRequest();
        p.idle();
    });
    Runtime rt;
    auto o = opts(server.url());
    o.timeout = 300;
    CallLog calls;
    auto task = connectSocket(rt, calls.wired(o));
    auto log = TaskLog::attach(*task);
    const auto t0 = Clock::now();
    EXPECT_TRUE(runFor(rt));
    const auto elapsed = std::chrono::duration_cast<Ms>(Clock::now() - t0);
    EXPECT_EQ(calls.snapshot(), okCalls("connectSocket"));
    const auto entries = log->snapshot();
    ASSERT_EQ(entries.size(), 2u) << ::testing::PrintToString(entries);
    EXPECT_EQ(entries[0].rfind("error:connectSocket:fail timeout", 0), 0u) << entries[0];
    EXPECT_EQ(entries[0], "error:connectSocket:fail timeout: not open within 300 ms");
    EXPECT_EQ(entries[1], "close:1006:");
    EXPECT_GE(elapsed.count(), 250);
    EXPECT_LT(elapsed.count(), 2500);
    // The client dropped the TCP connection.
    EXPECT_TRUE(server.waitEvent(0, "eof"));
}

TEST(ConnectSocket, SlowAnswerWithinTimeoutOpens) {
    TestServer server([](Peer& p) {
        if (!p.readRequest()) return;
        std::this_thread::sleep_for(Ms(300));
        if (p.accept()) p.echo();
    });
    Runtime rt;
    auto o = opts(server.url());
    o.timeout = 3000;
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (std::vector<std::string>{"open", "close:1000:"}));
}

TEST(ConnectSocket, TimeoutAboveTheCapOrZeroMeansTheCap) {
    // Values over 60000 behave as 60000 and 0 as the default: neither fails early.
    for (int timeout : {120000, 0, -5, 60000}) {
        SCOPED_TRACE(timeout);
        TestServer server([](Peer& p) {
            if (!p.readRequest()) return;
            std::this_thread::sleep_for(Ms(200));
            if (p.accept()) p.echo();
        });
        Runtime rt;
        auto o = opts(server.url());
        o.timeout = timeout;
        auto task = connectSocket(rt, o);
        SocketTask* t = task.get();
        task->onOpen([t](const OnOpenResult&) { t->close({}); });
        auto log = TaskLog::attach(*task);
        EXPECT_TRUE(runFor(rt));
        EXPECT_EQ(log->snapshot(), (std::vector<std::string>{"open", "close:1000:"}));
    }
}

// --- the cap --------------------------------------------------------------------------------

TEST(ConnectSocket, CapRefusesOneMoreThenAcceptsAfterAClose) {
    TestServer server(echoScript);
    RuntimeOptions ro;
    ro.maxConnections = 2;
    Runtime rt(ro);
    EXPECT_EQ(rt.options().maxConnections, 2);
    CallLog c1, c2, c3, c4;
    auto t1 = connectSocket(rt, c1.wired(opts(server.url("/1"))));
    auto t2 = connectSocket(rt, c2.wired(opts(server.url("/2"))));
    auto t3 = connectSocket(rt, c3.wired(opts(server.url("/3"))));
    EXPECT_EQ(rt.activeTasks(), 2u);
    EXPECT_EQ(t3->readyState(), SocketTask::CLOSED);
    std::shared_ptr<SocketTask> t4;
    SocketTask* p1 = t1.get();
    SocketTask* p2 = t2.get();
    auto log1 = TaskLog::attach(*t1);
    auto log2 = TaskLog::attach(*t2);
    std::shared_ptr<TaskLog> log4;
    int opens = 0;
    auto bothOpen = [&](const OnOpenResult&) {
        if (++opens == 2) p1->close({});
    };
    t1->onOpen(bothOpen);
    t2->onOpen(bothOpen);
    // Once t1 has closed, t2 asks the echo server for a message; when it is back (a later
    // callback than t1's onClose), a place is free again.
    t1->onClose([p2](const OnCloseResult&) {
        SendOptions go;
        go.data = std::string("go");
        p2->send(go);
    });
    t2->onMessage([&, p2](const OnMessageResult&) {
        t4 = connectSocket(rt, c4.wired(opts(server.url("/4"))));
        log4 = TaskLog::attach(*t4);
        SocketTask* p4 = t4.get();
        t4->onOpen([p2, p4](const OnOpenResult&) {
            p4->close({});
            p2->close({});
        });
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(c1.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(c2.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(c3.snapshot(), failCalls("connectSocket:fail fail reach max websocket connect count 2"));
    EXPECT_EQ(c4.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(log1->snapshot(), (std::vector<std::string>{"open", "close:1000:"}));
    EXPECT_EQ(log2->snapshot(), (std::vector<std::string>{"open", "text:go", "close:1000:"}));
    ASSERT_TRUE(log4);
    EXPECT_EQ(log4->snapshot(), (std::vector<std::string>{"open", "close:1000:"}));
    EXPECT_EQ(server.connections(), 3) << "the refused call never connected";
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(ConnectSocket, CapPlaceIsFreeInOnClose) {
    // The seed's pattern: reconnect from onClose. The closed connection no longer counts.
    TestServer server(echoScript);
    RuntimeOptions ro;
    ro.maxConnections = 1;
    Runtime rt(ro);
    auto t1 = connectSocket(rt, opts(server.url("/1")));
    SocketTask* p1 = t1.get();
    t1->onOpen([p1](const OnOpenResult&) { p1->close({}); });
    CallLog again;
    std::shared_ptr<SocketTask> t2;
    std::shared_ptr<TaskLog> log2;
    t1->onClose([&](const OnCloseResult&) {
        EXPECT_EQ(p1->readyState(), SocketTask::CLOSED);
        t2 = connectSocket(rt, again.wired(opts(server.url("/2"))));
        log2 = TaskLog::attach(*t2);
        SocketTask* p2 = t2.get();
        t2->onOpen([p2](const OnOpenResult&) { p2->close({}); });
    });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(again.snapshot(), okCalls("connectSocket"));
    ASSERT_TRUE(log2);
    EXPECT_EQ(log2->snapshot(), (std::vector<std::string>{"open", "close:1000:"}));
}

TEST(ConnectSocket, DefaultCapIsFiveAndCountsConnectingTasks) {
    TestServer server([](Peer& p) {
        p.readRequest();
        p.idle();
    });
    Runtime rt;
    EXPECT_EQ(rt.options().maxConnections, 5);
    std::vector<std::shared_ptr<SocketTask>> tasks;
    std::vector<std::unique_ptr<CallLog>> calls;
    for (int i = 0; i < 6; ++i) {
        calls.push_back(std::make_unique<CallLog>());
        tasks.push_back(connectSocket(rt, calls.back()->wired(opts(server.url()))));
    }
    EXPECT_EQ(rt.activeTasks(), 5u);
    // Cancel the five that are connecting.
    std::vector<std::shared_ptr<TaskLog>> logs;
    for (int i = 0; i < 5; ++i) {
        logs.push_back(TaskLog::attach(*tasks[static_cast<std::size_t>(i)]));
        tasks[static_cast<std::size_t>(i)]->close({});
    }
    EXPECT_TRUE(runFor(rt));
    for (int i = 0; i < 5; ++i) EXPECT_EQ(calls[static_cast<std::size_t>(i)]->snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(calls[5]->snapshot(), failCalls("connectSocket:fail fail reach max websocket connect count 5"));
    for (auto& l : logs) EXPECT_EQ(l->snapshot(), (std::vector<std::string>{"close:1000:"}));
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(ConnectSocket, RefusedCallsDoNotTakeAPlace) {
    RuntimeOptions ro;
    ro.maxConnections = 1;
    Runtime rt(ro);
    for (int i = 0; i < 3; ++i) connectSocket(rt, opts("http://bad/"));
    EXPECT_EQ(rt.activeTasks(), 0u);
    EXPECT_TRUE(runFor(rt));
    TestServer server(echoScript);
    CallLog calls;
    auto task = connectSocket(rt, calls.wired(opts(server.url())));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), okCalls("connectSocket"));
}

} // namespace
