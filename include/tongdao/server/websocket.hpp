#pragma once
/**
 * @file
 * A server-side WebSocket connection, as handlers see it, and a handle to reach it from
 * other threads.
 */

#include "tongdao/net/socket.hpp"
#include "tongdao/protocol/connection.hpp"
#include "tongdao/server/behavior.hpp"

#include <cassert>
#include <functional>
#include <string>
#include <typeinfo>
#include <vector>

namespace tongdao {

namespace detail {
struct LoopContext;
struct Route;
class SlabPool;
struct Topic;
} // namespace detail

class WebSocket;

/**
 * A way to act on a connection from any thread: each call is posted to the connection's
 * loop and does nothing if the connection is gone by then. Cheap to copy.
 */
class WebSocketHandle {
public:
    WebSocketHandle() = default;

    /** Runs `fn` with the connection on its loop, if it is still there. Thread-safe. */
    void post(std::function<void(WebSocket&)> fn) const;
    /** Posts a send of a copy of `message`. Thread-safe. */
    void send(std::string message, MessageKind kind) const;
    /** Posts `end(code, reason)`. Thread-safe. */
    void end(int code = 1000, std::string reason = {}) const;

    bool valid() const noexcept { return ctx_ != nullptr; }

private:
    friend class WebSocket;
    WebSocketHandle(detail::LoopContext* ctx, std::uint32_t slot, std::uint32_t generation)
        : ctx_(ctx), slot_(slot), generation_(generation) {}
    detail::LoopContext* ctx_ = nullptr;
    std::uint32_t slot_ = 0;
    std::uint32_t generation_ = 0;
};

/**
 * One open WebSocket connection on the server. Handlers get it by reference; it lives
 * until its `close` handler returns. Do not keep pointers to it past that; use `handle()`.
 *
 * @par Thread Safety
 * On the connection's loop only. From other threads use `handle()` or `Server::publish`.
 */
class WebSocket final : public net::Socket {
public:
    /**
     * Queues a message. Sends made while handling one event leave together, in one write,
     * when the handler returns. Text must be UTF-8 (checked unless the endpoint says not to).
     */
    SendStatus send(std::string_view message, MessageKind kind);
    SendStatus sendText(std::string_view message) { return send(message, MessageKind::text); }
    SendStatus sendBinary(std::string_view message) { return send(message, MessageKind::binary); }

    /** Bytes queued that the peer has not taken yet. */
    std::size_t getBufferedAmount() const noexcept { return engine_.bufferedAmount(); }

    /**
     * Starts the closing handshake (RFC 6455 §7.1.2) with a code (1000, 1001-1003,
     * 1007-1014 or 3000-4999; 0 for a close frame without one) and a reason of at most 123 bytes; the connection closes when
     * the peer answers, or after the server's close timeout. Fails with `closeCodeNotSendable`,
     * `closeReasonTooLong` or `invalidUtf8ToSend` (nothing sent), or `notOpen`.
     */
    std::error_code end(int code = 1000, std::string_view reason = {});
    /** Closes the TCP connection at once, without a closing handshake (reported as 1006). */
    void close();

    /** Subscribes to a topic; false if it already was. */
    bool subscribe(std::string_view topic);
    /** Unsubscribes; false if it was not subscribed. */
    bool unsubscribe(std::string_view topic);
    bool isSubscribed(std::string_view topic) const noexcept;
    /** The topics this connection is subscribed to. */
    std::vector<std::string_view> getTopics() const;
    /**
     * Sends a message to every subscriber of `topic` on every loop, except this connection.
     * The message is framed once per loop. Returns false if this connection is closing.
     */
    bool publish(std::string_view topic, std::string_view message, MessageKind kind = MessageKind::text);

    /**
     * "ip:port" of the TCP peer (asked of the kernel: empty once the connection is gone);
     * behind a proxy, the proxy's.
     */
    std::string getRemoteAddress() const { return remoteAddress(); }
    /**
     * The client's IP address, without a port: the one a trusted proxy forwarded in the
     * upgrade request (`ServerOptions::trustedProxies`), otherwise the peer's own (then
     * asked of the kernel: empty once the connection is gone).
     */
    std::string getClientAddress() const;
    /** The sub-protocol agreed on in the handshake, empty if none. */
    std::string_view getProtocol() const noexcept {
        return details_ ? std::string_view(details_->protocol) : std::string_view{};
    }

