#include "task.hpp"

#include "tongdao/log.hpp"
#include "tongdao/protocol/permessage_deflate.hpp"
#include "tongdao/protocol/utf8.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

namespace tongdao::detail {

namespace {

constexpr int maxTimeoutMs = 60000;                 // the mini-program's default and cap
constexpr std::size_t maxQueuedBytes = 16u << 20;   // sends waiting for open
constexpr std::size_t maxUnheardMessages = 1024;    // messages before any onMessage listener

GeneralCallbackResult result(std::string msg) { return {std::move(msg)}; }

template <class L, class R>
void deliver(const std::vector<L>& listeners, const R& r) {
    // A copy: a listener may add listeners.
    const auto copy = listeners;
    for (const auto& l : copy) {
        try {
            l(r);
        } catch (const std::exception& e) {
            log(LogLevel::error, "client: listener threw: %s", e.what());
        } catch (...) {
            log(LogLevel::error, "client: listener threw");
        }
    }
}

} // namespace

double TaskImpl::nowMs() {
    using namespace std::chrono;
    return static_cast<double>(duration_cast<microseconds>(system_clock::now().time_since_epoch()).count()) / 1000.0;
}

TaskImpl::TaskImpl(RuntimeCore& rt, ConnectSocketOptions options, std::optional<Url> url)
    : rt_(&rt), options_(std::move(options)), url_(std::move(url)) {
    engine_.role = protocol::Role::client;
    engine_.pool = nullptr; // few client connections: each keeps its own buffers
}

TaskImpl::~TaskImpl() = default;

void TaskImpl::markCounted() {
    counted_ = true;
    rt_.load()->work.fetch_add(1);
    std::lock_guard lock(rt_.load()->tasksMutex);
    rt_.load()->tasks.insert(this);
}

std::string TaskImpl::protocol() const {
    std::lock_guard lock(protocolMutex_);
    return protocol_;
}

// --- listeners ----------------------------------------------------------------------

void TaskImpl::onOpen(std::function<void(const OnOpenResult&)> listener) {
    auto* rt = rt_.load();
    if (!rt) return;
    rt->onLoop([self = shared_from_this(), l = std::move(listener)] {
        if (self->state_ == CLOSED) return; // it will never open again
        self->openListeners_.push_back(l);
        if (self->opened_ && self->state_ == OPEN) l(*self->opened_); // added after the event
    });
}

void TaskImpl::onMessage(std::function<void(const OnMessageResult&)> listener) {
    auto* rt = rt_.load();
    if (!rt) return;
    rt->onLoop([self = shared_from_this(), l = std::move(listener)] {
        // Messages that came before anyone listened.
        while (!self->unheard_.empty()) {
            auto m = std::move(self->unheard_.front());
            self->unheard_.pop_front();
            l(m);
        }
        if (self->state_ != CLOSED) self->messageListeners_.push_back(l);
    });
}

void TaskImpl::onError(std::function<void(const OnErrorResult&)> listener) {
    auto* rt = rt_.load();
    if (!rt) return;
    rt->onLoop([self = shared_from_this(), l = std::move(listener)] {
        if (self->state_ == CLOSED) { // added after the end: the error, if there was one, once
            if (self->errored_) l(*self->errored_);
            return;
        }
        self->errorListeners_.push_back(l);
    });
}

void TaskImpl::onClose(std::function<void(const OnCloseResult&)> listener) {
    auto* rt = rt_.load();
    if (!rt) return;
    rt->onLoop([self = shared_from_this(), l = std::move(listener)] {
        if (self->closed_) return l(*self->closed_); // added after the end: called once, not kept
        self->closeListeners_.push_back(l);
    });
}

// --- connecting -------------------------------------------------------------------------

void TaskImpl::start() {
    if (state_ == CLOSED) return;
    profile_ = {};
    profile_.fetchStart = nowMs();
    auto& io = rt_.load()->loop->context();
    timer_ = std::make_unique<asio::steady_timer>(io);
    const int timeout = options_.timeout <= 0 ? maxTimeoutMs : std::min(options_.timeout, maxTimeoutMs);
    timer_->expires_after(std::chrono::milliseconds(timeout));
    timer_->async_wait([self = shared_from_this(), timeout](const asio::error_code& ec) {
        if (ec || self->state_ != CONNECTING || !self->rt_.load()) return;
        net::Loop::Turn turn(*self->rt_.load()->loop);
        if (self->socket_) self->socket_->drop();
        self->socket_ = nullptr;
        if (self->resolver_) self->resolver_->cancel();
        self->fail("connectSocket:fail timeout: not open within " + std::to_string(timeout) + " ms", 1006, "");
    });
    resolve();
}

void TaskImpl::resolve() {
    endpoints_.clear();
    endpointIndex_ = 0;
    lastConnectError_.clear();
    // A literal address needs no lookup: the lookup times equal fetchStart.
    asio::error_code ec;
    const auto literal = asio::ip::make_address(url_->host, ec);
    if (!ec) {
        profile_.domainLookUpStart = profile_.domainLookUpEnd = profile_.fetchStart;
        endpoints_.emplace_back(literal, url_->port);
        return connectNext();
    }
    profile_.domainLookUpStart = nowMs();
    resolver_ = std::make_unique<asio::ip::tcp::resolver>(rt_.load()->loop->context());
    resolver_->async_resolve(url_->host, std::to_string(url_->port),
                             [self = shared_from_this()](const asio::error_code& err,
                                                         asio::ip::tcp::resolver::results_type results) {
                                 if (!self->rt_.load() || self->state_ != CONNECTING || err == asio::error::operation_aborted)
                                     return;
                                 net::Loop::Turn turn(*self->rt_.load()->loop);
                                 self->profile_.domainLookUpEnd = nowMs();
                                 if (err)
                                     return self->fail("connectSocket:fail DNS lookup of " + self->url_->host +
                                                           " failed: " + err.message(),
                                                       1006, "");
                                 for (const auto& r : results) self->endpoints_.push_back(r.endpoint());
                                 self->connectNext();
                             });
}

void TaskImpl::connectNext() {
    // The addresses in the resolver's order (IPv6 and IPv4 alike), until one answers.
    while (endpointIndex_ < endpoints_.size()) {
        const auto& ep = endpoints_[endpointIndex_++];
        if (profile_.connectStart == 0) profile_.connectStart = nowMs();
        const int fd = net::connectTo(ep.data(), static_cast<unsigned>(ep.size()));
        if (fd < 0) {
            lastConnectError_ = std::strerror(errno);
            continue;
        }
        try {
            socket_ = new ClientSocket(*rt_.load()->loop, fd, shared_from_this());
        } catch (const std::exception& e) {
            ::close(fd);
            lastConnectError_ = e.what();
            continue;
        }
        return;
    }
    fail("connectSocket:fail connect to " + url_->hostHeader + " failed: " +
             (lastConnectError_.empty() ? std::string("no address") : lastConnectError_),
         1006, "");
}

void TaskImpl::connectFailed(std::error_code ec) {
    socket_ = nullptr;
    lastConnectError_ = ec.message();
    if (state_ == CONNECTING) connectNext();
}

void TaskImpl::connected(ClientSocket& s) {
    if (options_.tcpNoDelay) s.setNoDelay(true);
    if (!url_->secure) return secured(s);
    // wss://: TLS first, verified against the system's CAs (or tlsCaFile) unless told not to.
    const std::string key = (options_.tlsVerify ? "verify:" : "insecure:") + options_.tlsCaFile;
    auto& ctx = rt_.load()->tlsContexts[key];
    try {
        if (!ctx) ctx = std::make_shared<net::TlsClientContext>(net::TlsClientOptions{options_.tlsVerify, options_.tlsCaFile});
    } catch (const std::exception& e) {
        rt_.load()->tlsContexts.erase(key);
        socket_ = nullptr;
        s.drop();
        return fail(std::string("connectSocket:fail ") + e.what(), 1006, "");
    }
    s.startTls(ctx->newSession(url_->host), false);
}

void TaskImpl::secured(ClientSocket& s) {
    // connectEnd includes TLS, as the mini-program's profile does.
    profile_.connectEnd = nowMs();
    profile_.rtt = profile_.connectEnd - profile_.connectStart;
    protocol::ClientRequest req;
    req.host = url_->hostHeader;
    req.target = url_->target;
    req.protocols = options_.protocols;
    if (options_.perMessageDeflate) req.extensions.push_back(std::make_shared<protocol::ClientDeflateFactory>());
    bool userAgent = false;
    for (const auto& [name, value] : options_.header) {
        req.headers.emplace_back(name, value);
        userAgent = userAgent || protocol::http::iequals(name, "User-Agent");
    }
    if (!userAgent) req.headers.emplace_back("User-Agent", "tongdao/0.1");
    if (!options_.appid.empty())
        req.headers.emplace_back("Referer", "https://servicewechat.com/" + options_.appid + "/" +
                                                (options_.version.empty() ? "0" : options_.version) +
                                                "/page-frame.html");
    profile_.handshakeCost = nowMs(); // the start, for now
    s.beginHandshake(std::move(req));
}

void TaskImpl::handshakeFailed(std::error_code ec, const protocol::http::Response& response) {
    socket_ = nullptr;
    std::string why = ec.message();
    if (ec == error::badStatus)
        why = "server answered " + std::to_string(response.status) + " " + std::string(response.reason);
    fail("connectSocket:fail handshake failed: " + why, 1006, "");
}

void TaskImpl::opened(ClientSocket& s, const protocol::http::Response& response) {
    const double now = nowMs();
    profile_.handshakeCost = now - profile_.handshakeCost;
    profile_.cost = now - profile_.fetchStart;
    if (timer_) timer_->cancel();
    attempts_ = 0;
    state_ = OPEN;
    OnOpenResult r;
    for (const auto& h : response.headers) r.header[std::string(h.name)] = std::string(h.value);
    r.profile = profile_;
    {
        std::lock_guard lock(protocolMutex_);
        const auto p = response.headers.find("Sec-WebSocket-Protocol");
        protocol_ = p ? std::string(*p) : std::string();
    }
    (void)s;
    opened_ = r;
    // What waited for open leaves first, in order, ahead of anything onOpen sends.
    flushQueue();
    deliver(openListeners_, r);
    if (state_ != OPEN) return; // closed from a listener
    armHeartbeat();
}

// --- events once open ---------------------------------------------------------------------

void TaskImpl::heard() { heardSincePing_ = true; }

void TaskImpl::message(protocol::MessageKind kind, protocol::Bytes payload) {
    OnMessageResult r;
    if (kind == protocol::MessageKind::text) r.data = std::string(protocol::asString(payload));
    else r.data = ArrayBuffer(reinterpret_cast<const std::uint8_t*>(payload.data()),
                              reinterpret_cast<const std::uint8_t*>(payload.data()) + payload.size());
    if (messageListeners_.empty()) {
        if (unheard_.size() < maxUnheardMessages) unheard_.push_back(std::move(r));
        else log(LogLevel::warn, "client: no onMessage listener; message dropped");
        return;
    }
    deliver(messageListeners_, r);
}

void TaskImpl::socketGone(const protocol::CloseStatus& status, std::string errMsg) {
    socket_ = nullptr;
    if (heartbeat_) heartbeat_->cancel();
    if (state_ == CLOSED) return;
    if (state_ == CONNECTING) {
        // Lost during the handshake.
        return fail(errMsg.empty() ? "connectSocket:fail connection closed during the handshake" : errMsg, 1006, "");
    }
    const bool userClosed = closing_.has_value();
    const int code = status.code;
    std::string reason = status.reason;
    // Reconnect after a loss, a failure, or a server going away or restarting; not after
    // a close the server meant (1000, or an application's code).
    const bool transient = code == protocol::CloseCode::abnormal || status.error ||
                           code == protocol::CloseCode::goingAway || code == protocol::CloseCode::serviceRestart ||
                           code == protocol::CloseCode::tryAgainLater || code == protocol::CloseCode::badGateway;
    if (!userClosed && options_.reconnect.enabled && transient) return scheduleReconnect(code, reason, errMsg);
    if (status.error) errMsg = std::string(describe(static_cast<error>(status.error.value())));
    if (code == protocol::CloseCode::abnormal && errMsg.empty()) errMsg = "connection lost";
    state_ = CLOSED;
    failQueue();
    if (!errMsg.empty() && (code == protocol::CloseCode::abnormal || status.error)) {
        errored_ = OnErrorResult{errMsg};
        deliver(errorListeners_, *errored_);
    }
    finish(code, std::move(reason));
}

// --- failure, reconnection and the end -------------------------------------------------

void TaskImpl::fail(std::string errMsg, int code, std::string reason) {
    if (timer_) timer_->cancel();
    if (!closing_ && options_.reconnect.enabled && state_ != CLOSED) return scheduleReconnect(code, reason, errMsg);
    state_ = CLOSED;
    failQueue();
    errored_ = OnErrorResult{std::move(errMsg)};
    deliver(errorListeners_, *errored_);
    finish(code, std::move(reason));
}

void TaskImpl::releasePlace() noexcept {
    auto* rt = rt_.load();
    if (!counted_ || !rt) return;
    {
        std::lock_guard lock(rt->tasksMutex);
        rt->tasks.erase(this);
    }
    rt->active.fetch_sub(1);
}

void TaskImpl::dropListeners() noexcept {
    // Listeners often hold the task itself (task->onOpen([task] {...})): letting go of them
    // at the end breaks that cycle.
    openListeners_.clear();
    messageListeners_.clear();
    errorListeners_.clear();
    closeListeners_.clear();
    unheard_.clear();
}

void TaskImpl::finish(int code, std::string reason) {
    state_ = CLOSED;
    timer_.reset();
    heartbeat_.reset();
    resolver_.reset();
    closed_ = OnCloseResult{code, std::move(reason)};
    // The place under the cap is free before onClose runs, so onClose may connect again.
    releasePlace();
    auto listeners = std::move(closeListeners_);
    dropListeners();
    deliver(listeners, *closed_);
    if (counted_) {
        counted_ = false;
        if (auto* rt = rt_.load()) rt->workDone();
    }
}

void TaskImpl::scheduleReconnect(int code, const std::string& reason, const std::string& errMsg) {
    const auto& r = options_.reconnect;
    if (++attempts_ > r.maxAttempts) {
        attempts_ = 0;
        state_ = CLOSED;
        failQueue();
        errored_ = OnErrorResult{"reconnect failed after " + std::to_string(r.maxAttempts) + " attempts: " + errMsg};
        deliver(errorListeners_, *errored_);
        return finish(code, reason);
    }
    // Exponential backoff with jitter: initialDelay * 2^(n-1), capped, then ± jitter.
    double delay = static_cast<double>(r.initialDelay.count()) * std::pow(2.0, attempts_ - 1);
    delay = std::min(delay, static_cast<double>(r.maxDelay.count()));
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_real_distribution<double> spread(1.0 - r.jitter, 1.0 + r.jitter);
    delay *= spread(rng);
    log(LogLevel::info, "client: %s; reconnecting in %.0f ms (attempt %d of %d)",
        errMsg.empty() ? "connection closed" : errMsg.c_str(), delay, attempts_, r.maxAttempts);
    state_ = CONNECTING;
    timer_ = std::make_unique<asio::steady_timer>(rt_.load()->loop->context());
    timer_->expires_after(std::chrono::milliseconds(static_cast<long>(delay)));
    timer_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
        if (ec || !self->rt_.load() || self->state_ != CONNECTING) return;
        net::Loop::Turn turn(*self->rt_.load()->loop);
        self->start();
    });
}

