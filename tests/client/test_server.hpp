#pragma once
// Test support for the client: a scripted WebSocket server on 127.0.0.1 and an ephemeral
// port, plus helpers that record what a SocketTask reports and run a Runtime with a bound.
//
// The server is plain blocking-style code on raw sockets: one thread accepts, and each
// accepted connection runs the test's script on a thread of its own. The script speaks
// HTTP through `protocol::ServerHandshake` / `acceptResponse` and WebSocket through a
// server-role `protocol::Connection`, or writes whatever bytes it likes to play a broken
// server. Every wait gives up after a bounded time, and every wait also ends when the
// server is destroyed, so a test that goes wrong fails instead of hanging.

#include "support/engine.hpp"

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"
#include "tongdao/net/loop.hpp"
#include "tongdao/protocol/handshake.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

namespace tongdao::test {

using Ms = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

/** The longest any single wait in these tests lasts. */
inline constexpr Ms kWait{4000};

inline std::string shortText(const std::string& s) {
    if (s.size() <= 64) return s;
    return std::to_string(s.size()) + " bytes";
}

/** Waits (polling) until `pred` holds or `timeout` passes; returns whether it holds. */
template <class Pred>
bool eventually(Pred pred, Ms timeout = kWait) {
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
        if (Clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(Ms(5));
    }
    return true;
}

// --- the server -------------------------------------------------------------------------

/** A request head as the server saw it. */
struct SeenRequest {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers; ///< in arrival order
    std::vector<std::string> protocols;                      ///< Sec-WebSocket-Protocol offers
    std::string key;

    /** The first field of this name (case-insensitive). */
    std::optional<std::string> header(std::string_view name) const {
        for (const auto& [n, v] : headers)
            if (http::iequals(n, name)) return v;
        return std::nullopt;
    }
    std::size_t count(std::string_view name) const {
        std::size_t c = 0;
        for (const auto& h : headers) c += http::iequals(h.first, name) ? 1u : 0u;
        return c;
    }
};

struct ServerOptions {
    bool autoPong = true; ///< the server engine answers pings
    std::size_t maxMessageSize = 64u << 20;
};

class TestServer;

/** One accepted connection, driven by the test's script on its own thread. */
class Peer {
public:
    Peer(TestServer& server, int fd, int index) : server_(server), fd_(fd), index_(index) {}
    ~Peer() {
        if (fd_ >= 0) ::close(fd_);
    }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    TestServer& server() noexcept { return server_; }
    int fd() const noexcept { return fd_; }
    /** 0 for the first connection the server accepted, 1 for the next... */
    int index() const noexcept { return index_; }

    // --- HTTP -----------------------------------------------------------------------

    /** Reads the opening handshake request. False on timeout, end of stream or a bad request. */
    inline bool readRequest(Ms timeout = kWait);
    const SeenRequest& request() const noexcept { return request_; }

    /** Sends the 101 (with the right accept key unless `acceptKey` says otherwise) and starts the engine. */
    inline bool accept(std::string_view protocol = {}, const http::HeaderFields& extra = {});
    /** Starts the engine without sending anything (after a hand-made 101). */
    inline void startWebSocket();
    /** `readRequest` then `accept`; with `echoProtocol`, picks the first protocol offered. */
    inline bool handshake(bool echoProtocol = true, const http::HeaderFields& extra = {});

    /** Writes raw bytes (all of them, or false). */
    inline bool sendRaw(std::string_view bytes, Ms timeout = kWait);
    bool sendRaw(const ByteVec& bytes, Ms timeout = kWait) {
        return sendRaw(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), timeout);
    }

    // --- WebSocket, after accept -----------------------------------------------------

    Connection& ws() { return *ws_; }
    bool sendText(std::string_view s) { return ws_->sendText(s) ? false : flush(); }
    bool sendBinary(std::string_view s) { return ws_->send(MessageKind::binary, asBytes(s)) ? false : flush(); }
    bool sendClose(int code = 1000, std::string_view reason = {}) {
        return ws_->close(static_cast<std::uint16_t>(code), reason) ? false : flush();
    }
    bool ping(std::string_view payload = {}) { return ws_->ping(asBytes(payload)) ? false : flush(); }

