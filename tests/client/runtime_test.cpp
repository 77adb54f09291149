// Runtime: run() on the caller's thread until no task is left; start()/stop() on a thread
// of its own with calls from other threads; an application's asio::io_context; what
// happens to tasks when the runtime goes.

#include "test_server.hpp"

#include <asio.hpp>
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

TEST(Runtime, RunWithNothingToDoReturnsAtOnce) {
    Runtime rt;
    const auto t0 = Clock::now();
    rt.run();
    EXPECT_LT(Clock::now() - t0, Ms(500));
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(Runtime, RunReturnsWhenTheLastTaskIsGone) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        // The second connection is closed by the server 300 ms after it opens.
        if (p.request().target == "/late") {
            p.next(Ms(300));
            p.sendClose(4000, "late");
            p.waitEof();
            return;
        }
        p.echo();
    });
    Runtime rt;
    auto early = connectSocket(rt, opts(server.url("/early")));
    auto late = connectSocket(rt, opts(server.url("/late")));
    SocketTask* e = early.get();
    early->onOpen([e](const OnOpenResult&) { e->close({}); });
    auto lateLog = TaskLog::attach(*late);
    EXPECT_EQ(rt.activeTasks(), 2u);
    const auto t0 = Clock::now();
    EXPECT_TRUE(runFor(rt));
    EXPECT_GE(Clock::now() - t0, Ms(250)) << "run() returned while a task was still open";
    EXPECT_EQ(lateLog->snapshot(), (Strings{"open", "close:4000:late"}));
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(Runtime, RunCallbacksOnTheCallingThread) {
    TestServer server(echoScript);
    Runtime rt;
    const auto me = std::this_thread::get_id();
    std::vector<bool> onMe;
    auto o = opts(server.url());
    o.success = [&](const GeneralCallbackResult&) { onMe.push_back(std::this_thread::get_id() == me); };
    auto task = connectSocket(rt, o);
    SocketTask* t = task.get();
    task->onOpen([&, t](const OnOpenResult&) {
        onMe.push_back(std::this_thread::get_id() == me);
        t->close({});
    });
    task->onClose([&](const OnCloseResult&) { onMe.push_back(std::this_thread::get_id() == me); });
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(onMe, (std::vector<bool>{true, true, true}));
}

TEST(Runtime, StartAndStopWithCallsFromAnotherThread) {
    TestServer server(echoScript);
    Runtime rt;
    rt.start();
    const auto me = std::this_thread::get_id();
    std::atomic<bool> callbackOnMyThread{false};
    CallLog connectCalls, sendCalls, closeCalls;
    auto task = connectSocket(rt, connectCalls.wired(opts(server.url())));
    auto log = TaskLog::attach(*task);
    task->onOpen([&](const OnOpenResult&) {
        if (std::this_thread::get_id() == me) callbackOnMyThread = true;
    });
    ASSERT_TRUE(log->waitFor("open"));
    EXPECT_EQ(task->readyState(), SocketTask::OPEN);
    task->send(sendCalls.wired(text("from the test thread")));
    ASSERT_TRUE(log->waitFor("text:"));
    task->close(closeCalls.wired(CloseOptions{}));
    ASSERT_TRUE(log->waitFor("close:"));
    EXPECT_TRUE(closeCalls.waitCount(2));
    rt.stop();
    EXPECT_EQ(connectCalls.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(sendCalls.snapshot(), okCalls("sendSocketMessage"));
    EXPECT_EQ(closeCalls.snapshot(), okCalls("closeSocket"));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "text:from the test thread", "close:1000:"}));
    EXPECT_FALSE(callbackOnMyThread) << "callbacks run on the runtime's thread";
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(Runtime, RunDoesNothingWhileStarted) {
    Runtime rt;
    rt.start();
    const auto t0 = Clock::now();
    rt.run();
    EXPECT_LT(Clock::now() - t0, Ms(500));
    rt.stop();
}