void TaskImpl::armHeartbeat() {
    const auto& hb = options_.heartbeat;
    if (hb.interval.count() <= 0) return;
    if (!heartbeat_) heartbeat_ = std::make_unique<asio::steady_timer>(rt_.load()->loop->context());
    heartbeat_->expires_after(hb.interval);
    heartbeat_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
        if (ec || !self->rt_.load() || self->state_ != OPEN || !self->socket_) return;
        net::Loop::Turn turn(*self->rt_.load()->loop);
        // Ping, then wait `timeout` for anything at all from the peer.
        self->heardSincePing_ = false;
        self->socket_->engine().ping();
        self->socket_->markDirty();
        self->heartbeat_->expires_after(self->options_.heartbeat.timeout);
        self->heartbeat_->async_wait([self](const asio::error_code& e) {
            if (e || !self->rt_.load() || self->state_ != OPEN || !self->socket_) return;
            net::Loop::Turn t(*self->rt_.load()->loop);
            if (self->heardSincePing_) return self->armHeartbeat();
            auto* s = self->socket_;
            self->socket_ = nullptr;
            s->drop();
            protocol::CloseStatus st;
            self->socketGone(st, "heartbeat timeout: no answer within " +
                                     std::to_string(self->options_.heartbeat.timeout.count()) + " ms");
        });
    });
}

