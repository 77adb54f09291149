// TLS on net::Socket, both sides: handshake and echo, SNI, reloading certificates, the
// client's verification and its error texts, and the protocol versions refused.
//
// The harness: a net::Loop on a thread of its own; a server-side Socket accepted through a
// net::Listener that speaks TLS and echoes what it decrypts; a client-side Socket that
// connects, calls startTls and keeps what it receives. Certificates are made at run time by
// scripts/make-test-certs.sh in a temporary directory, removed at exit.

#include "tongdao/net/loop.hpp"
#include "tongdao/net/socket.hpp"
#include "tongdao/net/tls.hpp"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace tongdao;

constexpr auto waitLimit = 30s; // every wait on the loop is bounded by this

// --- certificates --------------------------------------------------------------------------

fs::path certScript() {
    if (const char* p = std::getenv("TONGDAO_CERT_SCRIPT")) return p;
    // tests/net/tls_test.cpp -> scripts/make-test-certs.sh
    return fs::path(__FILE__).parent_path().parent_path().parent_path() / "scripts" / "make-test-certs.sh";
}

/** A fresh temporary directory, removed (with what is in it) when the process exits. */
fs::path tempDir(const std::string& prefix) {
    std::string pattern = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    static std::vector<fs::path> made;
    static const bool registered = [] {
        std::atexit([] {
            for (const auto& d : made) {
                std::error_code ec;
                fs::remove_all(d, ec);
            }
        });
        return true;
    }();
    (void)registered;
    made.emplace_back(pattern);
    return pattern;
}

/** A CA and its certificates made by the script in a directory of their own. */
struct CertSet {
    fs::path dir;
    fs::path file(const char* name) const { return dir / name; }
    std::string ca() const { return file("ca.pem").string(); }
    net::TlsServerOptions::Certificate server() const {
        return {file("server.pem").string(), file("server.key").string()};
    }
    net::TlsServerOptions::Certificate other() const { return {file("other.pem").string(), file("other.key").string()}; }
};

CertSet makeCerts(const std::string& prefix) {
    CertSet c{tempDir(prefix)};
    const std::string cmd = "bash '" + certScript().string() + "' '" + c.dir.string() + "' >/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("cannot make test certificates: " + cmd);
    return c;
}

/** The certificates most tests use, made once per process. */
const CertSet& certs() {
    static const CertSet c = makeCerts("tongdao-tls-test-");
    return c;
}

/** A second, unrelated CA: its clients trust nothing the first one signed. */
const CertSet& strangerCerts() {
    static const CertSet c = makeCerts("tongdao-tls-stranger-");
    return c;
}

