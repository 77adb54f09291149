// Servers that get it wrong: refusals, broken handshakes, protocol violations, lost
// connections. Each gives a clear errMsg and close code, and nothing crashes or leaks.

#include "test_server.hpp"

#include <gtest/gtest.h>

#include <netinet/tcp.h>

namespace {

using namespace tongdao;
using namespace tongdao::test;
using Strings = std::vector<std::string>;

ConnectSocketOptions opts(std::string url) {
    ConnectSocketOptions o;
    o.url = std::move(url);
    return o;
}

/** Connects to a server running `script`; returns what the task reported. */
Strings runAgainst(TestServer::Script script, ConnectSocketOptions o = {}) {
    TestServer server(std::move(script));
    Runtime rt;
    if (o.url.empty()) o.url = server.url();
    CallLog calls;
    auto task = connectSocket(rt, calls.wired(o));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(calls.snapshot(), okCalls("connectSocket"));
    EXPECT_EQ(task->readyState(), SocketTask::CLOSED);
    EXPECT_EQ(rt.activeTasks(), 0u);
    return log->snapshot();
}

/** A script that reads the request and answers `bytes` (the request's key replaces "{accept}"). */
TestServer::Script answer(std::string bytes, bool thenClose = true) {
    return [bytes, thenClose](Peer& p) {
        if (!p.readRequest()) return;
        std::string out = bytes;
        const auto at = out.find("{accept}");
        if (at != std::string::npos) out.replace(at, 8, computeAcceptKey(p.request().key));
        p.sendRaw(out);
        if (thenClose) p.closeTcp();
        else p.idle();
    };
}

// --- refusals and broken handshakes ---------------------------------------------------------

TEST(BadServer, Answers404) {
    EXPECT_EQ(runAgainst([](Peer& p) {
                  if (p.readRequest()) p.sendRaw(rejectResponse(404, "no such path"));
                  p.idle();
              }),
              (Strings{"error:connectSocket:fail handshake failed: server answered 404 Not Found", "close:1006:"}));
}

TEST(BadServer, Answers500WithItsOwnReason) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 500 Database On Fire\r\nContent-Length: 0\r\n\r\n", false)),
              (Strings{"error:connectSocket:fail handshake failed: server answered 500 Database On Fire", "close:1006:"}));
}

TEST(BadServer, Answers200) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello")),
              (Strings{"error:connectSocket:fail handshake failed: server answered 200 OK", "close:1006:"}));
}

TEST(BadServer, WrongAcceptKey) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                                false)),
              (Strings{"error:connectSocket:fail handshake failed: wrong Sec-WebSocket-Accept", "close:1006:"}));
}

TEST(BadServer, MissingAcceptKey) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                                false)),
              (Strings{"error:connectSocket:fail handshake failed: missing Sec-WebSocket-Accept", "close:1006:"}));
}

TEST(BadServer, UpgradeNotWebSocket) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: {accept}\r\n\r\n",
                                false)),
              (Strings{"error:connectSocket:fail handshake failed: response Upgrade is not websocket", "close:1006:"}));
}

TEST(BadServer, ConnectionNotUpgrade) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
                                "Sec-WebSocket-Accept: {accept}\r\n\r\n",
                                false)),
              (Strings{"error:connectSocket:fail handshake failed: response Connection is not upgrade", "close:1006:"}));
}

TEST(BadServer, ProtocolNotOffered) {
    auto o = opts("");
    o.protocols = {"chat"};
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: other\r\n\r\n",
                                false),
                         o),
              (Strings{"error:connectSocket:fail handshake failed: server chose a sub-protocol not offered",
                       "close:1006:"}));
}

TEST(BadServer, ProtocolWhenNoneOffered) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
                                false)),
              (Strings{"error:connectSocket:fail handshake failed: server chose a sub-protocol not offered",
                       "close:1006:"}));
}

TEST(BadServer, ExtensionNotOffered) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: x-custom\r\n\r\n",
                                false)),
              (Strings{"error:connectSocket:fail handshake failed: server chose an extension not offered",
                       "close:1006:"}));
}

TEST(BadServer, GarbageInsteadOfHttp) {
    const auto events = runAgainst(answer("SSH-2.0-OpenSSH_9.2\r\n\r\n", false));
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].rfind("error:connectSocket:fail handshake failed: ", 0), 0u) << events[0];
    EXPECT_EQ(events[1], "close:1006:");
}

TEST(BadServer, EndlessHeaders) {
    // A response head over the parser's limit fails instead of growing.
    std::string head = "HTTP/1.1 101 Switching Protocols\r\n";
    for (int i = 0; i < 400; ++i) head += "X-Filler-" + std::to_string(i) + ": " + std::string(40, 'f') + "\r\n";
    head += "\r\n";
    const auto events = runAgainst(answer(head, false));
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].rfind("error:connectSocket:fail handshake failed: ", 0), 0u) << events[0];
    EXPECT_EQ(events[1], "close:1006:");
}

TEST(BadServer, ClosesBeforeAnswering) {
    EXPECT_EQ(runAgainst([](Peer& p) {
                  if (p.readRequest()) p.closeTcp();
              }),
              (Strings{"error:connectSocket:fail connection closed during the handshake", "close:1006:"}));
}

