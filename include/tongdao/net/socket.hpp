#pragma once
/**
 * @file
 * Non-blocking TCP sockets on a `Loop`: a connected socket that moves bytes, and a
 * listening socket that accepts. Nothing here knows about HTTP or WebSocket.
 */

#include "tongdao/net/loop.hpp"
#include "tongdao/protocol/buffer.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <system_error>

struct sockaddr;
typedef struct ssl_st SSL;

namespace tongdao::net {

class TlsSession;
/** Owns a connection's TLS state; movable between sockets (see `Socket::releaseTls`). */
struct TlsSessionDeleter {
    void operator()(TlsSession* t) const noexcept;
};
using TlsHandle = std::unique_ptr<TlsSession, TlsSessionDeleter>;

/** Something registered in a loop's epoll set. */
class Pollable {
public:
    virtual ~Pollable() = default;
    virtual void onEvents(std::uint32_t events) = 0;
};

/** "1.2.3.4:80" or "[::1]:80" for a socket address; empty if unknown. */
std::string formatAddress(const sockaddr* sa);
/** The peer of a connected socket, formatted; empty if unknown. */
std::string peerAddress(int fd);

/**
 * A connected (or connecting) TCP socket. Reads go into the loop's shared buffer and
 * reach `onData`; writes are tried at once and the caller keeps what the kernel refused,
 * asking for `onWritable` until it is gone.
 *
 * Lifetime: created with `new` and owned by the loop from then on; `close()` closes the
 * descriptor at once and deletes the object after the current turn.
 */
class Socket : public Pollable {
public:
    /** Takes ownership of a non-blocking descriptor and registers it for reading. */
    Socket(Loop& loop, int fd, bool connecting = false);
    ~Socket() override;
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;

    Loop& loop() const noexcept { return loop_; }
    int fd() const noexcept { return fd_; }
    bool isOpen() const noexcept { return fd_ >= 0; }
    std::string remoteAddress() const { return peerAddress(fd_); }

    /**
     * Writes as much of `v` as the kernel accepts now, in one system call.
     * @return bytes written (possibly 0), or -1 on a fatal error (`lastError()` tells).
     */
    std::ptrdiff_t write(const protocol::OutputView& v) noexcept;
    /** Asks for `onWritable()` while true. */
    void wantWritable(bool on);
    /** True while waiting for `onWritable()`: the kernel refused data earlier. */
    bool writePending() const noexcept { return wantWrite_; }
    /** Sends FIN after what was written: the peer sees end of stream. */
    void shutdownWrite() noexcept;
    /** Closes the descriptor now; the object is deleted after this turn. Idempotent. */
    void close() noexcept;
    /**
     * Hands the descriptor over (to a socket object of another kind, e.g. after an HTTP
     * upgrade): it leaves the epoll set open, and this object is deleted after this turn.
     */
    int detach() noexcept;
    /** Stops (false) or resumes (true) reading; data waits in the kernel meanwhile. */
    void setReading(bool on);

    // --- TLS ----------------------------------------------------------------------------
    /**
     * Speaks TLS from now on, with `ssl` (taken over). A server side waits for the client's
     * hello; a client side (call once TCP is connected) sends its own and calls
     * `onSecured()` when the handshake is done. Bytes reach `onData` decrypted.
     */
    void startTls(SSL* ssl, bool server);
    bool secure() const noexcept { return tls_ != nullptr; }
    /** True unless a TLS handshake is still under way (nothing can be written before it ends). */
    bool tlsReady() const noexcept;
    /** Why TLS failed ("certificate verify failed: ..."), empty if it did not. */
    std::string tlsError() const;
    /** Hands the TLS state over with the descriptor (see `detach`). */
    TlsHandle releaseTls() noexcept;
    void adoptTls(TlsHandle tls) noexcept;
    /** Queues `onFlush()` at the end of this turn (corking). */
    void markDirty() { loop_.markDirty(*this); }
    /** Enables or disables Nagle's algorithm's opposite, TCP_NODELAY. */
    void setNoDelay(bool on) noexcept;

    /** Calls `onTimeout()` at the first tick `seconds` from now or later; 0 cancels. */
    void setTimeout(std::uint32_t seconds) noexcept { deadline_ = seconds ? loop_.now() + seconds : 0; }
    std::error_code lastError() const noexcept { return {lastErrno_, std::system_category()}; }

protected:
    /** Bytes arrived; `data` is the loop's buffer, valid during the call, writable. */
    virtual void onData(protocol::MutableBytes data) = 0;
    /** The peer finished sending (read returned 0). Reading stops. */
    virtual void onEof() = 0;
    /** The connection failed (reset, refused, unreachable...). */
    virtual void onError(std::error_code ec) = 0;
    /** A connect finished (connecting sockets only); `ec` is set if it failed. */
    virtual void onConnect(std::error_code) {}
    /** A client-side TLS handshake finished. */
    virtual void onSecured() {}
    virtual void onWritable() {}
    virtual void onTimeout() {}
    /** Marked dirty in this turn: write what is queued. */
    virtual void onFlush() {}

private:
    friend class Loop;
    void onEvents(std::uint32_t events) final;
    void updateEvents();
    void readTls(protocol::MutableBytes cipher);
    void failTls();

    Loop& loop_;
    TlsHandle tls_;
    int fd_;
    std::uint32_t deadline_ = 0;
    std::uint32_t trackIndex_ = 0;
    int lastErrno_ = 0;
    // Bits, so a derived class's small fields fit in the rest of the last word.
    bool wantWrite_ : 1 = false;
    bool readPaused_ : 1 = false;
    bool readDone_ : 1 = false;
    bool connecting_ : 1 = false;
    bool connectingTls_ : 1 = false; ///< a client-side handshake: onSecured() when done
    bool dirty_ : 1 = false;
    bool delayed_ : 1 = false; ///< in the loop's list of writes that wait for the write delay
};

/** Where to listen or connect: a host name or literal address and a port. */
struct Endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
};

/**
 * A listening socket. With `reusePort`, several loops each listen on the same port and
 * the kernel spreads new connections among them (SO_REUSEPORT).
 */
class Listener : public Pollable {
public:
    /** Called for each accepted, non-blocking descriptor; the callee owns it. */
    using AcceptHandler = std::function<void(int fd)>;

    /** Binds and listens at once; throws std::system_error if it cannot. */
    Listener(Loop& loop, const Endpoint& at, bool reusePort, AcceptHandler onAccept);
    ~Listener() override;
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    /** The port actually bound (useful with port 0). */
    std::uint16_t port() const noexcept { return port_; }
    /** Stops accepting and closes the descriptor. */
    void close() noexcept;

private:
    void onEvents(std::uint32_t events) override;

    Loop& loop_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    bool paused_ = false;
    AcceptHandler onAccept_;
};

/** Opens a non-blocking socket connecting to `addr`; returns the descriptor or -1 (errno set). */
int connectTo(const sockaddr* addr, unsigned addrLen) noexcept;

} // namespace tongdao::net
