// The seed's first sample: wx.connectSocket with every option it shows.
//
//   wx.connectSocket({
//     url: 'test.php',
//     data: { x: '', y: '' },
//     header: { 'content-type': 'application/json' },
//     method: "GET"
//   })
//
// The sample logs nothing; this program prints the errMsg that `success` (or `fail`) gets
// and the header fields of the server's answer, then closes so that run() can return.
//
// usage: example_connect_with_header [ws://127.0.0.1:8080/echo]

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/wx.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    const std::string url = argc > 1 ? argv[1] : "ws://127.0.0.1:8080/echo";
    bool accepted = false;
    bool opened = false;
    int closeCode = 0;

    // Designated initializers must follow the order of ConnectSocketOptions' members, so
    // `data` comes after `header` and `method` here, unlike in the JavaScript.
    tongdao::wx::connectSocket({
        .url = url,
        .header = {{"content-type", "application/json"}},
        .method = "GET", // the only method a WebSocket handshake can use
        // `data` is a legacy option: accepted and ignored, as the mini-program runtime does.
        .data = {{"x", ""}, {"y", ""}},
        .success = [&](const tongdao::GeneralCallbackResult& r) {
            accepted = true;
            std::printf("%s\n", r.errMsg.c_str()); // connectSocket:ok
        },
        .fail = [](const tongdao::GeneralCallbackResult& r) { std::printf("%s\n", r.errMsg.c_str()); },
    });

    tongdao::wx::onSocketOpen([&](const tongdao::OnOpenResult& r) {
        opened = true;
        std::printf("WebSocket connection open!\n");
        for (const auto& [name, value] : r.header) std::printf("  %s: %s\n", name.c_str(), value.c_str());
        tongdao::wx::closeSocket();
    });
    tongdao::wx::onSocketError([](const tongdao::OnErrorResult& r) { std::printf("error: %s\n", r.errMsg.c_str()); });
    tongdao::wx::onSocketClose([&](const tongdao::OnCloseResult& r) { closeCode = r.code; });

    tongdao::defaultRuntime().run();
    return accepted && opened && closeCode == 1000 ? 0 : 1;
}