TEST(BadServer, ClosesHalfwayThroughThe101) {
    EXPECT_EQ(runAgainst(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConn")),
              (Strings{"error:connectSocket:fail connection closed during the handshake", "close:1006:"}));
}

TEST(BadServer, NeverAnswersTimesOut) {
    auto o = opts("");
    o.timeout = 200;
    EXPECT_EQ(runAgainst(answer("", false), o),
              (Strings{"error:connectSocket:fail timeout: not open within 200 ms", "close:1006:"}));
}

// --- after the handshake ----------------------------------------------------------------------

// The server sends `raw` after the handshake, then reads the client's close frame and waits
// for its TCP close. Returns the task's events and the close the server received.
struct Failure {
    Strings events;
    std::optional<Rec> serverSaw;
};
Failure afterTheHandshakeServerSends(ByteVec raw) {
    TestServer server([raw](Peer& p) {
        if (!p.handshake()) return;
        p.sendRaw(raw);
        p.next(); // the client's close frame
        p.waitEof();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_TRUE(server.waitScripts());
    return {log->snapshot(), server.firstEvent(0, "close")};
}

TEST(BadServer, SendsAMaskedFrame) {
    const auto f = afterTheHandshakeServerSends(frame(0x1, "masked!", true, true));
    EXPECT_EQ(f.events, (Strings{"open", "error:server frame masked", "close:1002:server frame masked"}));
    EXPECT_EQ(f.serverSaw, closeEv(1002, "server frame masked"));
}

TEST(BadServer, SendsInvalidUtf8) {
    const auto f = afterTheHandshakeServerSends(frame(0x1, "\xc3\x28"));
    EXPECT_EQ(f.events, (Strings{"open", "error:invalid UTF-8 in text", "close:1007:invalid UTF-8 in text"}));
    EXPECT_EQ(f.serverSaw, closeEv(1007, "invalid UTF-8 in text"));
}

TEST(BadServer, SendsAReservedOpcode) {
    const auto f = afterTheHandshakeServerSends(frame(0x3, "?"));
    EXPECT_EQ(f.events, (Strings{"open", "error:reserved opcode", "close:1002:reserved opcode"}));
}

TEST(BadServer, AnnouncesAFrameTooBig) {
    // A header for a 32 MiB frame: refused at the header, nothing is buffered.
    const auto f = afterTheHandshakeServerSends(bytes({0x82, 127, 0, 0, 0, 0, 0x02, 0, 0, 0}));
    EXPECT_EQ(f.events, (Strings{"open", "error:frame too big", "close:1009:frame too big"}));
}

TEST(BadServer, SendsAnInvalidCloseCode) {
    const auto f = afterTheHandshakeServerSends(frame(0x8, closePayload(1005)));
    EXPECT_EQ(f.events, (Strings{"open", "error:invalid close code", "close:1002:invalid close code"}));
}

TEST(BadServer, ClosesMidFrame) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        auto f = frame(0x2, std::string(100, 'x'));
        f.resize(20); // the header and a few bytes of payload, then nothing
        p.sendRaw(f);
        std::this_thread::sleep_for(Ms(50));
        p.closeTcp();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "error:connection lost", "close:1006:"}));
}

TEST(BadServer, ClosesMidFragmentedMessage) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendRaw(frame(0x1, "first part ", false));
        std::this_thread::sleep_for(Ms(50));
        p.closeTcp();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "error:connection lost", "close:1006:"}));
}

TEST(BadServer, DropsTheConnection) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.sendText("last words");
        p.closeTcp();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "text:last words", "error:connection lost", "close:1006:"}));
}

TEST(BadServer, ResetsTheConnection) {
    TestServer server([](Peer& p) {
        if (!p.handshake()) return;
        p.next(Ms(2000)); // the client's message
        linger l{1, 0};   // close with RST
        ::setsockopt(p.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        p.closeTcp();
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) {
        SendOptions o;
        o.data = std::string("hi");
        t->send(o);
    });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt));
    const auto events = log->snapshot();
    ASSERT_EQ(events.size(), 3u) << ::testing::PrintToString(events);
    EXPECT_EQ(events[0], "open");
    EXPECT_EQ(events[1].rfind("error:connection lost", 0), 0u) << events[1];
    EXPECT_EQ(events[2], "close:1006:");
}

TEST(BadServer, ClosesWithoutAnsweringOurClose) {
    // The client's close frame is never answered and TCP stays up: the client gives up
    // after its close timeout (seconds) and reports 1006.
    TestServer server([](Peer& p) {
        if (!p.readRequest() || !p.sendRaw(acceptResponse(p.request().key))) return;
        p.idle(Ms(9000));
    });
    Runtime rt;
    auto task = connectSocket(rt, opts(server.url()));
    SocketTask* t = task.get();
    task->onOpen([t](const OnOpenResult&) { t->close({}); });
    auto log = TaskLog::attach(*task);
    EXPECT_TRUE(runFor(rt, Ms(9000)));
    EXPECT_EQ(log->snapshot(), (Strings{"open", "error:close timeout", "close:1006:"}));
}

} // namespace
