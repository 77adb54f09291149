// loadgen: the WebSocket echo load generator behind bench/echo_compare.py.
//
// Its own minimal RFC 6455 client on plain epoll and non-blocking sockets, sharing no code
// with the tongdao library, so a bug or a speed-up there cannot skew the yardstick. One thread,
// one shared receive buffer, each connection's masked frame built once and written by
// reference: per message it costs about what raw_echo does, well below any WebSocket server.
//
//   loadgen --port P [--host 127.0.0.1] [--path /echo] [--connections C] [--size BYTES] [--mode rr|pipe]
//           [--window W] [--duration S] [--warmup S] [--binary|--text] [--raw] [--idle] [--hold-max S]
//           [--source-ips 127.0.0.1,127.0.0.2] [--connect-timeout S] [--connect-batch N]
//
// stdout: "# open N errors E" once every connection is up, "# measuring" when the measured window
// starts (the driver samples server CPU there), then one JSON line (messages and seconds cover the
// measured window; errors cover the whole run). Diagnostics go to stderr.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string host = "127.0.0.1", path = "/echo";
    std::uint16_t port = 0;
    std::size_t connections = 100, size = 20;
    std::uint32_t window = 16;
    double duration = 5, warmup = 1;
    bool pipe = false, binary = true, raw = false, idle = false;
    std::vector<in_addr> sourceIps;
    double holdMax = 3600;          // --idle never holds longer than this
    double connectTimeout = 60;     // opening every connection must finish within this
    std::size_t connectBatch = 256; // connects + handshakes in progress at once: stays under the server's backlog
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "loadgen: %s\nsee the comment at the top of bench/load/loadgen.cpp\n", why);
    std::exit(2);
}

double toDouble(const char* s) {
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    if (end == s || *end != '\0' || v < 0 || v > 1e9) usage("bad number");
    return v;
}

std::size_t toSize(const char* s) { return static_cast<std::size_t>(toDouble(s)); }

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage("missing value");
            return argv[++i];
        };
        if (a == "--host") o.host = value();
        else if (a == "--port") o.port = static_cast<std::uint16_t>(std::min<std::size_t>(toSize(value()), 65535));
        else if (a == "--path") o.path = value();
        else if (a == "--connections") o.connections = toSize(value());
        else if (a == "--size") o.size = toSize(value());
        else if (a == "--mode") {
            const std::string_view m = value();
            if (m != "rr" && m != "pipe") usage("--mode is rr or pipe");
            o.pipe = m == "pipe";
        } else if (a == "--window") o.window = static_cast<std::uint32_t>(std::min<std::size_t>(toSize(value()), 1024));
        else if (a == "--duration") o.duration = toDouble(value());
        else if (a == "--warmup") o.warmup = toDouble(value());
        else if (a == "--binary") o.binary = true;
        else if (a == "--text") o.binary = false;
        else if (a == "--raw") o.raw = true;
        else if (a == "--idle") o.idle = true;
        else if (a == "--hold-max") o.holdMax = toDouble(value());
        else if (a == "--connect-timeout") o.connectTimeout = toDouble(value());
        else if (a == "--connect-batch") o.connectBatch = std::max<std::size_t>(1, toSize(value()));
        else if (a == "--source-ips") {
            const std::string list = value();
            for (std::size_t start = 0, n = 0; n < 256 && start <= list.size(); ++n) {
                const std::size_t comma = std::min(list.find(',', start), list.size());
                in_addr addr{};
                if (inet_pton(AF_INET, list.substr(start, comma - start).c_str(), &addr) != 1) usage("bad --source-ips");
                o.sourceIps.push_back(addr);
                start = comma + 1;
            }
        } else usage("unknown option");
    }
    if (o.port == 0) usage("--port is required");
    if (o.connections == 0) usage("--connections must be at least 1");
    if (o.size > (std::size_t{1} << 24)) usage("--size is capped at 16 MiB");
    if (o.window == 0) usage("--window must be at least 1");
    if (!o.pipe) o.window = 1;
    return o;
}

