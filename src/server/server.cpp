#include "tongdao/server/server.hpp"

#include "detail.hpp"
#include "http_session.hpp"
#include "tongdao/log.hpp"
#include "tongdao/protocol/frame.hpp"
#include "tongdao/protocol/handshake.hpp"
#include "tongdao/net/tls.hpp"
#include "tongdao/protocol/utf8.hpp"

#include <asio/signal_set.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace tongdao {

using detail::LoopContext;
using detail::LoopStats;

// --- upgrade responses ------------------------------------------------------------------

UpgradeResponse::~UpgradeResponse() {
    // Destroyed unanswered (not kept for later): refuse rather than leave the client hanging.
    if (pending_ && !pending_->answered && pending_->session)
        pending_->session->rejectUpgrade(503, "upgrade not answered");
}

void UpgradeResponse::accept(std::string_view protocol) {
    if (pending_ && pending_->session) pending_->session->acceptUpgrade(protocol);
}

void UpgradeResponse::reject(int status, std::string_view reason) {
    if (pending_ && pending_->session) pending_->session->rejectUpgrade(status, reason);
}

void UpgradeResponse::setHeader(std::string name, std::string value) {
    if (!pending_) return;
    if (!protocol::http::isToken(name) || !protocol::http::isSafeFieldValue(value)) {
        log(LogLevel::error, "upgrade: header '%s' dropped: not a valid field", name.c_str());
        return;
    }
    pending_->headers.emplace_back(std::move(name), std::move(value));
}

void UpgradeResponse::setUserData(void* data, void (*destroy)(void*)) {
    if (!pending_ || pending_->answered) {
        destroy(data);
        return;
    }
    if (pending_->userData && pending_->destroyUserData) pending_->destroyUserData(pending_->userData);
    pending_->userData = data;
    pending_->destroyUserData = destroy;
}

bool UpgradeResponse::answered() const noexcept { return pending_ && pending_->answered; }
bool UpgradeResponse::aborted() const noexcept { return pending_ && !pending_->answered && !pending_->session; }
net::Loop* UpgradeResponse::loop() const noexcept { return pending_ ? pending_->loop : nullptr; }

std::string_view UpgradeRequest::queryParam(std::string_view name) const noexcept {
    return protocol::http::queryParam(query(), name);
}