    /**
     * The next event the engine reports ("text", "binary", "ping", "pong", "close", "error"),
     * or {"eof"} once the client has gone; nothing on timeout or when the server stops.
     * Every event is also recorded in the server's log for this connection.
     */
    inline std::optional<Rec> next(Ms timeout = kWait);
    /** The next text or binary message, skipping control frames. */
    inline std::optional<Rec> nextMessage(Ms timeout = kWait);
    /** Echoes every message back until the client closes or goes (bounded by `timeout` of silence). */
    inline void echo(Ms timeout = kWait);
    /** Reads and discards until the client goes; false on timeout. */
    inline bool waitEof(Ms timeout = kWait);
    /** Does nothing (reading and dropping bytes) until the client goes, the server stops, or `max`. */
    inline void idle(Ms max = kWait);
    /** Closes the TCP connection at once, without a closing handshake. */
    void closeTcp() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    inline bool flush();
    /** 1: got bytes in `out`; 0: timeout or stopping; -1: end of stream or error. */
    inline int readSome(Clock::time_point deadline, std::string& out);
    inline bool stopping() const;
    inline void record(Rec r);

    /** Queues each event for `next()` and records it at once, before any answer is written. */
    struct Collector : EventHandler {
        Peer& p;
        explicit Collector(Peer& peer) : p(peer) {}
        void add(Rec r) {
            p.record(r);
            p.pending_.push_back(std::move(r));
        }
        void onMessage(MessageKind k, Bytes b) { add({k == MessageKind::text ? "text" : "binary", str(b)}); }
        void onPing(Bytes b) { add(pingEv(str(b))); }
        void onPong(Bytes b) { add(pongEv(str(b))); }
        void onClose(std::uint16_t code, std::string_view reason) { add(closeEv(code, std::string(reason))); }
        void onError(std::error_code ec) { add({"error", ec.message(), ec.value()}); }
    };

    TestServer& server_;
    int fd_;
    int index_;
    SeenRequest request_;
    std::string leftover_;   ///< bytes after the request head
    std::unique_ptr<Connection> ws_;
    std::deque<Rec> pending_;
    bool eof_ = false;
    bool outShut_ = false;
};

/**
 * A server on 127.0.0.1:0 running `script` for each connection. Its destructor stops
 * everything (bounded) and joins the threads.
 */
class TestServer {
public:
    using Script = std::function<void(Peer&)>;

    explicit TestServer(Script script, ServerOptions options = {}) : script_(std::move(script)) {
        engine_.role = Role::server;
        engine_.autoPong = options.autoPong;
        engine_.maxMessageSize = options.maxMessageSize;
        engine_.maxFrameSize = options.maxMessageSize;
        listenFd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listenFd_ < 0) throw std::runtime_error("socket failed");
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        if (::bind(listenFd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listenFd_, 64) != 0)
            throw std::runtime_error("bind/listen failed");
        socklen_t len = sizeof a;
        ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { acceptLoop(); });
    }

    ~TestServer() {
        stopping_ = true;
        stopListening();
        std::list<std::thread> threads;
        {
            std::lock_guard lock(mutex_);
            threads.swap(threads_);
        }
        for (auto& t : threads) t.join();
    }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string url(std::string_view target = "/") const {
        return "ws://127.0.0.1:" + std::to_string(port_) + std::string(target);
    }
    const ConnectionOptions& engineOptions() const noexcept { return engine_; }
    bool stopping() const noexcept { return stopping_.load(); }

    /** Closes the listening socket: later connects are refused. Safe from a script. */
    void stopListening() {
        std::lock_guard lock(acceptorMutex_);
        listening_ = false;
        if (acceptor_.joinable()) acceptor_.join();
    }

    /** Connections accepted so far. */
    int connections() const {
        std::lock_guard lock(mutex_);
        return accepted_;
    }
    /** Scripts that have returned. */
    int finished() const {
        std::lock_guard lock(mutex_);
        return finished_;
    }
    /** Waits until every accepted connection's script has returned. */
    bool waitScripts(Ms timeout = kWait) {
        return eventually([this] { return finished() == connections(); }, timeout);
    }
    /** The request of connection `i`, once read. */
    std::optional<SeenRequest> request(int i) const {
        std::lock_guard lock(mutex_);
        if (i < 0 || static_cast<std::size_t>(i) >= requests_.size() || !requests_[static_cast<std::size_t>(i)])
            return std::nullopt;
        return requests_[static_cast<std::size_t>(i)];
    }
    /** Every event connection `i`'s engine reported, in order (plus {"eof"} when the client went). */
    std::vector<Rec> events(int i) const {
        std::lock_guard lock(mutex_);
        if (i < 0 || static_cast<std::size_t>(i) >= events_.size()) return {};
        return events_[static_cast<std::size_t>(i)];
    }
    /** The messages (text and binary) connection `i` received. */
    std::vector<Rec> messages(int i) const {
        std::vector<Rec> out;
        for (auto& r : events(i))
            if (r.type == "text" || r.type == "binary") out.push_back(r);
        return out;
    }
    /** Waits until connection `i` has recorded an event of this type. */
    bool waitEvent(int i, const std::string& type, Ms timeout = kWait) {
        return eventually([&] {
            for (auto& r : events(i))
                if (r.type == type) return true;
            return false;
        }, timeout);
    }
    /** The first event of this type on connection `i`. */
    std::optional<Rec> firstEvent(int i, const std::string& type) const {
        for (auto& r : events(i))
            if (r.type == type) return r;
        return std::nullopt;
    }

