#include "common.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509v3.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <utility>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <string_view>

namespace tongdao::bench {

std::uint64_t nowNs() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t secsNs(double s) { return static_cast<std::uint64_t>(s * 1e9); }

double cpuSeconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return tv(ru.ru_utime) + tv(ru.ru_stime);
}

std::string base64(const unsigned char* data, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

std::string acceptFor(const std::string& key) {
    const std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdLen = 0;
    EVP_Digest(in.data(), in.size(), md, &mdLen, EVP_sha1(), nullptr);
    return base64(md, mdLen);
}

namespace {
/** RFC 4648 §5: base64url, unpadded, as JWTs use it. */
std::string base64url(const unsigned char* data, std::size_t n) {
    std::string s = base64(data, n);
    for (char& ch : s) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
    while (!s.empty() && s.back() == '=') s.pop_back();
    return s;
}
std::string base64url(std::string_view s) { return base64url(reinterpret_cast<const unsigned char*>(s.data()), s.size()); }
} // namespace

std::string hs256Token(const std::string& secret, const std::string& sub, const std::string& name, long seconds) {
    // The names are the load generator's own (letters, digits, - _ .): nothing to escape in JSON.
    const long exp = static_cast<long>(std::time(nullptr)) + seconds;
    const std::string signing = base64url(R"({"alg":"HS256","typ":"JWT"})") + "." +
                                base64url(R"({"sub":")" + sub + R"(","name":")" + name + R"(","exp":)" + std::to_string(exp) + "}");
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int macLen = 0;
    if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(signing.data()),
              signing.size(), mac, &macLen))
        throw Fatal("HMAC-SHA256 failed");
    return signing + "." + base64url(mac, macLen);
}

std::string newKey() {
    std::array<unsigned char, 16> nonce{};
    randomBytes(nonce.data(), nonce.size());
    return base64(nonce.data(), nonce.size());
}

void randomBytes(void* p, std::size_t n) {
    auto* b = static_cast<unsigned char*>(p);
    std::size_t got = 0;
    for (int tries = 0; got < n && tries < 16; ++tries) {
        const ssize_t r = getrandom(b + got, n - got, 0);
        if (r > 0) got += static_cast<std::size_t>(r);
    }
    if (got < n) throw Fatal("getrandom failed");
}

std::uint64_t randomU64() {
    std::uint64_t v = 0;
    randomBytes(&v, sizeof v);
    return v;
}

bool watch(int ep, int op, int fd, std::uint32_t events, std::uint64_t token) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = token;
    return epoll_ctl(ep, op, fd, &ev) == 0;
}

EventFds::EventFds(bool watchStdin) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    timer_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    sig_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (ep_ < 0 || timer_ < 0 || sig_ < 0 || !watch(ep_, EPOLL_CTL_ADD, timer_, EPOLLIN, kTimer) ||
        !watch(ep_, EPOLL_CTL_ADD, sig_, EPOLLIN, kSignal)) {
        const int err = errno;
        closeAll();
        throw Fatal(std::string("epoll, timerfd or signalfd: ") + std::strerror(err));
    }
    // A file or /dev/null cannot be polled: then only a signal ends a hold.
    if (watchStdin) watch(ep_, EPOLL_CTL_ADD, STDIN_FILENO, EPOLLIN | EPOLLHUP, kStdin);
}

EventFds::~EventFds() { closeAll(); }

void EventFds::closeAll() {
    for (int* fd : {&sig_, &timer_, &ep_})
        if (*fd >= 0) close(std::exchange(*fd, -1));
}

void EventFds::arm(std::uint64_t atNs) {
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(atNs / 1'000'000'000ULL);
    its.it_value.tv_nsec = static_cast<long>(atNs % 1'000'000'000ULL);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1; // zero would disarm it
    timerfd_settime(timer_, TFD_TIMER_ABSTIME, &its, nullptr);
}

void EventFds::consumeTimer() {
    std::uint64_t expirations = 0;
    if (read(timer_, &expirations, sizeof expirations) < 0) {} // EAGAIN: nothing to take
}

void EventFds::forgetStdin() { watch(ep_, EPOLL_CTL_DEL, STDIN_FILENO, 0, 0); }

int connectTcp(const Target& dest, const in_addr* source, const char*& step) {
    step = "socket";
    const int fd = socket(dest.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    const int one = 1;
    // Without this, small frames wait for the peer's ACK (Nagle).
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source && !dest.v6()) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        sockaddr_in src{};
        src.sin_family = AF_INET;
        src.sin_addr = *source;
        step = "bind";
        if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
            const int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
    }
    step = "connect";
    if (connect(fd, reinterpret_cast<const sockaddr*>(&dest.addr), dest.addrLen) != 0 && errno != EINPROGRESS) {
        const int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

void raiseFdLimit(std::size_t need) {
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || need > rl.rlim_cur)
        throw Fatal(std::to_string(need) + " descriptors needed, the open-file limit allows " + std::to_string(rl.rlim_cur) +
                    ": run several processes");
}

// --- histogram ---------------------------------------------------------------------------------

std::uint64_t Histogram::quantile(double q) const {
    if (count_ == 0) return 0;
    const auto rank = std::max<std::uint64_t>(static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_))), 1);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        seen += buckets_[i];
        if (seen >= rank) return std::min(middle(i), max_);
    }
    return max_;
}

