#include "tongdao/net/socket.hpp"

#include "tls_session.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/steady_timer.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tongdao::net {

namespace {
std::error_code errnoCode(int e) { return {e, std::system_category()}; }
} // namespace

std::string formatAddress(const sockaddr* sa) {
    char host[INET6_ADDRSTRLEN] = {};
    char out[INET6_ADDRSTRLEN + 16];
    if (sa->sa_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "%s:%u", host, ntohs(in->sin_port));
        return out;
    }
    if (sa->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "[%s]:%u", host, ntohs(in6->sin6_port));
        return out;
    }
    return {};
}

std::string peerAddress(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
    return formatAddress(reinterpret_cast<const sockaddr*>(&ss));
}

// --- Socket -------------------------------------------------------------------------

Socket::Socket(Loop& loop, int fd, bool connecting) : loop_(loop), fd_(fd), connecting_(connecting) {
    // Level-triggered: one registration for the socket's life, and a read per readiness
    // event is enough (what is left is reported again), as uSockets does.
    loop_.add(*this, fd_, connecting ? EPOLLOUT : (EPOLLIN | EPOLLRDHUP));
    loop_.track(*this);
}

Socket::~Socket() {
    if (fd_ >= 0) {
        loop_.remove(fd_);
        ::close(fd_);
        fd_ = -1;
        loop_.untrack(*this);
    }
}

void Socket::updateEvents() {
    if (fd_ < 0) return;
    std::uint32_t ev = 0;
    if (connecting_) ev = EPOLLOUT;
    else {
        if (!readDone_ && !readPaused_) ev |= EPOLLIN | EPOLLRDHUP;
        // Paused, the peer's FIN is still worth knowing (EPOLLRDHUP reads nothing).
        else if (!readDone_) ev |= EPOLLRDHUP;
        // While a TLS handshake runs, writes wait for it: asking for EPOLLOUT would spin.
        if ((wantWrite_ && tlsReady()) || (tls_ && tls_->blocked())) ev |= EPOLLOUT;
    }
    loop_.modify(*this, fd_, ev);
}

void Socket::onEvents(std::uint32_t events) {
    if (fd_ < 0) return;
    if (connecting_) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
        connecting_ = false;
        if (err == 0) updateEvents();
        onConnect(err ? errnoCode(err) : std::error_code{});
        return;
    }
    if (!readDone_ && !readPaused_ && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        const auto buf = loop_.receiveBuffer();
        ssize_t n;
        do n = ::recv(fd_, buf.data(), buf.size(), 0);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            if (tls_) readTls(buf.first(static_cast<std::size_t>(n)));
            else onData(buf.first(static_cast<std::size_t>(n)));
            // What this read made this socket send leaves now, in one write, while its
            // bytes are still in cache (uWS corks per read the same way); what it made
            // other sockets send waits for the end of the round.
            if (dirty_ && fd_ >= 0) {
                dirty_ = false;
                onFlush();
            }
        } else if (n == 0) {
            readDone_ = true;
            updateEvents();
            onEof();
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            lastErrno_ = errno;
            onError(lastError());
            return;
        }
        if (fd_ < 0) return;
    } else if (readPaused_ && !readDone_ && (events & EPOLLRDHUP) && !(events & (EPOLLHUP | EPOLLERR))) {
        // The peer finished sending while we were not reading: the data waits, the FIN counts.
        readDone_ = true;
        updateEvents();
        onEof();
        return;
    } else if ((readDone_ || readPaused_) && (events & (EPOLLHUP | EPOLLERR))) {
        // Nothing more to read and the connection is gone: writes can only fail now.
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
        lastErrno_ = err ? err : EPIPE;
        onError(lastError());
        return;
    }
    if (!(events & EPOLLOUT)) return;
    if (tls_ && tls_->blocked()) {
        // First the record OpenSSL is holding, then whatever the owner has queued.
        if (!tls_->flushBlocked()) return failTls();
        if (tls_->blocked()) return;
        updateEvents();
    }
    if (wantWrite_) onWritable();
}

void Socket::startTls(SSL* ssl, bool server) {
    tls_.reset(new TlsSession(ssl, server));
    tls_->attach(fd_);
    connectingTls_ = !server;
    if (!server && tls_->handshake({}) == TlsSession::Status::failed) failTls(); // sends the client hello
}

void Socket::readTls(protocol::MutableBytes cipher) {
    auto& t = *tls_;
    bool fresh = true;
    if (!t.handshakeDone()) {
        const auto st = t.handshake(cipher);
        fresh = false; // what the handshake left unread stays with the session
        if (st == TlsSession::Status::failed) return failTls();
        if (st == TlsSession::Status::more) return;
        if (connectingTls_) {
            connectingTls_ = false;
            onSecured();
            if (fd_ < 0) return;
        }
        updateEvents(); // a write that waited for the handshake may now ask for EPOLLOUT
        markDirty();    // anything queued while the handshake ran
    }
    const auto plain = loop_.plainBuffer();
    // One record per SSL_read: at most a few dozen per read of the receive buffer.
    for (int i = 0; i < 4096 && fd_ >= 0; ++i) {
        std::size_t n = 0;
        const auto st = t.read(fresh ? protocol::Bytes(cipher) : protocol::Bytes{}, plain, n);
        fresh = false;
        if (st == TlsSession::ReadStatus::more) return;
        if (st == TlsSession::ReadStatus::failed) return failTls();
        if (st == TlsSession::ReadStatus::closed) {
            // close_notify: the peer finished sending.
            readDone_ = true;
            updateEvents();
            return onEof();
        }
        onData(plain.first(n));
    }
}

