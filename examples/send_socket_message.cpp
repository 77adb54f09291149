// The seed's sample for wx.sendSocketMessage, ported literally: sends may only be made
// after onSocketOpen, so messages wait in socketMsgQueue until then.
//
//   var socketOpen = false
//   var socketMsgQueue = []
//   wx.connectSocket({
//     url: 'test.php'
//   })
//
//   wx.onSocketOpen(function(res) {
//     socketOpen = true
//     for (var i = 0; i < socketMsgQueue.length; i++){
//        sendSocketMessage(socketMsgQueue[i])
//     }
//     socketMsgQueue = []
//   })
//
//   function sendSocketMessage(msg) {
//     if (socketOpen) {
//       wx.sendSocketMessage({
//         data:msg
//       })
//     } else {
//        socketMsgQueue.push(msg)
//     }
//   }
//
// tongdao does this by itself: a send made while connecting waits and leaves in order on
// open (ConnectSocketOptions::queueWhileConnecting, on by default), so the queue below is
// only needed to show the pattern. Beyond the sample, the program listens for the echo
// server's answers and closes once every message has come back.
//
// Everything here runs on one thread: main() until run(), then the callbacks inside run().
//
// usage: example_send_socket_message [ws://127.0.0.1:8080/echo]

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/wx.hpp"

#include <cstdio>
#include <string>
#include <variant>
#include <vector>

namespace {

bool socketOpen = false;
std::vector<std::string> socketMsgQueue;

void sendSocketMessage(const std::string& msg) {
    if (socketOpen) {
        std::printf("sending: %s\n", msg.c_str());
        tongdao::wx::sendSocketMessage({
            .data = msg,
            .fail = [](const tongdao::GeneralCallbackResult& r) { std::printf("%s\n", r.errMsg.c_str()); },
        });
    } else {
        std::printf("queued: %s\n", msg.c_str());
        socketMsgQueue.push_back(msg);
    }
}

} // namespace

int main(int argc, char** argv) {
    const std::string url = argc > 1 ? argv[1] : "ws://127.0.0.1:8080/echo";
    const std::vector<std::string> messages = {"first", "second", "third"};
    std::size_t echoed = 0;
    bool inOrder = true;

    tongdao::wx::connectSocket({.url = url});

    tongdao::wx::onSocketOpen([](const tongdao::OnOpenResult&) {
        socketOpen = true;
        for (const auto& msg : socketMsgQueue) sendSocketMessage(msg);
        socketMsgQueue.clear();
    });
    tongdao::wx::onSocketMessage([&](const tongdao::OnMessageResult& res) {
        const auto* text = std::get_if<std::string>(&res.data);
        std::printf("echo: %s\n", text ? text->c_str() : "(binary)");
        if (!text || echoed >= messages.size() || *text != messages[echoed]) inOrder = false;
        if (++echoed == messages.size()) tongdao::wx::closeSocket();
    });
    tongdao::wx::onSocketError([](const tongdao::OnErrorResult& r) { std::printf("error: %s\n", r.errMsg.c_str()); });

    // Before open: these go to socketMsgQueue.
    for (const auto& m : messages) sendSocketMessage(m);

    tongdao::defaultRuntime().run();
    return inOrder && echoed == messages.size() ? 0 : 1;
}
