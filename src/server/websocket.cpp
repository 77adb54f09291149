#include "tongdao/server/websocket.hpp"

#include "detail.hpp"
#include "slab_pool.hpp"
#include "tongdao/log.hpp"

#include <algorithm>

namespace tongdao {

// The engine's events, turned into the endpoint's handlers.
struct WebSocket::Events : protocol::EventHandler {
    WebSocket& ws;
    explicit Events(WebSocket& w) : ws(w) {}

    void onMessage(MessageKind kind, protocol::Bytes payload) {
        auto& st = ws.ctx()->stats;
        st.messagesIn.add();
        st.bytesIn.add(payload.size());
        if (ws.finished_ || ws.appFailed_ || !ws.route_->behavior.message) return;
        ws.guarded([&] { ws.route_->behavior.message(ws, protocol::asString(payload), kind); });
    }
    void onPing(protocol::Bytes payload) {
        if (ws.route_->behavior.ping && !ws.appFailed_ && !ws.finished_)
            ws.guarded([&] { ws.route_->behavior.ping(ws, protocol::asString(payload)); });
    }
    void onPong(protocol::Bytes payload) {
        ws.pingSent_ = false;
        if (ws.route_->behavior.pong && !ws.appFailed_ && !ws.finished_)
            ws.guarded([&] { ws.route_->behavior.pong(ws, protocol::asString(payload)); });
    }
    void onClose(std::uint16_t, std::string_view) {
        // The engine echoed it; the close handler runs when the TCP connection ends.
    }
    void onError(std::error_code ec) {
        log(LogLevel::debug, "ws %s: closing: %s", ws.describe().c_str(), ec.message().c_str());
    }
};

// --- handle -------------------------------------------------------------------------

void WebSocketHandle::post(std::function<void(WebSocket&)> fn) const {
    if (!ctx_) return;
    auto* ctx = ctx_;
    const auto slot = slot_, gen = generation_;
    ctx->loop.post([ctx, slot, gen, fn = std::move(fn)] {
        if (WebSocket* ws = ctx->find(slot, gen)) fn(*ws);
    });
}

void WebSocketHandle::send(std::string message, MessageKind kind) const {
    post([m = std::move(message), kind](WebSocket& ws) { ws.send(m, kind); });
}

void WebSocketHandle::end(int code, std::string reason) const {
    post([code, r = std::move(reason)](WebSocket& ws) { ws.end(code, r); });
}

WebSocketHandle WebSocket::handle() const noexcept {
    // The table's generation is ours while we hold the slot; leave() bumped it once, so
    // once finished ours is the one before (a handle made in a close handler finds nothing,
    // even when the slot has been taken again).
    auto* c = ctx();
    return {c, slot_, c->slots[slot_].second - (finished_ ? 1u : 0u)};
}

// --- life -----------------------------------------------------------------------------

WebSocket::WebSocket(net::Loop& loop, int fd, Init init)
    : net::Socket(loop, fd), engine_(init.route->enginePerLoop[loop.index()], std::move(init.extension)), route_(init.route), userData_(init.userData), destroyUserData_(init.destroyUserData),
      details_(init.protocol.empty() && init.client.empty()
                   ? nullptr
                   : std::make_unique<const Details>(Details{std::move(init.protocol), std::move(init.client)})) {
    assert(init.ctx == ctx()); // found from the loop from now on
    std::uint32_t generation = 0;
    slot_ = ctx()->addSlot(this, generation);
    ++ctx()->openWebSockets;
    route_->connections.fetch_add(1, std::memory_order_relaxed);
    ctx()->stats.connectionsOpen.add();
    ctx()->stats.connectionsTotal.add();
}

void* WebSocket::operator new(std::size_t size, detail::SlabPool& pool) {
    assert(size <= pool.slotSize());
    (void)size;
    return pool.allocate();
}

void WebSocket::operator delete(void* p, detail::SlabPool&) noexcept { detail::SlabPool::release(p); }

void WebSocket::operator delete(void* p) noexcept { detail::SlabPool::release(p); }

WebSocket::~WebSocket() {
    // Normally finish() ran; this covers a loop torn down with connections open.
    leave();
    if (userData_ && destroyUserData_) destroyUserData_(userData_);
}

void WebSocket::leave() noexcept {
    // Undoes what the constructor did, once: topics, the handle's slot, the counts.
    if (finished_) return;
    finished_ = true;
    while (topics_ && !topics_->empty()) unsubscribe(topics_->back().first->name);
    ctx()->freeSlot(slot_);
    --ctx()->openWebSockets;
    route_->connections.fetch_sub(1, std::memory_order_relaxed);
    ctx()->stats.connectionsOpen.sub();
}

void WebSocket::start(protocol::MutableBytes leftover) {
    opened_ = true;
    resetIdle();
    if (route_->behavior.open) guarded([&] { route_->behavior.open(*this); });
    if (!leftover.empty() && !finished_) receive(leftover);
    markDirty();
}

template <class F>
void WebSocket::guarded(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        failByApp(e.what());
    } catch (...) {
        failByApp("unknown exception");
    }
}

