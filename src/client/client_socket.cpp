#include "task.hpp"

#include "tongdao/log.hpp"

namespace tongdao::detail {

namespace {
// How long to wait for the server to finish a closing handshake, or to close TCP after it.
constexpr std::uint32_t closeTimeoutSeconds = 5;
} // namespace

struct ClientSocket::Events : protocol::EventHandler {
    ClientSocket& s;
    explicit Events(ClientSocket& c) : s(c) {}
    void onMessage(protocol::MessageKind kind, protocol::Bytes payload) { s.task_->message(kind, payload); }
    void onPing(protocol::Bytes) { s.task_->heard(); }
    void onPong(protocol::Bytes) { s.task_->heard(); }
    void onClose(std::uint16_t, std::string_view) {}
    void onError(std::error_code ec) { log(LogLevel::debug, "client: failing the connection: %s", ec.message().c_str()); }
};

ClientSocket::ClientSocket(net::Loop& loop, int fd, std::shared_ptr<TaskImpl> task)
    : net::Socket(loop, fd, true), task_(std::move(task)), engine_(task_->engineOptions()) {}

void ClientSocket::onConnect(std::error_code ec) {
    if (ec) {
        auto task = task_;
        drop();
        task->connectFailed(ec);
        return;
    }
    task_->connected(*this);
}

void ClientSocket::beginHandshake(protocol::ClientRequest request) {
    handshake_.emplace(std::move(request));
    request_ = handshake_->request();
    requestSent_ = 0;
    flush();
}

void ClientSocket::onData(protocol::MutableBytes data) {
    task_->heard();
    if (!open_) {
        if (!handshake_) return; // nothing was asked yet: ignore
        std::size_t used = 0;
        const auto st = handshake_->receive(data, used);
        if (st == protocol::http::ParseStatus::needMore) return;
        if (st == protocol::http::ParseStatus::failed) {
            auto task = task_;
            const auto response = handshake_->response();
            const auto ec = handshake_->error();
            drop();
            task->handshakeFailed(ec, response);
            return;
        }
        open_ = true;
        engine_.setExtension(handshake_->takeExtension());
        task_->opened(*this, handshake_->response());
        if (done_) return; // closed from onOpen
        data = data.subspan(used); // frames that came with the 101
        if (data.empty()) return flush();
    }
    Events events(*this);
    engine_.receive(data, events);
    if (done_) return;
    if (engine_.closeExpected()) setTimeout(closeTimeoutSeconds); // RFC 6455 §7.1.1: the server closes TCP
    flush();
}

void ClientSocket::flush() {
    if (done_) return;
    if (requestSent_ < request_.size()) {
        protocol::OutputView v;
        v.parts[0] = protocol::asBytes(std::string_view(request_).substr(requestSent_));
        v.count = 1;
        const auto n = write(v);
        if (n < 0) return gone({}, "connectSocket:fail " + lastError().message());
        requestSent_ += static_cast<std::size_t>(n);
        wantWritable(requestSent_ < request_.size());
        return;
    }
    if (!open_) return;
    if (engine_.bufferedAmount() != 0) {
        const auto n = write(engine_.pendingOutput());
        if (n < 0) {
            protocol::CloseStatus st;
            return gone(st, "connection lost: " + lastError().message());
        }
        engine_.consumeOutput(static_cast<std::size_t>(n));
        wantWritable(engine_.bufferedAmount() != 0);
    }
    task_->updateBuffered(engine_.bufferedAmount());
    // After failing the connection (RFC 6455 §7.1.7) the client closes TCP itself.
    if (engine_.failed() && engine_.transportDone()) {
        const auto st = engine_.closeStatus();
        gone(st, st.reason);
    }
}

void ClientSocket::onEof() {
    engine_.receiveEof();
    const auto st = engine_.closeStatus();
    // Before the 101 the task words it itself ("closed during the handshake").
    gone(st, open_ && st.code == protocol::CloseCode::abnormal ? "connection lost" : "");
}

void ClientSocket::onError(std::error_code ec) {
    engine_.receiveEof();
    protocol::CloseStatus st;
    const std::string why = secure() && !tlsError().empty() ? tlsError() : ec.message();
    gone(st, (open_ ? "connection lost: " : "connectSocket:fail ") + why);
}

void ClientSocket::onTimeout() {
    // The server did not finish the closing handshake, or did not close TCP after it.
    engine_.receiveEof();
    auto st = engine_.closeStatus();
    gone(st, st.code == protocol::CloseCode::abnormal ? "close timeout" : "");
}

void ClientSocket::gone(const protocol::CloseStatus& status, std::string errMsg) {
    if (done_) return;
    auto task = task_;
    drop();
    task->socketGone(status, std::move(errMsg));
}

void ClientSocket::drop() noexcept {
    done_ = true;
    close();
}

} // namespace tongdao::detail