namespace detail {

LoopContext::LoopContext(Server::Impl& s, std::size_t index)
    : loop(index), server(s), trustedProxies(std::make_shared<const net::IpRanges>(s.options.trustedProxies)) {
    loop.setWriteDelay(s.options.writeDelay);
    loop.setOwner(this);
}

std::string describePeer(std::string_view client, std::string peer) {
    if (client.empty()) return peer;
    std::string out(client);
    if (!peer.empty()) out += " (via " + peer + ")";
    return out;
}

// --- counters -------------------------------------------------------------------------

const char* LoopStats::failureName(int slot) noexcept {
    switch (slot) {
    case notFound: return "no endpoint";
    case tooMany: return "too many connections";
    case rejected: return "rejected";
    case timeout: return "timeout";
    default: break;
    }
    if (slot >= firstError) return describe(static_cast<error>(slot - firstError)).data();
    return "other";
}

// --- handles ----------------------------------------------------------------------------

std::uint32_t LoopContext::addSlot(WebSocket* ws, std::uint32_t& generation) {
    std::uint32_t slot;
    if (!freeSlots.empty()) {
        slot = freeSlots.back();
        freeSlots.pop_back();
        slots[slot].first = ws;
    } else {
        slot = static_cast<std::uint32_t>(slots.size());
        slots.emplace_back(ws, 0);
    }
    generation = slots[slot].second;
    return slot;
}

void LoopContext::freeSlot(std::uint32_t slot) noexcept {
    slots[slot].first = nullptr;
    ++slots[slot].second; // old handles no longer match
    freeSlots.push_back(slot);
}

WebSocket* LoopContext::find(std::uint32_t slot, std::uint32_t generation) const noexcept {
    if (slot >= slots.size() || slots[slot].second != generation) return nullptr;
    return slots[slot].first;
}

// --- topics ---------------------------------------------------------------------------

Topic* LoopContext::topic(std::string_view name, bool create) {
    if (const auto it = topics.find(name); it != topics.end()) return it->second.get();
    if (!create) return nullptr;
    auto t = std::make_unique<Topic>();
    t->name = std::string(name);
    Topic* raw = t.get();
    topics.emplace(raw->name, std::move(t));
    return raw;
}

void LoopContext::dropTopicIfEmpty(Topic* t) {
    if (t->subscribers.empty()) topics.erase(t->name);
}

void LoopContext::publishLocal(std::string_view name, std::string_view message, MessageKind kind, WebSocket* except) {
    Topic* t = topic(name, false);
    if (!t || t->subscribers.empty()) return;
    const auto payload = protocol::asBytes(message);
    // Framed once for the whole loop: a server frame is the same bytes for every peer.
    auto frameInto = [&](protocol::ByteBuffer& out, protocol::Bytes body, std::uint8_t rsv) {
        out.clear();
        std::byte* h = out.extend(protocol::maxFrameHeaderSize);
        const std::size_t hs = protocol::writeFrameHeader(h, true, rsv, protocol::toOpcode(kind), body.size(), false, 0);
        out.resize(hs);
        out.append(body);
    };
    bool plainReady = false;
    publishCompressed.clear();
    const std::size_t loopIndex = loop.index();
    // Sending never unsubscribes anyone (a full backlog ends the connection later), so
    // the list stays as it is while we walk it.
    for (const auto& [ws, index] : t->subscribers) {
        if (ws == except) continue;
        const protocol::Extension* ext = ws->extension();
        const auto& shared = ws->route().sharedDeflate;
        protocol::SharedDeflate* sd = shared.empty() ? nullptr : shared[loopIndex].get();
        const int bits = ext && sd ? protocol::sharedDeflateWindow(ext, sd) : 0;
        if (ext && bits == 0) {
            ws->queue(message, kind, true); // its own compressor, with its own context
            continue;
        }
        if (ext && message.size() >= sd->options().threshold) {
            // Compressed once per shared compressor and window size, for all its connections
            // on this loop (a peer that asked for a smaller window must get no farther a match).
            auto it = std::find_if(publishCompressed.begin(), publishCompressed.end(),
                                   [sd, bits](const auto& e) { return e.deflate == sd && e.windowBits == bits; });
            if (it == publishCompressed.end()) {
                publishCompressed.push_back({sd, bits, protocol::ByteBuffer{}});
                it = publishCompressed.end() - 1;
                const auto packed = sd->compress(payload, bits);
                if (!packed.empty() && packed.size() < message.size())
                    frameInto(it->frame, packed, protocol::Rsv::rsv1);
            }
            if (!it->frame.empty()) {
                ws->sendFramed(it->frame.view());
                continue;
            }
        }
        if (!plainReady) {
            frameInto(publishFrame, payload, 0);
            plainReady = true;
        }
        ws->sendFramed(publishFrame.view());
    }
}

} // namespace detail

// --- Server ---------------------------------------------------------------------------

detail::Route* Server::Impl::findRoute(std::string_view path) const noexcept {
    detail::Route* best = nullptr;
    for (const auto& r : routes) {
        if (!r->prefix) {
            if (r->pattern == path) return r.get();
        } else if (path.substr(0, r->pattern.size()) == r->pattern &&
                   (!best || r->pattern.size() > best->pattern.size())) {
            best = r.get();
        }
    }
    return best;
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
    get("/health", [](const HttpRequest&, HttpResponse& res) { res.text("ok\n"); });
}

Server::~Server() {
    if (!impl_->threads.empty()) {
        shutdown();
        join();
    }
}

