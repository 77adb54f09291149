#include "tongdao/client/wx.hpp"

#include "task.hpp"
#include "tongdao/client/runtime.hpp"

#include <mutex>

namespace tongdao::wx {

namespace {

// The one connection and the one listener of each kind, shared by every thread.
struct Global {
    std::mutex mutex;
    std::shared_ptr<SocketTask> current;
    std::function<void(const OnOpenResult&)> open;
    std::function<void(const OnMessageResult&)> message;
    std::function<void(const OnErrorResult&)> error;
    std::function<void(const OnCloseResult&)> close;
};

Global& global() {
    static Global g;
    return g;
}

template <class R>
void call(std::function<void(const R&)> Global::*member, const R& r) {
    std::function<void(const R&)> f;
    {
        std::lock_guard lock(global().mutex);
        f = global().*member;
    }
    if (f) f(r);
}

std::shared_ptr<SocketTask> current() {
    std::lock_guard lock(global().mutex);
    return global().current;
}

void notConnected(const Callback& fail, const Callback& complete, const char* api) {
    detail::RuntimeCore& rt = defaultRuntime().impl();
    rt.post([fail, complete, msg = std::string(api) + ":fail WebSocket is not connected"] {
        const GeneralCallbackResult r{msg};
        if (fail) fail(r);
        if (complete) complete(r);
    });
}

} // namespace

std::shared_ptr<SocketTask> connectSocket(ConnectSocketOptions options) {
    // The legacy rule: one connection; a new one first closes the old.
    if (auto old = current(); old && old->readyState() != SocketTask::CLOSED) old->close({});
    auto task = tongdao::connectSocket(std::move(options));
    // The global listeners are looked up at each event, so those set later count too.
    std::weak_ptr<SocketTask> weak = task;
    task->onOpen([](const OnOpenResult& r) { call(&Global::open, r); });
    task->onMessage([](const OnMessageResult& r) { call(&Global::message, r); });
    task->onError([](const OnErrorResult& r) { call(&Global::error, r); });
    task->onClose([weak](const OnCloseResult& r) {
        call(&Global::close, r);
        std::lock_guard lock(global().mutex);
        if (global().current == weak.lock()) global().current.reset();
    });
    std::lock_guard lock(global().mutex);
    global().current = task;
    return task;
}

void sendSocketMessage(SendOptions options) {
    auto task = current();
    if (!task) return notConnected(options.fail, options.complete, "sendSocketMessage");
    task->send(std::move(options));
}

void closeSocket(CloseOptions options) {
    auto task = current();
    if (!task || task->readyState() == SocketTask::CLOSED)
        return notConnected(options.fail, options.complete, "closeSocket");
    task->close(std::move(options));
}

void onSocketOpen(std::function<void(const OnOpenResult&)> l) {
    std::lock_guard lock(global().mutex);
    global().open = std::move(l);
}
void onSocketMessage(std::function<void(const OnMessageResult&)> l) {
    std::lock_guard lock(global().mutex);
    global().message = std::move(l);
}
void onSocketError(std::function<void(const OnErrorResult&)> l) {
    std::lock_guard lock(global().mutex);
    global().error = std::move(l);
}
void onSocketClose(std::function<void(const OnCloseResult&)> l) {
    std::lock_guard lock(global().mutex);
    global().close = std::move(l);
}

void reset() {
    std::shared_ptr<SocketTask> task;
    {
        std::lock_guard lock(global().mutex);
        task = std::move(global().current);
        global().open = nullptr;
        global().message = nullptr;
        global().error = nullptr;
        global().close = nullptr;
    }
    // Aborted without callbacks, as documented: nothing of the old connection is reported.
    if (auto t = std::dynamic_pointer_cast<detail::TaskImpl>(task); t && t->runtime())
        t->runtime()->onLoop([t] { t->abort(false); });
}

} // namespace tongdao::wx
