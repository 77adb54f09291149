#include "tls_session.hpp"

#include "tongdao/log.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <stdexcept>

namespace tongdao::net {

std::string takeOpenSslError() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        // "error:0A000086:SSL routines::certificate verify failed" -> the reason only.
        const char* reason = std::strrchr(buf, ':');
        out += reason && reason[1] ? reason + 1 : buf;
    }
    return out.empty() ? "unknown TLS error" : out;
}

namespace {

// --- the BIO: no buffer, straight to the receive buffer and the socket ------------------

int bioWrite(BIO* b, const char* in, int len) {
    return static_cast<TlsSession*>(BIO_get_data(b))->bioWrite(in, len);
}
int bioRead(BIO* b, char* out, int len) { return static_cast<TlsSession*>(BIO_get_data(b))->bioRead(out, len); }
long bioCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }
int bioCreate(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
}

BIO_METHOD* bioMethod() {
    static BIO_METHOD* m = [] {
        BIO_METHOD* method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tongdao socket");
        BIO_meth_set_write(method, bioWrite);
        BIO_meth_set_read(method, bioRead);
        BIO_meth_set_ctrl(method, bioCtrl);
        BIO_meth_set_create(method, bioCreate);
        return method;
    }();
    return m;
}

void configureCommon(SSL_CTX* ctx) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); // TLS 1.0 and 1.1 are refused
    // Partial writes and moving buffers: a blocked record is retried from our own copy.
    // Released buffers: an idle connection keeps no record buffers.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
}

// ALPN (RFC 7301): a WebSocket handshake is HTTP/1.1.
int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
    static const unsigned char want[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, want, sizeof want, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; // no overlap: go on without ALPN
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

} // namespace

// --- server contexts ----------------------------------------------------------------------

struct TlsServerContext::Set {
    std::vector<SSL_CTX*> contexts;             ///< one per certificate; [0] is the default
    std::map<std::string, SSL_CTX*> byName;     ///< DNS names, lower case ("*.example.com" too)
    ~Set() {
        for (auto* c : contexts) SSL_CTX_free(c);
    }
};

namespace {

int selectCertificate(SSL* ssl, int*, void* arg) {
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_OK; // no SNI: the default certificate
    const auto* set = static_cast<const TlsServerContext::Set*>(arg);
    std::string host(name);
    std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return std::tolower(c); });
    auto it = set->byName.find(host);
    if (it == set->byName.end()) {
        const auto dot = host.find('.');
        if (dot != std::string::npos) it = set->byName.find("*" + host.substr(dot));
    }
    if (it != set->byName.end()) SSL_set_SSL_CTX(ssl, it->second);
    return SSL_TLSEXT_ERR_OK;
}

void addNames(SSL_CTX* ctx, std::map<std::string, SSL_CTX*>& byName) {
    X509* cert = SSL_CTX_get0_certificate(ctx);
    if (!cert) return;
    auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
        const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
        if (n->type != GEN_DNS) continue;
        std::string dns(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)),
                        static_cast<std::size_t>(ASN1_STRING_length(n->d.dNSName)));
        std::transform(dns.begin(), dns.end(), dns.begin(), [](unsigned char c) { return std::tolower(c); });
        byName.emplace(dns, ctx);
    }
    GENERAL_NAMES_free(names);
}