Server& Server::addWs(std::string pattern, WebSocketBehavior behavior, void* (*make)(), void (*destroy)(void*),
                      const std::type_info* type) {
    if (!impl_->loops.empty()) throw std::logic_error("tongdao::Server: add endpoints before listen()");
    auto r = std::make_unique<detail::Route>();
    if (pattern == "*" || (pattern.size() >= 2 && pattern.ends_with("/*"))) {
        r->prefix = true;
        pattern.pop_back();
    }
    r->pattern = std::move(pattern);
    r->engine.role = protocol::Role::server;
    r->engine.maxFrameSize = behavior.maxPayloadLength;
    r->engine.maxMessageSize = behavior.maxPayloadLength;
    r->engine.validateOutgoingText = behavior.validateOutgoingText;
    r->behavior = std::move(behavior);
    r->makeUserData = make;
    r->destroyUserData = destroy;
    r->userType = type;
    impl_->routes.push_back(std::move(r));
    return *this;
}

Server& Server::serveStatic(std::string urlPrefix, std::filesystem::path root) {
    if (urlPrefix.empty() || urlPrefix.back() != '/') urlPrefix += '/';
    impl_->staticDirs.emplace_back(std::move(urlPrefix), std::move(root));
    return *this;
}

unsigned Server::threads() const noexcept {
    const unsigned n = impl_->options.threads ? impl_->options.threads : std::thread::hardware_concurrency();
    return n ? n : 1;
}

std::uint16_t Server::port() const noexcept { return impl_->port; }
std::uint16_t Server::tlsPort() const noexcept { return impl_->tlsPort; }

void Server::reloadTls() {
    if (!impl_->tls) throw std::logic_error("tongdao::Server: TLS is not configured");
    impl_->tls->reload();
}

void Server::setTrustedProxies(net::IpRanges ranges) {
    auto shared = std::make_shared<const net::IpRanges>(std::move(ranges));
    if (impl_->loops.empty()) {
        impl_->options.trustedProxies = *shared; // the loops, made by listen(), start with it
        return;
    }
    // Each loop in its own turn: the sessions read it there, without a lock.
    for (auto& ctx : impl_->loops) ctx->loop.post([c = ctx.get(), shared] { c->trustedProxies = shared; });
}

void Server::listen() {
    auto& impl = *impl_;
    if (!impl.loops.empty()) return;
    // OpenSSL 3 loads its default provider on the first digest: some 2 MB of its pages and
    // heap. Paid here, at start, rather than by the first client's handshake (SHA-1 of the
    // accept key), so that what connections cost is what they cost.
    (void)protocol::computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ==");
    const unsigned n = threads();
    for (unsigned i = 0; i < n; ++i) impl.loops.push_back(std::make_unique<LoopContext>(impl, i));
    for (auto& route : impl.routes) {
        // Each loop's connections share one copy of the engine options, with its pool.
        const auto& b = route->behavior;
        protocol::DeflateOptions d;
        d.level = b.compressLevel;
        d.threshold = b.compressThreshold;
        d.maxWindowBits = b.compressWindowBits;
        for (auto& ctx : impl.loops) {
            route->enginePerLoop.push_back(route->engine);
            route->enginePerLoop.back().pool = &ctx->loop.bufferPool();
            if (b.compression == Compression::shared) {
                route->sharedDeflate.push_back(std::make_unique<protocol::SharedDeflate>(d));
                route->deflate.push_back(
                    std::make_shared<protocol::ServerDeflateFactory>(d, route->sharedDeflate.back().get()));
            } else if (b.compression == Compression::dedicated) {
                route->deflate.push_back(std::make_shared<protocol::ServerDeflateFactory>(d));
            }
        }
    }
    if (!impl.options.tls.certificates.empty())
        impl.tls = std::make_unique<net::TlsServerContext>(impl.options.tls); // throws on a bad file
    if (!impl.options.plain && !impl.tls) throw std::invalid_argument("no listener: the plain one is off and there is no TLS certificate");
    const std::string& plainHost = impl.options.plainHost.empty() ? impl.options.host : impl.options.plainHost;
    std::uint16_t port = impl.options.port;
    std::uint16_t tlsPort = impl.options.tlsPort;
    for (auto& ctx : impl.loops) {
        LoopContext* c = ctx.get();
        // One listening socket per loop on the same port; with port 0, the first picks it.
        auto accept = [c, &impl](bool secure) {
            return [c, &impl, secure](int fd) {
                try {
                    // Owned by the loop from here on.
                    new detail::HttpSession(*c, fd, secure ? impl.tls->newSession() : nullptr);
                } catch (const std::exception& e) {
                    log(LogLevel::warn, "accept: %s", e.what());
                    ::close(fd);
                }
            };
        };
        if (impl.options.plain) {
            c->listener = std::make_unique<net::Listener>(c->loop, net::Endpoint{plainHost, port}, true, accept(false));
            port = c->listener->port();
        }
        if (impl.tls) {
            c->tlsListener =
                std::make_unique<net::Listener>(c->loop, net::Endpoint{impl.options.host, tlsPort}, true, accept(true));
            tlsPort = c->tlsListener->port();
        }
        // The shutdown check, once a second.
        c->loop.onTick([c] {
            if (!c->shuttingDown) return;
            if (c->openWebSockets != 0 && c->loop.now() < c->shutdownDeadline) return;
            std::vector<WebSocket*> left;
            for (auto& [ws, gen] : c->slots)
                if (ws) left.push_back(ws);
            for (WebSocket* ws : left) ws->close();
            c->loop.stop();
        });
    }
    impl.tlsPort = impl.tls ? tlsPort : 0;
    impl.port = impl.options.plain ? port : 0;
}

