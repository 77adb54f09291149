// loadgen: the WebSocket echo load generator behind bench/echo_compare.py and
// bench/tls_deflate_compare.py.
//
// Its own minimal RFC 6455 client on plain epoll and non-blocking sockets, sharing no code
// with the tongdao library, so a bug or a speed-up there cannot skew the yardstick. One thread,
// one shared receive buffer; every message a connection sends is framed (masked, and compressed
// with --deflate) once before the run and written by reference from then on, so per message it
// costs about what raw_echo does, well below any WebSocket server. Options that add work:
//   --tls       TLS 1.2+ with OpenSSL on the same non-blocking sockets (no certificate check
//               unless --ca FILE is given)
//   --deflate   offers permessage-deflate (RFC 7692); when the server agrees, the client's
//               messages go compressed (RSV1) and the server's are inflated with zlib
//   --json-payload  chat-like JSON text messages of exactly --size bytes, from a pool of
//               distinct messages (so a compressor keeping context cannot just repeat one)
// Every echoed message is compared byte for byte with the one sent.
//
//   loadgen --port P [--host 127.0.0.1] [--path /echo] [--connections C] [--size BYTES] [--mode rr|pipe]
//           [--window W] [--duration S] [--warmup S] [--binary|--text] [--raw] [--idle] [--hold-max S]
//           [--source-ips 127.0.0.1,127.0.0.2] [--connect-timeout S] [--connect-batch N]
//           [--tls] [--ca FILE] [--deflate] [--no-context-takeover] [--json-payload] [--seed N]
//
// stdout: "# open N errors E deflate D" once every connection is up (D: connections that agreed
// to permessage-deflate), "# measuring" when the measured window starts (the driver samples
// server CPU there), then one JSON line (messages, seconds and byte counts cover the measured
// window; errors cover the whole run). Diagnostics go to stderr.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

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
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string host = "127.0.0.1", path = "/echo", caFile;
    std::uint16_t port = 0;
    std::size_t connections = 100, size = 20;
    std::uint32_t window = 16;
    double duration = 5, warmup = 1;
    bool pipe = false, binary = true, raw = false, idle = false;
    bool tls = false, deflate = false, noContextTakeover = false, json = false;
    std::uint64_t seed = 1;
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
        else if (a == "--tls") o.tls = true;
        else if (a == "--ca") o.caFile = value();
        else if (a == "--deflate") o.deflate = true;
        else if (a == "--no-context-takeover") o.noContextTakeover = true;
        else if (a == "--json-payload") o.json = true;
        else if (a == "--seed") o.seed = toSize(value());
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
    if (!o.caFile.empty()) o.tls = true;
    if (o.raw && (o.tls || o.deflate || o.json)) usage("--raw takes no --tls, --deflate or --json-payload");
    if (o.noContextTakeover && !o.deflate) usage("--no-context-takeover goes with --deflate");
    if (o.json) {
        if (o.size < 12) usage("--json-payload needs --size 12 or more");
        o.binary = false;  // JSON is text
    }
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

// The payloads a run sends. --json-payload: a pool of distinct chat messages, at least 256 KiB
// in all (8 deflate windows), so a compressor with context sees text it has not seen before.
// Otherwise one message of letters, as before.
std::vector<std::string> makePayloads(const Options& o) {
    std::vector<std::string> out;
    if (!o.json) {
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
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) usage("deflateInit2 failed");
    std::vector<Body> out;
    std::string buf;
    for (const auto& p : payloads) {
        deflateReset(&z);
        buf.resize(deflateBound(&z, p.size()) + 16);
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(p.data()));
        z.avail_in = static_cast<uInt>(p.size());
        z.next_out = reinterpret_cast<Bytef*>(buf.data());
        z.avail_out = static_cast<uInt>(buf.size());
        if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in != 0) usage("deflate failed");
        std::size_t len = buf.size() - z.avail_out;
        if (len < 4 || std::memcmp(buf.data() + len - 4, "\x00\x00\xff\xff", 4) != 0) usage("deflate: no sync tail");
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
        if (inflateInit2(&z, -15) != Z_OK) usage("inflateInit2 failed");
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