std::string base64(const unsigned char* data, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

// RFC 6455 §4.2.2: accept = base64(SHA-1(key + GUID)).
std::string acceptFor(const std::string& key) {
    const std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdLen = 0;
    EVP_Digest(in.data(), in.size(), md, &mdLen, EVP_sha1(), nullptr);
    return base64(md, mdLen);
}

void randomBytes(void* p, std::size_t n) {
    auto* b = static_cast<unsigned char*>(p);
    std::size_t got = 0;
    for (int tries = 0; got < n && tries < 16; ++tries) {
        const ssize_t r = getrandom(b + got, n - got, 0);
        if (r > 0) got += static_cast<std::size_t>(r);
    }
    if (got < n) usage("getrandom failed");
}

// One complete client frame: FIN + opcode, masked payload (RFC 6455 §5.2, §5.3).
std::vector<std::uint8_t> buildFrame(std::size_t size, bool binary) {
    std::vector<std::uint8_t> f;
    f.reserve(size + 14);
    f.push_back(binary ? 0x82 : 0x81);
    // 7-bit length, or 126 + 16-bit, or 127 + 64-bit, big-endian; the mask bit is set.
    const int lenBytes = size < 126 ? 0 : size <= 0xffff ? 2 : 8;
    f.push_back(static_cast<std::uint8_t>(0x80 | (lenBytes == 0 ? size : lenBytes == 2 ? 126 : 127)));
    for (int b = lenBytes - 1; b >= 0; --b) f.push_back(static_cast<std::uint8_t>(std::uint64_t{size} >> (8 * b)));
    std::array<std::uint8_t, 4> key{};
    randomBytes(key.data(), key.size());
    f.insert(f.end(), key.begin(), key.end());
    // ASCII letters are valid UTF-8, so the same payload serves --text and --binary.
    for (std::size_t i = 0; i < size; ++i) f.push_back(static_cast<std::uint8_t>('a' + i % 26) ^ key[i & 3]);
    return f;
}

enum class State : std::uint8_t { unused, connecting, handshaking, open, dead };

struct Conn {
    int fd = -1;
    State state = State::unused;
    bool wantOut = false;              // EPOLLOUT is in the interest set
    std::string hsIn;                  // response bytes until the blank line
    std::string accept;                // the Sec-WebSocket-Accept we expect
    std::vector<std::uint8_t> frame;   // the masked frame, built once and written again and again
    std::uint32_t queued = 0;          // whole frames still to write; the first is sentOff bytes in
    std::size_t sentOff = 0;
    // Server frame parser. Server frames are never masked (RFC 6455 §5.1).
    std::array<std::uint8_t, 10> hdr{};
    std::uint8_t hdrHave = 0, hdrNeed = 2, frameOpcode = 0;
    bool frameFin = false;
    std::uint8_t msgOpcode = 0;        // opcode of the message being assembled; 0 = none
    std::uint64_t payloadLeft = 0, msgLen = 0;
    std::uint64_t rawHave = 0;         // --raw: bytes of the current echoed frame so far
};

enum class Phase : std::uint8_t { connecting, warmup, measure, hold, done };

// epoll tokens for the two descriptors that are not connections (those use their index).
constexpr std::uint64_t kSignalToken = ~std::uint64_t{0}, kStdinToken = kSignalToken - 1;

double cpuSeconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return tv(ru.ru_utime) + tv(ru.ru_stime);
}

double since(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

Clock::duration secs(double s) { return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)); }

// Adds or changes a descriptor in the epoll set; the token comes back with its events.
bool watch(int ep, int op, int fd, std::uint32_t events, std::uint64_t token) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = token;
    return epoll_ctl(ep, op, fd, &ev) == 0;
}

class Loadgen {
public:
    explicit Loadgen(Options o) : opt_(std::move(o)), conns_(opt_.connections), rbuf_(std::size_t{1} << 18) {
        if (inet_pton(AF_INET, opt_.host.c_str(), &dest_.sin_addr) != 1) usage("--host must be an IPv4 address");
        dest_.sin_family = AF_INET;
        dest_.sin_port = htons(opt_.port);
        expectOpcode_ = opt_.binary ? 2 : 1;
    }

