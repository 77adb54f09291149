// The echo engine of `tongdao bench` (echo_load.hpp): a minimal RFC 6455 client on plain epoll
// and non-blocking sockets, one thread, one shared receive buffer. Every message a connection
// sends is framed (masked, and compressed with --deflate) once before the run and written by
// reference from then on, so per message it costs about what raw_echo does, well below any
// WebSocket server. What adds work:
//   wss://      TLS 1.2+ with OpenSSL on the same non-blocking sockets
//   --deflate   offers permessage-deflate (RFC 7692); when the server agrees, the client's
//               messages go compressed (RSV1) and the server's are inflated with zlib
//   --json-messages  chat-like JSON text messages of exactly --size bytes, from a pool of
//               distinct messages (so a compressor keeping context cannot just repeat one)
// Every echoed message is compared byte for byte with the one sent, and timed from the moment
// it was due (closed loop: when the echo before it came back; --rate: its slot on the schedule,
// so a server that falls behind shows in the latency instead of slowing the schedule down).
//
// The result covers the measured window (messages, seconds, bytes, latency); errors cover the
// whole run. Phase lines (--phases): "# open N errors E deflate D" once every connection is up,
// "# measuring" when the measured window starts.

#include "echo_load.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tongdao::bench {
namespace {

using Options = EchoOptions;
std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

// --- payloads ------------------------------------------------------------------------------

// splitmix64: a small seeded generator, so a run's messages can be made again with --seed.
class Rng {
public:
    explicit Rng(std::uint64_t seed) : s_(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }

private:
    std::uint64_t s_;
};

// Everyday chat words, common ones listed more than once so the frequencies are roughly
// those of conversation; no quote or backslash, so the text needs no JSON escaping.
constexpr std::string_view kWords[] = {
    "i", "i", "you", "you", "the", "the", "the", "a", "a", "to", "to", "and", "and", "is", "it", "it",
    "that", "of", "in", "for", "on", "we", "we", "this", "be", "with", "have", "just", "so", "but",
    "not", "are", "can", "do", "what", "if", "at", "was", "my", "me", "all", "get", "it's", "i'm",
    "don't", "think", "know", "yeah", "ok", "lol", "now", "out", "up", "there", "about", "will",
    "one", "time", "like", "really", "good", "new", "see", "when", "how", "going", "today",
    "tomorrow", "tonight", "meeting", "later", "sure", "thanks", "please", "anyone", "here", "room",
    "game", "play", "let's", "start", "again", "server", "update", "build", "deploy", "fixed",
    "broken", "works", "try", "maybe", "wait", "back", "minutes", "coffee", "lunch", "weekend",
    "photo", "link", "send", "message", "group", "call", "voice", "video", "morning", "night",
    "friends", "team", "project", "release", "version", "phone", "app", "login", "password",
    "problem", "question", "answer", "idea", "plan", "ready", "done", "finished", "working",
    "check", "look", "great", "nice", "cool", "awesome", "sorry", "hello", "hi", "hey", "bye",
    "welcome", "everyone", "people", "someone", "thing", "stuff", "because", "still", "already",
    "never", "always", "very", "much", "more", "some", "any", "other", "should", "would", "could",
    "need", "want"};
constexpr std::string_view kRooms[] = {"lobby", "general", "random", "dev",    "support",
                                       "music", "games",   "travel", "photos", "offtopic"};

// One chat message of exactly `size` bytes:
// {"type":"chat","room":"lobby","from":"user123","ts":1700000000123,"text":"..."}
std::string chatMessage(Rng& rng, std::size_t size, std::uint64_t& ts) {
    ts += 1 + rng.below(4000);
    std::string head = "{\"type\":\"chat\",\"room\":\"" + std::string(kRooms[rng.below(std::size(kRooms))]) +
                       "\",\"from\":\"user" + std::to_string(1 + rng.below(5000)) + "\",\"ts\":" + std::to_string(ts) +
                       ",\"text\":\"";
    if (head.size() + 3 > size) head = "{\"text\":\"";  // too small for the envelope: text only
    const std::size_t need = size - head.size() - 2;
    std::string text;
    text.reserve(need + 32);
    while (text.size() < need) {
        // A sentence of 3 to 14 words, capitalised, sometimes with a comma.
        const std::size_t words = 3 + rng.below(12);
        for (std::size_t w = 0; w < words; ++w) {
            std::string word(kWords[rng.below(std::size(kWords))]);
            if (w == 0) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
            text += word;
            if (w + 1 < words) text += rng.below(9) == 0 ? ", " : " ";
        }
        const std::size_t end = rng.below(10);
        text += end < 7 ? ". " : end < 9 ? "! " : "? ";
    }
    text.resize(need);
    if (text.back() == ' ') text.back() = '.';
    return head + text + "\"}";
}

// The payloads a run sends. --json-messages: a pool of distinct chat messages, at least 256 KiB
// in all (8 deflate windows), so a compressor with context sees text it has not seen before.
// Otherwise one message of letters, as before.
std::vector<std::string> makePayloads(const Options& o) {
    std::vector<std::string> out;
    if (!o.jsonMessages) {
        // ASCII letters are valid UTF-8, so the same payload serves --text and --binary.
        std::string p(o.size, '\0');
        for (std::size_t i = 0; i < o.size; ++i) p[i] = static_cast<char>('a' + i % 26);
        out.push_back(std::move(p));
        return out;
    }
    Rng rng(o.seed);
    std::uint64_t ts = 1700000000000ULL;
    const std::size_t n = std::clamp<std::size_t>(((std::size_t{256} << 10) + o.size - 1) / o.size, 16, 4096);
    for (std::size_t i = 0; i < n; ++i) out.push_back(chatMessage(rng, o.size, ts));
    return out;
}

// A message's frame payload: compressed for permessage-deflate (RSV1), or as it is.
struct Body {
    std::string bytes;
    bool compressed = false;
};

// RFC 7692 §7.2.1: compress each message on its own (a client may always drop its context), with
// a sync flush, and remove the 00 00 ff ff tail. A message that would not shrink goes plain.
std::vector<Body> compressAll(const std::vector<std::string>& payloads) {
    z_stream z{};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw Fatal("deflateInit2 failed");
    std::vector<Body> out;
    std::string buf;
    for (const auto& p : payloads) {
        deflateReset(&z);
        buf.resize(deflateBound(&z, p.size()) + 16);
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(p.data()));
        z.avail_in = static_cast<uInt>(p.size());
        z.next_out = reinterpret_cast<Bytef*>(buf.data());
        z.avail_out = static_cast<uInt>(buf.size());
        if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in != 0) throw Fatal("deflate failed");
        std::size_t len = buf.size() - z.avail_out;
        if (len < 4 || std::memcmp(buf.data() + len - 4, "\x00\x00\xff\xff", 4) != 0) throw Fatal("deflate: no sync tail");
        len -= 4;
        if (len < p.size()) out.push_back({buf.substr(0, len), true});
        else out.push_back({p, false});
    }
    deflateEnd(&z);
    return out;
}

