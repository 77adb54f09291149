// Lifetimes: what keeps a SocketTask alive, and what a task may do once its Runtime is
// gone. These tests crash or leak when the rules are broken, so they live apart from
// the others (ASan reports the use after free and the leak precisely).

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

TEST(Lifetime, TaskIsReleasedAfterCloseWhenListenersCaptureIt) {
    // The documented pattern: task->onOpen([task](...) { task->send(...); }). Once the task
    // has closed and the application has dropped its pointer, nothing should keep it alive.
    TestServer server(echoScript);
    Runtime rt;
    std::weak_ptr<SocketTask> weak;
    {
        auto task = connectSocket(rt, opts(server.url()));
        weak = task;
        task->onOpen([task](const OnOpenResult&) { task->send(text("hi")); });
        task->onMessage([task](const OnMessageResult&) { task->close({}); });
    }
    EXPECT_TRUE(runFor(rt));
    EXPECT_TRUE(weak.expired()) << "the task's listeners keep the task alive: it leaks";
}

TEST(Lifetime, ClosedTaskReleasedAfterItsRuntime) {
    // Only the last reference goes after the runtime: the task's destructor must not touch
    // the runtime's loop (its timers belong to the loop's io_context).
    TestServer server(echoScript);
    std::shared_ptr<SocketTask> task;
    {
        Runtime rt;
        task = connectSocket(rt, opts(server.url()));
        SocketTask* t = task.get();
        task->onOpen([t](const OnOpenResult&) { t->close({}); });
        EXPECT_TRUE(runFor(rt));
    }
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    task.reset();
}

TEST(Lifetime, TaskOutlivingItsRuntimeIsHarmless) {
    // An application may keep a task pointer longer than the runtime (e.g. a member
    // declared before it). Calls on it afterwards must not reach the dead loop.
    TestServer server(echoScript);
    std::shared_ptr<SocketTask> task;
    {
        Runtime rt;
        task = connectSocket(rt, opts(server.url()));
        SocketTask* t = task.get();
        task->onOpen([t](const OnOpenResult&) { t->close({}); });
        EXPECT_TRUE(runFor(rt));
    }
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    task->send(text("after the runtime"));
    task->close({});
    task->onClose([](const OnCloseResult&) {});
    task.reset();
}

TEST(Lifetime, OpenTaskOutlivingItsRuntimeIsHarmless) {
    TestServer server(echoScript);
    std::shared_ptr<SocketTask> task;
    {
        Runtime rt;
        task = connectSocket(rt, opts(server.url()));
        auto log = TaskLog::attach(*task);
        rt.start();
        ASSERT_TRUE(log->waitFor("open"));
        rt.stop();
    }
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    task->send(text("after the runtime"));
    task.reset();
}

} // namespace