    int run();

private:
    void openNext();
    void onEvent(std::size_t i, std::uint32_t ev);
    void onConnected(Conn& c);
    void onReadable(Conn& c);
    bool onHandshake(Conn& c, const std::uint8_t* p, std::size_t n);
    bool consume(Conn& c, const std::uint8_t* p, std::size_t n);
    void onReplies(Conn& c, std::uint64_t k);
    void flush(Conn& c);
    void setWantOut(Conn& c, bool on);
    void fail(Conn& c, const char* why);
    bool reject(Conn& c, const char* why, int err);
    void markOpen(Conn& c);
    void startTraffic();
    void finish(Clock::time_point now);

    Options opt_;
    std::vector<Conn> conns_;
    std::vector<std::uint8_t> rbuf_;   // one receive buffer for every connection (a read is handled at once)
    sockaddr_in dest_{};
    int ep_ = -1;
    Phase phase_ = Phase::connecting;
    std::size_t nextToOpen_ = 0, pending_ = 0, open_ = 0, opened_ = 0;
    std::uint64_t replies_ = 0, base_ = 0, errors_ = 0, failReports_ = 0;
    std::uint8_t expectOpcode_ = 2;
    bool sending_ = false;
    Clock::time_point measureStart_{};
    double cpuStart_ = 0;
};

void Loadgen::fail(Conn& c, const char* why) {
    if (c.state == State::dead) return;
    if (failReports_++ < 5) std::fprintf(stderr, "loadgen: connection failed: %s (%s)\n", why, std::strerror(errno));
    if (c.state == State::connecting || c.state == State::handshaking) --pending_;
    if (c.state == State::open) --open_;
    if (c.fd >= 0) close(c.fd);  // closing also drops it from the epoll set
    c.fd = -1;
    c.state = State::dead;
    c.hsIn.clear();
    ++errors_;
}

// fail() for a protocol check: records the reason and tells the parser to stop.
bool Loadgen::reject(Conn& c, const char* why, int err) {
    errno = err;
    fail(c, why);
    return false;
}

void Loadgen::markOpen(Conn& c) {
    c.state = State::open;
    --pending_;
    ++open_;
}

void Loadgen::openNext() {
    const std::size_t i = nextToOpen_++;
    Conn& c = conns_[i];
    c.state = State::connecting;
    ++pending_;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return fail(c, "socket");
    const int one = 1;
    // Without this, pipelined small frames wait for the peer's ACK (Nagle).
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!opt_.sourceIps.empty()) {
        // Binding the address alone defers the port choice to connect(), so each source
        // address gets its own ephemeral range towards the same server port.
        setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        sockaddr_in src{};
        src.sin_family = AF_INET;
        src.sin_addr = opt_.sourceIps[i % opt_.sourceIps.size()];
        if (bind(c.fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) return fail(c, "bind");
    }
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&dest_), sizeof dest_) != 0 && errno != EINPROGRESS)
        return fail(c, "connect");
    c.wantOut = true;  // writable = connected (or failed); reads are enabled after that
    if (!watch(ep_, EPOLL_CTL_ADD, c.fd, EPOLLOUT, i)) return fail(c, "epoll_ctl");
}

void Loadgen::setWantOut(Conn& c, bool on) {
    if (c.wantOut == on) return;
    const auto token = static_cast<std::uint64_t>(&c - conns_.data());
    if (!watch(ep_, EPOLL_CTL_MOD, c.fd, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u), token)) return fail(c, "epoll_ctl");
    c.wantOut = on;
}