void TaskImpl::abort(bool report) {
    if (state_ == CLOSED) return;
    closing_ = CloseOptions{};
    if (socket_) socket_->drop();
    socket_ = nullptr;
    timer_.reset();
    heartbeat_.reset();
    resolver_.reset();
    state_ = CLOSED;
    if (report) {
        failQueue();
        return finish(protocol::CloseCode::abnormal, "");
    }
    queue_.clear();
    releasePlace();
    dropListeners();
    if (counted_) {
        counted_ = false;
        if (auto* rt = rt_.load()) rt->workDone();
    }
}

void TaskImpl::detach() noexcept {
    abort(false);
    rt_.store(nullptr);
    socket_ = nullptr;
    timer_.reset(); // Asio objects must go before the io_context they belong to
    heartbeat_.reset();
    resolver_.reset();
}

// --- sending ------------------------------------------------------------------------------

void TaskImpl::send(SendOptions o) {
    auto* runtime = rt_.load();
    if (!runtime) return;
    runtime->onLoop([self = shared_from_this(), o = std::move(o)]() mutable {
        auto* rt = self->rt_.load();
        const auto size = std::visit([](const auto& d) { return d.size(); }, o.data);
        if (self->state_ == OPEN && self->socket_) return self->sendNow(o);
        if (self->state_ == CONNECTING && self->options_.queueWhileConnecting) {
            if (self->queuedBytes_ + size > maxQueuedBytes) {
                rt->post([o] {
                    if (o.fail) o.fail(result("sendSocketMessage:fail too much queued before open"));
                    if (o.complete) o.complete(result("sendSocketMessage:fail too much queued before open"));
                });
                return;
            }
            self->queuedBytes_ += size;
            self->queue_.push_back(std::move(o));
            return;
        }
        rt->post([o] {
            const auto r = result("sendSocketMessage:fail WebSocket is not connected");
            if (o.fail) o.fail(r);
            if (o.complete) o.complete(r);
        });
    });
}