TEST(Runtime, StopAbortsOpenTasksWithOnClose1006) {
    TestServer server(echoScript);
    Runtime rt;
    rt.start();
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    ASSERT_TRUE(log->waitFor("open"));
    rt.stop();
    // Reported before stop() returned.
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:1006:"}));
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    EXPECT_EQ(rt.activeTasks(), 0u);
    EXPECT_TRUE(server.waitEvent(0, "eof"));
    EXPECT_FALSE(server.firstEvent(0, "close")) << "an abort sends no close frame";
}

TEST(Runtime, StopAbortsConnectingTasks) {
    TestServer server([](Peer& p) {
        p.readRequest();
        p.idle();
    });
    Runtime rt;
    rt.start();
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    ASSERT_TRUE(eventually([&] { return server.request(0).has_value(); }));
    rt.stop();
    EXPECT_EQ(log->snapshot(), (Strings{"close:1006:"}));
    EXPECT_EQ(rt.activeTasks(), 0u);
}

TEST(Runtime, ConnectFromAnotherThreadWhileRunning) {
    TestServer server(echoScript);
    Runtime rt;
    auto first = connectSocket(rt, opts(server.url("/first")));
    SocketTask* f = first.get();
    std::shared_ptr<SocketTask> second;
    std::shared_ptr<TaskLog> secondLog;
    std::thread other;
    first->onOpen([&, f](const OnOpenResult&) {
        // While run() is busy on the test thread, another thread opens a second task.
        other = std::thread([&, f] {
            second = connectSocket(rt, opts(server.url("/second")));
            secondLog = TaskLog::attach(*second);
            SocketTask* s = second.get();
            second->onOpen([f, s](const OnOpenResult&) {
                s->close({});
                f->close({});
            });
        });
    });
    EXPECT_TRUE(runFor(rt));
    if (other.joinable()) other.join();
    ASSERT_TRUE(secondLog);
    EXPECT_EQ(secondLog->snapshot(), (Strings{"open", "close:1000:"}));
}

TEST(Runtime, OnAnApplicationIoContext) {
    TestServer server(echoScript);
    asio::io_context ctx;
    bool otherWork = false;
    {
        Runtime rt(ctx);
        auto task = connectSocket(rt, opts(server.url()));
        SocketTask* t = task.get();
        auto log = TaskLog::attach(*task);
        task->onOpen([t](const OnOpenResult&) { t->send(text("on your loop")); });
        task->onMessage([t](const OnMessageResult&) { t->close({}); });
        task->onClose([&](const OnCloseResult&) { ctx.stop(); });
        // The application's own work shares the context.
        asio::post(ctx, [&] { otherWork = true; });
        ctx.run_for(kWait);
        EXPECT_TRUE(otherWork);
        EXPECT_EQ(log->snapshot(), (Strings{"open", "text:on your loop", "close:1000:"}));
        EXPECT_EQ(rt.activeTasks(), 0u);
    }
}

TEST(Runtime, OnAnApplicationIoContextRunByAnotherThread) {
    TestServer server(echoScript);
    asio::io_context ctx;
    auto guard = asio::make_work_guard(ctx);
    Runtime rt(ctx);
    std::thread runner([&] { ctx.run_for(Ms(8000)); });
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(log->waitFor("open"));
    task->send(text("hi"));
    EXPECT_TRUE(log->waitFor("text:hi"));
    task->close({});
    EXPECT_TRUE(log->waitFor("close:"));
    ctx.stop();
    runner.join();
    EXPECT_EQ(log->snapshot(), (Strings{"open", "text:hi", "close:1000:"}));
}

TEST(Runtime, DestructorAbortsWithoutCallbacksWhenNotRunning) {
    TestServer server([](Peer& p) {
        p.readRequest();
        p.idle();
    });
    auto log = std::make_shared<TaskLog>();
    {
        Runtime rt;
        auto task = connectSocket(rt, opts(server.url()));
        task->onClose([log](const OnCloseResult&) {
            std::lock_guard l(log->m);
            log->entries.push_back("close");
        });
        // Never run: the runtime goes with the task connecting.
    }
    EXPECT_TRUE(log->snapshot().empty());
}