std::vector<Body> plainBodies(const std::vector<std::string>& payloads) {
    std::vector<Body> out;
    for (const auto& p : payloads) out.push_back({p, false});
    return out;
}

// The frames a connection sends, round and round: frames 0..n-1 back to back, then copies of
// the first `wrap` again, so any run of up to wrap+1 messages from any start is contiguous and
// goes out in one write (or one SSL_write) straight from here.
struct Script {
    std::vector<std::uint8_t> bytes;
    std::vector<std::size_t> start;            // n + wrap + 1 offsets: frame i is [start[i], start[i+1])
    std::size_t n = 0, wrap = 0;
    const std::vector<std::string>* payloads = nullptr;  // payload i is what frame i carries, uncompressed
};

// One complete client frame: FIN + RSV1 if compressed + opcode, masked payload (RFC 6455 §5.2, §5.3).
void appendFrame(std::vector<std::uint8_t>& f, const Body& b, std::uint8_t opcode) {
    const std::size_t size = b.bytes.size();
    f.push_back(static_cast<std::uint8_t>(0x80 | (b.compressed ? 0x40 : 0) | opcode));
    // 7-bit length, or 126 + 16-bit, or 127 + 64-bit, big-endian; the mask bit is set.
    const int lenBytes = size < 126 ? 0 : size <= 0xffff ? 2 : 8;
    f.push_back(static_cast<std::uint8_t>(0x80 | (lenBytes == 0 ? size : lenBytes == 2 ? 126 : 127)));
    for (int k = lenBytes - 1; k >= 0; --k) f.push_back(static_cast<std::uint8_t>(std::uint64_t{size} >> (8 * k)));
    std::array<std::uint8_t, 4> key{};
    randomBytes(key.data(), key.size());
    f.insert(f.end(), key.begin(), key.end());
    for (std::size_t i = 0; i < size; ++i) f.push_back(static_cast<std::uint8_t>(b.bytes[i]) ^ key[i & 3]);
}

// Each frame gets its own random masking key. wrapBudget bounds the bytes of the copies.
std::unique_ptr<Script> buildScript(const std::vector<Body>& bodies, const std::vector<std::string>& payloads,
                                    std::uint8_t opcode, std::uint32_t window, std::size_t wrapBudget) {
    auto s = std::make_unique<Script>();
    s->n = bodies.size();
    s->payloads = &payloads;
    for (const auto& b : bodies) {
        s->start.push_back(s->bytes.size());
        appendFrame(s->bytes, b, opcode);
    }
    const std::size_t end = s->bytes.size();
    for (std::size_t j = 0; j + 1 < window; ++j) {
        const std::size_t i = j % s->n;
        const std::size_t len = (i + 1 < s->n ? s->start[i + 1] : end) - s->start[i];
        if (s->bytes.size() - end + len > wrapBudget) break;
        s->start.push_back(s->bytes.size());
        s->bytes.insert(s->bytes.end(), s->bytes.begin() + static_cast<std::ptrdiff_t>(s->start[i]),
                        s->bytes.begin() + static_cast<std::ptrdiff_t>(s->start[i] + len));
        ++s->wrap;
    }
    s->start.push_back(s->bytes.size());
    return s;
}

// --- connections ---------------------------------------------------------------------------

enum class State : std::uint8_t { unused, connecting, tlsHandshaking, handshaking, open, dead };

struct InflateStream {
    z_stream z{};
    InflateStream() {
        if (inflateInit2(&z, -15) != Z_OK) throw Fatal("inflateInit2 failed");
    }
    ~InflateStream() { inflateEnd(&z); }
    InflateStream(const InflateStream&) = delete;
    InflateStream& operator=(const InflateStream&) = delete;
};

struct Conn {
    int fd = -1;
    State state = State::unused;
    bool wantOut = false;              // EPOLLOUT is in the interest set
    bool deflate = false;              // permessage-deflate agreed
    SSL* ssl = nullptr;
    std::string hsIn;                  // response bytes until the blank line
    std::string accept;                // the Sec-WebSocket-Accept we expect
    const Script* script = nullptr;    // what this connection sends (shared, or own below)
    std::unique_ptr<Script> own;
    std::uint32_t queued = 0;          // whole messages still to write; the first is sentOff bytes in
    std::size_t sentOff = 0, sendIdx = 0, recvIdx = 0;
    // Server frame parser. Server frames are never masked (RFC 6455 §5.1).
    std::array<std::uint8_t, 10> hdr{};
    std::uint8_t hdrHave = 0, hdrNeed = 2, frameOpcode = 0;
    bool frameFin = false;
    std::uint8_t msgOpcode = 0;        // opcode of the message being assembled; 0 = none
    bool msgCompressed = false, msgBad = false;
    std::uint64_t payloadLeft = 0, msgLen = 0;  // msgLen: payload bytes so far (after inflating)
    std::uint64_t rawHave = 0;         // --raw: bytes of the current echoed frame so far
    std::unique_ptr<InflateStream> zin;  // made when the first compressed message arrives
    // When each message in flight (or waiting for the window, with --rate) was due, oldest first:
    // a ring of window + kBacklog entries, made when the traffic starts.
    std::vector<std::uint64_t> due;
    std::uint32_t dueHead = 0, dueCount = 0, inflight = 0, backlog = 0;
    bool started = false;
};

