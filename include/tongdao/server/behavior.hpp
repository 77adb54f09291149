#pragma once
/**
 * @file
 * What a WebSocket endpoint does: limits with their defaults and the handlers, in the
 * shape of uWebSockets' `WebSocketBehavior`, and the upgrade request and response.
 */

#include "tongdao/protocol/http.hpp"
#include "tongdao/protocol/types.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace tongdao {

using protocol::MessageKind;

class WebSocket;

namespace net {
class Loop;
}

namespace detail {
struct PendingUpgrade;
}

/** permessage-deflate (RFC 7692) for an endpoint. */
enum class Compression : std::uint8_t {
    off,       ///< never negotiated
    shared,    ///< one decompressor and a compressor per window size in use per thread, messages
               ///< compressed on their own: a few bytes per connection; published messages
               ///< compressed once per thread and window size
    dedicated, ///< a compressor and decompressor per connection, keeping context: the best
               ///< ratio, some 300 KiB per busy connection at the default window
};

/** The outcome of `WebSocket::send`. */
enum class SendStatus : std::uint8_t {
    success,      ///< queued, and the connection had no backlog: it leaves at the end of this turn
    backpressure, ///< queued behind data the peer has not yet taken
    dropped,      ///< not queued: the connection is closing, or its backlog is over `maxBackpressure`
};

/**
 * The opening handshake as the `upgrade` handler sees it: already checked against
 * RFC 6455 §4.2.1. Views are valid during the handler only; copy what you keep.
 */
class UpgradeRequest {
public:
    UpgradeRequest(const protocol::http::Request& r, std::vector<std::string_view> protocols, std::string remote,
                   std::string client = {})
        : request_(r), protocols_(std::move(protocols)), remote_(std::move(remote)), client_(std::move(client)) {}

    std::string_view method() const noexcept { return request_.method; }
    std::string_view target() const noexcept { return request_.target; }
    std::string_view path() const noexcept { return request_.path(); }
    std::string_view query() const noexcept { return request_.query(); }
    /** The value of a query parameter (not percent-decoded), or empty. */
    std::string_view queryParam(std::string_view name) const noexcept;
    /** The first header field of that name, compared case-insensitively, or empty. */
    std::string_view header(std::string_view name) const noexcept {
        return request_.headers.find(name).value_or(std::string_view{});
    }
    const protocol::http::HeaderList& headers() const noexcept { return request_.headers; }
    /** The sub-protocols the client offered, in its order of preference. */
    const std::vector<std::string_view>& protocols() const noexcept { return protocols_; }
    /** "ip:port" of the TCP peer: behind a proxy, the proxy's. */
    const std::string& remoteAddress() const noexcept { return remote_; }
    /**
     * The client's IP address, without a port: the one a trusted proxy forwarded
     * (`ServerOptions::trustedProxies`), otherwise the peer's own. Empty if unknown.
     */
    const std::string& clientAddress() const noexcept { return client_; }

private:
    const protocol::http::Request& request_;
    std::vector<std::string_view> protocols_;
    std::string remote_;
    std::string client_;
};

/**
 * The answer to an upgrade. Answer once, with `accept` or `reject`, during the handler or
 * later (keep the object; it is cheap to move). A later answer must come on the
 * connection's loop: `loop()->post(...)`. If the client left meanwhile, answering does
 * nothing and `aborted()` is true. An object destroyed unanswered rejects with 503.
 *
 * @par Thread Safety
 * Use on the connection's loop only.
 */
class UpgradeResponse {
public:
    explicit UpgradeResponse(std::shared_ptr<detail::PendingUpgrade> p) : pending_(std::move(p)) {}
    UpgradeResponse(UpgradeResponse&&) noexcept = default;
    UpgradeResponse& operator=(UpgradeResponse&&) noexcept = default;
    ~UpgradeResponse();

    /**
     * Accepts. `protocol` must be one of those offered, or empty for none. `userData` is
     * the connection's user data (see `WebSocket::getUserData`); by default the endpoint's
     * user-data type is default-constructed.
     */
    void accept(std::string_view protocol = {});
    template <class T>
        requires(!std::is_convertible_v<T, std::string_view>) // a string is a protocol, not user data
    void accept(T userData, std::string_view protocol = {}) {
        setUserData(new T(std::move(userData)), [](void* p) { delete static_cast<T*>(p); });
        accept(protocol);
    }
    /** Refuses with an HTTP status and a one-line reason as the body. */
    void reject(int status, std::string_view reason);
    /** Adds a header field to the 101 (or the refusal). */
    void setHeader(std::string name, std::string value);

    bool answered() const noexcept;
    bool aborted() const noexcept;
    /** The loop the connection lives on, for answering later from another thread. */
    net::Loop* loop() const noexcept;

private:
    void setUserData(void* data, void (*destroy)(void*));
    std::shared_ptr<detail::PendingUpgrade> pending_;
};

/**
 * An endpoint's limits and handlers. Every handler runs on the connection's loop; a
 * handler that throws closes its connection with 1011 and the exception is logged.
 */
struct WebSocketBehavior {
    /** Largest message (and frame) accepted; larger ones close the connection with 1009. */
    std::size_t maxPayloadLength = 16 * 1024 * 1024;
    /** Seconds without receiving anything before the connection is closed; 0 = never. */
    std::uint32_t idleTimeout = 120;
    /** Ping a silent peer halfway through `idleTimeout`, so a live one answers in time. */
    bool sendPingsAutomatically = true;
    /** Backlog (bytes the peer has not taken) beyond which sends are dropped. */
    std::size_t maxBackpressure = 1024 * 1024;
    /** Close the connection instead of dropping when the backlog is over the limit. */
    bool closeOnBackpressureLimit = false;
    /** Open connections allowed on this endpoint; further upgrades get 503. 0 = no limit. */
    std::size_t maxConnections = 0;
    /** Check outgoing text is UTF-8 (RFC 6455 §8.1); off saves a pass over each message. */
    bool validateOutgoingText = true;
    /** permessage-deflate, when the client offers it. */
    Compression compression = Compression::off;
    /** Messages shorter than this go uncompressed. */
    std::size_t compressThreshold = 64;
    /** zlib level, 1 (fast) to 9 (small). */
    int compressLevel = 6;
    /**
     * The compressor's largest window, 9 to 15 bits (memory against ratio), in both modes; a
     * client's smaller `server_max_window_bits` (9 and up) is honoured below it.
     */
    int compressWindowBits = 15;

    /** Sees each upgrade first. Without it every valid upgrade is accepted, with no sub-protocol. */
    std::function<void(UpgradeRequest&, UpgradeResponse&)> upgrade = {};
    std::function<void(WebSocket&)> open = {};
    /** A whole message; the view is valid during the call. */
    std::function<void(WebSocket&, std::string_view message, MessageKind kind)> message = {};
    /** The backlog went down; `getBufferedAmount()` tells by how much. */
    std::function<void(WebSocket&)> drain = {};
    std::function<void(WebSocket&, std::string_view payload)> ping = {};
    std::function<void(WebSocket&, std::string_view payload)> pong = {};
    /**
     * The connection is gone: `code` is the peer's close code (1005 if its close frame had
     * none), ours if we failed it, 1006 if it ended without a close frame.
     */
    std::function<void(WebSocket&, int code, std::string_view reason)> close = {};
};

} // namespace tongdao
