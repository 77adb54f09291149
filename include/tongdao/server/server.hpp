#pragma once
/**
 * @file
 * The server: loops on N threads, one listening socket each on the same port, WebSocket
 * endpoints and plain HTTP routes (with request bodies, answered at once or later), pub/sub
 * across loops, graceful shutdown.
 *
 * @code
 *   tongdao::Server server({.port = 9001});
 *   server.ws("/echo", {
 *       .message = [](tongdao::WebSocket& ws, std::string_view msg, tongdao::MessageKind kind) {
 *           ws.send(msg, kind);
 *       },
 *   });
 *   server.listen();
 *   server.run();   // until SIGINT/SIGTERM (see handleSignals) or shutdown()
 * @endcode
 */

#include "tongdao/net/address.hpp"
#include "tongdao/net/tls.hpp"
#include "tongdao/server/behavior.hpp"
#include "tongdao/server/websocket.hpp"

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <typeinfo>

namespace tongdao {

/** Server-wide settings, with their defaults. */
struct ServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;           ///< 0 picks a free port; see `Server::port()`
    unsigned threads = 0;                ///< event loops; 0 = one per core
    /** Seconds from accept to a complete request (head and body), between keep-alive requests, and for
     *  an HTTP handler to answer (then 503). */
    std::uint32_t handshakeTimeout = 10;
    std::uint32_t closeTimeout = 5;      ///< seconds to wait for the peer's close frame, or its TCP close
    std::uint32_t shutdownTimeout = 10;  ///< seconds `shutdown()` waits for closing handshakes
    std::size_t maxHeaderBytes = 8 * 1024;
    std::size_t maxHeaders = 64;
    /** Largest request body (Content-Length) accepted; a larger one gets 413 before it is read. */
    std::size_t maxBodyBytes = 1024 * 1024;
    /** With certificates, a TLS listener serves wss:// on `tlsPort` beside the plain port. */
    net::TlsServerOptions tls = {};
    std::uint16_t tlsPort = 8443;        ///< 0 picks a free port; see `Server::tlsPort()`
    /** Where the plain listener (ws://, http://) binds: `host` when empty. Beside TLS, a
     *  loopback address keeps /metrics and health checks off the network. */
    std::string plainHost = {};
    /** False: no plain listener at all (TLS only; `listen()` throws without certificates),
     *  and `Server::port()` is 0. */
    bool plain = true;
    /**
     * The proxies in front of the server: a request whose TCP peer is in one of these ranges
     * names its client in X-Forwarded-For or X-Real-IP (see `HttpRequest::clientAddress`).
     * Empty (the default): no peer is, and the headers are ignored, so a client cannot pass
     * itself off as another address by sending them. `Server::setTrustedProxies` changes it.
     */
    net::IpRanges trustedProxies = {};
    /**
     * How long a published message may wait before it is written, for more to the same
     * connection to leave with it in one write: fewer system calls per message under heavy
     * fan-out, for up to this much latency. Replies and other sends are not delayed, and
     * take along what waits for their connection. 0 (the default): written at the end of the
     * turn that published it.
     */
    std::chrono::milliseconds writeDelay{0};
};

namespace detail {
struct PendingHttp;
}

/**
 * A plain HTTP request as a handler sees it. Its views, body included, are valid during the
 * handler call only: a handler that answers later copies what it needs first.
 */
class HttpRequest {
public:
    HttpRequest(const protocol::http::Request& r, std::string remote, std::string_view body = {},
                std::string client = {})
        : request_(r), remote_(std::move(remote)), client_(std::move(client)), body_(body) {}
    std::string_view method() const noexcept { return request_.method; }
    std::string_view target() const noexcept { return request_.target; }
    std::string_view path() const noexcept { return request_.path(); }
    std::string_view query() const noexcept { return request_.query(); }
    /** The value of a query parameter (not percent-decoded), or empty. */
    std::string_view queryParam(std::string_view name) const noexcept {
        return protocol::http::queryParam(query(), name);
    }
    std::string_view header(std::string_view name) const noexcept {
        return request_.headers.find(name).value_or(std::string_view{});
    }
    const protocol::http::HeaderList& headers() const noexcept { return request_.headers; }
    /** "ip:port" of the TCP peer: behind a proxy, the proxy's. */
    const std::string& remoteAddress() const noexcept { return remote_; }
    /**
     * The client's IP address, without a port: the one a trusted proxy forwarded
     * (`ServerOptions::trustedProxies`), otherwise the peer's own. Empty if unknown.
     */
    const std::string& clientAddress() const noexcept { return client_; }
    /** The body: the Content-Length bytes that followed the head; empty without one (GET). */
    std::string_view body() const noexcept { return body_; }

private:
    const protocol::http::Request& request_;
    std::string remote_;
    std::string client_;
    std::string_view body_;
};