void copyFile(const fs::path& from, const fs::path& to) {
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

/** The subject CN of a certificate. */
std::string commonName(X509* cert) {
    if (!cert) return {};
    char buf[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
    return buf;
}

// --- a loop on a thread --------------------------------------------------------------------

class LoopThread {
public:
    LoopThread() : thread_([this] { loop_.run(); }) {
        // Running before anything else: a stop() before run() would be lost.
        std::promise<void> running;
        auto f = running.get_future();
        loop_.post([&running] { running.set_value(); });
        if (f.wait_for(waitLimit) != std::future_status::ready) std::abort();
    }
    ~LoopThread() {
        loop_.stop();
        thread_.join(); // then ~Loop deletes the sockets still open
    }
    LoopThread(const LoopThread&) = delete;
    LoopThread& operator=(const LoopThread&) = delete;

    net::Loop& loop() noexcept { return loop_; }

    /** Runs `f` on the loop and waits (bounded) for its result. */
    template <class F>
    auto call(F f) -> decltype(f()) {
        using R = decltype(f());
        auto task = std::make_shared<std::packaged_task<R()>>(std::move(f));
        auto result = task->get_future();
        loop_.post([task] { (*task)(); });
        if (result.wait_for(waitLimit) != std::future_status::ready) {
            ADD_FAILURE() << "the loop did not run a posted call in time";
            std::abort();
        }
        return result.get();
    }

    /** Runs `f` on the loop without waiting. */
    template <class F>
    void post(F f) {
        loop_.post(std::move(f));
    }

private:
    net::Loop loop_;
    std::thread thread_;
};

/** State shared between the test thread and the loop, read and written under a lock. */
template <class T>
class Shared {
public:
    template <class F>
    void update(F f) {
        {
            std::lock_guard lock(m_);
            f(value_);
        }
        cv_.notify_all();
    }
    template <class P>
    bool waitFor(P pred, std::chrono::seconds limit = std::chrono::duration_cast<std::chrono::seconds>(waitLimit)) {
        std::unique_lock lock(m_);
        return cv_.wait_for(lock, limit, [&] { return pred(value_); });
    }
    template <class F>
    auto read(F f) {
        std::lock_guard lock(m_);
        return f(value_);
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    T value_{};
};

protocol::OutputView viewOf(const std::string& s) {
    protocol::OutputView v;
    v.parts[0] = protocol::asBytes(s);
    v.count = 1;
    return v;
}

/** Writes what the kernel (and TLS) take of `out`, asking to be called again for the rest. */
bool writeSome(net::Socket& s, std::string& out) {
    while (!out.empty()) {
        const auto n = s.write(viewOf(out));
        if (n < 0) return false;
        if (n == 0) break;
        out.erase(0, static_cast<std::size_t>(n));
    }
    s.wantWritable(!out.empty());
    return true;
}

// --- the server side ---------------------------------------------------------------------------

struct ServerLog {
    int accepted = 0;
    int open = 0;
    std::vector<std::string> errors; ///< tlsError() (or the error) of each failed connection
};

class EchoConnection final : public net::Socket {
public:
    EchoConnection(net::Loop& loop, int fd, SSL* ssl, std::shared_ptr<Shared<ServerLog>> log)
        : net::Socket(loop, fd), log_(std::move(log)) {
        startTls(ssl, true);
        log_->update([](ServerLog& l) {
            ++l.accepted;
            ++l.open;
        });
    }
    ~EchoConnection() override {
        log_->update([](ServerLog& l) { --l.open; });
    }

private:
    void onData(protocol::MutableBytes data) override {
        out_.append(reinterpret_cast<const char*>(data.data()), data.size());
        flush();
    }
    void onWritable() override { flush(); }
    void flush() {
        if (!writeSome(*this, out_)) fail("write failed: " + lastError().message());
    }
    void onEof() override {
        shutdownWrite();
        close();
    }
    void onError(std::error_code ec) override {
        fail(tlsError().empty() ? ec.message() : tlsError());
    }
    void fail(const std::string& why) {
        log_->update([&](ServerLog& l) { l.errors.push_back(why); });
        close();
    }

    std::shared_ptr<Shared<ServerLog>> log_; ///< shared: connections may outlive the server object
    std::string out_;
};

/** A TLS echo server on 127.0.0.1 and a free port, on the loop. */
class EchoServer {
public:
    EchoServer(LoopThread& lt, net::TlsServerContext& ctx) : lt_(lt) {
        port_ = lt_.call([this, &ctx] {
            listener_ = std::make_unique<net::Listener>(lt_.loop(), net::Endpoint{"127.0.0.1", 0}, false,
                                                        [this, &ctx](int fd) {
                                                            SSL* ssl = ctx.newSession();
                                                            if (!ssl) {
                                                                ::close(fd);
                                                                return;
                                                            }
                                                            new EchoConnection(lt_.loop(), fd, ssl, logPtr_);
                                                        });
            return listener_->port();
        });
    }
    ~EchoServer() {
        lt_.call([this] {
            listener_.reset();
            return 0;
        });
    }
    EchoServer(const EchoServer&) = delete;
    EchoServer& operator=(const EchoServer&) = delete;

    std::uint16_t port() const noexcept { return port_; }

private:
    std::shared_ptr<Shared<ServerLog>> logPtr_ = std::make_shared<Shared<ServerLog>>();

public:
    Shared<ServerLog>& log = *logPtr_;

private:
    LoopThread& lt_;
    std::unique_ptr<net::Listener> listener_;
    std::uint16_t port_ = 0;
};

// --- the client side ---------------------------------------------------------------------------

struct ClientLog {
    bool secured = false;
    bool ended = false;        ///< error or end of stream
    std::string error;         ///< tlsError(), or the socket error
    std::string received;
    std::string peerName;      ///< the server certificate's CN
    std::string version;       ///< "TLSv1.3"...
    std::string alpn;
};

class TlsClient;

/** One client connection, driven from the test thread. */
class ClientHandle {
public:
    ClientHandle(LoopThread& lt, const net::TlsClientContext& ctx, const std::string& host, std::uint16_t port);
    ~ClientHandle();
    ClientHandle(const ClientHandle&) = delete;
    ClientHandle& operator=(const ClientHandle&) = delete;

    /** Waits until secured or failed; true if secured. */
    bool waitSecured() {
        return log->waitFor([](const ClientLog& l) { return l.secured || l.ended; }) &&
               log->read([](const ClientLog& l) { return l.secured; });
    }
    /** Waits until failed (or ended); true if it ended. */
    bool waitEnded() {
        return log->waitFor([](const ClientLog& l) { return l.ended; });
    }
    void send(std::string data);
    /** Sends `data` and waits for as many bytes back; true if they are the same. */
    ::testing::AssertionResult echo(const std::string& data) {
        const std::size_t before = log->read([](const ClientLog& l) { return l.received.size(); });
        send(data);
        const bool got = log->waitFor(
            [&](const ClientLog& l) { return l.received.size() >= before + data.size() || l.ended; },
            std::chrono::seconds(60));
        const auto [size, same, why] = log->read([&](const ClientLog& l) {
            const bool s = l.received.size() == before + data.size() && l.received.compare(before, data.size(), data) == 0;
            return std::tuple{l.received.size() - before, s, l.error};
        });
        if (!got) return ::testing::AssertionFailure() << "no echo in time: " << size << " of " << data.size();
        if (!same)
            return ::testing::AssertionFailure()
                   << "echo differs: got " << size << " bytes for " << data.size() << " (" << why << ")";
        return ::testing::AssertionSuccess();
    }
    std::string error() { return log->read([](const ClientLog& l) { return l.error; }); }
    std::string peerName() { return log->read([](const ClientLog& l) { return l.peerName; }); }
    std::string version() { return log->read([](const ClientLog& l) { return l.version; }); }
    std::string alpn() { return log->read([](const ClientLog& l) { return l.alpn; }); }

    std::shared_ptr<Shared<ClientLog>> log = std::make_shared<Shared<ClientLog>>();

private:
    LoopThread& lt_;
    std::shared_ptr<TlsClient*> socket_ = std::make_shared<TlsClient*>(nullptr); ///< loop thread only
};

class TlsClient final : public net::Socket {
public:
    TlsClient(net::Loop& loop, int fd, SSL* ssl, std::shared_ptr<Shared<ClientLog>> log,
              std::shared_ptr<TlsClient*> self)
        : net::Socket(loop, fd, true), ssl_(ssl), log_(std::move(log)), self_(std::move(self)) {
        *self_ = this;
    }
    ~TlsClient() override {
        if (*self_ == this) *self_ = nullptr;
        if (!started_) SSL_free(ssl_);
    }
    void send(const std::string& data) {
        out_ += data;
        flush();
    }

private:
    void onConnect(std::error_code ec) override {
        if (ec) return fail(ec.message());
        started_ = true;
        startTls(ssl_, false);
    }
    void onSecured() override {
        std::string name = commonName(SSL_get0_peer_certificate(ssl_));
        const unsigned char* proto = nullptr;
        unsigned len = 0;
        SSL_get0_alpn_selected(ssl_, &proto, &len);
        std::string alpn(reinterpret_cast<const char*>(proto), proto ? len : 0);
        log_->update([&](ClientLog& l) {
            l.secured = true;
            l.peerName = name;
            l.version = SSL_get_version(ssl_);
            l.alpn = alpn;
        });
        flush();
    }
    void onData(protocol::MutableBytes data) override {
        log_->update([&](ClientLog& l) { l.received.append(reinterpret_cast<const char*>(data.data()), data.size()); });
    }
    void onWritable() override { flush(); }
    void flush() {
        if (!writeSome(*this, out_)) fail("write failed: " + lastError().message());
    }
    void onEof() override { fail("end of stream"); }
    void onError(std::error_code ec) override { fail(tlsError().empty() ? ec.message() : tlsError()); }
    void fail(const std::string& why) {
        log_->update([&](ClientLog& l) {
            l.ended = true;
            if (l.error.empty()) l.error = why;
        });
        close();
    }

    SSL* ssl_;
    bool started_ = false;
    std::shared_ptr<Shared<ClientLog>> log_;
    std::shared_ptr<TlsClient*> self_;
    std::string out_;
};

ClientHandle::ClientHandle(LoopThread& lt, const net::TlsClientContext& ctx, const std::string& host,
                           std::uint16_t port)
    : lt_(lt) {
    SSL* ssl = ctx.newSession(host);
    if (!ssl) throw std::runtime_error("newSession failed");
    const bool ok = lt_.call([&]() -> bool {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        const int fd = net::connectTo(reinterpret_cast<const sockaddr*>(&a), sizeof a);
        if (fd < 0) {
            SSL_free(ssl);
            return false;
        }
        new TlsClient(lt_.loop(), fd, ssl, log, socket_);
        return true;
    });
    if (!ok) throw std::runtime_error("connect failed");
}

ClientHandle::~ClientHandle() {
    lt_.call([s = socket_] {
        if (*s) (*s)->close();
        return 0;
    });
}

void ClientHandle::send(std::string data) {
    lt_.post([s = socket_, d = std::move(data)] {
        if (*s) (*s)->send(d);
    });
}

std::string randomBytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
}

net::TlsClientContext trustingClient(const std::string& ca = certs().ca()) {
    return net::TlsClientContext(net::TlsClientOptions{true, ca});
}

// --- a blocking OpenSSL client, for what our own client will not do ------------------------------

struct RawResult {
    bool connected = false;
    std::string error;
    std::string version;
};

/** One handshake with a plain OpenSSL client limited to [minVersion, maxVersion]. */
RawResult rawHandshake(std::uint16_t port, int minVersion, int maxVersion) {
    RawResult r;
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    // TLS 1.0 needs security level 0 in OpenSSL 3 (and Debian's configuration asks for 2).
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, minVersion);
    SSL_CTX_set_max_proto_version(ctx, maxVersion);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        r.error = "connect failed";
    } else {
        SSL* ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) == 1) {
            r.connected = true;
            r.version = SSL_get_version(ssl);
            SSL_shutdown(ssl);
        } else {
            r.error = net::takeOpenSslError();
        }
        SSL_free(ssl);
    }
    ::close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return r;
}