std::string WebSocket::getClientAddress() const {
    if (details_ && !details_->client.empty()) return details_->client;
    const auto peer = net::peerIpAddress(fd());
    return peer ? peer->toString() : std::string();
}

std::string WebSocket::describe() const {
    return detail::describePeer(details_ ? std::string_view(details_->client) : std::string_view(), remoteAddress());
}

bool WebSocket::checkUserType(const std::type_info& t) const noexcept {
    return !route_->userType || *route_->userType == t;
}

void WebSocket::failByApp(const char* what) {
    // A handler threw: the connection cannot be trusted to be in a sane state.
    log(LogLevel::error, "ws %s on %s: handler threw: %s; closing with 1011", describe().c_str(),
        route_->pattern.c_str(), what);
    appFailed_ = true;
    if (engine_.isOpen()) engine_.close(protocol::CloseCode::internalError, "internal error");
    setTimeout(ctx()->server.options.closeTimeout);
    markDirty();
}

void WebSocket::finish(int code, std::string_view reason) {
    if (finished_) return;
    leave();
    if (opened_ && route_->behavior.close) {
        try {
            route_->behavior.close(*this, code, reason);
        } catch (const std::exception& e) {
            log(LogLevel::error, "ws %s: close handler threw: %s", describe().c_str(), e.what());
        } catch (...) {
            log(LogLevel::error, "ws %s: close handler threw", describe().c_str());
        }
    }
    net::Socket::close();
}

void WebSocket::close() {
    // An abort: no closing handshake, so the close handler sees 1006 (RFC 6455 §7.1.5).
    finish(protocol::CloseCode::abnormal, {});
}

std::error_code WebSocket::end(int code, std::string_view reason) {
    if (finished_) return make_error_code(error::notOpen);
    // 0 sends a close frame without a code; anything else must be a code one may send.
    if (code < 0 || code > 0xFFFF) return make_error_code(error::closeCodeNotSendable);
    const auto ec = engine_.close(static_cast<std::uint16_t>(code), reason);
    if (ec) return ec;
    setTimeout(ctx()->server.options.closeTimeout); // RFC 6455 §7.1.1: do not wait forever
    markDirty();
    return {};
}

// --- input ----------------------------------------------------------------------------

void WebSocket::resetIdle() {
    const auto& b = route_->behavior;
    if (!b.idleTimeout || !engine_.isOpen()) return;
    pingSent_ = false;
    // With automatic pings, a silent peer is pinged halfway, so a live one answers in time.
    setTimeout(b.sendPingsAutomatically ? std::max<std::uint32_t>(1, b.idleTimeout / 2) : b.idleTimeout);
}

void WebSocket::onData(protocol::MutableBytes data) {
    resetIdle();
    receive(data);
}

void WebSocket::receive(protocol::MutableBytes data) {
    Events events(*this);
    engine_.receive(data, events);
    if (finished_) return;
    if (engine_.bufferedAmount() != 0 || engine_.transportDone()) markDirty();
    if (engine_.closeExpected() && !draining_) setTimeout(ctx()->server.options.closeTimeout);
}