private:
    friend class Peer;

    void acceptLoop() {
        while (listening_ && !stopping_) {
            pollfd p{listenFd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) continue;
            std::lock_guard lock(mutex_);
            const int index = accepted_++;
            requests_.emplace_back();
            events_.emplace_back();
            threads_.emplace_back([this, fd, index] {
                {
                    Peer peer(*this, fd, index);
                    try {
                        script_(peer);
                    } catch (const std::exception& e) {
                        std::fprintf(stderr, "test server script threw: %s\n", e.what());
                    }
                }
                std::lock_guard l(mutex_);
                ++finished_;
            });
        }
        ::close(listenFd_);
        listenFd_ = -1;
    }

    void setRequest(int i, const SeenRequest& r) {
        std::lock_guard lock(mutex_);
        requests_[static_cast<std::size_t>(i)] = r;
    }
    void addEvent(int i, Rec r) {
        std::lock_guard lock(mutex_);
        events_[static_cast<std::size_t>(i)].push_back(std::move(r));
    }

    Script script_;
    ConnectionOptions engine_;
    int listenFd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> listening_{true};
    std::mutex acceptorMutex_;
    std::thread acceptor_;
    mutable std::mutex mutex_;
    std::list<std::thread> threads_;
    int accepted_ = 0;
    int finished_ = 0;
    std::vector<std::optional<SeenRequest>> requests_;
    std::vector<std::vector<Rec>> events_;
};

// --- Peer ---------------------------------------------------------------------------------

inline bool Peer::stopping() const { return server_.stopping(); }

inline void Peer::startWebSocket() { ws_ = std::make_unique<Connection>(server_.engineOptions()); }

inline void Peer::record(Rec r) { server_.addEvent(index_, std::move(r)); }

inline int Peer::readSome(Clock::time_point deadline, std::string& out) {
    if (fd_ < 0) return -1;
    for (;;) {
        if (stopping()) return 0;
        const auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now()).count();
        if (left <= 0) return 0;
        pollfd p{fd_, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 20)));
        if (r <= 0) continue;
        char buf[65536];
        const auto n = ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) {
            out.assign(buf, static_cast<std::size_t>(n));
            return 1;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        return -1;
    }
}

inline bool Peer::sendRaw(std::string_view bytes, Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!bytes.empty()) {
        if (fd_ < 0 || stopping() || Clock::now() >= deadline) return false;
        const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, 20);
            continue;
        }
        return false;
    }
    return true;
}

