// The seed's sample for wx.closeSocket and wx.onSocketClose:
//
//   wx.connectSocket({
//     url: 'test.php'
//   })
//
//   //注意这里有时序问题,
//   //如果 wx.connectSocket 还没回调 wx.onSocketOpen,而先调用 wx.closeSocket,那么就做不到关闭 WebSocket 的目的。
//   //必须在 WebSocket 打开期间调用 wx.closeSocket 才能关闭。
//   wx.onSocketOpen(function() {
//     wx.closeSocket()
//   })
//
//   wx.onSocketClose(function(res) {
//     console.log('WebSocket 已关闭!')   // "WebSocket closed!"
//   })
//
// The comment in the sample warns of a timing pitfall: in the mini-program, calling
// wx.closeSocket before onSocketOpen has fired does not close anything, so it must be
// called while the socket is open, hence the close inside onSocketOpen. tongdao has no
// such pitfall: a close before open cancels the connect and still reports onSocketClose.
// Run with --before-open as the second argument to see that: it calls closeSocket right
// after connectSocket, and "WebSocket closed!" still comes.
//
// usage: example_close_socket [ws://127.0.0.1:8080/echo] [--before-open]

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/wx.hpp"

#include <cstdio>
#include <string>
#include <string_view>

int main(int argc, char** argv) {
    const std::string url = argc > 1 ? argv[1] : "ws://127.0.0.1:8080/echo";
    const bool beforeOpen = argc > 2 && std::string_view(argv[2]) == "--before-open";
    bool opened = false;
    int closeCode = 0;

    tongdao::wx::connectSocket({.url = url});

    tongdao::wx::onSocketOpen([&](const tongdao::OnOpenResult&) {
        opened = true;
        std::printf("WebSocket connection open!\n");
        tongdao::wx::closeSocket();
    });
    tongdao::wx::onSocketClose([&](const tongdao::OnCloseResult& res) {
        closeCode = res.code;
        std::printf("WebSocket closed!\n"); // WebSocket 已关闭!
        std::printf("  code: %d\n", res.code);
    });
    tongdao::wx::onSocketError([](const tongdao::OnErrorResult& r) { std::printf("error: %s\n", r.errMsg.c_str()); });

    // The pitfall, fixed: this cancels the connect, and onSocketClose still runs.
    if (beforeOpen) tongdao::wx::closeSocket();

    tongdao::defaultRuntime().run();
    // With --before-open, the socket must not have opened at all.
    return closeCode == 1000 && opened != beforeOpen ? 0 : 1;
}
