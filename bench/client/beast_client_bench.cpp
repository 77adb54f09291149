// beast_client_bench: the same measurement as tongdao_client_bench with a Boost.Beast
// client, in the style of Beast's async client example: one io_context, one thread, one
// read and at most one write in flight per connection (Beast's rule).
//
//   beast_client_bench --host 127.0.0.1 --port P [--path /echo] [--connections C] [--size N]
//                      [--mode rr|pipe] [--window W] [--duration S] [--warmup S]

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::atomic<long> received{0}, opened{0}, failures{0};

double cpuSeconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(net::io_context& io, const std::string& payload, int window)
        : ws_(net::make_strand(io)), payload_(payload), window_(window) {}

    void start(const tcp::endpoint& ep, const std::string& host, const std::string& path) {
        host_ = host;
        path_ = path;
        beast::get_lowest_layer(ws_).async_connect(ep, beast::bind_front_handler(&Session::onConnect, shared_from_this()));
    }
    void stop() {
        stopping_ = true;
    }

private:
    void onConnect(beast::error_code ec) {
        if (ec) return fail(ec);
        beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true));
        ws_.binary(true);
        ws_.async_handshake(host_, path_, beast::bind_front_handler(&Session::onHandshake, shared_from_this()));
    }
    void onHandshake(beast::error_code ec) {
        if (ec) return fail(ec);
        ++opened;
        read();
        write();
    }
    void write() {
        if (writing_ || stopping_ || inFlight_ >= window_) return;
        writing_ = true;
        ++inFlight_;
        ws_.async_write(net::buffer(payload_), beast::bind_front_handler(&Session::onWrite, shared_from_this()));
    }
    void onWrite(beast::error_code ec, std::size_t) {
        writing_ = false;
        if (ec) return fail(ec);
        write();
    }
    void read() {
        ws_.async_read(buffer_, beast::bind_front_handler(&Session::onRead, shared_from_this()));
    }
    void onRead(beast::error_code ec, std::size_t) {
        if (ec) return fail(ec);
        buffer_.consume(buffer_.size());
        received.fetch_add(1, std::memory_order_relaxed);
        --inFlight_;
        if (stopping_) return;
        read();
        write();
    }
    void fail(beast::error_code ec) {
        if (stopping_ || ec == net::error::operation_aborted) return;
        if (++failures <= 3) std::fprintf(stderr, "beast_client_bench: %s\n", ec.message().c_str());
    }

    websocket::stream<beast::tcp_stream> ws_;
    beast::flat_buffer buffer_;
    const std::string& payload_;
    std::string host_, path_;
    int window_;
    int inFlight_ = 0;
    bool writing_ = false;
    bool stopping_ = false;
};

} // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1", path = "/echo";
    unsigned short port = 0;
    int connections = 100, window = 16;
    std::size_t size = 20;
    bool pipe = false;
    double duration = 5, warmup = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--host") host = v;
        else if (a == "--port") port = static_cast<unsigned short>(std::atoi(v.c_str()));
        else if (a == "--path") path = v;
        else if (a == "--connections") connections = std::atoi(v.c_str());
        else if (a == "--size") size = static_cast<std::size_t>(std::atol(v.c_str()));
        else if (a == "--mode") pipe = v == "pipe";
        else if (a == "--window") window = std::atoi(v.c_str());
        else if (a == "--duration") duration = std::atof(v.c_str());
        else if (a == "--warmup") warmup = std::atof(v.c_str());
    }
    net::io_context io(1);
    const std::string payload(size, 'x');
    const tcp::endpoint ep(net::ip::make_address(host), port);
    std::vector<std::shared_ptr<Session>> sessions;
    for (int i = 0; i < connections; ++i) {
        sessions.push_back(std::make_shared<Session>(io, payload, pipe ? window : 1));
        sessions.back()->start(ep, host + ":" + std::to_string(port), path);
    }
    std::thread runner([&io] { io.run(); });
    for (int i = 0; i < 600 && opened.load() + failures.load() < connections; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
    const long m0 = received.load();
    const double c0 = cpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(duration));
    const long m1 = received.load();
    const double c1 = cpuSeconds();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (auto& s : sessions) net::post(io, [s] { s->stop(); });
    io.stop();
    runner.join();
    std::printf("{\"messages\":%ld,\"seconds\":%.3f,\"msgs_per_sec\":%.1f,\"client_cpu_seconds\":%.3f,\"open\":%ld,"
                "\"errors\":%ld}\n",
                m1 - m0, secs, double(m1 - m0) / secs, c1 - c0, opened.load(), failures.load());
    return 0;
}
