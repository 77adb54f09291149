#pragma once
// A blocking WebSocket test client over a plain POSIX socket: every wait is bounded.
// It speaks raw bytes (for malformed input and plain HTTP), runs the opening handshake
// with ClientHandshake, then drives a client-role Connection: it sends messages and
// control frames, reports what arrives as recorded events (support/engine.hpp's Rec),
// can stop reading (backpressure) and can leave abruptly.

#include "support/engine.hpp"

#include "tongdao/protocol/handshake.hpp"
#include "tongdao/protocol/permessage_deflate.hpp"
#include "tongdao/protocol/http.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace tongdao::test {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using namespace std::chrono_literals;

/** The default bound on any single wait. */
inline constexpr Millis defaultWait = 3000ms;

/** An HTTP response as read off the wire. Header names are lower-cased. */
struct HttpReply {
    int status = 0;
    std::string head; ///< the status line and the fields, as sent
    std::multimap<std::string, std::string> headers;
    std::string body;

    /** The first field of that name (any case), or empty. */
    std::string header(std::string_view name) const {
        std::string key(name);
        for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto it = headers.find(key);
        return it == headers.end() ? std::string{} : it->second;
    }
    bool has(std::string_view name) const { return !header(name).empty(); }
};

struct ClientOptions {
    Millis timeout = defaultWait;   ///< bound of each wait unless a call says otherwise
    int receiveBuffer = 0;          ///< SO_RCVBUF before connecting (small: the server fills it fast)
    bool autoPong = true;           ///< the engine answers pings by itself
    bool autoFlush = true;          ///< write the engine's answers (pongs, close echo) at once
    std::size_t maxMessage = 64 * 1024 * 1024;
    bool deflate = false;           ///< offer permessage-deflate (RFC 7692)
    /** Offered instead of the library's permessage-deflate when set (a test's own offer). */
    std::shared_ptr<const protocol::ClientExtensionFactory> extension;
};

/** A raw upgrade request, for handshakes the real client would never send. */
inline std::string upgradeText(std::string_view target, std::string_view extraFields = {},
                               std::string_view version = "13", std::string_view key = "dGhlIHNhbXBsZSBub25jZQ==",
                               std::string_view method = "GET") {
    std::string r;
    r += method;
    r += ' ';
    r += target;
    r += " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    if (!key.empty()) r += "Sec-WebSocket-Key: " + std::string(key) + "\r\n";
    if (!version.empty()) r += "Sec-WebSocket-Version: " + std::string(version) + "\r\n";
    r += extraFields;
    r += "\r\n";
    return r;
}

/** A plain GET (or other method) of `target`, with optional extra fields ("Name: v\r\n"). */
inline std::string requestText(std::string_view target, std::string_view extraFields = {},
                               std::string_view method = "GET") {
    return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
           std::string(extraFields) + "\r\n";
}

