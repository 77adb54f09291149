#pragma once
// The client's insides: the runtime's state, a SocketTask, and the socket of one
// connection attempt (TCP, the opening handshake, then the frame engine).

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"
#include "tongdao/net/loop.hpp"
#include "tongdao/net/socket.hpp"
#include "tongdao/net/tls.hpp"
#include "tongdao/protocol/connection.hpp"
#include "tongdao/protocol/handshake.hpp"
#include "url.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

namespace tongdao::detail {

class TaskImpl;

struct RuntimeCore {
    explicit RuntimeCore(RuntimeOptions o) : options(o), loop(std::make_unique<net::Loop>()) {}
    RuntimeCore(asio::io_context& ctx, RuntimeOptions o) : options(o), loop(std::make_unique<net::Loop>(ctx)) {}

    RuntimeOptions options;
    std::unique_ptr<net::Loop> loop;
    std::atomic<int> active{0};  ///< tasks connecting, open or closing (the cap counts these)
    std::atomic<int> work{0};    ///< active tasks plus posted callbacks not yet run
    std::atomic<bool> runMode{false};
    std::thread thread;
    std::mutex tasksMutex;
    /** TLS contexts by verification settings; used on the loop's thread only. */
    std::map<std::string, std::shared_ptr<net::TlsClientContext>> tlsContexts;
    std::unordered_set<TaskImpl*> tasks; ///< counted tasks (connecting, open, closing), for stop()
    std::vector<std::weak_ptr<TaskImpl>> all; ///< every task made, for the destructor

    /** Runs `f` on the loop, counted as pending work until it has run. */
    template <class F>
    void post(F&& f) {
        work.fetch_add(1);
        loop->post([this, fn = std::forward<F>(f)]() mutable {
            fn();
            workDone();
        });
    }
    void workDone() {
        if (work.fetch_sub(1) == 1 && runMode.load()) loop->stop();
    }
    /** Posts `f`, to run only once `gate` is set (connectSocket has returned). */
    template <class F>
    void postGated(std::shared_ptr<std::atomic<bool>> gate, F f) {
        post([this, gate, f = std::move(f)]() mutable {
            if (!gate->load()) return postGated(gate, std::move(f)); // the caller is about to return
            f();
        });
    }
    /** Runs `f` now if on the loop's thread, else posts it. */
    template <class F>
    void onLoop(F&& f) {
        if (loop->isInLoopThread()) {
            net::Loop::Turn turn(*loop);
            f();
        } else {
            post(std::forward<F>(f));
        }
    }
};

class ClientSocket;

/** A SocketTask: the state machine of one logical connection, reconnections included. */
class TaskImpl final : public SocketTask, public std::enable_shared_from_this<TaskImpl> {
public:
    TaskImpl(RuntimeCore& rt, ConnectSocketOptions options, std::optional<Url> url);
    ~TaskImpl() override;

    void send(SendOptions options) override;
    void close(CloseOptions options) override;
    void onOpen(std::function<void(const OnOpenResult&)> listener) override;
    void onMessage(std::function<void(const OnMessageResult&)> listener) override;
    void onError(std::function<void(const OnErrorResult&)> listener) override;
    void onClose(std::function<void(const OnCloseResult&)> listener) override;
    int readyState() const noexcept override { return state_.load(); }
    std::string protocol() const override;
    std::size_t bufferedAmount() const noexcept override { return buffered_.load(); }

    /** Counts the task among the runtime's active ones (connectSocket accepted it). */
    void markCounted();
    /** On the loop: the first attempt. */
    void start();
    /** On the loop: the runtime stops or goes away. `report`: deliver onClose 1006. */
    void abort(bool report);
    /** The runtime is being destroyed (its loop stopped): let go of it for good. */
    void detach() noexcept;

    // --- from the socket, on the loop -------------------------------------------------
    void connected(ClientSocket& s);
    void secured(ClientSocket& s);
    void connectFailed(std::error_code ec);
    void opened(ClientSocket& s, const protocol::http::Response& response);
    void handshakeFailed(std::error_code ec, const protocol::http::Response& response);
    void message(protocol::MessageKind kind, protocol::Bytes payload);
    void heard(); ///< any bytes arrived (heartbeat)
    void socketGone(const protocol::CloseStatus& status, std::string errMsg);
    void updateBuffered(std::size_t n) noexcept { buffered_.store(n); }

