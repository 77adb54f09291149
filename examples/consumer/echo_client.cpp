// echo_client: tongdao's client library against an echo server, as a project of its own
// would write it against an installed tongdao (see README.md).
//
// usage: echo_client URL [MESSAGE]     e.g. echo_client ws://127.0.0.1:9001/echo hello
//
// Connects, sends MESSAGE (default "hello from a consumer"), and exits 0 once the same
// text has come back and the socket has closed; 1 on an error, a different answer, or
// nothing within 10 seconds.

#include <tongdao/client/runtime.hpp>
#include <tongdao/client/socket_task.hpp>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <variant>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: echo_client URL [MESSAGE]\n");
        return 2;
    }
    const std::string url = argv[1];
    const std::string message = argc > 2 ? argv[2] : "hello from a consumer";

    // The callbacks run on the runtime's own thread; this one waits, for 10 s at most.
    tongdao::Runtime runtime;
    runtime.start();
    std::promise<bool> done;
    auto result = done.get_future();
    // Set and read on the runtime's thread only.
    bool echoed = false, settled = false;

    auto task = tongdao::connectSocket(runtime, {.url = url, .timeout = 10000});
    // The runtime keeps the task alive while it is open; a listener holding the shared_ptr
    // would keep it alive for ever.
    tongdao::SocketTask* socket = task.get();
    socket->onOpen([socket, message](const tongdao::OnOpenResult&) { socket->send({.data = message}); });
    socket->onMessage([socket, message, &echoed](const tongdao::OnMessageResult& res) {
        const auto* text = std::get_if<std::string>(&res.data);
        echoed = text && *text == message;
        std::printf("echo: %s\n", text ? text->c_str() : "<binary>");
        socket->close({.code = 1000, .reason = "done"});
    });
    socket->onError([](const tongdao::OnErrorResult& res) { std::fprintf(stderr, "error: %s\n", res.errMsg.c_str()); });
    socket->onClose([&](const tongdao::OnCloseResult& res) {
        std::printf("closed: %d\n", res.code);
        if (!settled) done.set_value(echoed && res.code == 1000);
        settled = true;
    });
    task.reset();

    const bool ok = result.wait_for(std::chrono::seconds(10)) == std::future_status::ready && result.get();
    if (!ok) std::fprintf(stderr, "echo_client: no echo of \"%s\" from %s\n", message.c_str(), url.c_str());
    runtime.stop();
    return ok ? 0 : 1;
}