void Server::run() {
    start();
    join();
}

void Server::start() {
    listen();
    auto& impl = *impl_;
    if (!impl.threads.empty()) return;
    for (auto& ctx : impl.loops) {
        impl.loopsRunning.fetch_add(1);
        impl.threads.emplace_back([c = ctx.get(), &impl] {
            c->loop.run();
            impl.loopsRunning.fetch_sub(1);
        });
    }
}

void Server::join() {
    for (auto& t : impl_->threads)
        if (t.joinable()) t.join();
    impl_->threads.clear();
}

void Server::Impl::beginShutdown(LoopContext& ctx) {
    if (ctx.shuttingDown) return;
    ctx.shuttingDown = true;
    ctx.shutdownDeadline = ctx.loop.now() + options.shutdownTimeout;
    if (ctx.listener) ctx.listener->close();
    if (ctx.tlsListener) ctx.tlsListener->close();
    const auto sessions = ctx.sessions;
    for (auto* s : sessions) s->abort();
    std::vector<WebSocket*> open;
    for (auto& [ws, gen] : ctx.slots)
        if (ws) open.push_back(ws);
    for (WebSocket* ws : open) ws->end(protocol::CloseCode::goingAway, "going away");
    if (ctx.openWebSockets == 0) ctx.loop.stop();
}

void Server::shutdown() {
    if (impl_->shuttingDown.exchange(true)) return;
    log(LogLevel::info, "shutting down");
    for (auto& ctx : impl_->loops) ctx->loop.post([this, c = ctx.get()] { impl_->beginShutdown(*c); });
}

void Server::handleSignals() {
    listen();
    auto& loop = impl_->loops.front()->loop;
    auto signals = std::make_shared<asio::signal_set>(loop.context(), SIGINT, SIGTERM);
    signals->async_wait([this, signals](const asio::error_code& ec, int signo) {
        if (ec) return;
        log(LogLevel::info, "signal %d", signo);
        shutdown();
    });
    // SIGHUP: read the certificates again; open connections keep theirs. Caught without TLS
    // too: its default action would end the process (a service manager's "reload").
    auto hup = std::make_shared<asio::signal_set>(loop.context(), SIGHUP);
    auto wait = std::make_shared<std::function<void()>>();
    *wait = [this, hup, weak = std::weak_ptr<std::function<void()>>(wait)] {
        hup->async_wait([this, hup, weak](const asio::error_code& ec, int) {
            if (ec) return;
            try {
                if (!impl_->tls) {
                    log(LogLevel::info, "SIGHUP: no TLS certificates to reload");
                } else {
                    impl_->tls->reload();
                    log(LogLevel::info, "TLS certificates reloaded");
                }
            } catch (const std::exception& e) {
                log(LogLevel::error, "TLS reload failed, keeping the old certificates: %s", e.what());
            }
            if (auto w = weak.lock()) (*w)();
        });
    };
    impl_->signalWaits.push_back(wait);
    (*wait)();
}

