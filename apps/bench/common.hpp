#pragma once
// What the two engines of `tongdao bench` share: clocks, randomness, the opening handshake
// (its request, key and accept value), hello tokens, the event descriptors and the connect,
// TLS set-up, the latency histogram, the targets and options, the pacing of connects
// (--ramp-up), the phase lines for drivers and the live progress line.
//
// The engines (echo_load.cpp, chat_load.cpp) are a WebSocket client of their own on plain epoll
// and non-blocking sockets, one thread: they share no code with the tongdao library, so a bug or
// a speed-up there cannot skew the yardstick, and every message they send is framed in a few
// instructions (the echo engine writes pre-built frames by reference).

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace tongdao::bench {

/** A setting or a system call the run cannot go on without: the message names it. */
struct Fatal : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::uint64_t nowNs();  ///< CLOCK_MONOTONIC
std::uint64_t secsNs(double s);
double cpuSeconds();    ///< this process's user + system CPU time

std::string base64(const unsigned char* data, std::size_t n);
/** RFC 6455 §4.2.2: base64(SHA-1(key + GUID)). */
std::string acceptFor(const std::string& key);
/** An HS256 JWT (RFC 7519) for `sub`, named `name`, valid `seconds` from now, signed with
 *  `secret`: what docs/PROTOCOL.md §9 takes in `hello {token}`. */
std::string hs256Token(const std::string& secret, const std::string& sub, const std::string& name, long seconds);
/** A fresh Sec-WebSocket-Key: 16 random bytes, base64. */
std::string newKey();
void randomBytes(void* p, std::size_t n);
std::uint64_t randomU64();

/** Adds or changes a descriptor in an epoll set; the token comes back with its events. */
bool watch(int ep, int op, int fd, std::uint32_t events, std::uint64_t token);

/** What an engine's loop waits on besides its connections: the epoll set, a timerfd (the send
 *  schedule), a signalfd for SIGTERM and SIGINT (blocked, so they arrive between events), and
 *  standard input when asked for (its end stops a hold). Their tokens lie above any index. */
class EventFds {
public:
    static constexpr std::uint64_t kSignal = ~std::uint64_t{0}, kStdin = kSignal - 1, kTimer = kSignal - 2;
    explicit EventFds(bool watchStdin);
    ~EventFds();
    EventFds(const EventFds&) = delete;
    EventFds& operator=(const EventFds&) = delete;
    int epoll() const { return ep_; }
    /** The timer fires at `atNs` (CLOCK_MONOTONIC). */
    void arm(std::uint64_t atNs);
    /** Takes the timer's expirations after it fired. */
    void consumeTimer();
    /** Standard input ended: no longer watched. */
    void forgetStdin();

private:
    void closeAll();
    int ep_ = -1, timer_ = -1, sig_ = -1;
};
/** Takes all the descriptors the hard limit allows; Fatal when `need` do not fit. */
void raiseFdLimit(std::size_t need);

/** Log-linear buckets over nanoseconds: exact below 64 ns, then 64 buckets per power of two
 *  (under 1.6 % relative error), up to 2^64. The exact maximum is kept beside. */
class Histogram {
public:
    void add(std::uint64_t v) {
        ++buckets_[index(v)];
        ++count_;
        if (v > max_) max_ = v;
        sum_ += static_cast<double>(v);
    }
    std::uint64_t count() const { return count_; }
    std::uint64_t max() const { return max_; }
    double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }
    /** The value at quantile q (0..1]: the middle of the bucket holding that rank, at most max. */
    std::uint64_t quantile(double q) const;
    void clear();
    /** `"name":{"count":…,"p50":…,"p90":…,"p99":…,"p999":…,"max":…,"mean":…}` in microseconds. */
    void writeJson(std::FILE* f, const char* name) const;
    /** `name  n=… p50 … p90 … p99 … p99.9 … max … unit`, values divided by `div`; nothing when empty. */
    void writeLine(std::FILE* f, const char* name, double div, const char* unit) const;

private:
    static constexpr std::size_t kBuckets = 59 * 64;
    static std::size_t index(std::uint64_t v) {
        if (v < 64) return static_cast<std::size_t>(v);
        const int e = 63 - __builtin_clzll(v); // 6..63
        return static_cast<std::size_t>(e - 5) * 64 + static_cast<std::size_t>((v >> (e - 6)) & 63);
    }
    static std::uint64_t middle(std::size_t i);
    std::array<std::uint64_t, kBuckets> buckets_{};
    std::uint64_t count_ = 0, max_ = 0;
    double sum_ = 0;
};