void Loadgen::onConnected(Conn& c) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        errno = err;
        return fail(c, "connect");
    }
    c.wantOut = true;
    setWantOut(c, false);
    if (c.state == State::dead) return;
    if (opt_.raw) return markOpen(c);
    // RFC 6455 §4.1: a fresh random 16-byte nonce, base64-encoded, for each connection.
    std::array<unsigned char, 16> nonce{};
    randomBytes(nonce.data(), nonce.size());
    const std::string key = base64(nonce.data(), nonce.size());
    c.accept = acceptFor(key);
    const std::string req = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + opt_.host + ":" + std::to_string(opt_.port) +
                            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                            "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    // A fresh socket's send buffer always takes a request this small whole.
    if (send(c.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
        return fail(c, "send handshake");
    c.state = State::handshaking;
}

// Returns false when the connection failed. Leftover bytes after the response go to the frame parser.
bool Loadgen::onHandshake(Conn& c, const std::uint8_t* p, std::size_t n) {
    c.hsIn.append(reinterpret_cast<const char*>(p), n);
    const std::size_t end = c.hsIn.find("\r\n\r\n");
    if (end == std::string::npos) {
        if (c.hsIn.size() > 16384) fail(c, "handshake response too long");
        return c.state != State::dead;
    }
    const std::string_view head(c.hsIn.data(), end + 2);
    if (head.substr(0, 13) != "HTTP/1.1 101 ") return reject(c, "handshake status is not 101", EPROTO);
    // Header names are case-insensitive (RFC 7230 §3.2): search a lower-cased copy.
    std::string lower(head);
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const std::string_view name = "\r\nsec-websocket-accept:";
    const std::size_t at = lower.find(name);
    std::string_view v;
    if (at != std::string::npos) v = head.substr(at + name.size(), head.find("\r\n", at + 2) - at - name.size());
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.empty() || v != c.accept) return reject(c, "bad Sec-WebSocket-Accept", EPROTO);  // RFC 6455 §4.1
    const std::string rest = c.hsIn.substr(end + 4);
    std::string().swap(c.hsIn);  // release the handshake's memory: it matters at 10,000 connections
    std::string().swap(c.accept);
    markOpen(c);
    return rest.empty() || consume(c, reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size());
}

// Parses the server's echo frames from p[0..n), whatever way the reads split them.
bool Loadgen::consume(Conn& c, const std::uint8_t* p, std::size_t n) {
    std::uint64_t done = 0;
    while (n > 0) {
        if (c.payloadLeft > 0) {
            const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(c.payloadLeft, n));
            c.payloadLeft -= take;
            p += take;
            n -= take;
            if (c.payloadLeft > 0) break;
        } else {
            const std::size_t take = std::min<std::size_t>(c.hdrNeed - c.hdrHave, n);
            std::memcpy(c.hdr.data() + c.hdrHave, p, take);
            c.hdrHave = static_cast<std::uint8_t>(c.hdrHave + take);
            p += take;
            n -= take;
            if (c.hdrHave < c.hdrNeed) break;
            const std::uint8_t len7 = c.hdr[1] & 0x7f;
            if (c.hdrNeed == 2) {
                if (c.hdr[1] & 0x80) return reject(c, "masked server frame", EPROTO);  // RFC 6455 §5.1
                if (len7 == 126 || len7 == 127) {
                    c.hdrNeed = len7 == 126 ? 4 : 10;  // RFC 6455 §5.2: 16- or 64-bit length follows
                    continue;
                }
            }
            std::uint64_t len = c.hdrNeed == 2 ? len7 : 0;
            for (std::uint8_t k = 2; k < c.hdrNeed; ++k) len = (len << 8) | c.hdr[k];
            c.frameFin = (c.hdr[0] & 0x80) != 0;
            c.frameOpcode = c.hdr[0] & 0x0f;
            c.hdrHave = 0;
            c.hdrNeed = 2;
            c.payloadLeft = len;
            if (c.frameOpcode < 8) {
                // A data frame starts a message (opcode 1/2) or continues one (opcode 0).
                if ((c.frameOpcode == 0) == (c.msgOpcode == 0)) return reject(c, "bad fragmentation", EPROTO);
                if (c.frameOpcode != 0) {
                    c.msgOpcode = c.frameOpcode;
                    c.msgLen = 0;
                }
                c.msgLen += len;
            }
            if (len > 0 && n > 0) continue;  // go read the payload
            if (len > 0) break;
        }
        // A frame ended.
        if (c.frameOpcode == 8) return reject(c, "server sent close", ECONNRESET);
        if (c.frameOpcode < 8 && c.frameFin) {
            if (c.msgLen != opt_.size || c.msgOpcode != expectOpcode_) ++errors_;  // wrong echo: count, go on
            c.msgOpcode = 0;
            ++done;
        }
        // Pings and pongs are skipped: the echo peers do not ping within a benchmark run.
    }
    if (done > 0) onReplies(c, done);
    return c.state != State::dead;
}

