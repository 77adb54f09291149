#pragma once
// One connection's TLS: an SSL object whose BIO reads from the loop's receive buffer and
// writes straight to the socket. Private to net/.

#include "tongdao/net/tls.hpp"
#include "tongdao/protocol/buffer.hpp"

#include <string>

namespace tongdao::net {

class TlsSession {
public:
    /** Takes ownership of `ssl`; `server` picks the accepting or the connecting side. */
    TlsSession(SSL* ssl, bool server);
    ~TlsSession();
    TlsSession(const TlsSession&) = delete;
    TlsSession& operator=(const TlsSession&) = delete;

    /** The descriptor records are written to. */
    void attach(int fd) noexcept { fd_ = fd; }

    enum class Status { more, done, failed };

    /** Drives the handshake with `cipher` (possibly empty, to start a client's). */
    Status handshake(protocol::Bytes cipher);
    bool handshakeDone() const noexcept { return done_; }

    enum class ReadStatus { more, data, closed, failed };
    /**
     * Decrypts what `cipher` (given on the first call, then empty) completes: `data` with
     * `n` bytes in `plain`; call again until `more`. `closed` is the peer's close_notify.
     */
    ReadStatus read(protocol::Bytes cipher, protocol::MutableBytes plain, std::size_t& n);

    /**
     * Encrypts and writes from `v`, coalescing small parts into records of up to 16 KiB
     * through `staging`. Returns plaintext bytes taken, or -1 on a fatal error. A record the
     * kernel took only part of is kept here (`blocked()`), its plaintext counted as taken.
     */
    std::ptrdiff_t write(const protocol::OutputView& v, protocol::MutableBytes staging);
    /** Finishes a record left blocked; false on a fatal error. */
    bool flushBlocked();
    bool blocked() const noexcept { return !pending_.empty(); }

    /** Sends close_notify (best effort). */
    void shutdown() noexcept;

    /** Why the handshake or a read failed, readable ("certificate verify failed: ..."). */
    const std::string& error() const noexcept { return error_; }

    // For the BIO callbacks.
    int bioRead(char* out, int len) noexcept;
    int bioWrite(const char* in, int len) noexcept;

private:
    void recordError(int rc);

    SSL* ssl_;
    int fd_ = -1;
    protocol::Bytes input_;
    protocol::ByteBuffer pending_; ///< a record's plaintext, for the retry OpenSSL requires
    std::string error_;
    bool done_ = false;
};

} // namespace tongdao::net