struct Counters {
    std::uint64_t replies = 0, rxWire = 0, rxPayload = 0, txWire = 0, txPayload = 0;
};

class Loadgen {
public:
    explicit Loadgen(Options o) : opt_(std::move(o)), conns_(opt_.connections), rbuf_(std::size_t{1} << 18) {
        if (inet_pton(AF_INET, opt_.host.c_str(), &dest_.sin_addr) != 1) usage("--host must be an IPv4 address");
        dest_.sin_family = AF_INET;
        dest_.sin_port = htons(opt_.port);
        expectOpcode_ = opt_.binary ? 2 : 1;
        if (opt_.tls) setUpTls();
        if (opt_.idle) return;  // idle connections send nothing
        payloads_ = makePayloads(opt_);
        plain_ = plainBodies(payloads_);
        if (opt_.deflate) compressed_ = compressAll(payloads_);
        if (opt_.json) {
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
    void setUpTls();
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
    void startTraffic();
    void finish(Clock::time_point now);

    Options opt_;
    std::vector<Conn> conns_;
    std::vector<std::uint8_t> rbuf_;      // one receive buffer for every connection (a read is handled at once)
    std::vector<std::uint8_t> inflated_;  // one inflate output buffer: compared, then dropped
    std::vector<std::string> payloads_;
    std::vector<Body> plain_, compressed_;
    std::unique_ptr<Script> plainScript_, compressedScript_;  // --json-payload: shared by all connections
    SSL_CTX* tlsCtx_ = nullptr;
    std::string tlsInfo_;                 // protocol and cipher of the first TLS connection
    sockaddr_in dest_{};
    int ep_ = -1;
    Phase phase_ = Phase::connecting;
    std::size_t nextToOpen_ = 0, pending_ = 0, open_ = 0, opened_ = 0, deflateConns_ = 0;
    std::uint64_t errors_ = 0, failReports_ = 0, badEchoReports_ = 0;
    Counters now_, base_;
    std::uint8_t expectOpcode_ = 2;
    bool sending_ = false;
    Clock::time_point measureStart_{};
    double cpuStart_ = 0;
};

void Loadgen::setUpTls() {
    tlsCtx_ = SSL_CTX_new(TLS_client_method());
    if (!tlsCtx_) usage("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(tlsCtx_, TLS1_2_VERSION);
    // Read ahead: one read() takes whole records (and more) instead of a 5-byte header, then the rest.
    SSL_CTX_set_read_ahead(tlsCtx_, 1);
    // A retried SSL_write passes the same bytes, possibly more of them (the window grew).
    long mode = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
    if (opt_.idle) mode |= SSL_MODE_RELEASE_BUFFERS;  // 10,000 idle connections: keep loadgen small
    SSL_CTX_set_mode(tlsCtx_, mode);
    if (opt_.caFile.empty()) {
        SSL_CTX_set_verify(tlsCtx_, SSL_VERIFY_NONE, nullptr);  // a benchmark on loopback
    } else {
        if (SSL_CTX_load_verify_locations(tlsCtx_, opt_.caFile.c_str(), nullptr) != 1) usage("cannot read --ca");
        SSL_CTX_set_verify(tlsCtx_, SSL_VERIFY_PEER, nullptr);
    }
}

void Loadgen::fail(Conn& c, const char* why) {
    if (c.state == State::dead) return;
    if (failReports_++ < 5) {
        const unsigned long e = ERR_peek_last_error();
        char tlsWhy[256] = "";
        if (e != 0) ERR_error_string_n(e, tlsWhy, sizeof tlsWhy);
        std::fprintf(stderr, "loadgen: connection failed: %s (%s)%s%s\n", why, std::strerror(errno),
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
    if (c.ssl && tlsInfo_.empty()) tlsInfo_ = std::string(SSL_get_version(c.ssl)) + " " + SSL_get_cipher_name(c.ssl);
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
    if (!opt_.tls) return sendUpgrade(c);
    c.ssl = SSL_new(tlsCtx_);
    if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) return fail(c, "SSL_new");
    if (!opt_.caFile.empty()) {
        // The name or address the certificate must carry.
        X509_VERIFY_PARAM* param = SSL_get0_param(c.ssl);
        in_addr probe{};
        const bool ip = inet_pton(AF_INET, opt_.host.c_str(), &probe) == 1;
        if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(param, opt_.host.c_str())
                : X509_VERIFY_PARAM_set1_host(param, opt_.host.c_str(), 0)) != 1)
            return fail(c, "TLS host check");
    }
    SSL_set_connect_state(c.ssl);
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
    std::array<unsigned char, 16> nonce{};
    randomBytes(nonce.data(), nonce.size());
    const std::string key = base64(nonce.data(), nonce.size());
    c.accept = acceptFor(key);
    std::string req = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + opt_.host + ":" + std::to_string(opt_.port) +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                      "\r\nSec-WebSocket-Version: 13\r\n";
    if (opt_.deflate)
        req += opt_.noContextTakeover
                   ? "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"
                   : "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    req += "\r\n";
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
                    std::fprintf(stderr, "loadgen: wrong echo: %llu bytes, opcode %u%s\n",
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
    if (!sending_) return;
    // rr keeps one message in flight and pipe keeps W: each echo releases the next send.
    c.queued += static_cast<std::uint32_t>(k);
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
            c.rawHave += n;
            const std::uint64_t k = flen == 0 ? 0 : c.rawHave / flen;
            c.rawHave = flen == 0 ? 0 : c.rawHave % flen;
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

void Loadgen::startTraffic() {
    sending_ = true;
    Rng rng(opt_.seed ^ 0x5eedULL);
    for (auto& c : conns_) {
        if (c.state != State::open) continue;
        if (opt_.json) {
            c.script = c.deflate ? compressedScript_.get() : plainScript_.get();
            c.sendIdx = c.recvIdx = rng.below(c.script->n);  // connections start at different messages
        } else {
            // Its own masking key; the copies (about 32 KiB) let a pipe window go in one write.
            c.own = buildScript(c.deflate ? compressed_ : plain_, payloads_, expectOpcode_, opt_.window, 32 << 10);
            c.script = c.own.get();
        }
        c.queued = opt_.window;
        flush(c);
    }
}

void Loadgen::finish(Clock::time_point now) {
    sending_ = false;
    const bool measured = phase_ == Phase::measure;
    const double elapsed = measured ? since(measureStart_, now) : 0.0;
    auto d = [&](std::uint64_t Counters::*f) {
        return static_cast<unsigned long long>(measured ? now_.*f - base_.*f : 0);
    };
    const unsigned long long msgs = d(&Counters::replies);
    const double cpu = measured ? cpuSeconds() - cpuStart_ : 0.0;
    std::printf("{\"messages\":%llu,\"seconds\":%.3f,\"msgs_per_sec\":%.1f,\"errors\":%llu,\"connections\":%zu,"
                "\"client_cpu_seconds\":%.3f,\"deflate_connections\":%zu,\"tls\":\"%s\",\"rx_wire_bytes\":%llu,"
                "\"rx_payload_bytes\":%llu,\"tx_wire_bytes\":%llu,\"tx_payload_bytes\":%llu}\n",
                msgs, elapsed, elapsed > 0 ? static_cast<double>(msgs) / elapsed : 0.0,
                static_cast<unsigned long long>(errors_), opened_, cpu, deflateConns_, tlsInfo_.c_str(),
                d(&Counters::rxWire), d(&Counters::rxPayload), d(&Counters::txWire), d(&Counters::txPayload));
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
                if (c.state != State::connecting && c.state != State::tlsHandshaking && c.state != State::handshaking)
                    continue;
                errno = ETIMEDOUT;
                fail(c, "not open before --connect-timeout");
            }
            opened_ = open_;
            std::printf("# open %zu errors %llu deflate %zu\n", open_, static_cast<unsigned long long>(errors_),
                        deflateConns_);
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
                base_ = now_;
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
    for (auto& c : conns_) {
        if (c.ssl) SSL_free(c.ssl);
        c.ssl = nullptr;
        if (c.fd >= 0) close(c.fd);
    }
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
    std::signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(): a reset peer must be an error, not a kill
    return Loadgen(std::move(opt)).run();
}