void Loadgen::onReplies(Conn& c, std::uint64_t k) {
    replies_ += k;
    if (!sending_) return;
    // rr keeps one message in flight and pipe keeps W: each echo releases the next send.
    c.queued += static_cast<std::uint32_t>(k);
}

void Loadgen::flush(Conn& c) {
    const std::size_t flen = c.frame.size();
    for (int turns = 0; c.queued > 0 && turns < 64; ++turns) {
        // The same frame again and again: gather it by reference, never copy it.
        std::array<iovec, 64> iov{};
        const std::size_t count = std::min<std::size_t>(c.queued, iov.size());
        iov[0] = {c.frame.data() + c.sentOff, flen - c.sentOff};
        for (std::size_t k = 1; k < count; ++k) iov[k] = {c.frame.data(), flen};
        const std::size_t total = count * flen - c.sentOff;
        const ssize_t w = writev(c.fd, iov.data(), static_cast<int>(count));
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return setWantOut(c, true);
            return fail(c, "write");
        }
        const std::size_t bytes = c.sentOff + static_cast<std::size_t>(w);
        c.queued -= static_cast<std::uint32_t>(bytes / flen);
        c.sentOff = bytes % flen;
        if (static_cast<std::size_t>(w) < total) return setWantOut(c, true);  // the kernel took part: wait for room
    }
    setWantOut(c, c.queued > 0);
}

void Loadgen::onReadable(Conn& c) {
    // One read per readiness event (level-triggered): a busy connection cannot starve the others.
    const ssize_t r = read(c.fd, rbuf_.data(), rbuf_.size());
    if (r == 0) {
        errno = ECONNRESET;
        return fail(c, "server closed the connection");
    }
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return fail(c, "read");
    }
    const auto n = static_cast<std::size_t>(r);
    if (c.state == State::handshaking) {
        onHandshake(c, rbuf_.data(), n);
    } else if (opt_.raw) {
        // The raw peer returns our frame bytes as they are: count whole frames (before any is sent, none).
        c.rawHave += n;
        const std::uint64_t k = c.frame.empty() ? 0 : c.rawHave / c.frame.size();
        c.rawHave = c.frame.empty() ? 0 : c.rawHave % c.frame.size();
        if (k > 0) onReplies(c, k);
    } else {
        consume(c, rbuf_.data(), n);
    }
    if (c.state == State::open && c.queued > 0) flush(c);
}

void Loadgen::onEvent(std::size_t i, std::uint32_t ev) {
    Conn& c = conns_[i];
    if (c.state == State::dead || c.state == State::unused) return;
    if (c.state == State::connecting) return onConnected(c);  // registered for EPOLLOUT only: connected or failed
    if ((ev & EPOLLOUT) && c.state == State::open) flush(c);
    if (c.state != State::dead && (ev & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR))) onReadable(c);
}

void Loadgen::startTraffic() {
    sending_ = true;
    for (auto& c : conns_) {
        if (c.state != State::open) continue;
        c.frame = buildFrame(opt_.size, opt_.binary);
        c.queued = opt_.window;
        flush(c);
    }
}

void Loadgen::finish(Clock::time_point now) {
    sending_ = false;
    const bool measured = phase_ == Phase::measure;
    const double elapsed = measured ? since(measureStart_, now) : 0.0;
    const std::uint64_t msgs = measured ? replies_ - base_ : 0;
    const double cpu = measured ? cpuSeconds() - cpuStart_ : 0.0;
    std::printf("{\"messages\":%llu,\"seconds\":%.3f,\"msgs_per_sec\":%.1f,\"errors\":%llu,\"connections\":%zu,"
                "\"client_cpu_seconds\":%.3f}\n",
                static_cast<unsigned long long>(msgs), elapsed, elapsed > 0 ? static_cast<double>(msgs) / elapsed : 0.0,
                static_cast<unsigned long long>(errors_), opened_, cpu);
    std::fflush(stdout);
    phase_ = Phase::done;
}

