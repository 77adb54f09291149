#include "http_session.hpp"

#include "forwarded.hpp"
#include "tongdao/log.hpp"
#include "tongdao/protocol/handshake.hpp"

#include <cstring>

namespace tongdao::detail {

namespace http = protocol::http;

namespace {

bool keepAlive(const http::Request& req) {
    // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    if (req.headers.hasToken("Connection", "close")) return false;
    if (req.versionMajor == 1 && req.versionMinor == 0) return req.headers.hasToken("Connection", "keep-alive");
    return true;
}

int failureSlot(std::error_code ec) {
    if (ec.category() != errorCategory()) return LoopStats::rejected;
    const int slot = LoopStats::firstError + ec.value();
    return slot < LoopStats::slots ? slot : LoopStats::rejected;
}

} // namespace

HttpSession::HttpSession(LoopContext& ctx, int fd, SSL* ssl) : net::Socket(ctx.loop, fd), ctx_(ctx) {
    if (ssl) startTls(ssl, true);
    index_ = ctx_.sessions.size();
    ctx_.sessions.push_back(this);
    parser_ = newParser();
    setNoDelay(true); // request-reply traffic: no Nagle delay on small frames
    setTimeout(ctx_.server.options.handshakeTimeout);
}

HttpSession::~HttpSession() { leave(); }

void HttpSession::leave() noexcept {
    if (pending_) {
        pending_->session = nullptr; // an answer given later does nothing
        pending_.reset();
    }
    if (answer_) {
        answer_->end(PendingHttp::State::aborted); // the same for an HTTP handler's answer
        answer_.reset();
    }
    if (index_ < ctx_.sessions.size() && ctx_.sessions[index_] == this) {
        ctx_.sessions[index_] = ctx_.sessions.back();
        ctx_.sessions[index_]->index_ = index_;
        ctx_.sessions.pop_back();
    }
    index_ = static_cast<std::size_t>(-1);
}

void HttpSession::abort() noexcept {
    leave();
    close();
}

// --- input ----------------------------------------------------------------------------

void HttpSession::onData(protocol::MutableBytes data) {
    if (closing_) return; // after our FIN: wait for the peer's, ignore the rest
    // Bounded: a head is at most maxHeaderBytes, a body is moved out as it arrives, and
    // frames after an upgrade request (or requests after one awaiting its answer) wait
    // with reading paused. So do pipelined requests while a response is still being written:
    // past one head's worth, reading waits for the response to leave.
    in_.append(data);
    if (!out_.empty() && in_.size() > ctx_.server.options.maxHeaderBytes) {
        pausedForOutput_ = true;
        setReading(false);
    }
    process();
}

void HttpSession::process() {
    // Re-entered from flush() when a response is written at once: the loop below goes on.
    if (processing_) return;
    processing_ = true;
    // One request at a time: the next waits until the response to this one is written.
    while (isOpen() && !closeAfterWrite_ && !route_ && !answer_) {
        if (inBody_) {
            // A 100 (Continue) may still be on its way out: the body need not wait for it.
            if (!readBody()) break;
            dispatch();
            continue;
        }
        if (in_.empty() || !out_.empty()) break;
        std::size_t used = 0;
        const auto st = parser_->feedRequest(in_.view(), used);
        // Drop what the parser consumed; what follows is the next request or frames.
        std::memmove(in_.data(), in_.data() + used, in_.size() - used);
        in_.resize(in_.size() - used);
        if (st == http::ParseStatus::needMore) break;
        if (st == http::ParseStatus::failed) {
            client_.clear(); // no request: nothing forwarded to believe
            refuse(parser_->error());
            break;
        }
        ctx_.stats.httpRequests.add();
        // The request's views point into its parser: it stays alive while it is handled
        // (until the next head is complete), and a fresh one reads whatever follows.
        request_ = std::move(parser_);
        parser_ = newParser();
        handle(request_->request()); // an upgrade stops the loop: what follows is frames
    }
    processing_ = false;
}

std::unique_ptr<http::HeadParser> HttpSession::newParser() const {
    return std::make_unique<http::HeadParser>(
        http::Limits{ctx_.server.options.maxHeaderBytes, ctx_.server.options.maxHeaders});
}

void HttpSession::findClient(const http::Request& req) {
    // Per request: a proxy may send several clients' requests on one kept-alive connection.
    client_.clear();
    const auto& trusted = *ctx_.trustedProxies;
    if (trusted.empty()) return; // the default: no getpeername, nothing believed
    const auto peer = net::peerIpAddress(fd());
    if (!peer) return;
    if (const auto client = forwardedClient(*peer, trusted, req.headers)) client_ = client->toString();
}

std::string HttpSession::clientAddress() const {
    if (!client_.empty()) return client_;
    const auto peer = net::peerIpAddress(fd());
    return peer ? peer->toString() : std::string();
}

void HttpSession::handle(const http::Request& req) {
    auto& server = ctx_.server;
    findClient(req);
    headOnly_ = req.method == "HEAD";
    persist_ = keepAlive(req);
    // RFC 9112 §6.3: without Transfer-Encoding, Content-Length frames the body; a server
    // may refuse a body without one with 411. Chunked bodies are not read: 411, and closed.
    if (req.headers.find("Transfer-Encoding")) return fail(411, "request bodies need a Content-Length");
    // RFC 9112 §6.3: an invalid Content-Length is unrecoverable: 400, and closed.
    const auto declared = http::contentLength(req.headers);
    if (!declared) return fail(400, "bad Content-Length");
    const std::uint64_t length = *declared;
    // Refused before the body is read, so the connection cannot go on.
    if (length > server.options.maxBodyBytes) return fail(413, "request body too large");
    const auto path = req.path();
    Route* route = server.findRoute(path);
    if (protocol::isUpgradeRequest(req)) {
        if (length != 0) return fail(400, "an upgrade request has no body");
        if (!route) return refuse(404, "no WebSocket endpoint at this path", LoopStats::notFound);
        return upgrade(req, *route);
    }
    if (route) {
        // A WebSocket endpoint asked for without an upgrade: 405 for other methods, else 426.
        return refuse(req.method == "GET" ? error::noUpgrade : error::methodNotGet);
    }
    resolve(req, static_cast<std::size_t>(length)); // http_routes.cpp
}

// --- the opening handshake ------------------------------------------------------------

void HttpSession::upgrade(const http::Request& req, Route& route) {
    protocol::UpgradeRequest info;
    if (const auto ec = protocol::checkUpgradeRequest(req, info)) return refuse(ec);
    if (ctx_.shuttingDown) return refuse(503, "server shutting down", LoopStats::rejected);
    const auto max = route.behavior.maxConnections;
    if (max && route.connections.load(std::memory_order_relaxed) >= max)
        return refuse(503, "too many connections", LoopStats::tooMany);

    route_ = &route;
    key_ = std::string(info.key);
    offered_.assign(info.protocols.begin(), info.protocols.end());
    extensionOffers_ = std::move(info.extensions);
    pending_ = std::make_shared<PendingUpgrade>();
    pending_->session = this;
    pending_->loop = &ctx_.loop;
    setReading(false); // until answered; a client sends no frames before the 101 anyway
    if (!route.behavior.upgrade) return acceptUpgrade({});

    auto pending = pending_; // the handler may answer (and end this upgrade) synchronously
    UpgradeRequest request(req, std::vector<std::string_view>(offered_.begin(), offered_.end()), remoteAddress(),
                           clientAddress());
    // Made before the try: a throwing handler gets 500, not the 503 of a response dropped unanswered.
    UpgradeResponse response(pending);
    try {
        route.behavior.upgrade(request, response);
    } catch (const std::exception& e) {
        log(LogLevel::error, "upgrade %s: handler threw: %s", route.pattern.c_str(), e.what());
        if (pending->session) rejectUpgrade(500, "internal error");
    } catch (...) {
        log(LogLevel::error, "upgrade %s: handler threw", route.pattern.c_str());
        if (pending->session) rejectUpgrade(500, "internal error");
    }
}

void HttpSession::acceptUpgrade(std::string_view protocol) {
    if (!route_ || !pending_ || init_) return;
    if (!protocol.empty() && std::find(offered_.begin(), offered_.end(), protocol) == offered_.end()) {
        // RFC 6455 §4.2.2: the server may only choose one of the client's offers.
        log(LogLevel::error, "upgrade %s: sub-protocol '%.*s' was not offered", route_->pattern.c_str(),
            static_cast<int>(protocol.size()), protocol.data());
        return rejectUpgrade(500, "server chose a sub-protocol that was not offered");
    }
    auto& p = *pending_;
    WebSocket::Init init{&ctx_, route_, std::string(protocol), p.userData, p.destroyUserData, nullptr, client_};
    std::string extensions;
    if (!route_->deflate.empty() && !extensionOffers_.empty()) {
        auto agreed = protocol::negotiateExtensions(extensionOffers_, {route_->deflate[ctx_.loop.index()]});
        extensions = std::move(agreed.header);
        init.extension = std::move(agreed.extension);
    }
    p.userData = nullptr; // now the WebSocket's
    if (!init.userData && route_->makeUserData) {
        init.userData = route_->makeUserData();
        init.destroyUserData = route_->destroyUserData;
    }
    init_.emplace(std::move(init));
    std::string response = protocol::acceptResponse(key_, protocol, extensions, p.headers);
    p.answered = true;
    p.session = nullptr;
    pending_.reset();
    respond(std::move(response), false); // the WebSocket starts once the 101 is written
}

void HttpSession::rejectUpgrade(int status, std::string_view reason) {
    if (!pending_) return;
    auto headers = std::move(pending_->headers);
    pending_->answered = true;
    pending_->session = nullptr;
    pending_.reset();
    refuse(status, reason, LoopStats::rejected, std::move(headers));
}

void HttpSession::completeUpgrade() {
    WebSocket::Init init = std::move(*init_);
    init_.reset();
    auto tls = releaseTls(); // TLS goes with the descriptor
    const int fd = detach();  // this session is deleted after the turn; in_ stays valid till then
    leave();
    WebSocket* ws = nullptr;
    try {
        ws = new (ctx_.webSockets) WebSocket(ctx_.loop, fd, std::move(init));
    } catch (const std::exception& e) {
        log(LogLevel::error, "upgrade: %s", e.what());
        ::close(fd);
        return;
    }
    ws->adoptTls(std::move(tls));
    ws->start({in_.data(), in_.size()});
}

// --- refusals and responses -------------------------------------------------------------

void HttpSession::refuse(std::error_code ec) {
    inBody_ = false;
    ctx_.stats.handshakeFailures[failureSlot(ec)].add();
    log(LogLevel::debug, "http %s: refused: %s", describe().c_str(), ec.message().c_str());
    respond(protocol::rejectResponse(ec), true);
}

void HttpSession::refuse(int status, std::string_view reason, int slot, http::HeaderFields extra) {
    inBody_ = false;
    ctx_.stats.handshakeFailures[slot].add();
    log(LogLevel::debug, "http %s: refused %d: %.*s", describe().c_str(), status, static_cast<int>(reason.size()),
        reason.data());
    respond(protocol::rejectResponse(status, reason, extra), true);
}

void HttpSession::respond(std::string bytes, bool closeAfter) {
    if (out_.empty()) {
        out_ = std::move(bytes);
        outSent_ = 0;
    } else {
        out_ += bytes;
    }
    closeAfterWrite_ = closeAfterWrite_ || closeAfter;
    flush();
}

void HttpSession::flush() {
    if (!isOpen() || closing_) return;
    if (outSent_ < out_.size()) {
        protocol::OutputView v;
        v.parts[0] = protocol::asBytes(std::string_view(out_).substr(outSent_));
        v.count = 1;
        const auto n = write(v);
        if (n < 0) return abort();
        outSent_ += static_cast<std::size_t>(n);
        if (outSent_ < out_.size()) return wantWritable(true);
        wantWritable(false);
    }
    out_.clear();
    outSent_ = 0;
    if (init_) return completeUpgrade();
    client_.clear(); // answered: what the connection logs next is not that client's
    if (closeAfterWrite_ && peerDone_) return abort();
    if (closeAfterWrite_) {
        // Close after the response: FIN now, then wait (bounded) for the client's FIN, so
        // the response is not lost to a reset caused by unread input.
        closing_ = true;
        shutdownWrite();
        setReading(true);
        setTimeout(ctx_.server.options.closeTimeout);
        return;
    }
    if (pausedForOutput_) {
        pausedForOutput_ = false;
        setReading(true);
    }
    if (!in_.empty()) process(); // a pipelined request
}

void HttpSession::onWritable() { flush(); }

void HttpSession::onEof() {
    // The client finished sending. A response still being written is finished first
    // (a request followed by a half-close is legal); otherwise there is nothing to do.
    peerDone_ = true;
    if (closing_ || out_.empty() || !tlsReady()) return abort();
    closeAfterWrite_ = true;
}

void HttpSession::onError(std::error_code ec) {
    log(LogLevel::debug, "http %s: %s", describe().c_str(), ec.message().c_str());
    abort();
}

void HttpSession::onTimeout() {
    // Mid-TLS-handshake nothing can be said to the peer (not even 408): just close.
    if (closing_ || init_ || !tlsReady()) return abort();
    if (pending_) {
        // The upgrade handler never answered: refuse rather than hang.
        return rejectUpgrade(503, "upgrade not answered in time");
    }
    if (answer_) return giveUpHandler(); // the same for an HTTP handler
    refuse(408, "request not received in time", LoopStats::timeout);
}

} // namespace tongdao::detail
