// HTTP routes: registration and matching, request bodies (Content-Length only), handlers
// that answer at once or later through an HttpResponder, and the final response.

#include "http_session.hpp"

#include "tongdao/log.hpp"
#include "tongdao/protocol/handshake.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace tongdao {

namespace http = protocol::http;

// --- responders ---------------------------------------------------------------------------

namespace {

using State = detail::PendingHttp::State;

// The responder is gone without an answer (on the session's loop).
void dropUnanswered(detail::PendingHttp& p) {
    if (!p.session) return; // answered, or no longer wanted
    // Inside the handler: the session answers once it returns (or throws: then 500 too).
    if (p.dispatching) {
        p.dropped = true;
        return;
    }
    log(LogLevel::warn, "http: a responder was dropped unanswered: 500");
    p.session->answerHttp(HttpResponse{}.text("handler did not answer\n", 500));
}

} // namespace

HttpResponder& HttpResponder::operator=(HttpResponder&& other) noexcept {
    if (this != &other) {
        release();
        pending_ = std::move(other.pending_);
    }
    return *this;
}

HttpResponder::~HttpResponder() { release(); }

void HttpResponder::release() noexcept {
    auto p = std::move(pending_);
    if (!p) return;
    try {
        if (p->loop->isInLoopThread()) return dropUnanswered(*p);
        // Dropped on another thread (a worker that gave up): the answer is given on the loop.
        // Not when the wait is over: the loop may be stopped (shutdown aborts every wait).
        if (p->state.load(std::memory_order_acquire) == State::waiting)
            p->loop->post([p] { dropUnanswered(*p); });
    } catch (const std::exception& e) {
        log(LogLevel::error, "http: answering a dropped responder failed: %s", e.what());
    }
}

void HttpResponder::respond(HttpResponse response) {
    if (!pending_) return;
    if (!pending_->loop->isInLoopThread()) {
        // Misuse, made safe: the session is touched on its loop only.
        if (pending_->state.load(std::memory_order_acquire) != State::waiting) return;
        net::Loop* loop = pending_->loop;
        loop->post([p = std::move(pending_), r = std::move(response)]() mutable {
            HttpResponder(std::move(p)).respond(std::move(r));
        });
        return;
    }
    if (pending_->session) pending_->session->answerHttp(std::move(response));
}

bool HttpResponder::answered() const noexcept {
    return pending_ && pending_->state.load(std::memory_order_acquire) == State::answered;
}
bool HttpResponder::aborted() const noexcept {
    return pending_ && pending_->state.load(std::memory_order_acquire) == State::aborted;
}
net::Loop* HttpResponder::loop() const noexcept { return pending_ ? pending_->loop : nullptr; }

// --- registration and matching ------------------------------------------------------------

Server& Server::get(std::string path, HttpHandler handler) {
    if (!handler) throw std::invalid_argument("tongdao::Server::get: empty handler");
    impl_->addHttpRoute("GET", std::move(path), false,
                        [h = std::move(handler)](const HttpRequest& req, HttpResponder responder) {
                            HttpResponse res;
                            h(req, res); // a throw reaches the session: 500
                            responder.respond(std::move(res));
                        });
    return *this;
}

Server& Server::route(std::string method, std::string pattern, AsyncHttpHandler handler) {
    impl_->addHttpRoute(method, std::move(pattern), true, std::move(handler));
    return *this;
}

void Server::Impl::addHttpRoute(std::string_view method, std::string pattern, bool allowPrefix,
                                AsyncHttpHandler handler) {
    // Sessions on the loop threads read the table without a lock: it is fixed from listen() on.
    if (!loops.empty()) throw std::logic_error("tongdao::Server: add HTTP routes before listen()");
    // RFC 9110 §9.1: method names are case-sensitive.
    const auto m = std::find(std::begin(detail::httpMethods), std::end(detail::httpMethods), method);
    if (m == std::end(detail::httpMethods))
        throw std::invalid_argument("tongdao::Server::route: method '" + std::string(method) +
                                    "' is not one of GET, POST, PUT, DELETE, PATCH");
    if (!handler) throw std::invalid_argument("tongdao::Server::route: empty handler");
    bool prefix = false;
    if (allowPrefix && (pattern == "*" || (pattern.size() >= 2 && pattern.ends_with("/*")))) {
        prefix = true;
        pattern.pop_back();
    }
    auto it = std::find_if(httpRoutes.begin(), httpRoutes.end(),
                           [&](const detail::HttpRoute& r) { return r.prefix == prefix && r.pattern == pattern; });
    if (it == httpRoutes.end()) {
        it = httpRoutes.emplace(httpRoutes.end());
        it->pattern = std::move(pattern);
        it->prefix = prefix;
    }
    it->handlers[static_cast<std::size_t>(m - std::begin(detail::httpMethods))] = std::move(handler);
}

