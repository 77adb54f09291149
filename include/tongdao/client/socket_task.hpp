#pragma once
/**
 * @file
 * The mini-program socket API in C++: `connectSocket` returns a `SocketTask`.
 *
 * Names, options, callback results and `errMsg` strings follow WeChat's documentation of
 * `wx.connectSocket` and `SocketTask`, so it maps one to one:
 *
 * @code
 *   auto task = tongdao::connectSocket({
 *       .url = "wss://example.com/chat",
 *       .header = {{"content-type", "application/json"}},
 *       .success = [](const tongdao::GeneralCallbackResult& r) { std::puts(r.errMsg.c_str()); },
 *   });
 *   task->onOpen([task](const tongdao::OnOpenResult&) { task->send({.data = "hello"}); });
 *   task->onMessage([](const tongdao::OnMessageResult& r) { ... r.data ... });
 *   task->onClose([](const tongdao::OnCloseResult& r) { ... r.code, r.reason ... });
 *   tongdao::defaultRuntime().run(); // callbacks run here, until no task is left
 * @endcode
 *
 * As in the mini-program, `success`/`fail`/`complete` report whether the call was
 * accepted, not whether the socket opened: that is `onOpen`, or `onError` then `onClose`.
 * See docs/CLIENT.md for the differences from the mini-program, each on purpose.
 */

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace tongdao {

class Runtime;

/** Binary data, as JavaScript's ArrayBuffer. */
using ArrayBuffer = std::vector<std::uint8_t>;
/** What `send` takes and `onMessage` gives: text (`std::string`, UTF-8) or binary. */
using SocketData = std::variant<std::string, ArrayBuffer>;

/** The argument of `success`, `fail` and `complete`. */
struct GeneralCallbackResult {
    std::string errMsg = {}; ///< "connectSocket:ok", "sendSocketMessage:fail WebSocket is not connected", ...
};

using Callback = std::function<void(const GeneralCallbackResult&)>;

/** Timings of the connection, as in `SocketTask.onOpen`'s `profile`; milliseconds. */
struct SocketProfile {
    double fetchStart = 0;        ///< when the task started (ms since the epoch)
    double domainLookUpStart = 0; ///< DNS started (equals fetchStart for a literal address)
    double domainLookUpEnd = 0;   ///< DNS finished
    double connectStart = 0;      ///< TCP connect started
    double connectEnd = 0;        ///< connection established, TLS included
    double rtt = 0;               ///< connectEnd - connectStart: TCP (and TLS) only
    double handshakeCost = 0;     ///< the WebSocket opening handshake
    double cost = 0;              ///< from fetchStart to open
};

struct OnOpenResult {
    std::map<std::string, std::string> header = {}; ///< the 101 response's header fields (names as sent)
    SocketProfile profile = {};
};
struct OnMessageResult {
    SocketData data = {};
};
struct OnErrorResult {
    std::string errMsg = {};
};
struct OnCloseResult {
    int code = 1000;    ///< the close code: the server's, ours, or 1006 without a closing handshake
    std::string reason = {};
};

/** Reconnection after an abnormal close (beyond the mini-program; off by default). */
struct ReconnectOptions {
    bool enabled = false;
    int maxAttempts = 10;                            ///< then give up: onError, onClose
    std::chrono::milliseconds initialDelay{500};     ///< before the first attempt
    std::chrono::milliseconds maxDelay{30000};       ///< the delay doubles up to this
    double jitter = 0.2;                             ///< ± this fraction, at random
};

/** Heartbeat pings with a dead-peer timeout (beyond the mini-program; off by default). */
struct HeartbeatOptions {
    std::chrono::milliseconds interval{0};   ///< 0: no heartbeat
    std::chrono::milliseconds timeout{10000}; ///< nothing heard this long after a ping: the peer is dead
};

/** `wx.connectSocket`'s options, and a few of tongdao's own (marked). */
struct ConnectSocketOptions {
    std::string url = {};                           ///< ws:// or wss://
    std::map<std::string, std::string> header = {}; ///< extra request header fields; Referer is not allowed
    std::vector<std::string> protocols = {};        ///< sub-protocols to offer
    bool tcpNoDelay = false;
    bool perMessageDeflate = false;
    int timeout = 60000;                       ///< ms; covers DNS, TCP, TLS and handshake; at most 60000
    bool forceCellularNetwork = false;         ///< accepted; has no effect here (no cellular choice)
    std::string method = "GET";                ///< legacy option: only GET is allowed
    std::map<std::string, std::string> data = {};   ///< legacy option: accepted and ignored, as the runtime does
    std::string appid = {};                         ///< with `version`: Referer https://servicewechat.com/{appid}/{version}/page-frame.html
    std::string version = {};
    Callback success = {};
    Callback fail = {};
    Callback complete = {};

    // --- tongdao's own ----------------------------------------------------------------
    /** Sends made before open wait and leave in order on open (the seed's socketMsgQueue). */
    bool queueWhileConnecting = true;
    ReconnectOptions reconnect = {};
    HeartbeatOptions heartbeat = {};
    /** Verify the server's certificate (wss://); see docs/CLIENT.md. */
    bool tlsVerify = true;
    std::string tlsCaFile = {};                     ///< trust these CAs instead of the system's
};

struct SendOptions {
    SocketData data = {};
    Callback success = {};
    Callback fail = {};
    Callback complete = {};
};

struct CloseOptions {
    int code = 1000;      ///< 1000 or 3000-4999
    std::string reason = {};   ///< UTF-8, at most 123 bytes
    Callback success = {};
    Callback fail = {};
    Callback complete = {};
};

/**
 * One WebSocket connection (`SocketTask`). Created by `connectSocket`; the runtime keeps it
 * alive while it is connecting or open, so dropping the pointer does not close it.
 *
 * @par Thread Safety
 * Every method may be called from any thread; callbacks and listeners run on the
 * runtime's loop thread, one at a time. No callback runs before `connectSocket` returns.
 */
class SocketTask {
public:
    enum ReadyState : int { CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3 };

    virtual ~SocketTask() = default;

    /** Sends text or binary. Fails with "sendSocketMessage:fail WebSocket is not connected" when not open. */
    virtual void send(SendOptions options) = 0;
    /** Closes with a code (1000 or 3000-4999) and a reason; before open it cancels the connect. */
    virtual void close(CloseOptions options = {}) = 0;

    // Listeners: several may be added; each runs for every later event. A listener added
    // after the event it listens for (open, error, close) is called at once with it.
    virtual void onOpen(std::function<void(const OnOpenResult&)> listener) = 0;
    virtual void onMessage(std::function<void(const OnMessageResult&)> listener) = 0;
    virtual void onError(std::function<void(const OnErrorResult&)> listener) = 0;
    virtual void onClose(std::function<void(const OnCloseResult&)> listener) = 0;

    /** CONNECTING, OPEN, CLOSING or CLOSED. */
    virtual int readyState() const noexcept = 0;
    /** The sub-protocol the server chose, empty if none (valid once open). */
    virtual std::string protocol() const = 0;
    /** Bytes queued and not yet written. */
    virtual std::size_t bufferedAmount() const noexcept = 0;
};

/** Opens a WebSocket on the default runtime (see `defaultRuntime()`). */
std::shared_ptr<SocketTask> connectSocket(ConnectSocketOptions options);
/** Opens a WebSocket on the given runtime. */
std::shared_ptr<SocketTask> connectSocket(Runtime& runtime, ConnectSocketOptions options);

} // namespace tongdao