bool startsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// --- handshake and echo ---------------------------------------------------------------------------

TEST(Tls, HandshakeAndEchoSmallAndOneMiB) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    auto cctx = trustingClient();
    ClientHandle c(lt, cctx, "127.0.0.1", server.port());
    ASSERT_TRUE(c.waitSecured()) << c.error();
    EXPECT_EQ(c.version(), "TLSv1.3");
    EXPECT_EQ(c.alpn(), "http/1.1");
    EXPECT_EQ(c.peerName(), "server");
    EXPECT_TRUE(c.echo("hello"));
    EXPECT_TRUE(c.echo(std::string(1, '\0')));
    EXPECT_TRUE(c.echo(randomBytes(1 << 20, 1)));
    EXPECT_TRUE(c.echo("after the big one"));
}

TEST(Tls, EchoOfEightMiBThroughPartialWrites) {
    // Far more than the socket buffers hold: records blocked half-way and retried, both sides.
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    auto cctx = trustingClient();
    ClientHandle c(lt, cctx, "localhost", server.port());
    ASSERT_TRUE(c.waitSecured()) << c.error();
    EXPECT_TRUE(c.echo(randomBytes(8 << 20, 2)));
}

TEST(Tls, ManyConnectionsAtOnce) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    auto cctx = trustingClient();
    std::vector<std::unique_ptr<ClientHandle>> clients;
    for (int i = 0; i < 20; ++i) clients.push_back(std::make_unique<ClientHandle>(lt, cctx, "127.0.0.1", server.port()));
    for (auto& c : clients) ASSERT_TRUE(c->waitSecured()) << c->error();
    for (std::size_t i = 0; i < clients.size(); ++i)
        EXPECT_TRUE(clients[i]->echo(randomBytes(64 * 1024, static_cast<unsigned>(i))));
    clients.clear();
    EXPECT_TRUE(server.log.waitFor([](const ServerLog& l) { return l.open == 0; })) << "server connections left open";
    EXPECT_EQ(server.log.read([](const ServerLog& l) { return l.accepted; }), 20);
}

