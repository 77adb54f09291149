// connectSocket: the checks of a call, the connection cap, and the task's start.

#include "task.hpp"

#include "tongdao/protocol/http.hpp"

namespace tongdao::detail {

namespace {

std::string checkOptions(const ConnectSocketOptions& o, const std::optional<Url>& url) {
    if (!url) return "connectSocket:fail invalid url \"" + o.url + "\"";
    if (!protocol::http::iequals(o.method, "GET")) return "connectSocket:fail invalid method \"" + o.method + "\"";
    for (const auto& [name, value] : o.header) {
        // The mini-program's rule: the Referer is the runtime's (see appid/version).
        if (protocol::http::iequals(name, "Referer")) return "connectSocket:fail header Referer is not allowed";
        if (!protocol::http::isToken(name) || !protocol::http::isSafeFieldValue(value))
            return "connectSocket:fail invalid header \"" + name + "\"";
        // The handshake's own fields are the library's to set.
        for (std::string_view own : {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                                     "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol", "Sec-WebSocket-Accept"})
            if (protocol::http::iequals(name, own)) return "connectSocket:fail header " + name + " is not allowed";
    }
    for (const auto& p : o.protocols)
        if (!protocol::http::isToken(p)) return "connectSocket:fail invalid protocol \"" + p + "\"";
    return {};
}

} // namespace

} // namespace tongdao::detail

namespace tongdao {

std::shared_ptr<SocketTask> connectSocket(ConnectSocketOptions options) {
    return connectSocket(defaultRuntime(), std::move(options));
}

std::shared_ptr<SocketTask> connectSocket(Runtime& runtime, ConnectSocketOptions options) {
    // Nothing runs before this function returns, even on a runtime running on its own
    // thread: what is posted waits for this gate, opened when everything here is done
    // (the guard is the first local, so it is the last destroyed).
    auto gate = std::make_shared<std::atomic<bool>>(false);
    struct Open {
        std::shared_ptr<std::atomic<bool>> gate;
        ~Open() { gate->store(true); }
    } open{gate};

    detail::RuntimeCore& rt = runtime.impl();
    auto url = detail::parseUrl(options.url);
    std::string err = detail::checkOptions(options, url);
    if (err.empty()) {
        // Take a place among the runtime's connections, or fail (the mini-program's cap).
        const int max = rt.options.maxConnections;
        int cur = rt.active.load();
        do {
            if (cur >= max) {
                err = "connectSocket:fail fail reach max websocket connect count " + std::to_string(max);
                break;
            }
        } while (!rt.active.compare_exchange_weak(cur, cur + 1));
    }
    // The call's callbacks go with the posted answer, not with the task.
    Callback success = std::move(options.success), fail = std::move(options.fail),
             complete = std::move(options.complete);
    auto task = std::make_shared<detail::TaskImpl>(rt, std::move(options), std::move(url));
    {
        std::lock_guard lock(rt.tasksMutex);
        std::erase_if(rt.all, [](const auto& w) { return w.expired(); });
        rt.all.push_back(task);
    }
    if (!err.empty()) {
        task->abort(false);
        rt.postGated(gate, [fail = std::move(fail), complete = std::move(complete), err] {
            const GeneralCallbackResult r{err};
            if (fail) fail(r);
            if (complete) complete(r);
        });
        return task;
    }
    task->markCounted();
    rt.postGated(gate, [task, success = std::move(success), complete = std::move(complete)]() {
        const GeneralCallbackResult r{"connectSocket:ok"};
        if (success) success(r);
        if (complete) complete(r);
        task->start();
    });
    return task;
}

} // namespace tongdao
