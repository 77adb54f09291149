#pragma once
// The server's private state: endpoints, per-loop context (topics, handles, counters).

#include "slab_pool.hpp"
#include "tongdao/net/address.hpp"
#include "tongdao/net/loop.hpp"
#include "tongdao/net/socket.hpp"
#include "tongdao/net/tls.hpp"
#include "tongdao/protocol/permessage_deflate.hpp"
#include "tongdao/server/server.hpp"

#include <atomic>
#include <iterator>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace tongdao::detail {

/** A counter written by one loop thread and read by any: plain adds, relaxed atomics. */
class Counter {
public:
    void add(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    void sub(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
    std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

/** One loop's counters. */
struct LoopStats {
    Counter connectionsOpen, connectionsTotal, messagesIn, messagesOut, bytesIn, bytesOut, backpressureDrops,
        httpRequests;
    /** Handshake failures by reason: indexed by tongdao::error, plus the extra reasons below. */
    static constexpr int notFound = 0;      // no route
    static constexpr int tooMany = 1;       // maxConnections
    static constexpr int rejected = 2;      // refused by the upgrade handler
    static constexpr int timeout = 3;       // handshakeTimeout
    static constexpr int firstError = 8;    // tongdao::error values start here
    static constexpr int slots = 80;
    Counter handshakeFailures[slots];

    static const char* failureName(int slot) noexcept;
};

/** A WebSocket endpoint. */
struct Route {
    std::string pattern;  ///< "/chat", or "/rooms/" for a "/rooms/*" prefix
    bool prefix = false;
    WebSocketBehavior behavior;
    void* (*makeUserData)() = nullptr;
    void (*destroyUserData)(void*) = nullptr;
    const std::type_info* userType = nullptr;
    protocol::ConnectionOptions engine; ///< limits for the engine
    std::vector<protocol::ConnectionOptions> enginePerLoop; ///< the same, with each loop's pool
    std::vector<std::unique_ptr<protocol::SharedDeflate>> sharedDeflate; ///< per loop (shared mode)
    std::vector<std::shared_ptr<const protocol::ServerExtensionFactory>> deflate; ///< per loop; empty when off
    std::atomic<std::size_t> connections{0};
};

/** Subscribers of one topic on one loop. */
struct Topic {
    std::string name;
    std::vector<std::pair<WebSocket*, std::uint32_t>> subscribers; ///< and the topic's index in the socket's list
};

class HttpSession;

/** Lets string-keyed maps be searched with a string_view, without a copy. */
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/** Everything one loop owns. Touched only on that loop's thread, but for the counters. */
struct LoopContext {
    LoopContext(Server::Impl& s, std::size_t index);

    SlabPool webSockets{sizeof(WebSocket)}; ///< before the loop: it outlives the sockets the loop deletes
    net::Loop loop;
    Server::Impl& server;
    std::unique_ptr<net::Listener> listener;
    std::unique_ptr<net::Listener> tlsListener;
    LoopStats stats;

    std::unordered_map<std::string, std::unique_ptr<Topic>, StringHash, std::equal_to<>> topics;
    protocol::ByteBuffer publishFrame; ///< a published message, framed once for the whole loop
    /** The same, compressed once per shared compressor and window size that has subscribers. */
    struct CompressedFrame {
        const protocol::SharedDeflate* deflate;
        int windowBits;
        protocol::ByteBuffer frame; ///< empty: goes plain (compression would not shrink it)
    };
    std::vector<CompressedFrame> publishCompressed;

    /** Handles: slot -> socket and generation; a freed slot bumps its generation. */
    std::vector<std::pair<WebSocket*, std::uint32_t>> slots;
    std::vector<std::uint32_t> freeSlots;
    std::size_t openWebSockets = 0;

    std::vector<HttpSession*> sessions; ///< connections still speaking HTTP
    /** Peers whose X-Forwarded-For is believed (Server::setTrustedProxies swaps it on the loop). */
    std::shared_ptr<const net::IpRanges> trustedProxies;
    bool shuttingDown = false;
    std::uint32_t shutdownDeadline = 0;

    std::uint32_t addSlot(WebSocket* ws, std::uint32_t& generation);
    void freeSlot(std::uint32_t slot) noexcept;
    WebSocket* find(std::uint32_t slot, std::uint32_t generation) const noexcept;

    Topic* topic(std::string_view name, bool create);
    void dropTopicIfEmpty(Topic* t);
    /** Frames `message` once and queues it for every subscriber but `except`. */
    void publishLocal(std::string_view topic, std::string_view message, MessageKind kind, WebSocket* except);
};

/** Where an upgrade waits for its answer; shared by the session and the response object. */
struct PendingUpgrade {
    HttpSession* session = nullptr; ///< null once the client left or the answer was given
    net::Loop* loop = nullptr;
    protocol::http::HeaderFields headers;
    void* userData = nullptr;
    void (*destroyUserData)(void*) = nullptr;
    bool answered = false;

    ~PendingUpgrade() {
        if (userData && destroyUserData) destroyUserData(userData);
    }
};

/** Where an HTTP handler's answer is awaited; shared by the session and the responder. */
struct PendingHttp {
    enum class State : std::uint8_t { waiting, answered, aborted };

    HttpSession* session = nullptr; ///< while waiting; touched on the loop only
    net::Loop* loop = nullptr;
    std::atomic<State> state{State::waiting}; ///< set on the loop, read anywhere
    bool dispatching = false; ///< the handler is running: a dropped responder is answered after it returns
    bool dropped = false;     ///< the responder was destroyed unanswered while the handler ran

    /** The wait is over (on the loop): answered, or the answer is no longer wanted. */
    void end(State s) noexcept {
        session = nullptr;
        state.store(s, std::memory_order_release);
    }
};

/**
 * How a log line names the other end: "ip:port" of the peer, or "client (via ip:port)"
 * when a trusted proxy forwarded the client's address.
 */
std::string describePeer(std::string_view client, std::string peer);

/** The methods a route can have; HEAD is answered by GET. Bit i of a mask is `httpMethods[i]`. */
inline constexpr std::string_view httpMethods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
inline constexpr std::size_t httpMethodCount = std::size(httpMethods);
/** The index of a request's method in `httpMethods` (HEAD is GET's), or httpMethodCount. */
std::size_t httpMethodIndex(std::string_view method) noexcept;
/** "GET, HEAD, POST" for a mask of methods. */
std::string allowHeader(unsigned methods);

/** An HTTP route: one pattern, a handler per method. */
struct HttpRoute {
    std::string pattern; ///< "/api/rooms", or "/api/rooms/" for a "/api/rooms/*" prefix
    bool prefix = false;
    AsyncHttpHandler handlers[httpMethodCount];
};

/** What the routes say about one method and path. */
struct HttpMatch {
    const HttpRoute* route = nullptr;            ///< the best one with a handler for the method
    const AsyncHttpHandler* handler = nullptr;
    unsigned methods = 0;                        ///< the methods of every route matching the path
};

} // namespace tongdao::detail

namespace tongdao {

struct Server::Impl {
    explicit Impl(ServerOptions o) : options(std::move(o)) {}

    ServerOptions options;
    std::vector<std::unique_ptr<detail::Route>> routes;
    std::vector<detail::HttpRoute> httpRoutes; ///< fixed once listening: sessions point into it
    std::vector<std::pair<std::string, std::filesystem::path>> staticDirs;
    std::vector<std::unique_ptr<detail::LoopContext>> loops;
    std::vector<std::thread> threads;
    std::uint16_t port = 0;
    std::uint16_t tlsPort = 0;
    std::unique_ptr<net::TlsServerContext> tls;
    std::vector<std::shared_ptr<std::function<void()>>> signalWaits;
    std::atomic<bool> shuttingDown{false};
    std::atomic<unsigned> loopsRunning{0};

    detail::Route* findRoute(std::string_view path) const noexcept;
    bool isWsPath(std::string_view path) const noexcept { return findRoute(path) != nullptr; }
    detail::HttpMatch matchHttp(std::string_view method, std::string_view path) const noexcept;
    /** Registers a handler; `allowPrefix` lets a pattern ending in a slash and a star be a prefix. */
    void addHttpRoute(std::string_view method, std::string pattern, bool allowPrefix, AsyncHttpHandler handler);
    void beginShutdown(detail::LoopContext& ctx);
};

} // namespace tongdao
