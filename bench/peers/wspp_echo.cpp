// wspp_echo: a websocketpp WebSocket echo peer for bench/echo_compare.py.
//
// websocketpp's plain (no TLS) Asio configuration, its own io_service run by one thread,
// access and error logging switched off so that logging is not what gets measured. Every
// message goes back with its opcode, the way websocketpp's echo example does it.
// TCP_NODELAY is set on every socket, as tongdao and Node's ws do, so pipelined small
// echoes do not wait for delayed ACKs (Nagle).
//
//   wspp_echo PORT [MAX_SECONDS]    listens on 127.0.0.1:PORT; exits on SIGTERM/SIGINT or after
//                                   MAX_SECONDS (default 3600)

#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>

using Server = websocketpp::server<websocketpp::config::asio>;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: wspp_echo PORT [MAX_SECONDS]\n");
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(argv[1]));
    const double maxSeconds = argc > 2 ? std::atof(argv[2]) : 3600.0;
    try {
        Server server;
        server.clear_access_channels(websocketpp::log::alevel::all);
        server.clear_error_channels(websocketpp::log::elevel::all);
        server.init_asio();
        server.set_reuse_addr(true);
        server.set_listen_backlog(4096);
        server.set_socket_init_handler([](websocketpp::connection_hdl, boost::asio::ip::tcp::socket& s) {
            boost::system::error_code ignored;
            s.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
        });
        server.set_message_handler([&server](websocketpp::connection_hdl hdl, Server::message_ptr msg) {
            websocketpp::lib::error_code ec;  // a send to a closing connection is not an error worth stopping for
            server.send(hdl, msg->get_payload(), msg->get_opcode(), ec);
        });
        server.listen(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
        server.start_accept();

        auto& io = server.get_io_service();
        boost::asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&io](const boost::system::error_code&, int) { io.stop(); });
        boost::asio::steady_timer cap(io, std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                              std::chrono::duration<double>(maxSeconds)));
        cap.async_wait([&io](const boost::system::error_code&) { io.stop(); });
        server.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "wspp_echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