int Loadgen::run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) usage("epoll_create1 failed");
    // SIGTERM/SIGINT arrive as readable bytes on a signalfd, so the loop sees them between events.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    const int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    watch(ep_, EPOLL_CTL_ADD, sfd, EPOLLIN, kSignalToken);
    // A closed stdin ends the hold. A file or /dev/null cannot be polled: then only a signal does.
    if (opt_.idle) watch(ep_, EPOLL_CTL_ADD, STDIN_FILENO, EPOLLIN | EPOLLHUP, kStdinToken);

    const auto connectDeadline = Clock::now() + secs(opt_.connectTimeout);
    auto phaseEnd = connectDeadline;
    std::array<epoll_event, 1024> events{};
    // Bounded: every phase has a deadline, and the loop turns at least every 100 ms.
    for (long turn = 0; turn < 1'000'000'000L && phase_ != Phase::done; ++turn) {
        while (phase_ == Phase::connecting && pending_ < opt_.connectBatch && nextToOpen_ < conns_.size()) openNext();
        auto now = Clock::now();
        const auto waitMs = std::clamp<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(phaseEnd - now).count() + 1, 0, 100);
        const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), static_cast<int>(waitMs));
        bool stop = false;
        for (int k = 0; k < n; ++k) {
            const std::uint64_t tok = events[static_cast<std::size_t>(k)].data.u64;
            if (tok == kSignalToken || tok == kStdinToken) {
                if (tok == kStdinToken) {
                    char b[256];
                    if (read(STDIN_FILENO, b, sizeof b) > 0) continue;  // input is ignored; EOF ends the hold
                }
                stop = true;
                continue;
            }
            onEvent(static_cast<std::size_t>(tok), events[static_cast<std::size_t>(k)].events);
        }
        now = Clock::now();
        if (phase_ == Phase::connecting) {
            const bool allTried = nextToOpen_ == conns_.size() && pending_ == 0;
            if (!allTried && now < connectDeadline && !stop) continue;
            for (auto& c : conns_) {
                if (c.state == State::unused) ++errors_;  // never tried: the deadline came first
                if (c.state != State::connecting && c.state != State::handshaking) continue;
                errno = ETIMEDOUT;
                fail(c, "not open before --connect-timeout");
            }
            opened_ = open_;
            std::printf("# open %zu errors %llu\n", open_, static_cast<unsigned long long>(errors_));
            std::fflush(stdout);
            if (open_ == 0 || stop) {
                finish(now);
                break;
            }
            if (opt_.idle) {
                phase_ = Phase::hold;
                phaseEnd = now + secs(opt_.holdMax);
            } else {
                phase_ = Phase::warmup;
                phaseEnd = now + secs(opt_.warmup);
                startTraffic();
            }
            continue;
        }
        if (stop || now >= phaseEnd) {
            if (phase_ == Phase::warmup && !stop) {
                // The measured window starts here: the driver reads the server's CPU time on this line.
                base_ = replies_;
                std::printf("# measuring\n");
                std::fflush(stdout);
                cpuStart_ = cpuSeconds();
                measureStart_ = Clock::now();
                phase_ = Phase::measure;
                phaseEnd = measureStart_ + secs(opt_.duration);
                continue;
            }
            finish(now);
        }
    }
    if (phase_ != Phase::done) finish(Clock::now());
    for (auto& c : conns_)
        if (c.fd >= 0) close(c.fd);
    close(sfd);
    close(ep_);
    return opened_ > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse(argc, argv);
    // 10,000 idle connections need 10,000 descriptors: take all the hard limit allows.
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || opt.connections + 16 > rl.rlim_cur)
        usage("--connections exceeds the open-file limit");
    std::signal(SIGPIPE, SIG_IGN);  // writev has no MSG_NOSIGNAL: a reset peer must be an error, not a kill
    return Loadgen(std::move(opt)).run();
}