inline bool Peer::readRequest(Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    ServerHandshake hs;
    for (;;) {
        std::string chunk;
        if (readSome(deadline, chunk) != 1) return false;
        std::size_t used = 0;
        const auto st = hs.receive(asBytes(chunk), used);
        if (st == http::ParseStatus::needMore) continue;
        const auto& req = hs.request();
        request_.method = std::string(req.method);
        request_.target = std::string(req.target);
        for (const auto& h : req.headers) request_.headers.emplace_back(std::string(h.name), std::string(h.value));
        if (st == http::ParseStatus::failed) {
            server_.setRequest(index_, request_);
            return false;
        }
        for (auto p : hs.upgrade().protocols) request_.protocols.emplace_back(p);
        request_.key = std::string(hs.upgrade().key);
        leftover_ = chunk.substr(used);
        server_.setRequest(index_, request_);
        return true;
    }
}

inline bool Peer::accept(std::string_view protocol, const http::HeaderFields& extra) {
    if (!sendRaw(acceptResponse(request_.key, protocol, {}, extra))) return false;
    ws_ = std::make_unique<Connection>(server_.engineOptions());
    if (!leftover_.empty()) {
        Collector c(*this);
        std::string bytes = std::move(leftover_);
        ws_->receive({reinterpret_cast<std::byte*>(bytes.data()), bytes.size()}, c);
        return flush();
    }
    return true;
}

inline bool Peer::handshake(bool echoProtocol, const http::HeaderFields& extra) {
    if (!readRequest()) return false;
    std::string chosen;
    if (echoProtocol && !request_.protocols.empty()) chosen = request_.protocols.front();
    return accept(chosen, extra);
}

inline bool Peer::flush() {
    if (!ws_) return false;
    for (;;) {
        const auto out = ws_->pendingOutput();
        if (out.empty()) break;
        const auto part = out.parts[0];
        if (!sendRaw(asString(part))) return false;
        ws_->consumeOutput(part.size());
    }
    // A server closes TCP first once the closing handshake is done (RFC 6455 §7.1.1).
    if (ws_->transportDone() && !outShut_ && fd_ >= 0) {
        ::shutdown(fd_, SHUT_WR);
        outShut_ = true;
    }
    return true;
}

inline std::optional<Rec> Peer::next(Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (!pending_.empty()) {
            auto r = std::move(pending_.front());
            pending_.pop_front();
            return r;
        }
        if (eof_) return Rec{"eof", {}, 0};
        if (!ws_) return std::nullopt;
        std::string chunk;
        const int got = readSome(deadline, chunk);
        if (got == 0) return std::nullopt;
        if (got < 0) {
            eof_ = true;
            ws_->receiveEof();
            record(Rec{"eof", {}, 0});
            return Rec{"eof", {}, 0};
        }
        Collector c(*this);
        ws_->receive({reinterpret_cast<std::byte*>(chunk.data()), chunk.size()}, c);
        flush();
    }
}

inline std::optional<Rec> Peer::nextMessage(Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
        if (left.count() <= 0) return std::nullopt;
        auto r = next(left);
        if (!r) return r;
        if (r->type == "text" || r->type == "binary" || r->type == "close" || r->type == "eof" ||
            r->type == "error")
            return r;
    }
}

inline void Peer::echo(Ms timeout) {
    for (;;) {
        auto r = next(timeout);
        if (!r || r->type == "eof" || r->type == "error") return;
        if (r->type == "text") sendText(r->data);
        else if (r->type == "binary") sendBinary(r->data);
        else if (r->type == "close") {
            waitEof(timeout);
            return;
        }
    }
}

inline bool Peer::waitEof(Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (eof_) return true;
        const auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
        if (left.count() <= 0) return false;
        if (ws_) {
            auto r = next(left);
            if (!r) return false;
            continue;
        }
        std::string chunk;
        const int got = readSome(deadline, chunk);
        if (got == 0) return false;
        if (got < 0) {
            eof_ = true;
            record(Rec{"eof", {}, 0});
            return true;
        }
    }
}

inline void Peer::idle(Ms max) { waitEof(max); }

// --- the client side ----------------------------------------------------------------------

/**
 * Runs `rt.run()` on this thread; a watchdog stops the loop after `limit`. Returns true if
 * run() returned by itself (no task left) in time.
 */
inline bool runFor(Runtime& rt, Ms limit = kWait) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    bool fired = false;
    std::thread dog([&] {
        std::unique_lock l(m);
        if (!cv.wait_for(l, limit, [&] { return done; })) {
            fired = true;
            rt.loop().stop();
        }
    });
    rt.run();
    {
        std::lock_guard l(m);
        done = true;
    }
    cv.notify_all();
    dog.join();
    return !fired;
}