// --rate: sends due while the window is full wait, up to this many per connection; beyond, the
// schedule's sends are counted as missed (the server cannot keep up with the rate asked for).
constexpr std::uint32_t kBacklog = 64;

enum class Phase : std::uint8_t { connecting, warmup, measure, hold, done };

const char* phaseName(Phase p) {
    switch (p) {
    case Phase::connecting: return "opening";
    case Phase::warmup: return "warm-up";
    case Phase::measure: return "measuring";
    case Phase::hold: return "holding";
    default: return "done";
    }
}


struct Counters {
    std::uint64_t replies = 0, rxWire = 0, rxPayload = 0, txWire = 0, txPayload = 0;
};

class Loadgen {
public:
    explicit Loadgen(Options o)
        : opt_(std::move(o)), conns_(opt_.connections), rbuf_(std::size_t{1} << 18), progress_(opt_.report.progress) {
        if (opt_.targets.empty()) throw Fatal("no URL");
        tls_ = opt_.targets.front().tls;
        expectOpcode_ = opt_.binary ? 2 : 1;
        // A retried SSL_write passes the same bytes, possibly more of them (the window grew).
        if (tls_) tlsCtx_ = newTlsContext(opt_.verify, opt_.caFile, false, opt_.idle);
        if (opt_.idle) return;  // idle connections send nothing
        payloads_ = makePayloads(opt_);
        plain_ = plainBodies(payloads_);
        if (opt_.deflate) compressed_ = compressAll(payloads_);
        if (opt_.jsonMessages) {
            // One pool for every connection (each frame masked with its own key), each connection
            // starting at its own place in it; the copies cover a whole window.
            plainScript_ = buildScript(plain_, payloads_, expectOpcode_, opt_.window, ~std::size_t{0});
            if (opt_.deflate) compressedScript_ = buildScript(compressed_, payloads_, expectOpcode_, opt_.window, ~std::size_t{0});
        }
        inflated_.resize(std::size_t{1} << 16);
    }
    ~Loadgen() {
        if (tlsCtx_) SSL_CTX_free(tlsCtx_);
    }
    Loadgen(const Loadgen&) = delete;
    Loadgen& operator=(const Loadgen&) = delete;

    int run();

private:
    void openNext();
    void onEvent(std::size_t i, std::uint32_t ev);
    void onConnected(Conn& c);
    void driveTls(Conn& c);
    void sendUpgrade(Conn& c);
    void onReadable(Conn& c);
    bool onHandshake(Conn& c, const std::uint8_t* p, std::size_t n);
    bool acceptExtensions(Conn& c, std::string_view lowerHead);
    bool consume(Conn& c, const std::uint8_t* p, std::size_t n);
    void takePayload(Conn& c, const std::uint8_t* p, std::size_t n);
    bool inflateSome(Conn& c, const std::uint8_t* p, std::size_t n);
    void check(Conn& c, const std::uint8_t* p, std::size_t n);
    void onReplies(Conn& c, std::uint64_t k);
    void flush(Conn& c);
    long readSome(Conn& c, std::uint8_t* p, std::size_t n);
    long writeSome(Conn& c, const std::uint8_t* p, std::size_t n);
    void setWantOut(Conn& c, bool on);
    void fail(Conn& c, const char* why);
    bool reject(Conn& c, const char* why, int err);
    void markOpen(Conn& c);
    void startTraffic(std::uint64_t now);
    void startOn(Conn& c);
    void queue(Conn& c, std::uint64_t due);
    void tick(std::uint64_t now);
    const Target& targetOf(const Conn& c) const {
        return opt_.targets[static_cast<std::size_t>(&c - conns_.data()) % opt_.targets.size()];
    }
    bool measuring() const { return phase_ == Phase::measure; }
    void finish(std::uint64_t now);
    void printResult(double elapsed, double cpu);

    Options opt_;
    std::vector<Conn> conns_;
    std::vector<std::uint8_t> rbuf_;      // one receive buffer for every connection (a read is handled at once)
    std::vector<std::uint8_t> inflated_;  // one inflate output buffer: compared, then dropped
    std::vector<std::string> payloads_;
    std::vector<Body> plain_, compressed_;
    std::unique_ptr<Script> plainScript_, compressedScript_;  // --json-messages: shared by all connections
    SSL_CTX* tlsCtx_ = nullptr;
    std::string tlsInfo_;                 // protocol and cipher of the first TLS connection
    bool tls_ = false;
    std::unique_ptr<EventFds> fds_;
    int ep_ = -1;  // fds_->epoll()
    Phase phase_ = Phase::connecting;
    std::size_t nextToOpen_ = 0, pending_ = 0, open_ = 0, opened_ = 0, deflateConns_ = 0;
    std::uint64_t errors_ = 0, failReports_ = 0, badEchoReports_ = 0, missed_ = 0;
    Counters now_, base_;
    std::uint8_t expectOpcode_ = 2;
    bool sending_ = false;
    std::uint64_t startNs_ = 0, measureStart_ = 0, measureEnd_ = 0;
    double cpuStart_ = 0;
    // --rate: slot j of the schedule is connection j % C's, due at schedStart_ + j * slotNs_.
    std::uint64_t schedStart_ = 0, schedSlot_ = 0;
    double slotNs_ = 0;
    Histogram latency_;
    Progress progress_;
};

