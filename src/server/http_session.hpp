#pragma once
// A connection while it speaks HTTP: requests for HTTP routes (with Content-Length bodies,
// answered at once or later) and static files, with keep-alive; and the opening handshake,
// which hands the socket to a WebSocket.

#include "detail.hpp"

#include <optional>

namespace tongdao::detail {

class HttpSession final : public net::Socket {
public:
    /** A connection just accepted; with `ssl`, one that speaks TLS (wss://). */
    HttpSession(LoopContext& ctx, int fd, SSL* ssl = nullptr);
    ~HttpSession() override;

    /** The upgrade handler's answer (see UpgradeResponse). */
    void acceptUpgrade(std::string_view protocol);
    void rejectUpgrade(int status, std::string_view reason);
    /** An HTTP handler's answer (see HttpResponder), on the loop. */
    void answerHttp(HttpResponse response);
    /** Server shutdown: stop now. */
    void abort() noexcept;

private:
    void onData(protocol::MutableBytes data) override;
    void onEof() override;
    void onError(std::error_code ec) override;
    void onWritable() override;
    void onTimeout() override;
    void onFlush() override { flush(); }

    /** What answers the request being read, decided from its head. */
    struct Target {
        enum class Kind : std::uint8_t { handler, notAllowed, file, notFound };
        Kind kind = Kind::notFound;
        HttpMatch match;           ///< for `handler` and `notAllowed`
        std::size_t staticDir = 0; ///< for `file`: index in staticDirs
    };

    void process();
    void handle(const protocol::http::Request& req);
    // http_routes.cpp: the body, and the request's answer.
    void resolve(const protocol::http::Request& req, std::size_t length);
    bool readBody();
    void dispatch();
    void callHandler(const protocol::http::Request& req);
    void finish(HttpResponse res);
    void giveUpHandler();
    void fail(int status, std::string_view reason);
    void upgrade(const protocol::http::Request& req, Route& route);
    void refuse(std::error_code ec);
    void refuse(int status, std::string_view reason, int failureSlot, protocol::http::HeaderFields extra = {});
    void respond(std::string bytes, bool closeAfter);
    void flush();
    void completeUpgrade();
    void leave() noexcept;
    /** Sets `client_` for `req`: the address a trusted proxy forwarded, if any. */
    void findClient(const protocol::http::Request& req);
    /** The client's IP for handlers: `client_`, or the peer's. */
    std::string clientAddress() const;
    /** The other end in a log line: "ip:port", or "client (via ip:port)" behind a trusted proxy. */
    std::string describe() const { return describePeer(client_, remoteAddress()); }

    LoopContext& ctx_;
    std::unique_ptr<protocol::http::HeadParser> newParser() const;

    std::unique_ptr<protocol::http::HeadParser> parser_;
    protocol::ByteBuffer in_;    ///< received, not yet parsed (pipelined requests, or frames after an upgrade)
    std::string out_;            ///< response bytes not yet written
    std::size_t outSent_ = 0;
    std::size_t index_ = 0;      ///< position in ctx_.sessions
    bool closeAfterWrite_ = false;
    bool closing_ = false;       ///< FIN sent: discard input until the peer's FIN
    bool peerDone_ = false;      ///< the peer's FIN arrived
    bool processing_ = false;    ///< inside process(): flush() must not start it again
    bool pausedForOutput_ = false; ///< reading paused: pipelined input waits for a response to leave
    // The HTTP request being handled. Its head parser stays until the next head completes:
    // the request's views point into it, and a handler answering at once may still read them.
    std::unique_ptr<protocol::http::HeadParser> request_;
    std::string client_;         ///< the request's client as a trusted proxy forwarded it; empty for none
    std::string body_;
    std::size_t bodyLeft_ = 0;   ///< body bytes still to come
    bool inBody_ = false;        ///< reading the body
    bool headOnly_ = false;      ///< a HEAD: the answer has no body
    bool persist_ = true;        ///< keep-alive after the answer
    Target target_;
    std::shared_ptr<PendingHttp> answer_; ///< a handler's answer, awaited
    // An upgrade in progress.
    Route* route_ = nullptr;
    std::shared_ptr<PendingUpgrade> pending_;
    std::string key_;
    std::vector<std::string> offered_;
    std::vector<protocol::ExtensionItem> extensionOffers_;
    std::optional<WebSocket::Init> init_; ///< set once accepted: the WebSocket to make after the 101
};

/** Fills `res` with the file for `req` under `root`, or a 404/400. */
void serveFile(std::string_view prefix, const std::filesystem::path& root, const HttpRequest& req, HttpResponse& res);

/** The MIME type for a file name's extension ("application/octet-stream" if unknown). */
std::string_view contentType(std::string_view fileName) noexcept;

} // namespace tongdao::detail