void TaskImpl::sendNow(SendOptions& o) {
    std::error_code ec;
    if (const auto* text = std::get_if<std::string>(&o.data)) {
        ec = socket_->engine().sendText(*text);
    } else {
        const auto& bin = std::get<ArrayBuffer>(o.data);
        ec = socket_->engine().send(protocol::MessageKind::binary,
                                     {reinterpret_cast<const std::byte*>(bin.data()), bin.size()});
    }
    socket_->markDirty();
    if (!o.success && !o.fail && !o.complete) return; // nobody to tell: no posting per message
    std::string msg = ec ? "sendSocketMessage:fail " + ec.message() : "sendSocketMessage:ok";
    rt_.load()->post([o = std::move(o), msg = std::move(msg), ok = !ec] {
        const auto r = result(msg);
        if (ok && o.success) o.success(r);
        if (!ok && o.fail) o.fail(r);
        if (o.complete) o.complete(r);
    });
}

void TaskImpl::flushQueue() {
    while (!queue_.empty() && state_ == OPEN && socket_) {
        auto o = std::move(queue_.front());
        queue_.pop_front();
        queuedBytes_ -= std::visit([](const auto& d) { return d.size(); }, o.data);
        sendNow(o);
    }
}

void TaskImpl::failQueue() {
    // The seed's queue, built in: what waited for an open that never came fails.
    while (!queue_.empty()) {
        auto o = std::move(queue_.front());
        queue_.pop_front();
        if (auto* rt = rt_.load())
            rt->post([o = std::move(o)] {
                const auto r = result("sendSocketMessage:fail WebSocket is not connected");
                if (o.fail) o.fail(r);
                if (o.complete) o.complete(r);
            });
    }
    queuedBytes_ = 0;
}