    const ConnectSocketOptions& options() const noexcept { return options_; }
    const protocol::ConnectionOptions& engineOptions() const noexcept { return engine_; }
    RuntimeCore* runtime() const noexcept { return rt_.load(); }

private:
    void resolve();
    void connectNext();
    void fail(std::string errMsg, int code, std::string reason);
    void finish(int code, std::string reason);
    void releasePlace() noexcept;
    void dropListeners() noexcept;
    void scheduleReconnect(int code, const std::string& reason, const std::string& errMsg);
    void armHeartbeat();
    void sendNow(SendOptions& o);
    void flushQueue();
    void failQueue();
    static double nowMs();

    std::atomic<RuntimeCore*> rt_; ///< null once the runtime is gone
    ConnectSocketOptions options_;
    std::optional<Url> url_;
    protocol::ConnectionOptions engine_;
    std::atomic<int> state_{CONNECTING};
    std::atomic<std::size_t> buffered_{0};

    ClientSocket* socket_ = nullptr; ///< the current attempt's socket, if any
    std::unique_ptr<asio::ip::tcp::resolver> resolver_;
    std::unique_ptr<asio::steady_timer> timer_;     ///< connect timeout, or the reconnect delay
    std::unique_ptr<asio::steady_timer> heartbeat_;
    std::vector<asio::ip::tcp::endpoint> endpoints_;
    std::size_t endpointIndex_ = 0;
    std::string lastConnectError_;

    std::vector<std::function<void(const OnOpenResult&)>> openListeners_;
    std::vector<std::function<void(const OnMessageResult&)>> messageListeners_;
    std::vector<std::function<void(const OnErrorResult&)>> errorListeners_;
    std::vector<std::function<void(const OnCloseResult&)>> closeListeners_;
    std::optional<OnOpenResult> opened_;  ///< for listeners added after the event
    std::optional<OnErrorResult> errored_;
    std::optional<OnCloseResult> closed_;
    std::deque<OnMessageResult> unheard_; ///< messages before the first onMessage listener (bounded)

    std::deque<SendOptions> queue_;       ///< sends made while connecting
    std::size_t queuedBytes_ = 0;
    std::optional<CloseOptions> closing_; ///< close() was called while open
    mutable std::mutex protocolMutex_;
    std::string protocol_;
    SocketProfile profile_;
    int attempts_ = 0;                    ///< reconnection attempts since the last open
    bool counted_ = false;                ///< holds a place in rt_->active / work
    bool heardSincePing_ = true;
};

/** One connection attempt: TCP connect, the opening handshake, then frames. */
class ClientSocket final : public net::Socket {
public:
    ClientSocket(net::Loop& loop, int fd, std::shared_ptr<TaskImpl> task);

    protocol::Connection& engine() noexcept { return engine_; }
    /** Sends the opening handshake (once connected). */
    void beginHandshake(protocol::ClientRequest request);
    /** Writes what is queued; on failure the socket goes. */
    void flush();
    /** Closes without telling the task. */
    void drop() noexcept;

private:
    struct Events;
    void onConnect(std::error_code ec) override;
    void onSecured() override { task_->secured(*this); }
    void onData(protocol::MutableBytes data) override;
    void onEof() override;
    void onError(std::error_code ec) override;
    void onWritable() override { flush(); }
    void onFlush() override { flush(); }
    void onTimeout() override;
    void gone(const protocol::CloseStatus& status, std::string errMsg);

    std::shared_ptr<TaskImpl> task_;
    std::optional<protocol::ClientHandshake> handshake_;
    std::string request_;
    std::size_t requestSent_ = 0;
    protocol::Connection engine_;
    bool open_ = false;
    bool done_ = false;
};

} // namespace tongdao::detail

namespace tongdao {
struct Runtime::Impl : detail::RuntimeCore {
    using RuntimeCore::RuntimeCore;
};
} // namespace tongdao
