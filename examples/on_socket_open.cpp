// The seed's sample for wx.onSocketOpen:
//
//   wx.connectSocket({
//     url: 'test.php'
//   })
//   wx.onSocketOpen(function(res) {
//     console.log('WebSocket连接已打开!')   // "WebSocket connection open!"
//   })
//
// One addition: the listener closes the socket, so that run() returns once it has closed.
//
// usage: example_on_socket_open [ws://127.0.0.1:8080/echo]

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/wx.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    const std::string url = argc > 1 ? argv[1] : "ws://127.0.0.1:8080/echo";
    bool opened = false;

    tongdao::wx::connectSocket({.url = url});
    // Set after connectSocket, as in the sample: nothing runs before run(), so it is in time.
    tongdao::wx::onSocketOpen([&](const tongdao::OnOpenResult&) {
        opened = true;
        std::printf("WebSocket connection open!\n"); // WebSocket连接已打开!
        tongdao::wx::closeSocket();
    });
    tongdao::wx::onSocketError([](const tongdao::OnErrorResult& r) { std::printf("error: %s\n", r.errMsg.c_str()); });

    tongdao::defaultRuntime().run();
    return opened ? 0 : 1;
}