std::shared_ptr<TlsServerContext::Set> loadSet(const TlsServerOptions& o) {
    if (o.certificates.empty()) throw std::runtime_error("TLS: no certificate given");
    auto set = std::make_shared<TlsServerContext::Set>();
    for (const auto& c : o.certificates) {
        SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx) throw std::runtime_error("TLS: " + takeOpenSslError());
        set->contexts.push_back(ctx);
        configureCommon(ctx);
        if (SSL_CTX_set_cipher_list(ctx, o.ciphers.c_str()) != 1)
            throw std::runtime_error("TLS: cipher list: " + takeOpenSslError());
        if (SSL_CTX_use_certificate_chain_file(ctx, c.certFile.c_str()) != 1)
            throw std::runtime_error("TLS: " + c.certFile + ": " + takeOpenSslError());
        if (SSL_CTX_use_PrivateKey_file(ctx, c.keyFile.c_str(), SSL_FILETYPE_PEM) != 1)
            throw std::runtime_error("TLS: " + c.keyFile + ": " + takeOpenSslError());
        if (SSL_CTX_check_private_key(ctx) != 1)
            throw std::runtime_error("TLS: " + c.keyFile + " does not match " + c.certFile);
        SSL_CTX_set_alpn_select_cb(ctx, selectAlpn, nullptr);
        addNames(ctx, set->byName);
    }
    SSL_CTX_set_tlsext_servername_callback(set->contexts.front(), selectCertificate);
    SSL_CTX_set_tlsext_servername_arg(set->contexts.front(), set.get());
    return set;
}

} // namespace

TlsServerContext::TlsServerContext(TlsServerOptions options) : options_(std::move(options)), current_(loadSet(options_)) {}

TlsServerContext::~TlsServerContext() = default;

void TlsServerContext::reload() {
    auto fresh = loadSet(options_); // throws before anything changes
    std::lock_guard lock(mutex_);
    current_ = std::move(fresh);
}

SSL* TlsServerContext::newSession() const {
    std::shared_ptr<Set> set;
    {
        std::lock_guard lock(mutex_);
        set = current_;
    }
    // The SSL object holds a reference to its SSL_CTX: a reload does not disturb it.
    // The SNI callback's argument is the set, kept alive by the context's ex-data below.
    SSL* ssl = SSL_new(set->contexts.front());
    if (ssl) {
        // Keep the set (and so every SNI context) alive while this connection lives.
        static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, [](void*, void* p, CRYPTO_EX_DATA*, int, long, void*) {
            delete static_cast<std::shared_ptr<Set>*>(p);
        });
        SSL_set_ex_data(ssl, index, new std::shared_ptr<Set>(std::move(set)));
    }
    return ssl;
}

// --- client context -------------------------------------------------------------------------

TlsClientContext::TlsClientContext(TlsClientOptions options) : options_(std::move(options)) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (!ctx_) throw std::runtime_error("TLS: " + takeOpenSslError());
    configureCommon(ctx_);
    if (options_.verify) {
        SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
        const bool ok = options_.caFile.empty() ? SSL_CTX_set_default_verify_paths(ctx_) == 1
                                                : SSL_CTX_load_verify_locations(ctx_, options_.caFile.c_str(), nullptr) == 1;
        if (!ok) {
            const auto why = takeOpenSslError();
            SSL_CTX_free(ctx_);
            throw std::runtime_error("TLS: cannot load " + (options_.caFile.empty() ? "the system CAs" : options_.caFile) +
                                     ": " + why);
        }
    }
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx_, alpn, sizeof alpn);
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

SSL* TlsClientContext::newSession(const std::string& host) const {
    SSL* ssl = SSL_new(ctx_);
    if (!ssl) return nullptr;
    SSL_set_tlsext_host_name(ssl, host.c_str()); // SNI
    if (options_.verify) {
        // The name must match the certificate (an IP literal is matched as an address).
        unsigned char addr[16];
        if (inet_pton(AF_INET, host.c_str(), addr) == 1 || inet_pton(AF_INET6, host.c_str(), addr) == 1)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
        else
            SSL_set1_host(ssl, host.c_str());
    }
    return ssl;
}

// --- a session ------------------------------------------------------------------------------

TlsSession::TlsSession(SSL* ssl, bool server) : ssl_(ssl) {
    BIO* bio = BIO_new(bioMethod());
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);
    if (server) SSL_set_accept_state(ssl_);
    else SSL_set_connect_state(ssl_);
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

int TlsSession::bioRead(char* out, int len) noexcept {
    BIO* b = SSL_get_rbio(ssl_);
    BIO_clear_retry_flags(b);
    if (input_.empty()) {
        BIO_set_retry_read(b);
        return -1;
    }
    const std::size_t n = std::min(input_.size(), static_cast<std::size_t>(len));
    std::memcpy(out, input_.data(), n);
    input_ = input_.subspan(n);
    return static_cast<int>(n);
}