detail::HttpMatch Server::Impl::matchHttp(std::string_view method, std::string_view path) const noexcept {
    detail::HttpMatch m;
    const std::size_t want = detail::httpMethodIndex(method);
    for (const auto& r : httpRoutes) {
        if (r.prefix ? !path.starts_with(r.pattern) : path != r.pattern) continue;
        for (std::size_t i = 0; i < detail::httpMethodCount; ++i)
            if (r.handlers[i]) m.methods |= 1u << i;
        if (want == detail::httpMethodCount || !r.handlers[want]) continue;
        // An exact path wins, then the longest prefix.
        if (!m.route || (m.route->prefix && (!r.prefix || r.pattern.size() > m.route->pattern.size()))) {
            m.route = &r;
            m.handler = &r.handlers[want];
        }
    }
    return m;
}

namespace detail {

std::size_t httpMethodIndex(std::string_view method) noexcept {
    if (method == "HEAD") return 0; // RFC 9110 §9.3.2: HEAD is GET without the body
    const auto m = std::find(std::begin(httpMethods), std::end(httpMethods), method);
    return static_cast<std::size_t>(m - std::begin(httpMethods));
}

std::string allowHeader(unsigned methods) {
    std::string out;
    for (std::size_t i = 0; i < httpMethodCount; ++i) {
        if (!(methods & (1u << i))) continue;
        if (!out.empty()) out += ", ";
        out += httpMethods[i];
        if (i == 0) out += ", HEAD";
    }
    return out;
}

// --- the session's side ----------------------------------------------------------------------

namespace {

constexpr std::string_view continueResponse = "HTTP/1.1 100 Continue\r\n\r\n";

// True if a comma-separated field value holds `token` (any case).
bool hasToken(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        const auto comma = value.find(',');
        auto item = value.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (http::iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
    return false;
}

HttpResponse internalError() { return HttpResponse{}.text("internal server error\n", 500); }

// RFC 9110 §6.4.1, §8.6: a 204 or 304 has no content, and a 204 no Content-Length either.
std::string noContentResponse(int status, const http::HeaderFields& fields) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + ' ' + std::string(http::reasonPhrase(status)) + "\r\n";
    for (const auto& [name, value] : fields) out += name + ": " + value + "\r\n";
    out += "\r\n";
    return out;
}

} // namespace

// Called with the head of a request that is not an upgrade: decides what answers it, then
// reads its body (or dispatches at once without one).
void HttpSession::resolve(const http::Request& req, std::size_t length) {
    auto& server = ctx_.server;
    const auto path = req.path();
    target_ = {};
    target_.match = server.matchHttp(req.method, path);
    if (target_.match.handler) {
        target_.kind = Target::Kind::handler;
    } else if (target_.match.methods) {
        target_.kind = Target::Kind::notAllowed;
    } else {
        for (std::size_t i = 0; i < server.staticDirs.size(); ++i) {
            if (!path.starts_with(server.staticDirs[i].first)) continue;
            if (req.method == "GET" || req.method == "HEAD") {
                target_.kind = Target::Kind::file;
                target_.staticDir = i;
            } else {
                target_.kind = Target::Kind::notAllowed;
                target_.match.methods = 1u; // GET (and HEAD)
            }
            break;
        }
    }
    bodyLeft_ = length;
    if (length == 0) return dispatch();
    // RFC 9110 §10.1.1: "100-continue" asks whether to send the body (HTTP/1.0 must be
    // ignored). A final status instead leaves it unread, so the connection closes after it.
    if (!(req.versionMajor == 1 && req.versionMinor == 0) && req.headers.hasToken("Expect", "100-continue")) {
        if (target_.kind != Target::Kind::handler) {
            persist_ = false;
            bodyLeft_ = 0;
            return dispatch();
        }
        // Not needed once part of the body is here (the server "MAY omit" it then).
        if (in_.empty()) respond(std::string(continueResponse), false);
    }
    inBody_ = true;
    // The declared length is not trusted for memory: the body grows as it arrives.
    body_.reserve(std::min<std::size_t>(length, 64 * 1024));
}

bool HttpSession::readBody() {
    const std::size_t n = std::min(bodyLeft_, in_.size());
    if (n != 0) {
        body_.append(reinterpret_cast<const char*>(in_.data()), n);
        std::memmove(in_.data(), in_.data() + n, in_.size() - n);
        in_.resize(in_.size() - n);
        bodyLeft_ -= n;
    }
    return bodyLeft_ == 0;
}

void HttpSession::dispatch() {
    inBody_ = false;
    const auto& req = request_->request();
    switch (target_.kind) {
    case Target::Kind::handler: callHandler(req); break;
    case Target::Kind::notAllowed: {
        HttpResponse res;
        res.text("method not allowed\n", 405);
        res.setHeader("Allow", allowHeader(target_.match.methods));
        finish(std::move(res));
        break;
    }
    case Target::Kind::file: {
        const auto& [prefix, root] = ctx_.server.staticDirs[target_.staticDir];
        HttpResponse res;
        serveFile(prefix, root, HttpRequest(req, remoteAddress(), body_, clientAddress()), res);
        finish(std::move(res));
        break;
    }
    case Target::Kind::notFound: finish(HttpResponse{}.text("not found\n", 404)); break;
    }
    body_ = std::string(); // handlers copy what they keep; an idle connection holds no body
}

void HttpSession::callHandler(const http::Request& req) {
    answer_ = std::make_shared<PendingHttp>();
    answer_->session = this;
    answer_->loop = &ctx_.loop;
    answer_->dispatching = true;
    const auto pending = answer_; // the handler may answer (and end the wait) at once
    setTimeout(ctx_.server.options.handshakeTimeout); // the handler's own time to answer
    const auto& pattern = target_.match.route->pattern;
    const auto path = req.path();
    try {
        (*target_.match.handler)(HttpRequest(req, remoteAddress(), body_, clientAddress()), HttpResponder(pending));
    } catch (const std::exception& e) {
        log(LogLevel::error, "http %.*s (%s): handler threw: %s", static_cast<int>(path.size()), path.data(),
            pattern.c_str(), e.what());
        if (pending->session) answerHttp(internalError());
    } catch (...) {
        log(LogLevel::error, "http %.*s (%s): handler threw", static_cast<int>(path.size()), path.data(),
            pattern.c_str());
        if (pending->session) answerHttp(internalError());
    }
    pending->dispatching = false;
    if (!pending->session) return; // answered
    if (pending->dropped) {
        log(LogLevel::warn, "http %.*s (%s): handler dropped its responder unanswered: 500",
            static_cast<int>(path.size()), path.data(), pattern.c_str());
        return answerHttp(HttpResponse{}.text("handler did not answer\n", 500));
    }
    // Answered later: read nothing more meanwhile (one request at a time). The peer's FIN
    // is still seen: the client left, and the answer is no longer wanted.
    setReading(false);
}

void HttpSession::answerHttp(HttpResponse response) {
    if (!answer_) return;
    answer_->end(PendingHttp::State::answered);
    answer_.reset();
    setReading(true);
    finish(std::move(response));
}

void HttpSession::giveUpHandler() {
    log(LogLevel::warn, "http %s: handler did not answer within %u s: 503", describe().c_str(),
        static_cast<unsigned>(ctx_.server.options.handshakeTimeout));
    answer_->end(PendingHttp::State::aborted); // a later answer does nothing
    answer_.reset();
    setReading(true);
    finish(HttpResponse{}.text("handler did not answer in time\n", 503));
}

void HttpSession::finish(HttpResponse res) {
    bool close = !persist_;
    if (res.status < 200 || res.status > 599) {
        log(LogLevel::error, "http: handler answered with status %d: 500 instead", res.status);
        res = internalError();
    }
    http::HeaderFields fields;
    fields.reserve(res.headers.size() + 1);
    for (auto& [name, value] : res.headers) {
        // Framing and the connection are the server's: a second Content-Length would
        // desynchronise the client (RFC 9112 §6.3).
        const bool framing = http::iequals(name, "Content-Length") || http::iequals(name, "Transfer-Encoding");
        if (framing || !http::isToken(name) || !http::isSafeFieldValue(value)) {
            log(LogLevel::error, "http: response header '%s' dropped", name.c_str());
            continue;
        }
        if (http::iequals(name, "Connection")) {
            close = close || hasToken(value, "close");
            continue;
        }
        fields.emplace_back(std::move(name), std::move(value));
    }
    if (close) fields.emplace_back("Connection", "close");
    setTimeout(ctx_.server.options.handshakeTimeout); // the next request's time (a close sets its own)
    if (res.status == 204 || res.status == 304) return respond(noContentResponse(res.status, fields), close);
    // HEAD: the Content-Length of the GET, no body (RFC 9110 §9.3.2).
    respond(http::formatResponse(res.status, fields, res.body, headOnly_), close);
}

void HttpSession::fail(int status, std::string_view reason) {
    log(LogLevel::debug, "http %s: %d: %.*s", describe().c_str(), status, static_cast<int>(reason.size()),
        reason.data());
    inBody_ = false;
    respond(protocol::rejectResponse(status, reason), true);
}

} // namespace detail

} // namespace tongdao
