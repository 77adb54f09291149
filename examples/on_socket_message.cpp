// The seed's sample for wx.onSocketMessage:
//
//   wx.connectSocket({
//     url: 'test.php'
//   })
//
//   wx.onSocketMessage(function(res) {
//     console.log('收到服务器内容:' + res.data)   // "server says: " + res.data
//   })
//
// An echo server says nothing unprompted, so this program sends one message on open and
// closes after the answer.
//
// usage: example_on_socket_message [ws://127.0.0.1:8080/echo]

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/wx.hpp"

#include <cstdio>
#include <string>
#include <variant>

int main(int argc, char** argv) {
    const std::string url = argc > 1 ? argv[1] : "ws://127.0.0.1:8080/echo";
    bool heard = false;

    tongdao::wx::connectSocket({.url = url});

    tongdao::wx::onSocketMessage([&](const tongdao::OnMessageResult& res) {
        heard = true;
        // res.data is text (std::string) or binary (ArrayBuffer), as in the mini-program.
        if (const auto* text = std::get_if<std::string>(&res.data)) {
            std::printf("server says: %s\n", text->c_str()); // 收到服务器内容:
        } else {
            std::printf("server says: <binary %zu bytes>\n", std::get<tongdao::ArrayBuffer>(res.data).size());
        }
        tongdao::wx::closeSocket();
    });
    tongdao::wx::onSocketOpen([](const tongdao::OnOpenResult&) {
        tongdao::wx::sendSocketMessage({.data = std::string("hello from tongdao")});
    });
    tongdao::wx::onSocketError([](const tongdao::OnErrorResult& r) { std::printf("error: %s\n", r.errMsg.c_str()); });

    tongdao::defaultRuntime().run();
    return heard ? 0 : 1;
}