    /**
     * The user data given to `UpgradeResponse::accept`, or default-constructed for the
     * endpoint's user-data type; null if there is none. `T` must be that type.
     */
    template <class T>
    T* getUserData() const noexcept {
        assert(!userData_ || checkUserType(typeid(T)));
        return static_cast<T*>(userData_);
    }

    /** A handle usable from any thread. */
    WebSocketHandle handle() const noexcept;

    /** True until a close frame has been sent or received. */
    bool isOpen() const noexcept { return engine_.isOpen() && !finished_; }

    // --- internal -------------------------------------------------------------------
    struct Init {
        detail::LoopContext* ctx;
        detail::Route* route;
        std::string protocol; ///< empty for none
        void* userData;
        void (*destroyUserData)(void*);
        std::unique_ptr<protocol::Extension> extension;
        std::string client; ///< the address a trusted proxy forwarded; empty for none
    };
    WebSocket(net::Loop& loop, int fd, Init init);
    ~WebSocket() override;
    /** WebSockets live in their loop's slab (`new (pool) WebSocket(...)`), not on the heap. */
    static void* operator new(std::size_t size, detail::SlabPool& pool);
    static void operator delete(void* p, detail::SlabPool& pool) noexcept; ///< a constructor threw
    static void operator delete(void* p) noexcept;
    /** Starts the connection: the open handler, then the bytes that came with the handshake. */
    void start(protocol::MutableBytes leftover);
    /**
     * Queues a frame already made for this kind of connection (pub/sub fan-out). Like every
     * published message it may wait up to `ServerOptions::writeDelay` to leave with others.
     */
    bool sendFramed(protocol::Bytes frame);
    detail::Route& route() const noexcept { return *route_; }
    const protocol::Extension* extension() const noexcept { return engine_.extension(); }

private:
    struct Events;
    friend struct Events;
    friend struct detail::Topic;
    friend struct detail::LoopContext;

    using TopicList = std::vector<std::pair<detail::Topic*, std::uint32_t>>; ///< topic, our index in its list
    /** What most connections do without: kept behind one pointer, made only when needed. */
    struct Details {
        std::string protocol; ///< the sub-protocol agreed on; empty for none
        std::string client;   ///< the client's address a trusted proxy forwarded; empty for none
    };

    detail::LoopContext* ctx() const noexcept { return static_cast<detail::LoopContext*>(loop().owner()); }
    void onData(protocol::MutableBytes data) override;
    void onEof() override;
    void onError(std::error_code ec) override;
    void onWritable() override;
    void onTimeout() override;
    void onFlush() override;

    void receive(protocol::MutableBytes data);
    /** send(); published (`soon`), the write may wait for the server's write delay. */
    SendStatus queue(std::string_view message, MessageKind kind, bool soon);
    void queued(bool soon);
    void flush();

    /** Bytes queued in one turn before they are written without waiting for its end. */
    static constexpr std::size_t corkLimit = 64 * 1024;
    void resetIdle();
    void finish(int code, std::string_view reason);
    void leave() noexcept;
    void failByApp(const char* what);
    /** The other end in a log line: "ip:port", or "client (via ip:port)" behind a trusted proxy. */
    std::string describe() const;
    bool checkUserType(const std::type_info& t) const noexcept;
    template <class F>
    void guarded(F&& f);

    // Kept small: an idle connection is this object, in its loop's slab, and 24 bytes of
    // loop tables (docs/PERFORMANCE.md). The loop's state is found from the loop (ctx()).
    // The flags and the slot come first: they fill the padding at the end of net::Socket.
    // The slot's generation is the loop's table's (it changes only when the slot is freed).
    bool opened_ : 1 = false;    ///< the open handler ran
    bool finished_ : 1 = false;  ///< the close handler ran
    bool appFailed_ : 1 = false; ///< a handler threw: no more handler calls but close
    bool pingSent_ : 1 = false;  ///< an automatic ping is waiting for an answer
    bool wantDrain_ : 1 = false; ///< a send was told backpressure or dropped: drain is owed
    bool draining_ : 1 = false;  ///< the transport is done: waiting for the peer's FIN
    std::uint32_t slot_ = 0;     ///< in the loop's handle table
    protocol::Connection engine_;
    detail::Route* route_;
    void* userData_ = nullptr;
    void (*destroyUserData_)(void*) = nullptr;
    std::unique_ptr<const Details> details_;      ///< only with a sub-protocol or a forwarded address
    std::unique_ptr<TopicList> topics_;           ///< allocated on the first subscribe
};

} // namespace tongdao