void Loadgen::fail(Conn& c, const char* why) {
    if (c.state == State::dead) return;
    if (failReports_++ < 5) {
        const unsigned long e = ERR_peek_last_error();
        char tlsWhy[256] = "";
        if (e != 0) ERR_error_string_n(e, tlsWhy, sizeof tlsWhy);
        std::fprintf(stderr, "tongdao bench: connection failed: %s (%s)%s%s\n", why, std::strerror(errno),
                     e ? " " : "", tlsWhy);
    }
    ERR_clear_error();
    if (c.state == State::connecting || c.state == State::tlsHandshaking || c.state == State::handshaking) --pending_;
    if (c.state == State::open) --open_;
    if (c.ssl) SSL_free(c.ssl);
    c.ssl = nullptr;
    if (c.fd >= 0) close(c.fd);  // closing also drops it from the epoll set
    c.fd = -1;
    c.state = State::dead;
    c.hsIn.clear();
    c.zin.reset();
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
    if (c.deflate) ++deflateConns_;
    if (c.ssl && tlsInfo_.empty()) tlsInfo_ = tlsAgreed(c.ssl);
    if (sending_) startOn(c);  // --ramp-up: the traffic has started, this connection joins it
}

void Loadgen::openNext() {
    const std::size_t i = nextToOpen_++;
    Conn& c = conns_[i];
    c.state = State::connecting;
    ++pending_;
    const char* step = nullptr;
    c.fd = connectTcp(targetOf(c), opt_.sourceIps.empty() ? nullptr : &opt_.sourceIps[i % opt_.sourceIps.size()], step);
    if (c.fd < 0) return fail(c, step);
    c.wantOut = true;  // writable = connected (or failed); reads are enabled after that
    if (!watch(ep_, EPOLL_CTL_ADD, c.fd, EPOLLOUT, i)) return fail(c, "epoll_ctl");
}

void Loadgen::setWantOut(Conn& c, bool on) {
    if (c.wantOut == on) return;
    const auto token = static_cast<std::uint64_t>(&c - conns_.data());
    if (!watch(ep_, EPOLL_CTL_MOD, c.fd, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u), token)) return fail(c, "epoll_ctl");
    c.wantOut = on;
}

