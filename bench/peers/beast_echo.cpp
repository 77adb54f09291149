// beast_echo: a Boost.Beast WebSocket echo peer for bench/echo_compare.py.
//
// Written the way Beast's own asynchronous server example is: a listener that accepts,
// and a session per connection that reads a whole message into a flat_buffer, writes it
// back with the same type, and reads again (one write in flight). One io_context run by
// one thread. Two deliberate differences from that example:
//   - no strand per session: with a single thread and concurrency hint 1 nothing runs
//     concurrently, and tongdao's loops make the same choice;
//   - TCP_NODELAY on every accepted socket, as tongdao and Node's ws do, so pipelined small
//     echoes do not wait for delayed ACKs (Nagle).
// Beast's defaults stay as they are otherwise (permessage-deflate is off by default).
//
//   beast_echo PORT [MAX_SECONDS] [--deflate[=LEVEL]]
//       listens on 127.0.0.1:PORT; exits on SIGTERM/SIGINT or after MAX_SECONDS (default 3600).
//       --deflate accepts permessage-deflate with Beast's defaults (compression level 8,
//       memLevel 4, context takeover if the client allows it); LEVEL overrides the level.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

int deflateLevel = -2;  // -2: no permessage-deflate; -1: Beast's default level

class Session : public std::enable_shared_from_this<Session> {
public:
    explicit Session(tcp::socket&& socket) : ws_(std::move(socket)) {}

    void run() {
        // The example's settings: server timeouts (idle pings, handshake deadline) as Beast suggests.
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        if (deflateLevel >= -1) {
            websocket::permessage_deflate pmd;
            pmd.server_enable = true;
            if (deflateLevel >= 0) pmd.compLevel = deflateLevel;
            ws_.set_option(pmd);
        }
        ws_.async_accept(beast::bind_front_handler(&Session::onAccept, shared_from_this()));
    }

private:
    void onAccept(beast::error_code ec) {
        if (ec) return;  // a failed handshake just drops the session
        doRead();
    }

    void doRead() { ws_.async_read(buffer_, beast::bind_front_handler(&Session::onRead, shared_from_this())); }

    void onRead(beast::error_code ec, std::size_t) {
        if (ec) return;  // closed or reset by the peer: the session ends with its last handler
        ws_.text(ws_.got_text());  // echo with the type it came with
        ws_.async_write(buffer_.data(), beast::bind_front_handler(&Session::onWrite, shared_from_this()));
    }

    void onWrite(beast::error_code ec, std::size_t) {
        if (ec) return;
        buffer_.consume(buffer_.size());
        doRead();
    }

    websocket::stream<beast::tcp_stream> ws_;
    beast::flat_buffer buffer_;
};

class Listener : public std::enable_shared_from_this<Listener> {
public:
    Listener(net::io_context& ioc, const tcp::endpoint& endpoint) : ioc_(ioc), acceptor_(ioc) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(net::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(net::socket_base::max_listen_connections);
    }

    void run() { doAccept(); }

private:
    void doAccept() { acceptor_.async_accept(ioc_, beast::bind_front_handler(&Listener::onAccept, shared_from_this())); }

    void onAccept(beast::error_code ec, tcp::socket socket) {
        if (!ec) {
            beast::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            std::make_shared<Session>(std::move(socket))->run();
        }
        doAccept();
    }

    net::io_context& ioc_;
    tcp::acceptor acceptor_;
};

}  // namespace

int main(int argc, char** argv) {
    const char* positional[2] = {};
    int count = 0;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--deflate") == 0) deflateLevel = -1;
        else if (std::strncmp(argv[i], "--deflate=", 10) == 0) deflateLevel = std::atoi(argv[i] + 10);
        else if (count < 2) positional[count++] = argv[i];
    }
    if (count < 1 || deflateLevel > 9) {
        std::fprintf(stderr, "usage: beast_echo PORT [MAX_SECONDS] [--deflate[=LEVEL]]\n");
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(positional[0]));
    const double maxSeconds = count > 1 ? std::atof(positional[1]) : 3600.0;
    try {
        net::io_context ioc{1};  // concurrency hint 1: one thread, no internal locking needed
        std::make_shared<Listener>(ioc, tcp::endpoint{net::ip::make_address("127.0.0.1"), port})->run();
        net::signal_set signals(ioc, SIGINT, SIGTERM);
        signals.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });
        net::steady_timer cap(ioc, std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(maxSeconds)));
        cap.async_wait([&ioc](beast::error_code) { ioc.stop(); });
        ioc.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "beast_echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
