#pragma once
/**
 * @file
 * TLS on a `Socket`, with OpenSSL and no buffers of our own.
 *
 * OpenSSL reads ciphertext straight from the loop's receive buffer and writes records
 * straight to the socket through a small custom BIO (uSockets' approach), so a
 * connection holds its `SSL` object and nothing else; with SSL_MODE_RELEASE_BUFFERS an
 * idle one holds no record buffers either. TLS 1.2 and 1.3 only.
 */

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace tongdao::net {

/** A server's certificates: the first is the default, the others are chosen by SNI. */
struct TlsServerOptions {
    struct Certificate {
        std::string certFile; ///< PEM, the certificate followed by its chain
        std::string keyFile;  ///< PEM private key
    };
    std::vector<Certificate> certificates;
    /** TLS 1.2 suites (TLS 1.3's are OpenSSL's defaults): forward secrecy and AEAD only. */
    std::string ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
};

/**
 * The server's TLS configuration, shared by all loops. `reload()` reads the files again
 * (on SIGHUP, say): new connections get the new certificates, open ones keep theirs.
 *
 * @par Thread Safety
 * Safe from any thread.
 */
class TlsServerContext {
public:
    /** Loads the certificates; throws std::runtime_error with OpenSSL's reason on failure. */
    explicit TlsServerContext(TlsServerOptions options);
    ~TlsServerContext();
    /** Loads them again; on failure throws and keeps serving with the old ones. */
    void reload();
    /** A new server-side SSL object for one connection. */
    SSL* newSession() const;

    struct Set;

private:
    TlsServerOptions options_;
    mutable std::mutex mutex_;
    std::shared_ptr<Set> current_;
};

struct TlsClientOptions {
    bool verify = true;  ///< check the certificate chain and the host name
    std::string caFile;  ///< trust these CAs (PEM) instead of the system store
};

/** A client's TLS configuration (its SSL_CTX), shared by its connections. Thread-safe. */
class TlsClientContext {
public:
    /** Throws std::runtime_error if the CA file cannot be read. */
    explicit TlsClientContext(TlsClientOptions options);
    ~TlsClientContext();
    TlsClientContext(const TlsClientContext&) = delete;
    TlsClientContext& operator=(const TlsClientContext&) = delete;
    /** A new client-side SSL object for `host`: SNI, and the name checked against the certificate. */
    SSL* newSession(const std::string& host) const;
    const TlsClientOptions& options() const noexcept { return options_; }

private:
    TlsClientOptions options_;
    SSL_CTX* ctx_ = nullptr;
};

/** OpenSSL's description of the last error on this thread (and clears it). */
std::string takeOpenSslError();

} // namespace tongdao::net
