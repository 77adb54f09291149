// echo_server: a WebSocket echo on tongdao's server library, as a project of its own would
// write it against an installed tongdao (see README.md).
//
// usage: echo_server [PORT]     PORT 0 (the default) picks a free one
//
// Prints "listening on PORT" once it accepts connections; every message on /echo comes
// back with its type; SIGINT or SIGTERM stops it (status 0).

#include <tongdao/server/server.hpp>

#include <cstdio>
#include <cstdlib>
#include <string_view>

int main(int argc, char** argv) {
    const long port = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 0;
    if (port < 0 || port > 65535) {
        std::fprintf(stderr, "usage: echo_server [PORT]\n");
        return 2;
    }

    tongdao::Server server({.host = "127.0.0.1", .port = static_cast<std::uint16_t>(port), .threads = 1});
    server.ws("/echo", {
        .message = [](tongdao::WebSocket& ws, std::string_view message, tongdao::MessageKind kind) {
            ws.send(message, kind);
        },
    });
    server.listen();
    server.handleSignals();
    std::printf("listening on %u\n", static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    server.run();
    return 0;
}