TEST(Tls, TlsTwelveStillAccepted) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    const auto r = rawHandshake(server.port(), TLS1_2_VERSION, TLS1_2_VERSION);
    EXPECT_TRUE(r.connected) << r.error;
    EXPECT_EQ(r.version, "TLSv1.2");
}

// --- protocol versions and garbage -------------------------------------------------------------------

TEST(Tls, TlsOneZeroAndOneOneRefused) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    for (const int version : {TLS1_VERSION, TLS1_1_VERSION}) {
        SCOPED_TRACE(version == TLS1_VERSION ? "TLS 1.0" : "TLS 1.1");
        const auto r = rawHandshake(server.port(), version, version);
        EXPECT_FALSE(r.connected) << r.version;
        // The server's fatal protocol_version alert, as the client reports it.
        EXPECT_NE(r.error.find("alert protocol version"), std::string::npos) << r.error;
    }
    ASSERT_TRUE(server.log.waitFor([](const ServerLog& l) { return l.errors.size() == 2 && l.open == 0; }));
    for (const auto& e : server.log.read([](const ServerLog& l) { return l.errors; }))
        EXPECT_NE(e.find("unsupported protocol"), std::string::npos) << e;
}

TEST(Tls, GarbageInsteadOfAHelloClosesTheConnection) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    for (const std::string& junk : {randomBytes(4096, 7), std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                                    std::string("\x16\x03\x01\xff\xff") + randomBytes(300, 8)}) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        timeval tv{10, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(server.port());
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
        (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
        // An alert at most, then the end of the stream (or a reset), well before the timeout.
        char buf[4096];
        ssize_t n = 0, total = 0;
        const auto start = std::chrono::steady_clock::now();
        while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) total += n;
        EXPECT_LT(std::chrono::steady_clock::now() - start, 9s) << "the server kept the connection open";
        EXPECT_LT(total, 64) << "more than an alert came back";
        ::close(fd);
    }
    EXPECT_TRUE(server.log.waitFor([](const ServerLog& l) { return l.open == 0 && l.errors.size() == 3; }));
    // And the server still serves.
    auto cctx = trustingClient();
    ClientHandle c(lt, cctx, "127.0.0.1", server.port());
    ASSERT_TRUE(c.waitSecured()) << c.error();
    EXPECT_TRUE(c.echo("still here"));
}