std::uint64_t Histogram::middle(std::size_t i) {
    if (i < 64) return i;
    const int e = static_cast<int>(i / 64) + 5;
    const std::uint64_t width = std::uint64_t{1} << (e - 6);
    return (64 + (i % 64)) * width + width / 2;
}

void Histogram::clear() {
    if (count_ == 0) return;
    buckets_.fill(0);
    count_ = max_ = 0;
    sum_ = 0;
}

void Histogram::writeJson(std::FILE* f, const char* name) const {
    auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    std::fprintf(f, "\"%s\":{\"count\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}", name,
                 static_cast<unsigned long long>(count_), us(quantile(0.5)), us(quantile(0.9)), us(quantile(0.99)),
                 us(quantile(0.999)), us(max_), mean() / 1000.0);
}

void Histogram::writeLine(std::FILE* f, const char* name, double div, const char* unit) const {
    if (count_ == 0) return;
    auto v = [div](std::uint64_t ns) { return static_cast<double>(ns) / div; };
    std::fprintf(f, "%-14s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f %s  (n=%llu)\n", name, v(quantile(0.5)),
                 v(quantile(0.9)), v(quantile(0.99)), v(quantile(0.999)), v(max_), unit, static_cast<unsigned long long>(count_));
}

// --- TLS ----------------------------------------------------------------------------------------

SSL_CTX* newTlsContext(bool verify, const std::string& caFile, bool partialWrites, bool idle) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) throw Fatal("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // Read ahead: one read() takes whole records (and more) instead of a 5-byte header, then the rest.
    SSL_CTX_set_read_ahead(ctx, 1);
    long mode = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
    if (partialWrites) mode |= SSL_MODE_ENABLE_PARTIAL_WRITE;
    if (idle) mode |= SSL_MODE_RELEASE_BUFFERS; // 10,000 idle connections: keep the load generator small
    SSL_CTX_set_mode(ctx, mode);
    if (!verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr); // --insecure
        return ctx;
    }
    const bool loaded = caFile.empty() ? SSL_CTX_set_default_verify_paths(ctx) == 1
                                       : SSL_CTX_load_verify_locations(ctx, caFile.c_str(), nullptr) == 1;
    if (!loaded) {
        SSL_CTX_free(ctx);
        throw Fatal(caFile.empty() ? "cannot load the system's CA certificates" : "cannot read --ca " + caFile);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    return ctx;
}

SSL* newTlsSession(SSL_CTX* ctx, int fd, const std::string& host, bool verify) {
    SSL* ssl = SSL_new(ctx);
    if (!ssl) return nullptr;
    in6_addr probe{};
    const bool ip = inet_pton(AF_INET, host.c_str(), &probe) == 1 || inet_pton(AF_INET6, host.c_str(), &probe) == 1;
    bool ok = SSL_set_fd(ssl, fd) == 1;
    if (ok && !ip) ok = SSL_set_tlsext_host_name(ssl, host.c_str()) == 1; // SNI names a host, never an address (RFC 6066 §3)
    if (ok && verify) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        ok = (ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0)) == 1;
    }
    if (!ok) {
        SSL_free(ssl);
        return nullptr;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

std::string tlsAgreed(const SSL* ssl) { return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl); }

// --- targets ------------------------------------------------------------------------------------