// Bytes read (> 0), 0 when nothing is there yet, -1 when the connection failed (already reported).
long Loadgen::readSome(Conn& c, std::uint8_t* p, std::size_t n) {
    if (!c.ssl) {
        const ssize_t r = read(c.fd, p, n);
        if (r > 0) return r;
        if (r == 0) {
            errno = ECONNRESET;
            fail(c, "server closed the connection");
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        fail(c, "read");
        return -1;
    }
    const int r = SSL_read(c.ssl, p, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
    if (r > 0) return r;
    switch (SSL_get_error(c.ssl, r)) {
    case SSL_ERROR_WANT_READ: return 0;
    case SSL_ERROR_WANT_WRITE: setWantOut(c, true); return 0;  // a TLS message of its own wants out first
    case SSL_ERROR_ZERO_RETURN: errno = ECONNRESET; fail(c, "server sent close_notify"); return -1;
    case SSL_ERROR_SYSCALL: if (errno == 0) errno = ECONNRESET; fail(c, "TLS read"); return -1;
    default: errno = EPROTO; fail(c, "TLS read"); return -1;
    }
}

// Bytes written (> 0), 0 when the socket is full (EPOLLOUT is then watched), -1 when failed.
// A TLS write that must be retried is retried with the same start and at least as many bytes.
long Loadgen::writeSome(Conn& c, const std::uint8_t* p, std::size_t n) {
    if (!c.ssl) {
        const ssize_t w = send(c.fd, p, n, MSG_NOSIGNAL);
        if (w >= 0) return w;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            setWantOut(c, true);
            return 0;
        }
        fail(c, "write");
        return -1;
    }
    const int w = SSL_write(c.ssl, p, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
    if (w > 0) return w;
    switch (SSL_get_error(c.ssl, w)) {
    case SSL_ERROR_WANT_WRITE: setWantOut(c, true); return 0;
    case SSL_ERROR_WANT_READ: return 0;  // readable comes next, and flushes again
    default: errno = EPROTO; fail(c, "TLS write"); return -1;
    }
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
    if (!tls_) return sendUpgrade(c);
    c.ssl = newTlsSession(tlsCtx_, c.fd, targetOf(c).host, opt_.verify);
    if (!c.ssl) return fail(c, "TLS session");
    c.state = State::tlsHandshaking;
    driveTls(c);
}

void Loadgen::driveTls(Conn& c) {
    const int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
        setWantOut(c, false);
        if (c.state != State::dead) sendUpgrade(c);
        return;
    }
    switch (SSL_get_error(c.ssl, r)) {
    case SSL_ERROR_WANT_READ: return setWantOut(c, false);
    case SSL_ERROR_WANT_WRITE: return setWantOut(c, true);
    default: errno = EPROTO; return fail(c, "TLS handshake");
    }
}

void Loadgen::sendUpgrade(Conn& c) {
    // RFC 6455 §4.1: a fresh random 16-byte nonce, base64-encoded, for each connection.
    const std::string key = newKey();
    c.accept = acceptFor(key);
    const std::string req = upgradeRequest(
        targetOf(c), key, opt_.headers,
        {!opt_.deflate               ? ""
         : opt_.noContextTakeover ? "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "
                                    "server_no_context_takeover"
                                  : "Sec-WebSocket-Extensions: permessage-deflate"});
    c.state = State::handshaking;
    // A fresh connection's send buffer always takes a request this small whole.
    if (writeSome(c, reinterpret_cast<const std::uint8_t*>(req.data()), req.size()) != static_cast<long>(req.size()))
        fail(c, "send handshake");
}

// RFC 7692 §7.1: the server's answer to our offer. Anything but a permessage-deflate we can
// honour fails the connection (§7.1.2.2, §7.1.1.1); no answer means uncompressed messages.
bool Loadgen::acceptExtensions(Conn& c, std::string_view head) {
    const std::string_view name = "\r\nsec-websocket-extensions:";
    std::vector<std::string> items;
    for (std::size_t at = head.find(name); at != std::string_view::npos; at = head.find(name, at + 2)) {
        const std::size_t from = at + name.size();
        const std::string_view v = head.substr(from, head.find("\r\n", from) - from);
        for (std::size_t s = 0; s <= v.size();) {
            const std::size_t comma = std::min(v.find(',', s), v.size());
            items.push_back(trim(v.substr(s, comma - s)));
            s = comma + 1;
        }
    }
    items.erase(std::remove(items.begin(), items.end(), std::string()), items.end());
    if (items.empty()) return true;
    if (!opt_.deflate || items.size() != 1) return reject(c, "extension not offered", EPROTO);
    bool serverNoContext = false;
    const std::string_view item = items[0];
    for (std::size_t s = 0, k = 0; s <= item.size(); ++k) {
        const std::size_t semi = std::min(item.find(';', s), item.size());
        const std::string p = trim(item.substr(s, semi - s));
        s = semi + 1;
        if (k == 0) {
            if (p != "permessage-deflate") return reject(c, "extension not offered", EPROTO);
        } else if (p == "server_no_context_takeover") {
            serverNoContext = true;
        } else if (p == "client_no_context_takeover") {
            // We compress every message on its own anyway.
        } else if (p.rfind("server_max_window_bits=", 0) == 0) {
            // Our inflater has the largest window, which reads any smaller one.
            const std::string v = p.substr(23);
            if (v.empty() || v.size() > 2 || v[0] == '0' || std::atoi(v.c_str()) < 8 || std::atoi(v.c_str()) > 15)
                return reject(c, "bad server_max_window_bits", EPROTO);
        } else {
            // client_max_window_bits was not offered (§7.1.2.2); unknown parameters fail too.
            return reject(c, "bad permessage-deflate response", EPROTO);
        }
    }
    if (opt_.noContextTakeover && !serverNoContext) return reject(c, "server_no_context_takeover missing", EPROTO);
    c.deflate = true;
    return true;
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
    std::string v;
    if (at != std::string::npos) v = trim(head.substr(at + name.size(), head.find("\r\n", at + 2) - at - name.size()));
    if (v.empty() || v != c.accept) return reject(c, "bad Sec-WebSocket-Accept", EPROTO);  // RFC 6455 §4.1
    // Extension names and parameters are case-insensitive tokens too.
    if (!acceptExtensions(c, lower)) return false;
    const std::string rest = c.hsIn.substr(end + 4);
    std::string().swap(c.hsIn);  // release the handshake's memory: it matters at 10,000 connections
    std::string().swap(c.accept);
    markOpen(c);
    return rest.empty() || consume(c, reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size());
}

// Compares the next n payload bytes of the message being received with what was sent.
void Loadgen::check(Conn& c, const std::uint8_t* p, std::size_t n) {
    if (!c.script) {
        c.msgBad = true;  // nothing was sent
    } else if (!c.msgBad) {
        const std::string& want = (*c.script->payloads)[c.recvIdx];
        c.msgBad = c.msgLen + n > want.size() || std::memcmp(want.data() + c.msgLen, p, n) != 0;
    }
    c.msgLen += n;
}

// Inflates part of a compressed message and checks what comes out.
bool Loadgen::inflateSome(Conn& c, const std::uint8_t* p, std::size_t n) {
    if (!c.zin) c.zin = std::make_unique<InflateStream>();
    z_stream& z = c.zin->z;
    z.next_in = const_cast<Bytef*>(p);
    z.avail_in = static_cast<uInt>(n);
    // Bounded: each turn either fills the output buffer or uses up the input.
    for (int turns = 0; turns < 1 << 20; ++turns) {
        z.next_out = inflated_.data();
        z.avail_out = static_cast<uInt>(inflated_.size());
        const int r = inflate(&z, Z_SYNC_FLUSH);
        const std::size_t made = inflated_.size() - z.avail_out;
        if (made > 0) check(c, inflated_.data(), made);
        if (r == Z_STREAM_END) {
            // A block with BFINAL (RFC 7692 §7.2.3.3): what follows starts afresh.
            inflateReset(&z);
            if (z.avail_in == 0) return true;
            continue;
        }
        if (r == Z_BUF_ERROR || (r == Z_OK && z.avail_in == 0 && z.avail_out > 0)) return true;
        if (r != Z_OK) return reject(c, "bad compressed data", EPROTO);
    }
    return reject(c, "inflate did not finish", EPROTO);
}

void Loadgen::takePayload(Conn& c, const std::uint8_t* p, std::size_t n) {
    if (c.frameOpcode >= 8) return;  // control frames: pings and pongs are not checked
    if (c.msgCompressed) inflateSome(c, p, n);
    else check(c, p, n);
}

// Parses the server's echo frames from p[0..n), whatever way the reads split them.
bool Loadgen::consume(Conn& c, const std::uint8_t* p, std::size_t n) {
    std::uint64_t done = 0;
    now_.rxWire += n;
    while (n > 0) {
        if (c.payloadLeft > 0) {
            const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(c.payloadLeft, n));
            takePayload(c, p, take);
            if (c.state == State::dead) return false;
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
            const bool rsv1 = (c.hdr[0] & 0x40) != 0;
            if (c.hdr[0] & 0x30) return reject(c, "RSV2 or RSV3 set", EPROTO);
            c.hdrHave = 0;
            c.hdrNeed = 2;
            c.payloadLeft = len;
            if (c.frameOpcode < 8) {
                // A data frame starts a message (opcode 1/2) or continues one (opcode 0).
                if ((c.frameOpcode == 0) == (c.msgOpcode == 0)) return reject(c, "bad fragmentation", EPROTO);
                if (c.frameOpcode != 0) {
                    // RFC 7692 §6: RSV1 on a message's first frame marks it compressed.
                    if (rsv1 && !c.deflate) return reject(c, "RSV1 without permessage-deflate", EPROTO);
                    c.msgOpcode = c.frameOpcode;
                    c.msgCompressed = rsv1;
                    c.msgBad = false;
                    c.msgLen = 0;
                } else if (rsv1) {
                    return reject(c, "RSV1 on a continuation frame", EPROTO);
                }
            } else if (rsv1) {
                return reject(c, "RSV1 on a control frame", EPROTO);
            }
            if (len > 0 && n > 0) continue;  // go read the payload
            if (len > 0) break;
        }
        // A frame ended.
        if (c.frameOpcode == 8) return reject(c, "server sent close", ECONNRESET);
        if (c.frameOpcode < 8 && c.frameFin) {
            if (c.msgCompressed) {
                // RFC 7692 §7.2.2: the message's deflate data ends with the tail the sender removed.
                static constexpr std::uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
                if (!inflateSome(c, tail, sizeof tail)) return false;
            }
            const std::size_t want = c.script ? (*c.script->payloads)[c.recvIdx].size() : 0;
            if (c.msgBad || c.msgLen != want || c.msgOpcode != expectOpcode_) {
                ++errors_;  // wrong echo: count, go on
                if (badEchoReports_++ < 5)
                    std::fprintf(stderr, "tongdao bench: wrong echo: %llu bytes, opcode %u%s\n",
                                 static_cast<unsigned long long>(c.msgLen), c.msgOpcode,
                                 c.msgBad ? ", content differs" : "");
            }
            now_.rxPayload += c.msgLen;
            if (c.script) c.recvIdx = (c.recvIdx + 1) % c.script->n;
            c.msgOpcode = 0;
            ++done;
        }
        // Pings and pongs are skipped: the echo peers do not ping within a benchmark run.
    }
    if (done > 0) onReplies(c, done);
    return c.state != State::dead;
}