/** "text:hello", "binary:<bytes as chars>" */
inline std::string describeData(const SocketData& d) {
    if (const auto* s = std::get_if<std::string>(&d)) return "text:" + shortText(*s);
    const auto& b = std::get<ArrayBuffer>(d);
    return "binary:" + shortText(std::string(b.begin(), b.end()));
}

/**
 * Everything a task reports, in order, as strings: "open", "text:...", "binary:...",
 * "error:<errMsg>", "close:<code>:<reason>". Thread-safe; attach it before running.
 */
struct TaskLog {
    mutable std::mutex m;
    std::vector<std::string> entries;
    std::vector<OnOpenResult> opens;
    std::vector<SocketData> messages;
    std::vector<OnCloseResult> closes;
    std::vector<std::string> errors;
    std::vector<int> statesAtOpen;
    std::vector<int> statesAtClose;

    /** Adds the four listeners to `task`. The log lives as long as the listeners do. */
    static std::shared_ptr<TaskLog> attach(SocketTask& task) {
        auto log = std::make_shared<TaskLog>();
        SocketTask* t = &task;
        task.onOpen([log, t](const OnOpenResult& r) {
            std::lock_guard l(log->m);
            log->entries.push_back("open");
            log->opens.push_back(r);
            log->statesAtOpen.push_back(t->readyState());
        });
        task.onMessage([log](const OnMessageResult& r) {
            std::lock_guard l(log->m);
            log->entries.push_back(describeData(r.data));
            log->messages.push_back(r.data);
        });
        task.onError([log](const OnErrorResult& r) {
            std::lock_guard l(log->m);
            log->entries.push_back("error:" + r.errMsg);
            log->errors.push_back(r.errMsg);
        });
        task.onClose([log, t](const OnCloseResult& r) {
            std::lock_guard l(log->m);
            log->entries.push_back("close:" + std::to_string(r.code) + ":" + r.reason);
            log->closes.push_back(r);
            log->statesAtClose.push_back(t->readyState());
        });
        return log;
    }

    std::vector<std::string> snapshot() const {
        std::lock_guard l(m);
        return entries;
    }
    std::size_t count(const std::string& prefix) const {
        std::lock_guard l(m);
        std::size_t n = 0;
        for (const auto& e : entries) n += e.rfind(prefix, 0) == 0 ? 1u : 0u;
        return n;
    }
    bool waitFor(const std::string& prefix, Ms timeout = kWait) const {
        return eventually([&] { return count(prefix) > 0; }, timeout);
    }
};

/** The three results of a call's success / fail / complete, recorded (thread-safe). */
struct CallLog {
    mutable std::mutex m;
    std::vector<std::string> entries; ///< "success:<errMsg>", "fail:<errMsg>", "complete:<errMsg>"

    Callback on(const char* what) {
        return [this, what](const GeneralCallbackResult& r) {
            std::lock_guard l(m);
            entries.push_back(std::string(what) + ":" + r.errMsg);
        };
    }
    /** Sets the three callbacks of `o` (ConnectSocketOptions, SendOptions or CloseOptions). */
    template <class O>
    O& wire(O& o) {
        o.success = on("success");
        o.fail = on("fail");
        o.complete = on("complete");
        return o;
    }
    template <class O>
    O wired(O o) {
        wire(o);
        return o;
    }
    std::vector<std::string> snapshot() const {
        std::lock_guard l(m);
        return entries;
    }
    bool empty() const {
        std::lock_guard l(m);
        return entries.empty();
    }
    bool waitCount(std::size_t n, Ms timeout = kWait) const {
        return eventually([&] {
            std::lock_guard l(m);
            return entries.size() >= n;
        }, timeout);
    }
};

inline std::vector<std::string> okCalls(const std::string& api) {
    return {"success:" + api + ":ok", "complete:" + api + ":ok"};
}
inline std::vector<std::string> failCalls(const std::string& errMsg) {
    return {"fail:" + errMsg, "complete:" + errMsg};
}

/** Common scripts. */
inline void echoScript(Peer& p) {
    if (p.handshake()) p.echo();
}

} // namespace tongdao::test