/** The response an HTTP handler fills in. */
struct HttpResponse {
    int status = 200;
    protocol::http::HeaderFields headers = {}; ///< Content-Length is added; add Content-Type
    std::string body = {};

    HttpResponse& setHeader(std::string name, std::string value) {
        headers.emplace_back(std::move(name), std::move(value));
        return *this;
    }
    /** Sets a plain-text body. */
    HttpResponse& text(std::string b, int code = 200) {
        status = code;
        body = std::move(b);
        return setHeader("Content-Type", "text/plain; charset=utf-8");
    }
};

/** A handler that fills in the response before it returns (see `Server::get`). */
using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;

/**
 * The answer to one HTTP request: given once with `respond`, during the handler or later
 * (keep the object; it is cheap to move). While it is awaited the connection reads no
 * further request. Answering does nothing if the answer is no longer wanted (`aborted()`):
 * the client left (closed or half-closed the connection), the server is shutting down, or
 * `handshakeTimeout` passed and the client got 503. An object destroyed unanswered, on any
 * thread, answers 500 "handler did not answer"; a handler that throws gets 500 too.
 *
 * @par Thread Safety
 * Call `respond` on the connection's loop. From another thread, post there first:
 * `loop->post([r = std::move(responder)]() mutable { r.respond(...); })`, with `loop` taken
 * from `loop()` beforehand (a `respond` from another thread is forwarded that way rather
 * than racing). `answered`, `aborted`, `loop` and the destructor are safe on any thread.
 * A responder must not outlive its server.
 */
class HttpResponder {
public:
    explicit HttpResponder(std::shared_ptr<detail::PendingHttp> p) noexcept : pending_(std::move(p)) {}
    HttpResponder(HttpResponder&&) noexcept = default;
    /** Assigning over an unanswered responder drops it (500) first. */
    HttpResponder& operator=(HttpResponder&& other) noexcept;
    HttpResponder(const HttpResponder&) = delete;
    HttpResponder& operator=(const HttpResponder&) = delete;
    ~HttpResponder();

    /**
     * Sends `response` (Content-Length is added; a HEAD request gets the head only). Once:
     * later calls do nothing. Header fields that are not valid, and Content-Length or
     * Transfer-Encoding, are dropped (logged). `Connection: close` closes after it.
     */
    void respond(HttpResponse response);
    /** True once `respond` was called in time (or the server answered 500 for a handler that threw). */
    bool answered() const noexcept;
    /** True once the answer is no longer wanted (see above): `respond` does nothing. */
    bool aborted() const noexcept;
    /** The loop the connection lives on, for answering later from another thread; null if moved from. */
    net::Loop* loop() const noexcept;

private:
    void release() noexcept;
    std::shared_ptr<detail::PendingHttp> pending_;
};

/** A handler that answers through its responder, then or later (see `Server::route`). */
using AsyncHttpHandler = std::function<void(const HttpRequest&, HttpResponder)>;

/** Counters summed over all loops at the time of the call. */
struct ServerStats {
    std::uint64_t connectionsOpen = 0;  ///< WebSocket connections open now
    std::uint64_t connectionsTotal = 0; ///< WebSocket connections opened since start
    std::uint64_t messagesIn = 0;
    std::uint64_t messagesOut = 0;
    std::uint64_t bytesIn = 0;          ///< message payload bytes
    std::uint64_t bytesOut = 0;
    std::uint64_t backpressureDrops = 0;
    std::uint64_t httpRequests = 0;
    std::map<std::string, std::uint64_t> handshakeFailures; ///< by reason
};