// --- closing ------------------------------------------------------------------------------

void TaskImpl::close(CloseOptions o) {
    auto* runtime = rt_.load();
    if (!runtime) return;
    runtime->onLoop([self = shared_from_this(), o = std::move(o)]() mutable {
        auto* rt = self->rt_.load();
        auto answer = [rt](const CloseOptions& opts, std::string msg, bool ok) {
            rt->post([opts, msg = std::move(msg), ok] {
                const auto r = result(msg);
                if (ok && opts.success) opts.success(r);
                if (!ok && opts.fail) opts.fail(r);
                if (opts.complete) opts.complete(r);
            });
        };
        // The WebSocket API's rules (WHATWG §9.3.2), which the mini-program follows.
        if (o.code != 1000 && (o.code < 3000 || o.code > 4999))
            return answer(o, "closeSocket:fail The code must be either 1000, or between 3000 and 4999. " +
                                 std::to_string(o.code) + " is neither.", false);
        if (o.reason.size() > protocol::maxCloseReason)
            return answer(o, "closeSocket:fail The message must not be greater than 123 bytes.", false);
        if (!protocol::isValidUtf8(o.reason))
            return answer(o, "closeSocket:fail The message must be valid UTF-8.", false);
        switch (self->state_.load()) {
        case CLOSED: return answer(o, "closeSocket:fail WebSocket is not connected", false);
        case CLOSING: return answer(o, "closeSocket:ok", true);
        case CONNECTING: {
            // Cancels the connect (or a pending reconnection), and still reports onClose:
            // the seed's "close before open does nothing" pitfall, fixed.
            self->closing_ = o;
            if (self->socket_) self->socket_->drop();
            self->socket_ = nullptr;
            answer(o, "closeSocket:ok", true);
            self->state_ = CLOSED;
            self->failQueue();
            return self->finish(o.code, o.reason);
        }
        default: break;
        }
        self->closing_ = o;
        self->state_ = CLOSING;
        if (self->socket_) {
            self->socket_->engine().close(static_cast<std::uint16_t>(o.code), o.reason);
            self->socket_->setTimeout(5); // the server has this long to answer
            self->socket_->markDirty();
        }
        answer(o, "closeSocket:ok", true);
    });
}

} // namespace tongdao::detail