void Loadgen::onReplies(Conn& c, std::uint64_t k) {
    now_.replies += k;
    if (!c.started) return;
    const std::uint64_t now = nowNs();
    const auto cap = static_cast<std::uint32_t>(c.due.size());
    for (std::uint64_t j = 0; j < k && c.dueCount > 0; ++j) {
        // Echoes come back in the order sent: the oldest due time is this echo's.
        const std::uint64_t due = c.due[c.dueHead];
        c.dueHead = (c.dueHead + 1) % cap;
        --c.dueCount;
        --c.inflight;
        const std::uint64_t ns = now > due ? now - due : 0;
        if (measuring()) latency_.add(ns);
        progress_.record(ns);
        if (!sending_) continue;
        if (opt_.rate > 0) {
            if (c.backlog > 0) {  // a send that waited for the window goes now, still timed from its slot
                --c.backlog;
                ++c.inflight;
                ++c.queued;
            }
        } else {
            queue(c, now);  // closed loop: each echo releases the next send
        }
    }
}

// One more message for c, due at `due`: sent as soon as the window allows.
void Loadgen::queue(Conn& c, std::uint64_t due) {
    const auto cap = static_cast<std::uint32_t>(c.due.size());
    if (c.dueCount == cap) {
        ++missed_;
        return;
    }
    c.due[(c.dueHead + c.dueCount) % cap] = due;
    ++c.dueCount;
    if (c.inflight < opt_.window) {
        ++c.inflight;
        ++c.queued;
    } else {
        ++c.backlog;
    }
}

void Loadgen::flush(Conn& c) {
    const Script& s = *c.script;
    for (int turns = 0; c.queued > 0 && turns < 64; ++turns) {
        // The next messages, as many as lie back to back in the script, in one write.
        const std::size_t k = std::min<std::size_t>(c.queued, s.n - c.sendIdx + s.wrap);
        const std::size_t from = s.start[c.sendIdx] + c.sentOff, to = s.start[c.sendIdx + k];
        const long w = writeSome(c, s.bytes.data() + from, to - from);
        if (w <= 0) return;  // full (EPOLLOUT is watched) or failed
        now_.txWire += static_cast<std::uint64_t>(w);
        std::size_t off = c.sentOff + static_cast<std::size_t>(w);
        for (std::size_t len = s.start[c.sendIdx + 1] - s.start[c.sendIdx]; off >= len && c.queued > 0;
             len = s.start[c.sendIdx + 1] - s.start[c.sendIdx]) {
            off -= len;
            now_.txPayload += (*s.payloads)[c.sendIdx].size();
            c.sendIdx = (c.sendIdx + 1) % s.n;
            --c.queued;
        }
        c.sentOff = off;
        if (static_cast<std::size_t>(w) < to - from) return setWantOut(c, true);  // the kernel took part: wait for room
    }
    setWantOut(c, c.queued > 0);
}

void Loadgen::onReadable(Conn& c) {
    if (!c.ssl) {
        // One read per readiness event (level-triggered): a busy connection cannot starve the others.
        const long r = readSome(c, rbuf_.data(), rbuf_.size());
        if (r <= 0) return;
        const auto n = static_cast<std::size_t>(r);
        if (c.state == State::handshaking) {
            onHandshake(c, rbuf_.data(), n);
        } else if (opt_.raw) {
            // The raw peer returns our frame bytes as they are: count whole frames (before any is sent, none).
            const std::size_t flen = c.script ? c.script->start[1] : 0;
            now_.rxWire += n;
            c.rawHave += n;
            const std::uint64_t k = flen == 0 ? 0 : c.rawHave / flen;
            c.rawHave = flen == 0 ? 0 : c.rawHave % flen;
            now_.rxPayload += k * opt_.size;
            if (k > 0) onReplies(c, k);
        } else {
            consume(c, rbuf_.data(), n);
        }
    } else {
        // TLS with read-ahead: OpenSSL may hold records it has read but we have not, which epoll
        // cannot see. Read until it has none left (bounded), one record per SSL_read.
        for (int turns = 0; turns < 4096 && c.state != State::dead; ++turns) {
            std::size_t have = 0;
            while (have + 16384 + 512 <= rbuf_.size()) {
                const long r = readSome(c, rbuf_.data() + have, rbuf_.size() - have);
                if (r <= 0) break;
                have += static_cast<std::size_t>(r);
                if (!SSL_has_pending(c.ssl)) break;
            }
            if (c.state == State::dead || have == 0) break;
            if (c.state == State::handshaking) onHandshake(c, rbuf_.data(), have);
            else consume(c, rbuf_.data(), have);
            if (c.state == State::dead || !SSL_has_pending(c.ssl)) break;
        }
    }
    if (c.state == State::open && c.queued > 0) flush(c);
}