void WebSocket::onEof() {
    engine_.receiveEof();
    const auto& st = engine_.closeStatus();
    finish(st.code, st.reason);
}

void WebSocket::onError(std::error_code ec) {
    log(LogLevel::debug, "ws %s: %s", describe().c_str(), ec.message().c_str());
    engine_.receiveEof();
    finish(protocol::CloseCode::abnormal, {});
}

void WebSocket::onTimeout() {
    const auto& b = route_->behavior;
    if (draining_ || engine_.closeState() != protocol::CloseState::open || appFailed_) {
        // The peer did not finish the closing handshake in time.
        const auto& st = engine_.closeStatus();
        finish(st.remote ? st.code : protocol::CloseCode::abnormal, st.remote ? std::string_view(st.reason) : "");
        return;
    }
    if (b.sendPingsAutomatically && !pingSent_) {
        pingSent_ = true;
        engine_.ping();
        setTimeout(std::max<std::uint32_t>(1, b.idleTimeout - b.idleTimeout / 2));
        markDirty();
        return;
    }
    log(LogLevel::debug, "ws %s: idle for %us, closing", describe().c_str(), b.idleTimeout);
    end(protocol::CloseCode::goingAway, "idle timeout");
}

// --- output ---------------------------------------------------------------------------

SendStatus WebSocket::send(std::string_view message, MessageKind kind) { return queue(message, kind, false); }

SendStatus WebSocket::queue(std::string_view message, MessageKind kind, bool soon) {
    if (finished_ || !engine_.isOpen()) return SendStatus::dropped;
    const auto& b = route_->behavior;
    const std::size_t backlog = engine_.bufferedAmount();
    if (backlog > b.maxBackpressure) {
        ctx()->stats.backpressureDrops.add();
        wantDrain_ = true;
        if (b.closeOnBackpressureLimit) end(protocol::CloseCode::policyViolation, "backpressure limit");
        return SendStatus::dropped;
    }
    if (engine_.send(kind, protocol::asBytes(message))) return SendStatus::dropped;
    ctx()->stats.messagesOut.add();
    ctx()->stats.bytesOut.add(message.size());
    const bool hadBacklog = writePending(); // the kernel refused earlier data
    queued(soon);
    if (!hadBacklog) return SendStatus::success;
    wantDrain_ = true;
    return SendStatus::backpressure;
}

void WebSocket::queued(bool soon) {
    // Corked until the end of the turn (or, published, until the write delay is over), but
    // no further than corkLimit: past it the bytes go to the kernel now, so the backlog the
    // limits see is only what the peer has not taken, and a sender that stops at `dropped`
    // is woken by `drain`. While the kernel refuses data, the writable event writes it.
    if (engine_.bufferedAmount() >= corkLimit && !writePending()) flush();
    else if (soon) loop().markDirtySoon(*this);
    else markDirty();
}

bool WebSocket::sendFramed(protocol::Bytes frame) {
    if (finished_ || !engine_.isOpen()) return false;
    const auto& b = route_->behavior;
    if (engine_.bufferedAmount() > b.maxBackpressure) {
        ctx()->stats.backpressureDrops.add();
        wantDrain_ = true;
        if (b.closeOnBackpressureLimit) end(protocol::CloseCode::policyViolation, "backpressure limit");
        return false;
    }
    if (engine_.sendFramed(frame)) return false;
    ctx()->stats.messagesOut.add();
    queued(true);
    return true;
}

void WebSocket::onFlush() {
    const std::size_t before = engine_.bufferedAmount();
    flush();
    // A sender told `backpressure` or `dropped` waits for drain; when the end-of-turn
    // write takes the backlog down (no writable event will come), drain is due too. It
    // runs in a turn of its own, so a drain handler that sends cannot loop within this one.
    if (wantDrain_ && !finished_ && engine_.bufferedAmount() < before && route_->behavior.drain) {
        wantDrain_ = false;
        ctx()->loop.post([h = handle()] {
            h.post([](WebSocket& ws) {
                if (ws.route_->behavior.drain && !ws.appFailed_) ws.guarded([&] { ws.route_->behavior.drain(ws); });
            });
        });
    }
}

