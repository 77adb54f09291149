#pragma once
// Running a real server inside a test: options with short timeouts on an ephemeral
// port, a shutdown whose join is bounded, and a Probe that handlers on the loop threads
// write to and the test thread waits on (always with a bound).

#include "support/ws_client.hpp"

#include "tongdao/log.hpp"
#include "tongdao/server/server.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tongdao::test {

/** What handlers saw, in order; thread-safe. Every wait is bounded. */
class Probe {
public:
    void add(std::string s) {
        {
            std::lock_guard lock(m_);
            items_.push_back(std::move(s));
        }
        cv_.notify_all();
    }
    std::vector<std::string> items() const {
        std::lock_guard lock(m_);
        return items_;
    }
    std::size_t size() const {
        std::lock_guard lock(m_);
        return items_.size();
    }
    /** How many items equal `s`. */
    std::size_t count(std::string_view s) const {
        std::lock_guard lock(m_);
        return static_cast<std::size_t>(std::count(items_.begin(), items_.end(), s));
    }
    /** How many items start with `prefix`. */
    std::size_t countPrefix(std::string_view prefix) const {
        std::lock_guard lock(m_);
        return static_cast<std::size_t>(
            std::count_if(items_.begin(), items_.end(), [&](const std::string& i) { return i.starts_with(prefix); }));
    }
    /** Waits until `pred(items)` holds; false if it did not within `wait`. */
    template <class Pred>
    bool waitUntil(Pred pred, Millis wait = defaultWait) {
        std::unique_lock lock(m_);
        return cv_.wait_for(lock, wait, [&] { return pred(items_); });
    }
    bool waitFor(std::string_view s, Millis wait = defaultWait) {
        return waitUntil([&](const auto& v) { return std::find(v.begin(), v.end(), s) != v.end(); }, wait);
    }
    bool waitForPrefix(std::string_view prefix, std::size_t n = 1, Millis wait = defaultWait) {
        return waitUntil(
            [&](const auto& v) {
                return static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [&](const std::string& i) {
                           return i.starts_with(prefix);
                       })) >= n;
            },
            wait);
    }

private:
    mutable std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::string> items_;
};

/** Polls `pred` every few milliseconds until it holds; false if it did not within `wait`. */
template <class Pred>
bool eventually(Pred pred, Millis wait = defaultWait) {
    const auto deadline = Clock::now() + wait;
    while (!pred()) {
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

/** Options for a test server: an ephemeral port on loopback, short close and shutdown waits. */
inline ServerOptions testOptions(unsigned threads = 1) {
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = threads;
    o.closeTimeout = 2;
    o.shutdownTimeout = 2;
    return o;
}

/** A handler that echoes every message with its kind. */
inline void echoMessage(WebSocket& ws, std::string_view message, MessageKind kind) { ws.send(message, kind); }

/** A server on background threads; shut down and joined (with a bound) at the latest when destroyed. */
class TestServer {
public:
    explicit TestServer(ServerOptions options = testOptions()) : server(options) {
        setLogLevel(LogLevel::warn); // handlers that throw on purpose still log errors
    }
    ~TestServer() { stop(); }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    /** Starts the loops and returns the bound port. */
    std::uint16_t start() {
        server.start();
        started_ = true;
        return server.port();
    }

    /**
     * Shuts down and joins. A join that does not return within `bound` is reported and
     * the process aborted: a hung loop cannot be recovered from, and the test must not hang.
     * Returns how long the join took.
     */
    Millis stop(Millis bound = 8000ms) {
        if (!started_) return 0ms;
        started_ = false;
        const auto begin = Clock::now();
        server.shutdown();
        std::promise<void> done;
        auto joined = done.get_future();
        std::thread joiner([&] {
            server.join();
            done.set_value();
        });
        if (joined.wait_for(bound) != std::future_status::ready) {
            std::fprintf(stderr, "FATAL: Server::join() did not return within %lld ms after shutdown()\n",
                         static_cast<long long>(bound.count()));
            std::fflush(stderr);
            std::abort();
        }
        joiner.join();
        return std::chrono::duration_cast<Millis>(Clock::now() - begin);
    }

    Server server;

private:
    bool started_ = false;
};

} // namespace tongdao::test