void Socket::failTls() {
    lastErrno_ = EPROTO;
    onError(lastError());
}

std::string Socket::tlsError() const { return tls_ ? tls_->error() : std::string(); }

bool Socket::tlsReady() const noexcept { return !tls_ || tls_->handshakeDone(); }

void TlsSessionDeleter::operator()(TlsSession* t) const noexcept { delete t; }

TlsHandle Socket::releaseTls() noexcept { return std::move(tls_); }

void Socket::adoptTls(TlsHandle tls) noexcept {
    tls_ = std::move(tls);
    if (tls_) tls_->attach(fd_);
}

std::ptrdiff_t Socket::write(const protocol::OutputView& v) noexcept {
    if (fd_ < 0) {
        lastErrno_ = EBADF;
        return -1;
    }
    if (tls_) {
        if (!tls_->handshakeDone()) return 0; // written once the handshake is done
        const bool wasBlocked = tls_->blocked();
        const auto n = tls_->write(v, loop_.tlsStaging());
        if (n < 0) lastErrno_ = EPROTO;
        if (tls_->blocked() != wasBlocked) updateEvents();
        return n;
    }
    iovec iov[3];
    std::size_t count = 0;
    for (auto part : v) {
        if (part.empty()) continue;
        iov[count].iov_base = const_cast<std::byte*>(part.data());
        iov[count].iov_len = part.size();
        ++count;
    }
    if (count == 0) return 0;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t n;
    // MSG_NOSIGNAL: a peer that went away is an error code, not a SIGPIPE.
    do n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    lastErrno_ = errno;
    return -1;
}

void Socket::wantWritable(bool on) {
    if (wantWrite_ == on) return;
    wantWrite_ = on;
    updateEvents();
}

void Socket::shutdownWrite() noexcept {
    if (tls_) tls_->shutdown(); // close_notify first
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void Socket::setNoDelay(bool on) noexcept {
    const int v = on ? 1 : 0;
    if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
}

void Socket::setReading(bool on) {
    if (readPaused_ == !on) return;
    readPaused_ = !on;
    updateEvents();
}

int Socket::detach() noexcept {
    const int fd = fd_;
    if (fd < 0) return -1;
    loop_.remove(fd);
    fd_ = -1;
    deadline_ = 0;
    loop_.untrack(*this);
    loop_.destroyLater(std::unique_ptr<Pollable>(this));
    return fd;
}

void Socket::close() noexcept {
    if (fd_ < 0) return;
    loop_.remove(fd_);
    ::close(fd_);
    fd_ = -1;
    deadline_ = 0;
    loop_.untrack(*this);
    loop_.destroyLater(std::unique_ptr<Pollable>(this));
}

// --- Listener -----------------------------------------------------------------------

Listener::Listener(Loop& loop, const Endpoint& at, bool reusePort, AcceptHandler onAccept)
    : loop_(loop), onAccept_(std::move(onAccept)) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(at.port);
    if (int rc = ::getaddrinfo(at.host.empty() ? nullptr : at.host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                                "cannot resolve " + at.host + ": " + ::gai_strerror(rc));
    std::error_code last;
    for (addrinfo* ai = res; ai && fd_ < 0; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = errnoCode(errno);
            continue;
        }
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (reusePort) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
            last = errnoCode(errno);
            ::close(fd);
            continue;
        }
        fd_ = fd;
    }
    ::freeaddrinfo(res);
    if (fd_ < 0) throw std::system_error(last, "cannot listen on " + at.host + ":" + port);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    loop_.add(*this, fd_, EPOLLIN);
}

Listener::~Listener() { close(); }

void Listener::close() noexcept {
    if (fd_ < 0) return;
    loop_.remove(fd_);
    ::close(fd_);
    fd_ = -1;
}

void Listener::onEvents(std::uint32_t) {
    // Bounded, so one busy listener cannot hold the loop.
    for (int i = 0; i < 256 && fd_ >= 0; ++i) {
        const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            onAccept_(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            // Out of descriptors: a level-triggered listener would spin. Pause for a
            // second; the pending connections wait in the backlog.
            if (!paused_) {
                paused_ = true;
                loop_.modify(*this, fd_, 0);
                auto timer = std::make_shared<asio::steady_timer>(loop_.context(), std::chrono::seconds(1));
                timer->async_wait([this, timer](const asio::error_code& ec) {
                    if (ec || fd_ < 0) return;
                    paused_ = false;
                    loop_.modify(*this, fd_, EPOLLIN);
                });
            }
        }
        break; // EAGAIN, or paused
    }
}

int connectTo(const sockaddr* addr, unsigned addrLen) noexcept {
    const int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::connect(fd, addr, addrLen) != 0 && errno != EINPROGRESS) {
        const int e = errno;
        ::close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

} // namespace tongdao::net