class WsClient {
public:
    explicit WsClient(std::uint16_t port, ClientOptions options = {})
        : opts_(options), engineOpts_(engineOptions(options)), engine_(engineOpts_) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            ADD_FAILURE() << "socket: " << std::strerror(errno);
            return;
        }
        if (opts_.receiveBuffer > 0)
            ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &opts_.receiveBuffer, sizeof opts_.receiveBuffer);
        // Guards under the poll() deadlines: no call blocks for longer than this.
        timeval tv{};
        tv.tv_sec = 5;
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
            ADD_FAILURE() << "connect to port " << port << ": " << std::strerror(errno);
            ::close(fd_);
            fd_ = -1;
        }
    }
    ~WsClient() { closeSocket(); }
    WsClient(const WsClient&) = delete;
    WsClient& operator=(const WsClient&) = delete;

    // --- raw bytes -------------------------------------------------------------------

    /** Writes all of `bytes` (bounded by SO_SNDTIMEO); false if the socket failed. */
    bool sendRaw(std::string_view bytes) {
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            if (fd_ < 0) return false;
            const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }
    bool sendRaw(const ByteVec& bytes) {
        return sendRaw(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    }

    /**
     * Waits up to `wait` for bytes and appends what one read returns to the raw input.
     * False on timeout, end of stream or error (`eof()` tells the last two).
     */
    bool readSome(Millis wait) {
        if (fd_ < 0 || eof_) return false;
        pollfd p{fd_, POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(std::max<Millis::rep>(0, wait.count())));
        if (ready <= 0) return false;
        char buf[64 * 1024];
        ssize_t n;
        do n = ::recv(fd_, buf, sizeof buf, 0);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            raw_.append(buf, static_cast<std::size_t>(n));
            received_ += static_cast<std::size_t>(n);
            ++reads_;
            return true;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
        eof_ = true;
        reset_ = n < 0;
        return false;
    }

    /** Reads until the peer ends the stream; true if it did within `wait`. Bytes are kept. */
    bool waitEof(Millis wait = defaultWait) {
        const auto deadline = Clock::now() + wait;
        while (!eof_) {
            const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
            if (left <= 0ms) return false;
            if (readSome(left) && upgraded_) pump();
        }
        if (upgraded_) pump();
        return true;
    }
    bool eof() const noexcept { return eof_; }
    /** True if the stream ended with a reset rather than a FIN. */
    bool wasReset() const noexcept { return reset_; }
    /** Raw input not consumed yet (before the handshake, or when nothing parses it). */
    const std::string& raw() const noexcept { return raw_; }

    /** Reads one HTTP response. `headOnly`: the answer to a HEAD, which has no body. */
    std::optional<HttpReply> readHttp(bool headOnly = false, Millis wait = defaultWait) {
        const auto deadline = Clock::now() + wait;
        auto left = [&] { return std::chrono::duration_cast<Millis>(deadline - Clock::now()); };
        while (raw_.find("\r\n\r\n") == std::string::npos) {
            if (eof_ || left() <= 0ms) return std::nullopt;
            readSome(left());
        }
        protocol::http::HeadParser parser;
        std::size_t used = 0;
        if (parser.feedResponse(protocol::asBytes(raw_), used) != protocol::http::ParseStatus::done) {
            ADD_FAILURE() << "not an HTTP response: " << raw_;
            return std::nullopt;
        }
        HttpReply reply;
        reply.status = parser.response().status;
        reply.head = raw_.substr(0, used);
        for (const auto& f : parser.response().headers) {
            std::string name(f.name);
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            reply.headers.emplace(std::move(name), std::string(f.value));
        }
        raw_.erase(0, used);
        std::size_t length = 0;
        if (const auto cl = reply.header("Content-Length"); !cl.empty() && !headOnly) length = std::stoul(cl);
        while (raw_.size() < length) {
            if (eof_ || left() <= 0ms) {
                ADD_FAILURE() << "body cut short: " << raw_.size() << " of " << length;
                return std::nullopt;
            }
            readSome(left());
        }
        reply.body = raw_.substr(0, length);
        raw_.erase(0, length);
        return reply;
    }

    /** Sends a request and reads its response. */
    std::optional<HttpReply> request(std::string_view text, bool headOnly = false) {
        if (!sendRaw(text)) return std::nullopt;
        return readHttp(headOnly);
    }

    // --- the opening handshake -----------------------------------------------------------

    /**
     * Sends an upgrade for `target` and checks the answer (RFC 6455 §4.1). On success the
     * engine takes over and bytes after the 101 are fed to it. `reply()` has the response.
     * `extra` is sent right after the request, in the same write (e.g. the first frames).
     */
    bool handshake(std::string target = "/echo", std::vector<std::string> protocols = {},
                   protocol::http::HeaderFields headers = {}, std::string_view extra = {}) {
        protocol::ClientRequest req;
        req.host = "127.0.0.1";
        req.target = std::move(target);
        req.protocols = std::move(protocols);
        req.headers = std::move(headers);
        if (opts_.extension) req.extensions.push_back(opts_.extension);
        else if (opts_.deflate) req.extensions.push_back(std::make_shared<protocol::ClientDeflateFactory>());
        protocol::ClientHandshake hs(std::move(req));
        if (!sendRaw(hs.request() + std::string(extra))) return false;
        auto r = readHttp(true, opts_.timeout);
        if (!r) return false;
        reply_ = *r;
        std::size_t used = 0;
        const auto st = hs.receive(protocol::asBytes(reply_.head), used);
        if (st != protocol::http::ParseStatus::done) {
            // Not an upgrade: keep the refusal's body for the test to look at.
            if (const auto cl = reply_.header("Content-Length"); !cl.empty()) {
                const auto n = std::stoul(cl);
                const auto deadline = Clock::now() + opts_.timeout;
                while (raw_.size() < n && Clock::now() < deadline && !eof_)
                    readSome(std::chrono::duration_cast<Millis>(deadline - Clock::now()));
                reply_.body = raw_.substr(0, std::min(n, raw_.size()));
                raw_.erase(0, reply_.body.size());
            }
            return false;
        }
        protocol_ = std::string(hs.protocol());
        engine_.setExtension(hs.takeExtension());
        upgraded_ = true;
        pump();
        return true;
    }
    const HttpReply& reply() const noexcept { return reply_; }
    /** Bytes read from the socket so far (wire bytes: after compression, before inflation). */
    std::size_t bytesReceived() const noexcept { return received_; }
    /** Reads that returned bytes: how many pieces the input came in. */
    std::size_t reads() const noexcept { return reads_; }
    const std::string& protocol() const noexcept { return protocol_; }

    // --- WebSocket -------------------------------------------------------------------------

    protocol::Connection& engine() noexcept { return engine_; }

    bool send(std::string_view data, MessageKind kind = MessageKind::text) {
        if (engine_.send(kind, protocol::asBytes(data))) return false;
        return flush();
    }
    bool sendText(std::string_view data) { return send(data, MessageKind::text); }
    bool sendBinary(std::string_view data) { return send(data, MessageKind::binary); }
    bool sendFragment(std::string_view data, bool fin, MessageKind kind = MessageKind::text) {
        if (engine_.sendFragment(kind, protocol::asBytes(data), fin)) return false;
        return flush();
    }
    bool ping(std::string_view payload = {}) { return !engine_.ping(protocol::asBytes(payload)) && flush(); }
    bool pong(std::string_view payload = {}) { return !engine_.pong(protocol::asBytes(payload)) && flush(); }
    bool close(int code = 1000, std::string_view reason = {}) {
        return !engine_.close(static_cast<std::uint16_t>(code), reason) && flush();
    }

    /** Takes what the engine queued without writing it (to write it in pieces, or with the handshake). */
    std::string take() {
        std::string out;
        for (auto part : engine_.pendingOutput()) out += protocol::asString(part);
        engine_.consumeOutput(out.size());
        return out;
    }
    /** Writes what the engine queued. */
    bool flush() {
        const std::string out = take();
        return out.empty() || sendRaw(out);
    }

    /**
     * The next event (message, ping, pong, close, error), reading as needed for up to
     * `wait`. Whatever the engine answers (pongs, the close echo) is written at once.
     * Empty on timeout or when the stream ended first.
     */
    std::optional<Rec> next(std::optional<Millis> wait = std::nullopt) {
        const auto deadline = Clock::now() + wait.value_or(opts_.timeout);
        while (events_.empty()) {
            if (eof_) return std::nullopt;
            const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
            if (left <= 0ms) return std::nullopt;
            if (readSome(left) || eof_) pump();
        }
        Rec r = std::move(events_.front());
        events_.pop_front();
        return r;
    }
    /** The next message's payload, skipping pings and pongs; empty if none came. */
    std::optional<std::string> nextMessage(std::optional<Millis> wait = std::nullopt) {
        const auto deadline = Clock::now() + wait.value_or(opts_.timeout);
        for (;;) {
            const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
            auto r = next(std::max(left, 0ms));
            if (!r) return std::nullopt;
            if (r->type == "text" || r->type == "binary") return r->data;
            if (r->type != "ping" && r->type != "pong") {
                ADD_FAILURE() << "expected a message, got " << *r;
                return std::nullopt;
            }
        }
    }
    /** The close frame's event, skipping everything else; empty if none came in time. */
    std::optional<Rec> nextClose(std::optional<Millis> wait = std::nullopt) {
        const auto deadline = Clock::now() + wait.value_or(opts_.timeout);
        for (;;) {
            const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
            auto r = next(std::max(left, 0ms));
            if (!r) return std::nullopt;
            if (r->type == "close") return r;
        }
    }

    // --- leaving -------------------------------------------------------------------------

    /** Sends FIN: no more bytes from us. */
    void shutdownWrite() {
        if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
    }
    /** Closes with a reset (SO_LINGER 0): the abrupt way. */
    void abort() {
        if (fd_ < 0) return;
        linger l{1, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        closeSocket();
    }
    void closeSocket() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    struct Sink : protocol::EventHandler {
        std::deque<Rec>& out;
        explicit Sink(std::deque<Rec>& o) : out(o) {}
        void onMessage(MessageKind k, protocol::Bytes b) { out.push_back({k == MessageKind::text ? "text" : "binary", str(b)}); }
        void onPing(protocol::Bytes b) { out.push_back(pingEv(str(b))); }
        void onPong(protocol::Bytes b) { out.push_back(pongEv(str(b))); }
        void onClose(std::uint16_t code, std::string_view reason) { out.push_back(closeEv(code, std::string(reason))); }
        void onError(std::error_code ec) { out.push_back({"error", ec.message(), ec.value()}); }
    };

    static protocol::ConnectionOptions engineOptions(const ClientOptions& o) {
        protocol::ConnectionOptions c;
        c.role = protocol::Role::client;
        c.autoPong = o.autoPong;
        c.maxFrameSize = o.maxMessage;
        c.maxMessageSize = o.maxMessage;
        return c;
    }

    /** Feeds the raw input to the engine and writes its answers. */
    void pump() {
        if (!raw_.empty()) {
            std::string in = std::exchange(raw_, {});
            Sink sink(events_);
            engine_.receive({reinterpret_cast<std::byte*>(in.data()), in.size()}, sink);
        }
        if (eof_) engine_.receiveEof();
        if (fd_ >= 0 && opts_.autoFlush) flush();
    }

    ClientOptions opts_;
    protocol::ConnectionOptions engineOpts_; ///< the engine refers to it: declared first
    protocol::Connection engine_;
    int fd_ = -1;
    std::string raw_;
    std::size_t received_ = 0;
    std::size_t reads_ = 0;
    std::deque<Rec> events_;
    HttpReply reply_;
    std::string protocol_;
    bool upgraded_ = false;
    bool eof_ = false;
    bool reset_ = false;
};

} // namespace tongdao::test