// --- SNI -----------------------------------------------------------------------------------------------

TEST(Tls, SniPicksTheCertificateByName) {
    net::TlsServerContext ctx({.certificates = {certs().server(), certs().other()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    auto verifying = trustingClient();
    net::TlsClientContext insecure(net::TlsClientOptions{false, {}});
    struct Case {
        std::string host;
        bool verify;
        std::string want;
    };
    for (const Case& t : std::vector<Case>{
             {"127.0.0.1", true, "server"},     // an address: the default
             {"localhost", true, "server"},     // named in server.pem
             {"other.test", true, "other"},     // named in other.pem
             {"OTHER.test", true, "other"},     // names are case-insensitive
             {"chat.other.test", true, "other"}, // *.other.test
             {"a.b.other.test", false, "server"}, // a wildcard covers one label only: the default
             {"unknown.test", false, "server"},  // no match: the default
         }) {
        SCOPED_TRACE(t.host);
        ClientHandle c(lt, t.verify ? verifying : insecure, t.host, server.port());
        ASSERT_TRUE(c.waitSecured()) << c.error();
        EXPECT_EQ(c.peerName(), t.want);
        EXPECT_TRUE(c.echo("sni " + t.host));
    }
}

// --- reload ---------------------------------------------------------------------------------------------

TEST(Tls, ReloadServesNewFilesToNewConnectionsOnly) {
    const fs::path dir = tempDir("tongdao-tls-reload-");
    const fs::path cert = dir / "live.pem", key = dir / "live.key";
    copyFile(certs().file("server.pem"), cert);
    copyFile(certs().file("server.key"), key);
    net::TlsServerContext ctx({.certificates = {{cert.string(), key.string()}}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    auto cctx = trustingClient();
    net::TlsClientContext insecure(net::TlsClientOptions{false, {}});

    ClientHandle before(lt, cctx, "127.0.0.1", server.port());
    ASSERT_TRUE(before.waitSecured()) << before.error();
    EXPECT_EQ(before.peerName(), "server");
    EXPECT_TRUE(before.echo("one"));

    // New files at the same paths, then reload: new connections get them.
    copyFile(certs().file("other.pem"), cert);
    copyFile(certs().file("other.key"), key);
    ASSERT_NO_THROW(ctx.reload());
    {
        ClientHandle after(lt, cctx, "other.test", server.port());
        ASSERT_TRUE(after.waitSecured()) << after.error();
        EXPECT_EQ(after.peerName(), "other");
        EXPECT_TRUE(after.echo("two"));
    }
    // The connection made before keeps its session and keeps working.
    EXPECT_TRUE(before.echo("three, on the old connection"));
    EXPECT_TRUE(before.echo(randomBytes(256 * 1024, 3)));

    // A reload that cannot load throws and keeps what was loaded last.
    fs::remove(cert);
    EXPECT_THROW(ctx.reload(), std::runtime_error);
    {
        ClientHandle kept(lt, insecure, "127.0.0.1", server.port());
        ASSERT_TRUE(kept.waitSecured()) << kept.error();
        EXPECT_EQ(kept.peerName(), "other");
    }
    // A key that does not match its certificate: also refused, also kept.
    copyFile(certs().file("server.pem"), cert);
    copyFile(certs().file("other.key"), key);
    EXPECT_THROW(ctx.reload(), std::runtime_error);
    {
        ClientHandle kept(lt, insecure, "127.0.0.1", server.port());
        ASSERT_TRUE(kept.waitSecured()) << kept.error();
        EXPECT_EQ(kept.peerName(), "other");
        EXPECT_TRUE(kept.echo("kept"));
    }
    EXPECT_TRUE(before.echo("four"));
}

TEST(Tls, ServerContextRefusesMissingOrMismatchedFiles) {
    EXPECT_THROW(net::TlsServerContext({}), std::runtime_error);
    EXPECT_THROW(net::TlsServerContext({.certificates = {{"/nonexistent/cert.pem", "/nonexistent/key.pem"}}}),
                 std::runtime_error);
    EXPECT_THROW(net::TlsServerContext(
                     {.certificates = {{certs().file("server.pem").string(), certs().file("other.key").string()}}}),
                 std::runtime_error);
}

// --- the client's verification ----------------------------------------------------------------------------

TEST(Tls, ClientRefusesAnUntrustedCa) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    auto stranger = trustingClient(strangerCerts().ca());
    ClientHandle c(lt, stranger, "127.0.0.1", server.port());
    EXPECT_FALSE(c.waitSecured());
    EXPECT_TRUE(startsWith(c.error(), "certificate verify failed")) << c.error();
}

TEST(Tls, ClientRefusesTheWrongHostName) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    auto cctx = trustingClient();
    // A name is checked against the DNS names, an address against the IP addresses.
    for (const auto& [host, want] : std::vector<std::pair<std::string, std::string>>{
             {"wrong.test", "certificate verify failed: hostname mismatch"},
             {"other.test", "certificate verify failed: hostname mismatch"},
             {"127.0.0.2", "certificate verify failed: IP address mismatch"},
         }) {
        SCOPED_TRACE(host);
        ClientHandle c(lt, cctx, host, server.port());
        EXPECT_FALSE(c.waitSecured());
        EXPECT_EQ(c.error(), want);
    }
}

TEST(Tls, ClientWithoutVerificationConnects) {
    net::TlsServerContext ctx({.certificates = {certs().server()}});
    LoopThread lt;
    EchoServer server(lt, ctx);
    net::TlsClientContext insecure(net::TlsClientOptions{false, {}});
    for (const std::string host : {"wrong.test", "127.0.0.1"}) {
        ClientHandle c(lt, insecure, host, server.port());
        ASSERT_TRUE(c.waitSecured()) << c.error();
        EXPECT_TRUE(c.echo("unverified"));
    }
    // Also against a CA it would not trust.
    net::TlsServerContext strangerCtx({.certificates = {strangerCerts().server()}});
    EchoServer strangerServer(lt, strangerCtx);
    ClientHandle c(lt, insecure, "127.0.0.1", strangerServer.port());
    ASSERT_TRUE(c.waitSecured()) << c.error();
}

TEST(Tls, ClientContextRefusesAMissingCaFile) {
    EXPECT_THROW(net::TlsClientContext(net::TlsClientOptions{true, "/nonexistent/ca.pem"}), std::runtime_error);
    // Without verification the CA file is not read.
    EXPECT_NO_THROW(net::TlsClientContext(net::TlsClientOptions{false, "/nonexistent/ca.pem"}));
}

TEST(Tls, ServerClosingMidHandshakeFailsTheClient) {
    // A listener that accepts and closes at once: the client's handshake ends with an error, no hang.
    LoopThread lt;
    auto listener = lt.call([&] {
        return std::make_shared<net::Listener>(lt.loop(), net::Endpoint{"127.0.0.1", 0}, false,
                                               [](int fd) { ::close(fd); });
    });
    auto cctx = trustingClient();
    {
        ClientHandle c(lt, cctx, "127.0.0.1", listener->port());
        EXPECT_FALSE(c.waitSecured());
        EXPECT_TRUE(c.waitEnded());
        EXPECT_FALSE(c.error().empty());
    }
    lt.call([&] {
        listener.reset();
        return 0;
    });
}

} // namespace