TEST(Runtime, DestructorAbortsStartedTasksWithoutCallbacks) {
    // runtime.hpp: "~Runtime(): Aborts what is still open (without callbacks)".
    TestServer server(echoScript);
    auto log = std::make_shared<TaskLog>();
    {
        Runtime rt;
        rt.start();
        auto task = connectSocket(rt, opts(server.url()));
        auto opened = std::make_shared<std::atomic<bool>>(false);
        task->onOpen([opened](const OnOpenResult&) { *opened = true; });
        task->onClose([log](const OnCloseResult& r) {
            std::lock_guard l(log->m);
            log->entries.push_back("close:" + std::to_string(r.code));
        });
        ASSERT_TRUE(eventually([&] { return opened->load(); }));
    }
    EXPECT_EQ(log->snapshot(), Strings{}) << "the destructor reported onClose";
}

/** A capture whose destructor is slow on one thread: it widens the window after connectSocket posts. */
struct SlowToDestroy {
    std::thread::id slowOn;
    std::shared_ptr<std::atomic<bool>> armed;
    SlowToDestroy(std::thread::id id, std::shared_ptr<std::atomic<bool>> a) : slowOn(id), armed(std::move(a)) {}
    SlowToDestroy(const SlowToDestroy&) = default;
    ~SlowToDestroy() {
        if (armed && *armed && std::this_thread::get_id() == slowOn) std::this_thread::sleep_for(Ms(150));
    }
};

TEST(Runtime, NoCallbackBeforeConnectSocketReturnsOnAStartedRuntime) {
    // socket_task.hpp: "No callback runs before connectSocket returns", from any thread.
    // connectSocket copies the callbacks; the copies are destroyed on the way out, after
    // the success callback has been posted. A callable whose destructor takes a while
    // (here 150 ms) shows whether the loop thread may run success meanwhile.
    TestServer server(echoScript);
    Runtime rt;
    rt.start();
    auto armed = std::make_shared<std::atomic<bool>>(false);
    std::atomic<bool> returned{false};
    std::atomic<int> early{0}, calls{0};
    {
        auto o = opts(server.url());
        o.success = [&, slow = SlowToDestroy(std::this_thread::get_id(), armed)](const GeneralCallbackResult&) {
            if (!returned) ++early;
            ++calls;
        };
        *armed = true;
        auto task = connectSocket(rt, o);
        returned = true;
        *armed = false;
        ASSERT_TRUE(eventually([&] { return calls.load() == 1; }));
        task->close({});
    }
    rt.stop();
    EXPECT_EQ(early.load(), 0) << "success ran before connectSocket returned";
}

TEST(Runtime, InvalidUrlFailCallbackNotBeforeReturnOnAStartedRuntime) {
    Runtime rt;
    rt.start();
    auto armed = std::make_shared<std::atomic<bool>>(false);
    std::atomic<bool> returned{false};
    std::atomic<int> early{0}, calls{0};
    {
        auto o = opts("http://not-ws/");
        o.fail = [&, slow = SlowToDestroy(std::this_thread::get_id(), armed)](const GeneralCallbackResult&) {
            if (!returned) ++early;
            ++calls;
        };
        *armed = true;
        auto task = connectSocket(rt, o);
        returned = true;
        *armed = false;
        ASSERT_TRUE(eventually([&] { return calls.load() == 1; }));
    }
    rt.stop();
    EXPECT_EQ(early.load(), 0) << "fail ran before connectSocket returned";
}

TEST(Runtime, DefaultRuntimeIsOneObject) {
    EXPECT_EQ(&defaultRuntime(), &defaultRuntime());
    EXPECT_EQ(defaultRuntime().options().maxConnections, 5);
}

TEST(Runtime, ConnectSocketWithoutRuntimeUsesTheDefault) {
    TestServer server(echoScript);
    auto task = connectSocket(opts(server.url()));
    EXPECT_EQ(defaultRuntime().activeTasks(), 1u);
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(defaultRuntime()));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "close:1000:"}));
    EXPECT_EQ(defaultRuntime().activeTasks(), 0u);
}

} // namespace