class Server {
public:
    explicit Server(ServerOptions options = {});
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /**
     * Adds a WebSocket endpoint. `pattern` is an exact path ("/chat"), or a prefix: a path
     * ending in a slash and a star, which matches everything under it; exact paths win, then
     * the longest prefix. Each accepted connection gets a default-constructed `UserData`
     * unless the upgrade handler supplies one.
     */
    template <class UserData = void>
    Server& ws(std::string pattern, WebSocketBehavior behavior) {
        if constexpr (std::is_void_v<UserData>) {
            return addWs(std::move(pattern), std::move(behavior), nullptr, nullptr, nullptr);
        } else {
            return addWs(
                std::move(pattern), std::move(behavior), []() -> void* { return new UserData(); },
                [](void* p) { delete static_cast<UserData*>(p); }, &typeid(UserData));
        }
    }

    /**
     * Adds a handler for GET and HEAD of an exact path, answered when it returns; the same as
     * `route("GET", path, ...)` with an exact path. A second handler for a path replaces the first.
     */
    Server& get(std::string path, HttpHandler handler);
    /**
     * Adds a handler for `method` ("GET", which also answers HEAD, "POST", "PUT", "DELETE" or
     * "PATCH") of `pattern`: an exact path ("/api/rooms") or a prefix, "/api/rooms/" followed
     * by a star, as for `ws()`. Among the routes with a handler for the method, an exact path wins, then the
     * longest prefix. A path that only has routes for other methods gets 405 with `Allow`;
     * one without any route goes on to `serveStatic`, then 404. The handler runs on the
     * connection's loop once the whole body has arrived (at most `maxBodyBytes`).
     * Throws std::invalid_argument for another method, std::logic_error after `listen()`.
     */
    Server& route(std::string method, std::string pattern, AsyncHttpHandler handler);
    /** Serves files under `root` for paths under `urlPrefix` ("/" for all); no path escapes `root`. */
    Server& serveStatic(std::string urlPrefix, std::filesystem::path root);

    /** Binds the listening sockets (one per loop). Throws std::system_error on failure. */
    void listen();
    /** The bound port, after `listen()`. */
    std::uint16_t port() const noexcept;
    /** The bound TLS port, after `listen()`; 0 without TLS. */
    std::uint16_t tlsPort() const noexcept;
    /**
     * Reads the certificates again (`handleSignals` does it on SIGHUP). New connections get
     * them; open ones keep theirs. Throws, keeping the old ones, if the files do not load.
     */
    void reloadTls();
    /**
     * Replaces `ServerOptions::trustedProxies`: requests read after it, on every loop, are
     * judged by `ranges`; open WebSockets keep the client address they were opened with.
     * Call before `listen()`, or after it from any thread: each loop then takes the new set
     * in a turn of its own.
     */
    void setTrustedProxies(net::IpRanges ranges);
    unsigned threads() const noexcept;

    /** Runs the loops, the calling thread being loop 0, until shutdown completes. */
    void run();
    /** Runs the loops on background threads and returns. */
    void start();
    /** Waits for the loops started by `start()` to finish. */
    void join();
    /**
     * Stops accepting, sends 1001 "going away" to every WebSocket, waits for the closing
     * handshakes up to `shutdownTimeout`, closes what is left, then the loops return.
     * Thread-safe; idempotent.
     */
    void shutdown();
    /** Calls `shutdown()` on SIGINT and SIGTERM. Call before `run()`. */
    void handleSignals();

    /**
     * Sends `message` to every subscriber of `topic`, on every loop. Thread-safe; messages
     * published from one thread arrive in the order published.
     */
    void publish(std::string_view topic, std::string_view message, MessageKind kind = MessageKind::text);
    /**
     * Sends `message` to the subscribers of `topic` on the calling loop only, except
     * `except` (may be null); framed (and compressed) once for them all. For applications
     * that route their own events between loops. Call on a loop thread of this server.
     */
    void publishLocal(std::string_view topic, std::string_view message, MessageKind kind = MessageKind::text,
                      WebSocket* except = nullptr);

    /**
     * Loop `index` (0 to `threads()` - 1), after `listen()`: to post work to it, or to
     * run timers on it. Connections say which loop is theirs with `WebSocket::loop()`.
     */
    net::Loop& loop(unsigned index) const;

    ServerStats stats() const;
    /** The counters in Prometheus text exposition format. */
    std::string prometheusMetrics() const;

    struct Impl;

private:
    Server& addWs(std::string pattern, WebSocketBehavior behavior, void* (*make)(), void (*destroy)(void*),
                  const std::type_info* type);
    std::unique_ptr<Impl> impl_;
};

} // namespace tongdao