void WebSocket::flush() {
    if (finished_) return;
    if (engine_.bufferedAmount() != 0) {
        const auto n = write(engine_.pendingOutput());
        if (n < 0) {
            log(LogLevel::debug, "ws %s: write: %s", describe().c_str(), lastError().message().c_str());
            finish(protocol::CloseCode::abnormal, {});
            return;
        }
        engine_.consumeOutput(static_cast<std::size_t>(n));
        wantWritable(engine_.bufferedAmount() != 0);
    }
    if (engine_.transportDone() && engine_.bufferedAmount() == 0 && !draining_) {
        // RFC 6455 §7.1.1: the server closes TCP first. Send FIN and wait (bounded) for the
        // client's, so our close frame is not lost to a reset.
        draining_ = true;
        shutdownWrite();
        setTimeout(ctx()->server.options.closeTimeout);
    }
}

void WebSocket::onWritable() {
    const std::size_t before = engine_.bufferedAmount();
    flush();
    if (!finished_ && engine_.bufferedAmount() < before && route_->behavior.drain && !appFailed_) {
        wantDrain_ = false;
        guarded([&] { route_->behavior.drain(*this); });
    }
}

// --- pub/sub --------------------------------------------------------------------------

bool WebSocket::subscribe(std::string_view name) {
    if (finished_ || isSubscribed(name)) return false;
    detail::Topic* t = ctx()->topic(name, true);
    if (!topics_) topics_ = std::make_unique<TopicList>();
    auto& mine = *topics_;
    t->subscribers.emplace_back(this, static_cast<std::uint32_t>(mine.size()));
    mine.emplace_back(t, static_cast<std::uint32_t>(t->subscribers.size() - 1));
    return true;
}

bool WebSocket::unsubscribe(std::string_view name) {
    if (!topics_) return false;
    auto& list = *topics_;
    const auto it = std::find_if(list.begin(), list.end(), [&](const auto& e) { return e.first->name == name; });
    if (it == list.end()) return false;
    detail::Topic* t = it->first;
    const std::uint32_t mine = static_cast<std::uint32_t>(it - list.begin());
    // Remove us from the topic's list: swap with its last entry and fix that entry's back index.
    const std::uint32_t j = it->second;
    auto& subs = t->subscribers;
    subs[j] = subs.back();
    subs.pop_back();
    if (j < subs.size()) (*subs[j].first->topics_)[subs[j].second].second = j;
    // Remove the topic from our list the same way.
    list[mine] = list.back();
    list.pop_back();
    if (mine < list.size()) list[mine].first->subscribers[list[mine].second].second = mine;
    if (list.empty()) topics_.reset(); // back to 8 bytes
    ctx()->dropTopicIfEmpty(t);
    return true;
}

bool WebSocket::isSubscribed(std::string_view name) const noexcept {
    return topics_ &&
           std::any_of(topics_->begin(), topics_->end(), [&](const auto& e) { return e.first->name == name; });
}

std::vector<std::string_view> WebSocket::getTopics() const {
    std::vector<std::string_view> out;
    if (topics_)
        for (const auto& e : *topics_) out.emplace_back(e.first->name);
    return out;
}

bool WebSocket::publish(std::string_view topic, std::string_view message, MessageKind kind) {
    if (finished_ || !engine_.isOpen()) return false;
    auto& server = ctx()->server;
    for (auto& other : server.loops) {
        if (other.get() == ctx()) {
            ctx()->publishLocal(topic, message, kind, this);
        } else {
            other->loop.post([ctx = other.get(), t = std::string(topic), m = std::string(message), kind] {
                ctx->publishLocal(t, m, kind, nullptr);
            });
        }
    }
    return true;
}

} // namespace tongdao
