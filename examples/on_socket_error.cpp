// The seed's sample for wx.onSocketError:
//
//   wx.connectSocket({
//     url: 'test.php'
//   })
//   wx.onSocketOpen(function(res){
//     console.log('WebSocket连接已打开!')          // "WebSocket connection open!"
//   })
//   wx.onSocketError(function(res){
//     console.log('WebSocket连接打开失败,请检查!')  // "WebSocket failed to open, please check!"
//   })
//
// Point it at a port where nothing listens to see the error path; against a live server
// it opens instead (and then closes, so that run() returns). It exits 0 when one of the
// two listeners ran, as the sample shows, and 1 when neither did.
//
// usage: example_on_socket_error [ws://127.0.0.1:8080/echo]

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/wx.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    const std::string url = argc > 1 ? argv[1] : "ws://127.0.0.1:8080/echo";
    bool opened = false;
    bool failed = false;

    tongdao::wx::connectSocket({.url = url});
    tongdao::wx::onSocketOpen([&](const tongdao::OnOpenResult&) {
        opened = true;
        std::printf("WebSocket connection open!\n"); // WebSocket连接已打开!
        tongdao::wx::closeSocket();
    });
    tongdao::wx::onSocketError([&](const tongdao::OnErrorResult& res) {
        failed = true;
        std::printf("WebSocket failed to open, please check!\n"); // WebSocket连接打开失败,请检查!
        std::printf("  errMsg: %s\n", res.errMsg.c_str());        // what went wrong, beyond the sample
    });

    tongdao::defaultRuntime().run();
    return opened || failed ? 0 : 1;
}
