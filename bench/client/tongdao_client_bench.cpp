// tongdao_client_bench: client-side echo throughput with tongdao's client API.
//
//   tongdao_client_bench --url ws://127.0.0.1:P/echo [--connections C] [--size BYTES]
//                        [--mode rr|pipe] [--window W] [--duration S] [--warmup S]
//
// Each connection keeps one message (rr) or W messages (pipe) in flight against an echo
// server, through connectSocket / SocketTask.send / onMessage, on one Runtime thread.
// Prints one JSON line: messages and seconds of the measured window, and the client's CPU.

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double cpuSeconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

} // namespace

int main(int argc, char** argv) {
    std::string url;
    int connections = 100, window = 16;
    std::size_t size = 20;
    bool pipe = false;
    double duration = 5, warmup = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--url") url = v;
        else if (a == "--connections") connections = std::atoi(v.c_str());
        else if (a == "--size") size = static_cast<std::size_t>(std::atol(v.c_str()));
        else if (a == "--mode") pipe = v == "pipe";
        else if (a == "--window") window = std::atoi(v.c_str());
        else if (a == "--duration") duration = std::atof(v.c_str());
        else if (a == "--warmup") warmup = std::atof(v.c_str());
        else {
            std::fprintf(stderr, "tongdao_client_bench: unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if (url.empty() || connections <= 0) {
        std::fputs("usage: tongdao_client_bench --url ws://host:port/echo [--connections C] ...\n", stderr);
        return 2;
    }

    tongdao::Runtime rt({.maxConnections = connections});
    std::atomic<long> received{0}, open{0}, errors{0};
    const tongdao::ArrayBuffer payload(size, 'x');
    const int inFlight = pipe ? window : 1;
    std::vector<std::shared_ptr<tongdao::SocketTask>> tasks;
    for (int i = 0; i < connections; ++i) {
        tongdao::ConnectSocketOptions o;
        o.url = url;
        o.tcpNoDelay = true;
        auto task = tongdao::connectSocket(rt, std::move(o));
        std::weak_ptr<tongdao::SocketTask> weak = task;
        task->onOpen([&, weak](const tongdao::OnOpenResult&) {
            ++open;
            if (auto t = weak.lock())
                for (int k = 0; k < inFlight; ++k) t->send({.data = payload});
        });
        task->onMessage([&, weak](const tongdao::OnMessageResult&) {
            received.fetch_add(1, std::memory_order_relaxed);
            if (auto t = weak.lock()) t->send({.data = payload}); // the next one
        });
        task->onError([&](const tongdao::OnErrorResult& r) {
            if (++errors <= 3) std::fprintf(stderr, "tongdao_client_bench: %s\n", r.errMsg.c_str());
        });
        tasks.push_back(std::move(task));
    }
    rt.start();
    for (int i = 0; i < 600 && open.load() + errors.load() < connections; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
    const long m0 = received.load();
    const double c0 = cpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(duration));
    const long m1 = received.load();
    const double c1 = cpuSeconds();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (auto& t : tasks) t->close({});
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    rt.stop();
    std::printf("{\"messages\":%ld,\"seconds\":%.3f,\"msgs_per_sec\":%.1f,\"client_cpu_seconds\":%.3f,\"open\":%ld,"
                "\"errors\":%ld}\n",
                m1 - m0, secs, static_cast<double>(m1 - m0) / secs, c1 - c0, open.load(), errors.load());
    return errors.load() ? 1 : 0;
}