void Loadgen::onEvent(std::size_t i, std::uint32_t ev) {
    Conn& c = conns_[i];
    if (c.state == State::dead || c.state == State::unused) return;
    if (c.state == State::connecting) return onConnected(c);  // registered for EPOLLOUT only: connected or failed
    if (c.state == State::tlsHandshaking) return driveTls(c);
    if ((ev & EPOLLOUT) && c.state == State::open) {
        if (c.queued > 0) flush(c);
        else setWantOut(c, false);  // a TLS read wanted to write: readable next
    }
    // With TLS, a read may have waited for the socket to take a TLS message of its own.
    const std::uint32_t readable = EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR | (c.ssl ? EPOLLOUT : 0u);
    if (c.state != State::dead && (ev & readable)) onReadable(c);
}

// The traffic starts: on every open connection now, and (--ramp-up) on the others as they open.
void Loadgen::startTraffic(std::uint64_t now) {
    sending_ = true;
    for (auto& c : conns_)
        if (c.state == State::open) startOn(c);
    if (opt_.rate > 0) {
        slotNs_ = 1e9 / (opt_.rate * static_cast<double>(conns_.size()));
        schedStart_ = now;
        schedSlot_ = 0;
        tick(now);
    }
}

void Loadgen::startOn(Conn& c) {
    if (c.started) return;
    c.started = true;
    if (opt_.jsonMessages) {
        // Connections start at different places in the shared pool, the same ones every run.
        const auto i = static_cast<std::uint64_t>(&c - conns_.data());
        Rng rng(opt_.seed ^ 0x5eedULL ^ (i * 0x9e3779b97f4a7c15ULL));
        c.script = c.deflate ? compressedScript_.get() : plainScript_.get();
        c.sendIdx = c.recvIdx = rng.below(c.script->n);
    } else {
        // Its own masking key; the copies (about 32 KiB) let a window go in one write.
        c.own = buildScript(c.deflate ? compressed_ : plain_, payloads_, expectOpcode_, opt_.window, 32 << 10);
        c.script = c.own.get();
    }
    c.due.assign(opt_.window + (opt_.rate > 0 ? kBacklog : 0), 0);
    if (opt_.rate > 0) return;  // the schedule sends
    const std::uint64_t now = nowNs();
    for (std::uint32_t w = 0; w < opt_.window; ++w) queue(c, now);
    flush(c);
}

// --rate: every slot whose time has come is one message for its connection, timed from the slot.
void Loadgen::tick(std::uint64_t now) {
    if (!sending_ || slotNs_ <= 0) return;
    for (int k = 0; k < 100000; ++k) {
        const auto due = schedStart_ + static_cast<std::uint64_t>(static_cast<double>(schedSlot_) * slotNs_);
        if (due > now) return fds_->arm(due);
        Conn& c = conns_[schedSlot_ % conns_.size()];
        ++schedSlot_;
        if (c.state != State::open || !c.started) continue;  // not open (yet, with --ramp-up) or failed
        queue(c, due);
        if (c.queued > 0) flush(c);
    }
    fds_->arm(now + 1000);
}

void Loadgen::finish(std::uint64_t now) {
    sending_ = false;
    const bool measured = measureStart_ > 0;
    if (measured && measureEnd_ == 0) measureEnd_ = now;
    const double elapsed = measured ? static_cast<double>(measureEnd_ - measureStart_) / 1e9 : 0.0;
    const double cpu = measured ? cpuSeconds() - cpuStart_ : 0.0;
    progress_.finish();
    printResult(elapsed, cpu);
    phase_ = Phase::done;
}

void Loadgen::printResult(double elapsed, double cpu) {
    const bool measured = measureStart_ > 0;
    auto d = [&](std::uint64_t Counters::*f) { return static_cast<unsigned long long>(measured ? now_.*f - base_.*f : 0); };
    const unsigned long long msgs = d(&Counters::replies);
    const double perSec = elapsed > 0 ? 1.0 / elapsed : 0.0;
    const char* mode = opt_.idle ? "idle" : opt_.rate > 0 ? "rate" : "closed";
    if (opt_.report.json) {
        std::printf("{\"url\":\"%s\",\"mode\":\"%s\",\"messages\":%llu,\"seconds\":%.3f,\"msgs_per_sec\":%.1f,\"errors\":%llu,"
                    "\"connections\":%zu,\"window\":%u,\"rate\":%.3f,\"size\":%zu,\"missed\":%llu,"
                    "\"client_cpu_seconds\":%.3f,\"deflate_connections\":%zu,\"tls\":\"%s\",\"rx_wire_bytes\":%llu,"
                    "\"rx_payload_bytes\":%llu,\"tx_wire_bytes\":%llu,\"tx_payload_bytes\":%llu,",
                    opt_.targets.front().url.c_str(), mode, msgs, elapsed, static_cast<double>(msgs) * perSec,
                    static_cast<unsigned long long>(errors_), opened_, opt_.window, opt_.rate, opt_.size,
                    static_cast<unsigned long long>(missed_), cpu, deflateConns_, tlsInfo_.c_str(), d(&Counters::rxWire),
                    d(&Counters::rxPayload), d(&Counters::txWire), d(&Counters::txPayload));
        latency_.writeJson(stdout, "latency_us");
        std::printf("}\n");
        std::fflush(stdout);
        return;
    }
    std::printf("%s: %zu of %zu connections open, %llu errors", opt_.targets.front().url.c_str(), opened_, conns_.size(),
                static_cast<unsigned long long>(errors_));
    if (opt_.targets.size() > 1) std::printf(" (over %zu URLs)", opt_.targets.size());
    if (!tlsInfo_.empty()) std::printf(", %s", tlsInfo_.c_str());
    if (deflateConns_ > 0) std::printf(", permessage-deflate on %zu", deflateConns_);
    std::printf("\n");
    if (opt_.idle || !measured) {
        std::fflush(stdout);
        return;
    }
    if (opt_.rate > 0)
        std::printf("load           %.6g msg/s per connection (%.6g msg/s in all) on a schedule, at most %u in flight each, "
                    "%zu-byte %s messages\n",
                    opt_.rate, opt_.rate * static_cast<double>(conns_.size()), opt_.window, opt_.size,
                    opt_.binary ? "binary" : "text");
    else
        std::printf("load           closed loop, %u in flight per connection, %zu-byte %s messages\n", opt_.window, opt_.size,
                    opt_.binary ? "binary" : "text");
    std::printf("messages       %llu echoed in %.2f s: %.0f msg/s, %.2f MB/s sent and %.2f MB/s received on the wire\n", msgs,
                elapsed, static_cast<double>(msgs) * perSec, static_cast<double>(d(&Counters::txWire)) * perSec / 1e6,
                static_cast<double>(d(&Counters::rxWire)) * perSec / 1e6);
    latency_.writeLine(stdout, "latency", 1e6, "ms");
    if (missed_ > 0)
        std::printf("missed         %llu sends of the schedule: the server fell more than %u messages behind on a connection\n",
                    static_cast<unsigned long long>(missed_), opt_.window + kBacklog);
    std::printf("client CPU     %.0f %%%s\n", elapsed > 0 ? 100 * cpu / elapsed : 0.0,
                elapsed > 0 && cpu / elapsed > 0.9 ? " (the load generator was the limit: run several)" : "");
    std::fflush(stdout);
}