/** A client TLS context for wss://: TLS 1.2 at least, read-ahead (whole records per read), a
 *  write buffer that may move between retries (`partialWrites`: SSL_write may take part of
 *  it), small buffers for idle connections (`idle`). With `verify` the chain is checked
 *  against `caFile`, or the system's CAs; Fatal when they cannot be read. */
SSL_CTX* newTlsContext(bool verify, const std::string& caFile, bool partialWrites, bool idle);
/** A TLS session on `fd` towards `host`: SNI when it is a name, and with `verify` the name or
 *  address the certificate must carry. Null when OpenSSL refuses. */
SSL* newTlsSession(SSL_CTX* ctx, int fd, const std::string& host, bool verify);
/** "TLSv1.3 TLS_AES_256_GCM_SHA384": what a session agreed. */
std::string tlsAgreed(const SSL* ssl);

/** One server to load: a ws:// or wss:// URL, resolved to an address (IPv4 first, or IPv6). */
struct Target {
    std::string url, host, path; ///< host without the brackets of an IPv6 literal
    std::uint16_t port = 0;
    bool tls = false;
    sockaddr_storage addr{};
    socklen_t addrLen = 0;
    bool v6() const { return addr.ss_family == AF_INET6; }
    std::string hostHeader() const {
        return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
    }
};

/** Parses and resolves `url` (a name to its IPv4 address if it has one, else its IPv6 one;
 *  `[::1]` for an IPv6 literal); Fatal with the reason when it is not ws:// or wss:// or does
 *  not resolve. `defaultPath` stands for an empty path. */
Target parseTarget(const std::string& url, const std::string& defaultPath);

/** A non-blocking TCP socket (TCP_NODELAY) connecting to `dest`, from `source` when given (an
 *  IPv4 target; its port chosen at connect(), so each source address has its own range); -1
 *  with errno set and `step` naming the call that failed. */
int connectTcp(const Target& dest, const in_addr* source, const char*& step);

/** How a run reports. */
struct Report {
    bool json = false;     ///< the result as one JSON object on stdout
    bool phases = false;   ///< "# open …", "# measuring", … lines on stdout as the run passes them
    bool progress = false; ///< a live line on stderr, once a second
};

/** What both engines take: where, how many, how long, and how to report. */
struct LoadOptions {
    std::vector<Target> targets;    ///< the connections spread over these
    std::size_t connections = 100;
    std::uint32_t window = 1;       ///< messages in flight per connection in a closed loop
    double rate = 0;                ///< messages/s per connection on a schedule (open loop)
    double duration = 10, warmup = 1, rampUp = 0;
    double holdMax = 3600;          ///< an idle hold never lasts longer than this
    double connectTimeout = 60;     ///< opening every connection must finish within this (after the ramp)
    std::size_t connectBatch = 256; ///< connects + handshakes in progress at once
    std::vector<in_addr> sourceIps; ///< local addresses to connect from, round-robin
    bool verify = true;             ///< wss://: check the certificate chain and the host name
    std::string caFile;             ///< wss://: trust these CAs instead of the system's
    std::vector<std::string> headers; ///< "Name: value" fields added to every opening handshake
    Report report;
};

/** RFC 6455 §4.1: the opening handshake's request for `t` with `key`; `extra` and `headers`
 *  are "Name: value" fields added to it. */
std::string upgradeRequest(const Target& t, const std::string& key, const std::vector<std::string>& headers,
                           std::initializer_list<std::string_view> extra);

/** Prints a phase line ("# " + text) on stdout when the report asks for them. */
void phaseLine(const Report& r, const std::string& text);

/** --ramp-up: how many of `total` connections may have been started `elapsed` after the start. */
std::size_t rampAllowed(std::size_t total, double rampSeconds, std::uint64_t elapsedNs);

/** The live progress line: at most once a second, rewritten in place on stderr. */
class Progress {
public:
    explicit Progress(bool on) : on_(on) {}
    bool on() const { return on_; }
    /** A latency of the current second (the line shows its p50 and p99). */
    void record(std::uint64_t ns) {
        if (on_) second_.add(ns);
    }
    /** `count` is the running total of what the line rates per second (`unit`). */
    void update(std::uint64_t now, const char* phase, std::size_t open, std::size_t wanted, std::uint64_t count,
                const char* unit, std::uint64_t errors);
    /** Clears the line before the results are printed. */
    void finish();

private:
    bool on_;
    std::uint64_t start_ = 0, last_ = 0, lastCount_ = 0;
    bool drawn_ = false;
    Histogram second_;
};

} // namespace tongdao::bench