void Server::publish(std::string_view topic, std::string_view message, MessageKind kind) {
    if (kind == MessageKind::text && !protocol::isValidUtf8(message)) {
        log(LogLevel::error, "publish to '%.*s': text is not UTF-8, dropped", static_cast<int>(topic.size()),
            topic.data());
        return;
    }
    std::shared_ptr<const std::pair<std::string, std::string>> copy;
    for (auto& ctx : impl_->loops) {
        if (ctx->loop.isInLoopThread()) {
            ctx->publishLocal(topic, message, kind, nullptr);
            continue;
        }
        if (!copy) copy = std::make_shared<const std::pair<std::string, std::string>>(topic, message);
        ctx->loop.post([c = ctx.get(), copy, kind] { c->publishLocal(copy->first, copy->second, kind, nullptr); });
    }
}

void Server::publishLocal(std::string_view topic, std::string_view message, MessageKind kind, WebSocket* except) {
    net::Loop* current = net::Loop::current();
    if (!current || current->index() >= impl_->loops.size() || &impl_->loops[current->index()]->loop != current) {
        log(LogLevel::error, "publishLocal to '%.*s': not called on a loop of this server, dropped",
            static_cast<int>(topic.size()), topic.data());
        return;
    }
    impl_->loops[current->index()]->publishLocal(topic, message, kind, except);
}

net::Loop& Server::loop(unsigned index) const {
    if (index >= impl_->loops.size()) throw std::out_of_range("tongdao::Server::loop: no such loop (listen() first?)");
    return impl_->loops[index]->loop;
}

ServerStats Server::stats() const {
    ServerStats s;
    for (const auto& ctx : impl_->loops) {
        const auto& st = ctx->stats;
        s.connectionsOpen += st.connectionsOpen.get();
        s.connectionsTotal += st.connectionsTotal.get();
        s.messagesIn += st.messagesIn.get();
        s.messagesOut += st.messagesOut.get();
        s.bytesIn += st.bytesIn.get();
        s.bytesOut += st.bytesOut.get();
        s.backpressureDrops += st.backpressureDrops.get();
        s.httpRequests += st.httpRequests.get();
        for (int i = 0; i < LoopStats::slots; ++i)
            if (const auto v = st.handshakeFailures[i].get()) s.handshakeFailures[LoopStats::failureName(i)] += v;
    }
    return s;
}

std::string Server::prometheusMetrics() const {
    const ServerStats s = stats();
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help, std::uint64_t value) {
        out += "# HELP ";
        out += name;
        out += ' ';
        out += help;
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type;
        out += '\n';
        out += name;
        out += ' ';
        out += std::to_string(value);
        out += '\n';
    };
    metric("tongdao_connections_open", "gauge", "WebSocket connections open now.", s.connectionsOpen);
    metric("tongdao_connections_total", "counter", "WebSocket connections opened.", s.connectionsTotal);
    metric("tongdao_messages_received_total", "counter", "WebSocket messages received.", s.messagesIn);
    metric("tongdao_messages_sent_total", "counter", "WebSocket messages sent.", s.messagesOut);
    metric("tongdao_bytes_received_total", "counter", "Message payload bytes received.", s.bytesIn);
    metric("tongdao_bytes_sent_total", "counter", "Message payload bytes sent.", s.bytesOut);
    metric("tongdao_backpressure_drops_total", "counter", "Messages dropped over the backpressure limit.",
           s.backpressureDrops);
    metric("tongdao_http_requests_total", "counter", "HTTP requests, upgrades included.", s.httpRequests);
    out += "# HELP tongdao_handshake_failures_total Refused or failed opening handshakes, by reason.\n"
           "# TYPE tongdao_handshake_failures_total counter\n";
    for (const auto& [reason, count] : s.handshakeFailures) {
        std::string label;
        for (char c : reason) {
            if (c == '"' || c == '\\') label += '\\';
            label += c;
        }
        out += "tongdao_handshake_failures_total{reason=\"" + label + "\"} " + std::to_string(count) + "\n";
    }
    return out;
}

} // namespace tongdao