Target parseTarget(const std::string& url, const std::string& defaultPath) {
    Target t;
    t.url = url;
    std::string rest;
    if (url.rfind("ws://", 0) == 0) {
        rest = url.substr(5);
    } else if (url.rfind("wss://", 0) == 0) {
        rest = url.substr(6);
        t.tls = true;
    } else {
        throw Fatal(url + ": the URL is ws://HOST:PORT/PATH or wss://HOST:PORT/PATH");
    }
    const std::size_t slash = rest.find_first_of("/?");
    std::string authority = rest.substr(0, slash);
    t.path = slash == std::string::npos ? defaultPath : rest.substr(slash);
    if (!t.path.empty() && t.path[0] == '?') t.path = "/" + t.path;
    if (authority.find('@') != std::string::npos) throw Fatal(url + ": user information in the URL is not supported");
    std::string port;
    if (!authority.empty() && authority[0] == '[') {
        // RFC 3986 §3.2.2: an IPv6 literal in brackets, then maybe :port.
        const std::size_t close = authority.find(']');
        if (close == std::string::npos) throw Fatal(url + ": no ']' after the IPv6 address");
        t.host = authority.substr(1, close - 1);
        const std::string after = authority.substr(close + 1);
        if (!after.empty() && after[0] != ':') throw Fatal(url + ": what follows the IPv6 address is not :PORT");
        if (!after.empty()) port = after.substr(1);
        in6_addr probe{};
        if (inet_pton(AF_INET6, t.host.c_str(), &probe) != 1) throw Fatal(url + ": \"" + t.host + "\" is not an IPv6 address");
    } else {
        const std::size_t colon = authority.rfind(':');
        if (colon != std::string::npos) {
            port = authority.substr(colon + 1);
            authority.resize(colon);
        }
        t.host = authority;
    }
    if (t.host.empty()) throw Fatal(url + ": no host");
    unsigned long p = t.tls ? 443 : 80;
    if (!port.empty()) {
        char* end = nullptr;
        p = std::strtoul(port.c_str(), &end, 10);
        if (*end != '\0' || p == 0 || p > 65535) throw Fatal(url + ": bad port \"" + port + "\"");
    }
    t.port = static_cast<std::uint16_t>(p);
    // IPv4 first: a name such as localhost often has both, and servers listen on 127.0.0.1.
    int rc = 0;
    for (const int family : {AF_INET, AF_INET6}) {
        addrinfo hints{};
        hints.ai_family = family;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        rc = getaddrinfo(t.host.c_str(), nullptr, &hints, &res);
        if (rc != 0 || !res) continue;
        std::memcpy(&t.addr, res->ai_addr, res->ai_addrlen);
        t.addrLen = res->ai_addrlen;
        freeaddrinfo(res);
        if (family == AF_INET) reinterpret_cast<sockaddr_in*>(&t.addr)->sin_port = htons(t.port);
        else reinterpret_cast<sockaddr_in6*>(&t.addr)->sin6_port = htons(t.port);
        return t;
    }
    throw Fatal(url + ": " + t.host + " has no address (" + gai_strerror(rc) + ")");
}

std::string upgradeRequest(const Target& t, const std::string& key, const std::vector<std::string>& headers,
                           std::initializer_list<std::string_view> extra) {
    std::string req = "GET " + t.path + " HTTP/1.1\r\nHost: " + t.hostHeader() +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                      "\r\nSec-WebSocket-Version: 13\r\n";
    for (const auto e : extra)
        if (!e.empty()) req.append(e).append("\r\n");
    for (const auto& h : headers) req.append(h).append("\r\n");
    return req + "\r\n";
}

// --- reporting ----------------------------------------------------------------------------------

void phaseLine(const Report& r, const std::string& text) {
    if (!r.phases) return;
    std::printf("# %s\n", text.c_str());
    std::fflush(stdout);
}

std::size_t rampAllowed(std::size_t total, double rampSeconds, std::uint64_t elapsedNs) {
    if (!(rampSeconds > 0)) return total;
    const double share = static_cast<double>(elapsedNs) / (rampSeconds * 1e9);
    if (share >= 1) return total;
    return std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(share * static_cast<double>(total))));
}

void Progress::update(std::uint64_t now, const char* phase, std::size_t open, std::size_t wanted, std::uint64_t count,
                      const char* unit, std::uint64_t errors) {
    if (!on_) return;
    if (start_ == 0) {
        start_ = last_ = now;
        lastCount_ = count;
        return;
    }
    if (now - last_ < 1'000'000'000ULL) return;
    const double secs = static_cast<double>(now - last_) / 1e9;
    const double rate = static_cast<double>(count - std::min(count, lastCount_)) / secs;
    char lat[96] = "";
    if (second_.count() > 0)
        std::snprintf(lat, sizeof lat, "  p50 %.2f ms  p99 %.2f ms", static_cast<double>(second_.quantile(0.5)) / 1e6,
                      static_cast<double>(second_.quantile(0.99)) / 1e6);
    // \r and "erase to the end of the line": the next second's line replaces this one.
    std::fprintf(stderr, "\r\033[K%6.1f s  %-9s  %zu/%zu open  %.0f %s/s%s  errors %llu", static_cast<double>(now - start_) / 1e9,
                 phase, open, wanted, rate, unit, lat, static_cast<unsigned long long>(errors));
    std::fflush(stderr);
    drawn_ = true;
    last_ = now;
    lastCount_ = count;
    second_.clear();
}

void Progress::finish() {
    if (!drawn_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
}

} // namespace tongdao::bench
