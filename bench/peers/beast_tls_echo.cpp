// beast_tls_echo: a Boost.Beast wss:// echo peer for bench/tls_deflate_compare.py.
//
// Built like Beast's own asynchronous SSL server example: a listener that accepts, and a
// session per connection that runs the TLS handshake on an ssl_stream over a tcp_stream (with
// a deadline), then the WebSocket handshake, then reads a whole message into a flat_buffer,
// writes it back with the same type and reads again (one write in flight). One io_context run
// by one thread. The same deliberate differences from that example as beast_echo.cpp: no strand
// (one thread, concurrency hint 1) and TCP_NODELAY on every accepted socket.
// TLS 1.2 and 1.3 only, with the same TLS 1.2 suites as tongdao-server (forward secrecy, AEAD).
//
//   beast_tls_echo PORT CERT KEY [MAX_SECONDS] [--deflate[=LEVEL]]
//       listens on 127.0.0.1:PORT with the PEM certificate chain CERT and key KEY; exits on
//       SIGTERM/SIGINT or after MAX_SECONDS (default 3600). --deflate accepts permessage-deflate
//       with Beast's defaults (compression level 8, memLevel 4, context takeover if the client
//       allows it); LEVEL overrides the level.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

struct Config {
    bool deflate = false;
    int deflateLevel = -1;  // -1: Beast's default
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket&& socket, ssl::context& ctx, const Config& cfg) : ws_(std::move(socket), ctx), cfg_(cfg) {}

    void run() {
        // The TLS handshake must finish within the deadline; the WebSocket timeouts take over after it.
        beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
        ws_.next_layer().async_handshake(ssl::stream_base::server,
                                         beast::bind_front_handler(&Session::onTlsHandshake, shared_from_this()));
    }

private:
    void onTlsHandshake(beast::error_code ec) {
        if (ec) return;  // a failed handshake just drops the session
        beast::get_lowest_layer(ws_).expires_never();
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        if (cfg_.deflate) {
            websocket::permessage_deflate pmd;
            pmd.server_enable = true;
            if (cfg_.deflateLevel >= 0) pmd.compLevel = cfg_.deflateLevel;
            ws_.set_option(pmd);
        }
        ws_.async_accept(beast::bind_front_handler(&Session::onAccept, shared_from_this()));
    }

    void onAccept(beast::error_code ec) {
        if (ec) return;
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

    websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws_;
    beast::flat_buffer buffer_;
    const Config& cfg_;
};

class Listener : public std::enable_shared_from_this<Listener> {
public:
    Listener(net::io_context& ioc, ssl::context& ctx, const tcp::endpoint& endpoint, const Config& cfg)
        : ioc_(ioc), ctx_(ctx), acceptor_(ioc), cfg_(cfg) {
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
            std::make_shared<Session>(std::move(socket), ctx_, cfg_)->run();
        }
        doAccept();
    }

    net::io_context& ioc_;
    ssl::context& ctx_;
    tcp::acceptor acceptor_;
    const Config& cfg_;
};

}  // namespace

int main(int argc, char** argv) {
    Config cfg;
    const char* positional[4] = {};
    int count = 0;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--deflate") == 0) {
            cfg.deflate = true;
        } else if (std::strncmp(argv[i], "--deflate=", 10) == 0) {
            cfg.deflate = true;
            cfg.deflateLevel = std::atoi(argv[i] + 10);
        } else if (count < 4) {
            positional[count++] = argv[i];
        }
    }
    if (count < 3 || cfg.deflateLevel > 9) {
        std::fprintf(stderr, "usage: beast_tls_echo PORT CERT KEY [MAX_SECONDS] [--deflate[=LEVEL]]\n");
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(positional[0]));
    const double maxSeconds = count > 3 ? std::atof(positional[3]) : 3600.0;
    try {
        ssl::context ctx{ssl::context::tls_server};
        ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
        SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
        SSL_CTX_set_cipher_list(ctx.native_handle(),
                                "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
        ctx.use_certificate_chain_file(positional[1]);
        ctx.use_private_key_file(positional[2], ssl::context::pem);

        net::io_context ioc{1};  // concurrency hint 1: one thread, no internal locking needed
        std::make_shared<Listener>(ioc, ctx, tcp::endpoint{net::ip::make_address("127.0.0.1"), port}, cfg)->run();
        net::signal_set signals(ioc, SIGINT, SIGTERM);
        signals.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });
        net::steady_timer cap(ioc, std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(maxSeconds)));
        cap.async_wait([&ioc](beast::error_code) { ioc.stop(); });
        ioc.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "beast_tls_echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