int TlsSession::bioWrite(const char* in, int len) noexcept {
    BIO* b = SSL_get_wbio(ssl_);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do n = ::send(fd_, in, static_cast<std::size_t>(len), MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
    return -1;
}

void TlsSession::recordError(int rc) {
    const int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_SSL && SSL_get_verify_result(ssl_) != X509_V_OK) {
        error_ = std::string("certificate verify failed: ") +
                 X509_verify_cert_error_string(SSL_get_verify_result(ssl_));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        error_ = errno ? std::strerror(errno) : "connection closed during the TLS handshake";
    } else {
        error_ = "TLS: " + takeOpenSslError();
    }
}

TlsSession::Status TlsSession::handshake(protocol::Bytes cipher) {
    input_ = cipher;
    const int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
        done_ = true;
        return Status::done;
    }
    const int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Status::more;
    recordError(rc);
    return Status::failed;
}

TlsSession::ReadStatus TlsSession::read(protocol::Bytes cipher, protocol::MutableBytes plain, std::size_t& n) {
    if (!cipher.empty()) input_ = cipher;
    const int rc = SSL_read(ssl_, plain.data(), static_cast<int>(std::min<std::size_t>(plain.size(), 1 << 30)));
    if (rc > 0) {
        n = static_cast<std::size_t>(rc);
        return ReadStatus::data;
    }
    switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: return ReadStatus::more;
    case SSL_ERROR_ZERO_RETURN: return ReadStatus::closed;
    default: recordError(rc); return ReadStatus::failed;
    }
}

bool TlsSession::flushBlocked() {
    if (pending_.empty()) return true;
    const int rc = SSL_write(ssl_, pending_.data(), static_cast<int>(pending_.size()));
    if (rc > 0) {
        pending_.release();
        return true;
    }
    const int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return true;
    recordError(rc);
    return false;
}

std::ptrdiff_t TlsSession::write(const protocol::OutputView& v, protocol::MutableBytes staging) {
    if (!pending_.empty()) {
        if (!flushBlocked()) return -1;
        if (!pending_.empty()) return 0;
    }
    std::size_t taken = 0;
    std::size_t part = 0, offset = 0;
    while (part < v.count) {
        // Gather up to one record's worth (16 KiB) from the parts: one record, one send.
        std::size_t n = 0;
        std::size_t p = part, o = offset;
        while (p < v.count && n < staging.size()) {
            const auto src = v.parts[p].subspan(o);
            const std::size_t k = std::min(src.size(), staging.size() - n);
            std::memcpy(staging.data() + n, src.data(), k);
            n += k;
            o += k;
            if (o == v.parts[p].size()) {
                ++p;
                o = 0;
            }
        }
        if (n == 0) break;
        const int rc = SSL_write(ssl_, staging.data(), static_cast<int>(n));
        if (rc <= 0) {
            const int e = SSL_get_error(ssl_, rc);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
                recordError(rc);
                return taken ? static_cast<std::ptrdiff_t>(taken) : -1;
            }
            // The record is made and partly sent: OpenSSL needs these bytes again on retry.
            pending_.append({staging.data(), n});
            return static_cast<std::ptrdiff_t>(taken + n);
        }
        taken += static_cast<std::size_t>(rc);
        if (static_cast<std::size_t>(rc) == n) {
            part = p;
            offset = o;
            continue;
        }
        // Fewer than gathered (records smaller than the staging size): step forward by rc.
        for (std::size_t left = static_cast<std::size_t>(rc); left != 0;) {
            const std::size_t k = std::min(left, v.parts[part].size() - offset);
            left -= k;
            offset += k;
            if (offset == v.parts[part].size()) {
                ++part;
                offset = 0;
            }
        }
    }
    return static_cast<std::ptrdiff_t>(taken);
}

void TlsSession::shutdown() noexcept {
    if (done_) SSL_shutdown(ssl_);
    ERR_clear_error();
}

} // namespace tongdao::net