int Loadgen::run() {
    fds_ = std::make_unique<EventFds>(opt_.idle); // a closed stdin ends an --idle hold
    ep_ = fds_->epoll();

    startNs_ = nowNs();
    const std::uint64_t connectDeadline = startNs_ + secsNs(opt_.rampUp + opt_.connectTimeout);
    std::uint64_t phaseEnd = connectDeadline;
    if (opt_.rampUp > 0 && !opt_.idle) startTraffic(startNs_);  // each connection starts sending once open
    std::array<epoll_event, 1024> events{};
    bool stdinClosed = false;
    // Bounded: every phase has a deadline, and the loop turns at least every 100 ms.
    for (long turn = 0; turn < 2'000'000'000L && phase_ != Phase::done; ++turn) {
        std::uint64_t now = nowNs();
        if (phase_ == Phase::connecting) {
            const std::size_t allowed = rampAllowed(conns_.size(), opt_.rampUp, now - startNs_);
            while (pending_ < opt_.connectBatch && nextToOpen_ < allowed) openNext();
        }
        const long long cap = phase_ == Phase::connecting && opt_.rampUp > 0 ? 10 : 100;
        const long long waitMs =
            std::clamp<long long>(phaseEnd > now ? static_cast<long long>((phaseEnd - now) / 1'000'000) + 1 : 0, 0, cap);
        const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), static_cast<int>(waitMs));
        bool stop = false;
        for (int k = 0; k < n; ++k) {
            const std::uint64_t tok = events[static_cast<std::size_t>(k)].data.u64;
            if (tok == EventFds::kTimer) {
                fds_->consumeTimer();
                tick(nowNs());
                continue;
            }
            if (tok == EventFds::kStdin) {
                char b[256];
                if (read(STDIN_FILENO, b, sizeof b) > 0) continue;  // input is ignored; EOF ends the hold
                fds_->forgetStdin();
                stdinClosed = true;  // while opening: the opening goes on, the hold ends at once
                continue;
            }
            if (tok == EventFds::kSignal) {
                stop = true;
                continue;
            }
            onEvent(static_cast<std::size_t>(tok), events[static_cast<std::size_t>(k)].events);
        }
        now = nowNs();
        progress_.update(now, phaseName(phase_), open_, conns_.size(), now_.replies, "msg", errors_);
        if (phase_ == Phase::connecting) {
            const bool allTried = nextToOpen_ == conns_.size() && pending_ == 0;
            if (!allTried && now < connectDeadline && !stop) continue;
            for (auto& c : conns_) {
                if (c.state == State::unused) ++errors_;  // never tried: the deadline came first
                if (c.state != State::connecting && c.state != State::tlsHandshaking && c.state != State::handshaking)
                    continue;
                errno = ETIMEDOUT;
                fail(c, "not open before --connect-timeout");
            }
            opened_ = open_;
            phaseLine(opt_.report, "open " + std::to_string(open_) + " errors " + std::to_string(errors_) + " deflate " +
                                       std::to_string(deflateConns_));
            if (open_ == 0 || stop) {
                finish(now);
                break;
            }
            if (opt_.idle) {
                phase_ = Phase::hold;
                phaseEnd = stdinClosed ? now : now + secsNs(opt_.holdMax);
            } else {
                phase_ = Phase::warmup;
                phaseEnd = now + secsNs(opt_.warmup);
                if (!sending_) startTraffic(now);
            }
            continue;
        }
        if (stdinClosed && phase_ == Phase::hold) stop = true;
        if (stop || now >= phaseEnd) {
            if (phase_ == Phase::warmup && !stop) {
                // The measured window starts here: a driver reads the server's CPU time on this line.
                base_ = now_;
                phaseLine(opt_.report, "measuring");
                cpuStart_ = cpuSeconds();
                measureStart_ = nowNs();
                phase_ = Phase::measure;
                phaseEnd = measureStart_ + secsNs(opt_.duration);
                continue;
            }
            finish(now);
        }
    }
    if (phase_ != Phase::done) finish(nowNs());
    for (auto& c : conns_) {
        if (c.ssl) SSL_free(c.ssl);
        c.ssl = nullptr;
        if (c.fd >= 0) close(c.fd);
    }
    return opened_ > 0 ? 0 : 1;
}

} // namespace

int runEcho(EchoOptions options) {
    raiseFdLimit(options.connections + 16);
    std::signal(SIGPIPE, SIG_IGN); // OpenSSL writes with write(): a reset peer must be an error, not a kill
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); // --rate: the schedule's timer fires on time, not 50 us late
    return Loadgen(std::move(options)).run();
}

} // namespace tongdao::bench
