// The chat engine of `tongdao bench --chat ROOMS` (chat_load.hpp). One thread, plain epoll and
// non-blocking sockets, and a minimal RFC 6455 client of its own (masked text frames out,
// unmasked frames in); see common.hpp. It speaks two chat protocols:
//
//   tongdao   docs/PROTOCOL.md on /chat (sub-protocol tongdao.chat.v1):
//             hello {v:1,name}, join {room}, send {room,cid,body}; events op "message"
//   socketio  Socket.IO 5 over Engine.IO 4, websocket transport only, on
//             /socket.io/?EIO=4&transport=websocket: 0{open} <- , 40 ->, 40{sid} <-,
//             42["join",…] / 42<id>["send",…] -> 43<id>[…], 42["message",…] <-;
//             a server ping "2" is answered "3" (the peer of bench/chat/chat_compare.py)
//
// Modes:
//   fanout  R rooms x M members; every member sends `rate` messages/s on a schedule spread
//           evenly over all members (a timerfd, not bursts). Every message carries its send time
//           (CLOCK_MONOTONIC, ns) in its body; every member that receives it (the sender too)
//           records receive time - send time in a histogram. Open loop: a send never waits for
//           its ack; how late each send left against its slot is the send lag.
//   closed  the same rooms, every member keeps `window` sends in flight and sends the next one
//           when one is acked (saturation: acks/s = stored messages/s)
//   idle    open, hello, join, then hold until stdin closes, SIGTERM or holdMax; answers
//           Socket.IO pings and sends tongdao heartbeat pings every 25 s
//   storm   (tongdao) fills every room with `behind` messages (fillersPerRoom senders each,
//           closed loop), opens R x M clients that only say hello, then (after a line on stdin
//           with goOnStdin) sends join {room, since} on all of them at once and measures until
//           each has received every message, checked to arrive in seq order, once each
//
// Several targets spread the members of each room round-robin (member k of room r on target
// (k + r) % N), so that most deliveries go from a sender on one server to a receiver on another.
// A delivery whose sender (the "src" in its body) is on another server than its receiver counts
// as cross-server (cross_deliveries, cross_latency_us); with one target there are none.
//
// drain D (fanout): after the window, traffic goes on for D more seconds while the deliveries
// of the sends made in the window are still counted: window_owed (each window send times the
// members of its room) against window_delivered tells a message lost (or late by more than D)
// from the edge of the window.
//
// Phase lines (--phases): "# open N errors E" when every connection is set up, "# ready" when a
// storm waits for its go, "# measuring" when the measured window starts, "# window end" when a
// window followed by a drain closes, so a driver can sample the server's CPU time there.

#include "chat_load.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tongdao::bench {
namespace {

using Options = ChatOptions;
using Proto = ChatProto;
using Mode = ChatMode;

// Checks the options and fills in what follows from the others; Fatal names what is wrong.
void normalize(Options& o) {
    if (o.targets.empty()) throw Fatal("no URL");
    if (o.targets.size() > 255) throw Fatal("at most 255 URLs");
    if (o.rooms == 0) throw Fatal("--chat: at least 1 room");
    if (o.connections == 0) o.connections = o.rooms * o.members;
    if (o.connections == 0) throw Fatal("no connections");
    if (o.window == 0 || o.window > 64) throw Fatal("--pipeline: 1 to 64 sends in flight per member with --chat");
    if (o.mode == Mode::storm && o.proto != Proto::tongdao) throw Fatal("--storm needs the tongdao protocol (history)");
    if (o.mode == Mode::storm && o.rampUp > 0) throw Fatal("--storm opens every client at once: no --ramp-up");
    if (o.mode == Mode::fanout && !(o.rate > 0)) throw Fatal("--rate must be above 0");
    if (o.bodySize > 16000) throw Fatal("--size is capped at 16000 with --chat");
    auto check = [](const std::string& v, std::size_t most, std::string_view extra, const char* what) {
        if (v.empty() || v.size() > most) throw Fatal(std::string(what) + ": 1 to " + std::to_string(most) + " characters");
        for (char ch : v)
            if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.' &&
                extra.find(ch) == std::string_view::npos)
                throw Fatal(std::string(what) + ": letters, digits, - _ ." + std::string(extra));
    };
    check(o.namePrefix, 16, "", "--name-prefix");
    if (o.roomPrefix.empty()) o.roomPrefix = o.namePrefix;
    check(o.roomPrefix, 32, ":", "--room-prefix");
    if (o.fillersPerRoom == 0) o.fillersPerRoom = std::max<std::size_t>(1, (o.behind + 499) / 500);
}
// --- tiny JSON field readers -----------------------------------------------------------------
// The servers' events are small flat objects whose keys we know; our own body uses keys that
// appear nowhere else ("sent_ns", "src", "pad"), so the first occurrence of a key is the one.

bool findInt(std::string_view s, std::string_view key, std::uint64_t& out) {
    const std::size_t at = s.find(key);
    if (at == std::string_view::npos) return false;
    std::size_t i = at + key.size();
    while (i < s.size() && s[i] == ' ') ++i;
    std::uint64_t v = 0;
    const std::size_t first = i;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
    if (i == first) return false;
    out = v;
    return true;
}

std::string_view findStr(std::string_view s, std::string_view key) {
    const std::size_t at = s.find(key);
    if (at == std::string_view::npos) return {};
    const std::size_t from = at + key.size();
    const std::size_t end = s.find('"', from);
    if (end == std::string_view::npos) return {};
    return s.substr(from, end - from);
}

// --- connections -----------------------------------------------------------------------------

enum class St : std::uint8_t { unused, connecting, tls, upgrading, setup, ready, dead };
enum class Role : std::uint8_t { member, filler, storm };

constexpr std::size_t kRing = 64;  // send times kept per connection, by id % kRing

struct Conn {
    int fd = -1;
    SSL* ssl = nullptr;             // wss://
    St st = St::unused;
    Role role = Role::member;
    bool wantOut = false;
    std::uint8_t step = 0;          // protocol set-up step
    std::uint32_t room = 0, index = 0;
    std::uint8_t node = 0;          // which of --port's servers
    std::string in;                 // bytes of a frame not complete yet (or the HTTP response)
    std::string out;                // bytes not written yet
    std::size_t outOff = 0;
    std::string accept;             // the Sec-WebSocket-Accept we expect
    std::string frag;               // a fragmented message being assembled
    std::uint8_t fragOp = 0;
    std::uint64_t mask = 0;         // xorshift state for masking keys
    std::uint64_t nextId = 10, sends = 0, lastTx = 0;
    std::uint32_t inflight = 0, quota = 0;  // closed loop: sends in flight; filler: sends left
    std::array<std::uint64_t, kRing> ringId{}, ringAt{};
    std::uint64_t baseSeq = 0, expect = 0, target = 0;  // storm: next seq, last seq owed
    bool caught = false, joined = false;
    std::uint64_t resumeAt = 0;     // paused: the next send goes at this time
};


enum class Phase : std::uint8_t { connecting, filling, waitGo, warmup, measure, drain, hold, storm, done };

const char* phaseName(Phase p) {
    switch (p) {
    case Phase::connecting: return "opening";
    case Phase::filling: return "filling";
    case Phase::waitGo: return "waiting";
    case Phase::warmup: return "warm-up";
    case Phase::measure: return "measuring";
    case Phase::drain: return "draining";
    case Phase::hold: return "holding";
    case Phase::storm: return "storm";
    default: return "done";
    }
}

class Load {
public:
    explicit Load(Options o) : opt_(std::move(o)), rbuf_(std::size_t{1} << 18) {
        pad_.assign(opt_.bodySize, 'x');
        tokenSeconds_ = static_cast<long>(opt_.connectTimeout + opt_.rampUp + opt_.warmup + opt_.duration + opt_.drain +
                                          std::max(opt_.holdMax, opt_.stormTimeout)) + 3600;
        // wss://: partial writes, since frames are appended to the unsent bytes meanwhile.
        if (opt_.targets.front().tls) tlsCtx_ = newTlsContext(opt_.verify, opt_.caFile, true, opt_.mode == Mode::idle);
    }
    ~Load() {
        for (auto& c : conns_)
            if (c.ssl) SSL_free(c.ssl);
        if (tlsCtx_) SSL_CTX_free(tlsCtx_);
    }
    Load(const Load&) = delete;
    Load& operator=(const Load&) = delete;
    int run();

private:
    // connections
    void openRange(std::size_t from, std::size_t to, Role role);
    void openNext();
    void onEvent(std::size_t i, std::uint32_t ev);
    void onConnected(Conn& c);
    void driveTls(Conn& c);
    void startUpgrade(Conn& c);
    long readSome(Conn& c);
    void onReadable(Conn& c);
    void onBytes(Conn& c, std::size_t n);
    bool onUpgrade(Conn& c);
    std::size_t parseFrames(Conn& c, const std::uint8_t* p, std::size_t n, std::uint64_t rx);
    void onMessage(Conn& c, std::string_view m, std::uint64_t rx);
    void onTongdao(Conn& c, std::string_view m, std::uint64_t rx);
    void onSocketIo(Conn& c, std::string_view m, std::uint64_t rx);
    void setupDone(Conn& c);
    void setupFailed(Conn& c, std::string_view m);
    void sendFrame(Conn& c, std::uint8_t opcode, std::string_view payload);
    void sendText(Conn& c, std::string_view payload) { sendFrame(c, 0x1, payload); }
    void flush(Conn& c);
    void setWantOut(Conn& c, bool on);
    void fail(Conn& c, const char* why, int err);
    // traffic
    void sendChat(Conn& c, std::uint64_t now);
    void onAck(Conn& c, std::uint64_t id, bool ok, std::string_view m, std::uint64_t rx);
    void onDelivery(Conn& c, std::string_view m, std::uint64_t rx);
    void tick(std::uint64_t now);
    void startTraffic(std::uint64_t now);
    void countMembers();
    void pause(Conn& c, std::uint64_t until);
    void resumeDue(std::uint64_t now);
    void startFill();
    void startStorm(std::uint64_t now);
    void heartbeat(std::uint64_t now);
    void finish(std::uint64_t now);
    bool measuring(std::uint64_t t) const { return phase_ == Phase::measure && t >= measureStart_; }
    std::string userName(const Conn& c) const {
        const char* tag = c.role == Role::filler ? "f" : c.role == Role::storm ? "s" : "m";
        return opt_.namePrefix + tag + std::to_string(c.index);
    }
    std::string roomName(std::uint32_t r) const { return opt_.roomPrefix + "-r" + std::to_string(r); }

    Options opt_;
    std::vector<Conn> conns_;
    std::vector<std::uint8_t> rbuf_;
    std::string pad_, scratch_;
    std::unique_ptr<EventFds> fds_;
    int ep_ = -1;  // fds_->epoll()
    SSL_CTX* tlsCtx_ = nullptr;  // wss://
    long tokenSeconds_ = 0;      // how long the hello tokens are valid
    std::string tlsInfo_;        // what the first TLS connection agreed
    Phase phase_ = Phase::connecting;
    std::size_t openFrom_ = 0, nextToOpen_ = 0, openTo_ = 0, pending_ = 0, ready_ = 0, setupTried_ = 0;
    std::size_t fillersFrom_ = 0, fillersTo_ = 0, clientsFrom_ = 0, clientsTo_ = 0;
    Role openRole_ = Role::member;
    std::uint64_t errors_ = 0, reports_ = 0, rejects_ = 0, closes_ = 0;
    std::map<std::string, std::uint64_t, std::less<>> rejectCodes_;
    // schedule (fanout)
    std::vector<std::uint32_t> order_;  // sender of each slot, rooms interleaved
    std::uint64_t schedStart_ = 0, schedSlot_ = 0;
    double slotNs_ = 0;
    // measured window
    std::uint64_t measureStart_ = 0, measureEnd_ = 0;
    double cpuStart_ = 0, cpuEnd_ = 0;  // cpuEnd_: at the window's end when a drain follows
    std::uint64_t mSends_ = 0, mAcks_ = 0, mDeliveries_ = 0, mRxBytes_ = 0, totalSends_ = 0, totalAcks_ = 0;
    std::uint64_t mCross_ = 0, windowOwed_ = 0, windowDelivered_ = 0;  // cross-server; --drain's check
    std::vector<std::uint32_t> roomMembers_;  // members set up per room when the traffic started
    Histogram latency_, ackLatency_, sendLag_, catchUp_, crossLatency_;
    Progress progress_{opt_.report.progress};
    std::uint64_t allDeliveries_ = 0;  // the whole run's, for the progress line
    bool trafficStarted_ = false;
    std::vector<std::uint32_t> paused_;  // connections whose next send waits (a refusal's retryAfterMs)
    // storm
    std::size_t caughtUp_ = 0, fillLeft_ = 0;
    std::uint64_t stormStart_ = 0, stormEnd_ = 0, fillStart_ = 0, fillEnd_ = 0, orderErrors_ = 0, gaps_ = 0;
    std::uint64_t stormDeliveries_ = 0, notRecovered_ = 0;
    std::uint64_t lastBeat_ = 0;
    bool stop_ = false;
};

void Load::fail(Conn& c, const char* why, int err) {
    if (c.st == St::dead) return;
    if (reports_++ < 5) std::fprintf(stderr, "tongdao bench: connection %u failed: %s (%s)\n", c.index, why, std::strerror(err));
    if (c.st == St::connecting || c.st == St::tls || c.st == St::upgrading || c.st == St::setup) --pending_;
    if (c.st == St::ready) --ready_;
    if (c.ssl) SSL_free(c.ssl);
    c.ssl = nullptr;
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.st = St::dead;
    std::string().swap(c.in);
    std::string().swap(c.out);
    ++errors_;
}

void Load::openRange(std::size_t from, std::size_t to, Role role) {
    openFrom_ = nextToOpen_ = from;
    openTo_ = to;
    openRole_ = role;
    setupTried_ = 0;
}

void Load::openNext() {
    const std::size_t i = nextToOpen_++;
    Conn& c = conns_[i];
    c.st = St::connecting;
    c.role = openRole_;
    ++pending_;
    ++setupTried_;
    const char* step = nullptr;
    c.fd = connectTcp(opt_.targets[c.node], opt_.sourceIps.empty() ? nullptr : &opt_.sourceIps[i % opt_.sourceIps.size()],
                      step);
    if (c.fd < 0) return fail(c, step, errno);
    c.wantOut = true;
    if (!watch(ep_, EPOLL_CTL_ADD, c.fd, EPOLLOUT, i)) return fail(c, "epoll_ctl", errno);
}

void Load::setWantOut(Conn& c, bool on) {
    if (c.wantOut == on || c.st == St::dead) return;
    const auto token = static_cast<std::uint64_t>(&c - conns_.data());
    if (!watch(ep_, EPOLL_CTL_MOD, c.fd, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u), token)) return fail(c, "epoll_ctl", errno);
    c.wantOut = on;
}

void Load::onConnected(Conn& c) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return fail(c, "connect", err);
    c.wantOut = true;
    setWantOut(c, false);
    if (c.st == St::dead) return;
    if (!tlsCtx_) return startUpgrade(c);
    c.ssl = newTlsSession(tlsCtx_, c.fd, opt_.targets[c.node].host, opt_.verify);
    if (!c.ssl) return fail(c, "TLS session", EPROTO);
    c.st = St::tls;
    driveTls(c);
}

void Load::driveTls(Conn& c) {
    const int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
        setWantOut(c, false);
        if (c.st == St::dead) return;
        if (tlsInfo_.empty()) tlsInfo_ = tlsAgreed(c.ssl);
        return startUpgrade(c);
    }
    switch (SSL_get_error(c.ssl, r)) {
    case SSL_ERROR_WANT_READ: return setWantOut(c, false);
    case SSL_ERROR_WANT_WRITE: return setWantOut(c, true);
    default: {
        char why[256] = "TLS handshake";
        if (const unsigned long e = ERR_get_error()) ERR_error_string_n(e, why, sizeof why);
        ERR_clear_error();
        return fail(c, why, EPROTO);
    }
    }
}

// RFC 6455 §4.1: the opening handshake's request, with a fresh key.
void Load::startUpgrade(Conn& c) {
    c.mask = randomU64() | 1;
    const std::string key = newKey();
    c.accept = acceptFor(key);
    c.st = St::upgrading;
    c.out = upgradeRequest(opt_.targets[c.node], key, opt_.headers,
                           {opt_.proto == Proto::tongdao ? "Sec-WebSocket-Protocol: tongdao.chat.v1" : ""});
    c.outOff = 0;
    flush(c);
}

// RFC 6455 §4.1: status 101 and the right Sec-WebSocket-Accept. Returns false when it failed.
bool Load::onUpgrade(Conn& c) {
    const std::size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) {
        if (c.in.size() > 16384) fail(c, "handshake response too long", EPROTO);
        return false;
    }
    std::string head = c.in.substr(0, end + 2);
    if (head.compare(0, 13, "HTTP/1.1 101 ") != 0) {
        if (reports_ < 5) std::fprintf(stderr, "tongdao bench: upgrade refused: %.*s\n", static_cast<int>(std::min<std::size_t>(head.find('\r'), 200)), head.c_str());
        fail(c, "handshake status is not 101", EPROTO);
        return false;
    }
    for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const std::string name = "\r\nsec-websocket-accept:";
    const std::size_t at = head.find(name);
    std::string v;
    if (at != std::string::npos) {
        const std::size_t from = at + name.size(), to = head.find("\r\n", from);
        v = c.in.substr(from, to - from);
        while (!v.empty() && v.front() == ' ') v.erase(0, 1);
        while (!v.empty() && v.back() == ' ') v.pop_back();
    }
    if (v != c.accept) {
        fail(c, "bad Sec-WebSocket-Accept", EPROTO);
        return false;
    }
    c.in.erase(0, end + 4);
    std::string().swap(c.accept);
    c.st = St::setup;
    c.step = 0;
    if (opt_.proto == Proto::tongdao) {
        const std::string user = userName(c);
        // Valid for the whole run and an hour more: a connection whose token expires is closed.
        const std::string hello =
            opt_.tokenSecret.empty()
                ? "{\"op\":\"hello\",\"id\":1,\"v\":1,\"name\":\"" + user + "\"}"
                : "{\"op\":\"hello\",\"id\":1,\"v\":1,\"token\":\"" + hs256Token(opt_.tokenSecret, user, user, tokenSeconds_) + "\"}";
        sendText(c, hello);
    }
    // Socket.IO: the server speaks first (the Engine.IO open packet).
    return c.st != St::dead;
}

void Load::setupDone(Conn& c) {
    c.st = St::ready;
    --pending_;
    ++ready_;
    if (c.in.capacity() > 4096) c.in.shrink_to_fit();
    // --ramp-up: the traffic has started; a member set up now joins it (fanout: its slots are waiting).
    if (trafficStarted_ && opt_.mode == Mode::closed && c.role == Role::member)
        for (std::uint32_t w = 0; w < opt_.window && c.st == St::ready; ++w) sendChat(c, nowNs());
}

void Load::setupFailed(Conn& c, std::string_view m) {
    if (reports_ < 5) std::fprintf(stderr, "tongdao bench: set-up refused: %.*s\n", static_cast<int>(std::min<std::size_t>(m.size(), 300)), m.data());
    fail(c, "set-up refused", EPROTO);
}

// One masked client frame (RFC 6455 §5.2, §5.3), written at once if the socket takes it.
void Load::sendFrame(Conn& c, std::uint8_t opcode, std::string_view p) {
    if (c.st == St::dead) return;
    std::string& o = c.out;
    if (c.outOff > 0 && c.outOff == o.size()) {
        o.clear();
        c.outOff = 0;
    }
    const std::size_t n = p.size();
    o.push_back(static_cast<char>(0x80 | opcode));
    if (n < 126) {
        o.push_back(static_cast<char>(0x80 | n));
    } else if (n <= 0xffff) {
        o.push_back(static_cast<char>(0x80 | 126));
        o.push_back(static_cast<char>(n >> 8));
        o.push_back(static_cast<char>(n & 0xff));
    } else {
        o.push_back(static_cast<char>(0x80 | 127));
        for (int k = 7; k >= 0; --k) o.push_back(static_cast<char>((std::uint64_t{n} >> (8 * k)) & 0xff));
    }
    // xorshift64: a fresh masking key per frame, cheaply.
    c.mask ^= c.mask << 13;
    c.mask ^= c.mask >> 7;
    c.mask ^= c.mask << 17;
    std::array<std::uint8_t, 4> key{};
    std::memcpy(key.data(), &c.mask, 4);
    o.append(reinterpret_cast<const char*>(key.data()), 4);
    const std::size_t at = o.size();
    o.append(p);
    for (std::size_t i = 0; i < n; ++i) o[at + i] = static_cast<char>(static_cast<std::uint8_t>(o[at + i]) ^ key[i & 3]);
    c.lastTx = nowNs();
    flush(c);
}

void Load::flush(Conn& c) {
    if (c.st == St::tls) return;  // the handshake first: startUpgrade writes the request
    for (int turns = 0; c.st != St::dead && c.outOff < c.out.size() && turns < 1024; ++turns) {
        const std::size_t n = c.out.size() - c.outOff;
        if (c.ssl) {
            // A retried SSL_write passes the same bytes (the buffer may have moved and grown).
            const int w = SSL_write(c.ssl, c.out.data() + c.outOff, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
            if (w > 0) {
                c.outOff += static_cast<std::size_t>(w);
                continue;
            }
            switch (SSL_get_error(c.ssl, w)) {
            case SSL_ERROR_WANT_WRITE: return setWantOut(c, true);
            case SSL_ERROR_WANT_READ: return;  // readable comes next, and reads, then writes again
            default: ERR_clear_error(); return fail(c, "TLS write", EPROTO);
            }
        }
        const ssize_t w = send(c.fd, c.out.data() + c.outOff, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return setWantOut(c, true);
            if (errno == EINTR) continue;
            return fail(c, "write", errno);
        }
        c.outOff += static_cast<std::size_t>(w);
    }
    if (c.st == St::dead) return;
    if (c.outOff >= c.out.size()) {
        c.out.clear();
        c.outOff = 0;
        if (c.out.capacity() > 65536) c.out.shrink_to_fit();
        setWantOut(c, false);
    }
}

void Load::onEvent(std::size_t i, std::uint32_t ev) {
    Conn& c = conns_[i];
    if (c.st == St::dead || c.st == St::unused) return;
    if (c.st == St::connecting) return onConnected(c);
    if (c.st == St::tls) return driveTls(c);
    if (ev & EPOLLOUT) flush(c);
    // With TLS, a read may have waited for the socket to take a TLS message of its own.
    const std::uint32_t readable = EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR | (c.ssl ? EPOLLOUT : 0u);
    if (c.st != St::dead && (ev & readable)) onReadable(c);
}

// Bytes read (> 0), 0 when nothing is there yet, -1 when the connection failed.
long Load::readSome(Conn& c) {
    if (!c.ssl) {
        const ssize_t r = read(c.fd, rbuf_.data(), rbuf_.size());
        if (r > 0) return r;
        if (r == 0) {
            ++closes_;
            fail(c, "server closed the connection", ECONNRESET);
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        fail(c, "read", errno);
        return -1;
    }
    const int r = SSL_read(c.ssl, rbuf_.data(), static_cast<int>(rbuf_.size()));
    if (r > 0) return r;
    switch (SSL_get_error(c.ssl, r)) {
    case SSL_ERROR_WANT_READ: return 0;
    case SSL_ERROR_WANT_WRITE: setWantOut(c, true); return 0;  // a TLS message of its own wants out first
    case SSL_ERROR_ZERO_RETURN: ++closes_; fail(c, "server sent close_notify", ECONNRESET); return -1;
    default: ERR_clear_error(); ++closes_; fail(c, "TLS read", ECONNRESET); return -1;
    }
}

void Load::onReadable(Conn& c) {
    // One read per readiness event (level-triggered): a busy connection cannot starve the others.
    // TLS with read-ahead: OpenSSL may hold records it has read but not handed out, which epoll
    // cannot see; they are read now (bounded).
    for (int turns = 0; turns < 4096 && c.st != St::dead; ++turns) {
        const long r = readSome(c);
        if (r <= 0) return;
        onBytes(c, static_cast<std::size_t>(r));
        if (!c.ssl || c.st == St::dead || !SSL_has_pending(c.ssl)) return;
    }
}

void Load::onBytes(Conn& c, std::size_t n) {
    const std::uint64_t rx = nowNs();
    if (measuring(rx)) mRxBytes_ += n;
    if (c.st == St::upgrading) {
        c.in.append(reinterpret_cast<const char*>(rbuf_.data()), n);
        if (!onUpgrade(c)) return;
        if (c.in.empty()) return;
        // Frames that came with the response: parse them from a copy (c.in is the parser's buffer).
        std::string rest;
        rest.swap(c.in);
        const std::size_t used = parseFrames(c, reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size(), rx);
        if (c.st != St::dead) c.in.append(rest, used, std::string::npos);
        return;
    }
    if (c.in.empty()) {
        const std::size_t used = parseFrames(c, rbuf_.data(), n, rx);
        if (c.st != St::dead && used < n) c.in.assign(reinterpret_cast<const char*>(rbuf_.data()) + used, n - used);
    } else {
        c.in.append(reinterpret_cast<const char*>(rbuf_.data()), n);
        const std::size_t used = parseFrames(c, reinterpret_cast<const std::uint8_t*>(c.in.data()), c.in.size(), rx);
        if (c.st != St::dead) c.in.erase(0, used);
    }
}

// Parses whole frames from p[0..n); returns the bytes used (the rest is an incomplete frame).
std::size_t Load::parseFrames(Conn& c, const std::uint8_t* p, std::size_t n, std::uint64_t rx) {
    std::size_t off = 0;
    while (c.st != St::dead && n - off >= 2) {
        const std::uint8_t b0 = p[off], b1 = p[off + 1];
        if (b1 & 0x80) {
            fail(c, "masked server frame", EPROTO);  // RFC 6455 §5.1
            return off;
        }
        std::uint64_t len = b1 & 0x7f;
        std::size_t h = 2;
        if (len == 126) {
            if (n - off < 4) break;
            len = (std::uint64_t{p[off + 2]} << 8) | p[off + 3];
            h = 4;
        } else if (len == 127) {
            if (n - off < 10) break;
            len = 0;
            for (std::size_t k = 2; k < 10; ++k) len = (len << 8) | p[off + k];
            h = 10;
        }
        if (len > (std::uint64_t{1} << 26)) {
            fail(c, "frame over 64 MiB", EPROTO);
            return off;
        }
        if (n - off - h < len) break;
        const auto* pl = reinterpret_cast<const char*>(p + off + h);
        const auto plen = static_cast<std::size_t>(len);
        const bool fin = (b0 & 0x80) != 0;
        const std::uint8_t op = b0 & 0x0f;
        off += h + plen;
        if (op == 0x8) {
            std::uint64_t code = plen >= 2 ? (static_cast<std::uint64_t>(static_cast<std::uint8_t>(pl[0])) << 8) | static_cast<std::uint8_t>(pl[1]) : 0;
            ++closes_;
            if (reports_ < 5)
                std::fprintf(stderr, "tongdao bench: server closed connection %u: %llu %.*s\n", c.index,
                             static_cast<unsigned long long>(code), static_cast<int>(plen > 2 ? plen - 2 : 0), pl + 2);
            fail(c, "server sent close", ECONNRESET);
            return off;
        }
        if (op == 0x9) {  // ping: pong with the same payload
            sendFrame(c, 0xA, std::string_view(pl, plen));
            continue;
        }
        if (op == 0xA) continue;
        if (op == 0x0) {
            c.frag.append(pl, plen);
            if (fin) {
                std::string whole;
                whole.swap(c.frag);
                onMessage(c, whole, rx);
            }
            continue;
        }
        if (!fin) {
            c.frag.assign(pl, plen);
            c.fragOp = op;
            continue;
        }
        onMessage(c, std::string_view(pl, plen), rx);
    }
    return off;
}

void Load::onMessage(Conn& c, std::string_view m, std::uint64_t rx) {
    if (opt_.proto == Proto::tongdao) onTongdao(c, m, rx);
    else if (opt_.proto == Proto::socketio) onSocketIo(c, m, rx);
}

void Load::onTongdao(Conn& c, std::string_view m, std::uint64_t rx) {
    const std::string_view op = findStr(m, "\"op\":\"");
    if (op == "message") return onDelivery(c, m, rx);
    if (op == "reply") {
        std::uint64_t id = 0;
        findInt(m, "\"id\":", id);
        const bool ok = m.find("\"ok\":true") != std::string_view::npos;
        if (c.st == St::setup) {
            if (!ok) return setupFailed(c, m);
            if (c.step == 0 && id == 1) {
                if (c.role == Role::storm) return setupDone(c);  // joins later, all at once
                c.step = 1;
                const std::string join = "{\"op\":\"join\",\"id\":2,\"room\":\"" + roomName(c.room) + "\"}";
                return sendText(c, join);
            }
            if (c.step == 1 && id == 2) {
                findInt(m, "\"seq\":", c.baseSeq);
                return setupDone(c);
            }
            return;
        }
        if (id == 2 && c.role == Role::storm && c.joined && c.target == 0 && !c.caught) {
            // The storm's join reply: every seq after `since` up to this one follows.
            std::uint64_t seq = 0;
            if (!ok || !findInt(m, "\"seq\":", seq)) {
                setupFailed(c, m);
                return;
            }
            if (m.find("\"recovered\":true") == std::string_view::npos) ++notRecovered_;
            c.target = std::max<std::uint64_t>(seq, 1);
            if (seq <= c.baseSeq) {
                c.caught = true;
                ++caughtUp_;
                catchUp_.add(rx - stormStart_);
            }
            return;
        }
        if (id >= 10) return onAck(c, id, ok, m, rx);
        return;  // pings
    }
    if (op == "gap") ++gaps_;
    // presence, typing, read: not counted
}

void Load::onSocketIo(Conn& c, std::string_view m, std::uint64_t rx) {
    if (m.empty()) return;
    switch (m[0]) {
    case '0':  // Engine.IO open: connect to the main namespace
        if (c.st == St::setup && c.step == 0) {
            c.step = 1;
            sendText(c, "40");
        }
        return;
    case '2':  // Engine.IO ping
        sendText(c, "3");
        return;
    case '1':
        fail(c, "Engine.IO close", ECONNRESET);
        return;
    case '4':
        break;
    default:
        return;
    }
    if (m.size() < 2) return;
    const char t = m[1];
    if (t == '0') {  // namespace connected: say who we are, join the room (acked as 1)
        if (c.st == St::setup && c.step == 1) {
            c.step = 2;
            sendText(c, "42[\"hello\",{\"name\":\"" + userName(c) + "\"}]");
            sendText(c, "421[\"join\",{\"room\":\"" + roomName(c.room) + "\"}]");
        }
        return;
    }
    if (t == '2') {  // event
        if (m.compare(2, 11, "[\"message\",") == 0) onDelivery(c, m, rx);
        return;
    }
    if (t == '3') {  // ack: 43<id>[...]
        std::uint64_t id = 0;
        std::size_t i = 2;
        for (; i < m.size() && m[i] >= '0' && m[i] <= '9'; ++i) id = id * 10 + static_cast<std::uint64_t>(m[i] - '0');
        const bool ok = m.find("\"ok\":false") == std::string_view::npos;
        if (c.st == St::setup) {
            if (id != 1) return;
            if (!ok) return setupFailed(c, m);
            return setupDone(c);
        }
        if (id >= 10) onAck(c, id, ok, m, rx);
        return;
    }
    if (t == '4' || t == '1') {  // connect_error, disconnect
        if (c.st == St::setup) return setupFailed(c, m);
        fail(c, "Socket.IO disconnect", ECONNRESET);
    }
}

void Load::sendChat(Conn& c, std::uint64_t now) {
    if (c.st != St::ready) return;
    const std::uint64_t id = c.nextId++;
    const std::uint64_t seqNo = c.sends++;
    char body[256];
    int bl = std::snprintf(body, sizeof body, "{\"sent_ns\":%llu,\"src\":%u,\"pad\":\"", static_cast<unsigned long long>(now), c.index);
    const std::size_t head = static_cast<std::size_t>(bl);
    const std::size_t padLen = opt_.bodySize > head + 2 ? opt_.bodySize - head - 2 : 0;
    scratch_.clear();
    if (opt_.proto == Proto::tongdao) {
        char pre[256];
        const int pl = std::snprintf(pre, sizeof pre, "{\"op\":\"send\",\"id\":%llu,\"room\":\"%s\",\"cid\":\"%s-%llu\",\"body\":",
                                     static_cast<unsigned long long>(id), roomName(c.room).c_str(), userName(c).c_str(),
                                     static_cast<unsigned long long>(seqNo));
        scratch_.append(pre, static_cast<std::size_t>(pl));
        scratch_.append(body, head).append(pad_, 0, padLen).append("\"}}");
    } else {
        char pre[256];
        const int pl = std::snprintf(pre, sizeof pre, "42%llu[\"send\",{\"room\":\"%s\",\"cid\":\"%s-%llu\",\"body\":",
                                     static_cast<unsigned long long>(id), roomName(c.room).c_str(), userName(c).c_str(),
                                     static_cast<unsigned long long>(seqNo));
        scratch_.append(pre, static_cast<std::size_t>(pl));
        scratch_.append(body, head).append(pad_, 0, padLen).append("\"}}]");
    }
    c.ringId[id % kRing] = id;
    c.ringAt[id % kRing] = now;
    ++c.inflight;
    ++totalSends_;
    if (measuring(now)) {
        ++mSends_;
        if (c.room < roomMembers_.size()) windowOwed_ += roomMembers_[c.room];
    }
    sendText(c, scratch_);
}

void Load::onAck(Conn& c, std::uint64_t id, bool ok, std::string_view m, std::uint64_t rx) {
    if (c.inflight > 0) --c.inflight;
    std::uint64_t retryMs = 0;  // rate_limited: the send in its place waits this long
    if (!ok) {
        ++rejects_;
        findInt(m, "\"retryAfterMs\":", retryMs);
        retryMs = std::min<std::uint64_t>(retryMs, 60'000);
        std::string code(findStr(m, "\"code\":\""));
        if (rejectCodes_[code]++ == 0 && reports_++ < 10)
            std::fprintf(stderr, "tongdao bench: send refused: %.*s\n", static_cast<int>(std::min<std::size_t>(m.size(), 300)), m.data());
    } else {
        ++totalAcks_;
        if (measuring(rx)) {
            ++mAcks_;
            if (c.ringId[id % kRing] == id) ackLatency_.add(rx - c.ringAt[id % kRing]);
        }
    }
    if (c.role == Role::filler) {
        if (!ok) {
            // Refused (rate limit, overload): send another in its place.
            ++c.quota;
        }
        if (c.quota > 0) {
            if (retryMs > 0) return pause(c, rx + retryMs * 1'000'000);
            --c.quota;
            sendChat(c, rx);
        } else if (c.inflight == 0 && fillLeft_ > 0 && --fillLeft_ == 0) {
            fillEnd_ = rx;
        }
        return;
    }
    if (opt_.mode == Mode::closed && phase_ != Phase::done) {
        if (retryMs > 0) return pause(c, rx + retryMs * 1'000'000);
        sendChat(c, rx);
    }
}

// A refused send's replacement waits until `until` (the server's retryAfterMs).
void Load::pause(Conn& c, std::uint64_t until) {
    c.resumeAt = until;
    paused_.push_back(static_cast<std::uint32_t>(&c - conns_.data()));
}

// Sends the replacements whose wait is over.
void Load::resumeDue(std::uint64_t now) {
    for (std::size_t i = 0; i < paused_.size();) {
        Conn& c = conns_[paused_[i]];
        if (c.resumeAt > now && phase_ != Phase::done) {
            ++i;
            continue;
        }
        paused_[i] = paused_.back();
        paused_.pop_back();
        if (c.st != St::ready || phase_ == Phase::done) continue;
        if (c.role == Role::filler) {
            if (c.quota > 0) {
                --c.quota;
                sendChat(c, now);
            }
        } else if (opt_.mode == Mode::closed) {
            sendChat(c, now);
        }
    }
}

void Load::onDelivery(Conn& c, std::string_view m, std::uint64_t rx) {
    if (c.role == Role::storm) {
        if (!c.joined) return;
        ++stormDeliveries_;
        std::uint64_t seq = 0;
        if (!findInt(m, "\"seq\":", seq)) {
            ++orderErrors_;
            return;
        }
        if (seq != c.expect) {
            if (orderErrors_++ < 5)
                std::fprintf(stderr, "tongdao bench: client %u got seq %llu, expected %llu\n", c.index, static_cast<unsigned long long>(seq),
                             static_cast<unsigned long long>(c.expect));
        }
        c.expect = seq + 1;
        if (!c.caught && c.target > 0 && seq >= c.target) {
            c.caught = true;
            ++caughtUp_;
            catchUp_.add(rx - stormStart_);
        }
        return;
    }
    ++allDeliveries_;
    std::uint64_t sent = 0;
    const bool timed = findInt(m, "\"sent_ns\":", sent) && sent <= rx;
    if (timed) progress_.record(rx - sent);
    if (phase_ != Phase::measure && phase_ != Phase::drain) return;
    // Deliveries of the window's sends, counted until the drain ends (--drain).
    if (timed && sent >= measureStart_ && (measureEnd_ == 0 || sent < measureEnd_)) ++windowDelivered_;
    if (!measuring(rx)) return;
    ++mDeliveries_;
    std::uint64_t src = 0;
    const bool cross = opt_.targets.size() > 1 && findInt(m, "\"src\":", src) && src < conns_.size() && conns_[src].node != c.node;
    if (cross) ++mCross_;
    if (timed) {
        latency_.add(rx - sent);
        if (cross) crossLatency_.add(rx - sent);
    }
}

// Fan-out: every slot whose time has come, each one send by the next sender in the order.
void Load::tick(std::uint64_t now) {
    if (order_.empty() || phase_ == Phase::done) return;
    for (int k = 0; k < 100000; ++k) {
        const auto due = schedStart_ + static_cast<std::uint64_t>(static_cast<double>(schedSlot_) * slotNs_);
        if (due > now) return fds_->arm(due);
        Conn& c = conns_[order_[schedSlot_ % order_.size()]];
        ++schedSlot_;
        if (c.st != St::ready) continue;  // failed, or (--ramp-up) not set up yet
        const std::uint64_t t = nowNs();
        if (measuring(t)) sendLag_.add(t - due);
        sendChat(c, t);
        now = t;
    }
    fds_->arm(now + 1000);
}

// The members set up in each room: what a send of the window owes (--drain's check).
void Load::countMembers() {
    roomMembers_.assign(opt_.rooms, 0);
    for (const auto& c : conns_)
        if (c.st == St::ready && c.role == Role::member) ++roomMembers_[c.room];
}

void Load::startTraffic(std::uint64_t now) {
    trafficStarted_ = true;
    // --ramp-up: the traffic starts with the first connection, and the members not set up yet
    // have their slots in the schedule (skipped until they are).
    const bool everyone = opt_.rampUp > 0;
    countMembers();
    if (opt_.mode == Mode::fanout) {
        // Slot j goes to the j-th sender of a list that interleaves the rooms, so the sends of
        // each room are spread as evenly as the sends overall.
        std::vector<std::vector<std::uint32_t>> byRoom(opt_.rooms);
        std::size_t senders = 0;
        for (std::size_t i = 0; i < conns_.size(); ++i)
            if (everyone || conns_[i].st == St::ready) {
                byRoom[conns_[i].room].push_back(static_cast<std::uint32_t>(i));
                ++senders;
            }
        for (std::size_t k = 0; order_.size() < senders; ++k)
            for (auto& r : byRoom)
                if (k < r.size()) order_.push_back(r[k]);
        if (order_.empty()) return;
        slotNs_ = 1e9 / (opt_.rate * static_cast<double>(order_.size()));
        schedStart_ = now;
        schedSlot_ = 0;
        tick(now);
    } else if (opt_.mode == Mode::closed) {
        for (auto& c : conns_)
            for (std::uint32_t w = 0; w < opt_.window && c.st == St::ready; ++w) sendChat(c, nowNs());
    }
}

void Load::startFill() {
    fillStart_ = nowNs();
    fillLeft_ = 0;
    // Each room's quota of messages, split over its fillers.
    for (std::size_t i = fillersFrom_; i < fillersTo_; ++i) {
        Conn& c = conns_[i];
        if (c.st != St::ready) continue;
        const std::size_t k = (i - fillersFrom_) / opt_.rooms;  // this room's k-th filler
        const std::size_t share = opt_.behind / opt_.fillersPerRoom + (k < opt_.behind % opt_.fillersPerRoom ? 1 : 0);
        c.quota = static_cast<std::uint32_t>(share);
        if (c.quota == 0) continue;
        ++fillLeft_;
        for (std::uint32_t w = 0; w < 16 && c.quota > 0; ++w) {
            --c.quota;
            sendChat(c, nowNs());
        }
    }
    if (fillLeft_ == 0) fillEnd_ = nowNs();
}

void Load::startStorm(std::uint64_t now) {
    // Every room's seq before the fill (its fillers' join replies): the clients are that far behind.
    std::vector<std::uint64_t> base(opt_.rooms, ~std::uint64_t{0});
    for (std::size_t i = fillersFrom_; i < fillersTo_; ++i)
        if (conns_[i].st != St::unused) base[conns_[i].room] = std::min(base[conns_[i].room], conns_[i].baseSeq);
    stormStart_ = now;
    for (std::size_t i = clientsFrom_; i < clientsTo_; ++i) {
        Conn& c = conns_[i];
        if (c.st != St::ready) continue;
        c.baseSeq = base[c.room] == ~std::uint64_t{0} ? 0 : base[c.room];
        c.expect = c.baseSeq + 1;
        c.joined = true;
        const std::string join = "{\"op\":\"join\",\"id\":2,\"room\":\"" + roomName(c.room) + "\",\"since\":" + std::to_string(c.baseSeq) + "}";
        sendText(c, join);
    }
}

// Idle connections: tongdao closes a connection silent for 60 s; send a ping every 25 s.
void Load::heartbeat(std::uint64_t now) {
    if (opt_.proto != Proto::tongdao || now - lastBeat_ < 1'000'000'000ULL) return;
    lastBeat_ = now;
    for (auto& c : conns_)
        if (c.st == St::ready && now - c.lastTx > 25'000'000'000ULL) sendText(c, "{\"op\":\"ping\",\"id\":3}");
}

void Load::finish(std::uint64_t now) {
    progress_.finish();
    const bool measured = measureStart_ > 0;
    if (measured && measureEnd_ == 0) measureEnd_ = now;
    const double secs = measured ? static_cast<double>(measureEnd_ - measureStart_) / 1e9 : 0.0;
    const double cpu = measured ? (cpuEnd_ > 0 ? cpuEnd_ : cpuSeconds()) - cpuStart_ : 0.0;
    const char* proto = opt_.proto == Proto::tongdao ? "tongdao" : "socketio";
    const char* mode = opt_.mode == Mode::fanout ? "fanout" : opt_.mode == Mode::closed ? "closed" : opt_.mode == Mode::idle ? "idle" : "storm";
    const double per = secs > 0 ? 1.0 / secs : 0.0;
    if (opt_.report.json) {
        std::printf("{\"url\":\"%s\",\"tls\":\"%s\",\"proto\":\"%s\",\"mode\":\"%s\",\"connections\":%zu,\"ready\":%zu,\"rooms\":%zu,\"errors\":%llu,\"closes\":%llu,"
                    "\"rejects\":%llu,\"seconds\":%.3f,\"sends\":%llu,\"acks\":%llu,\"deliveries\":%llu,\"sends_per_sec\":%.1f,"
                    "\"acks_per_sec\":%.1f,\"deliveries_per_sec\":%.1f,\"rx_bytes\":%llu,\"client_cpu_seconds\":%.3f,"
                    "\"unacked\":%llu,\"servers\":%zu,\"cross_deliveries\":%llu,\"cross_deliveries_per_sec\":%.1f,"
                    "\"drain_seconds\":%.3f,\"window_owed\":%llu,\"window_delivered\":%llu,",
                    opt_.targets.front().url.c_str(), tlsInfo_.c_str(), proto, mode, conns_.size(), ready_, opt_.rooms, static_cast<unsigned long long>(errors_),
                    static_cast<unsigned long long>(closes_), static_cast<unsigned long long>(rejects_), secs,
                    static_cast<unsigned long long>(mSends_), static_cast<unsigned long long>(mAcks_),
                    static_cast<unsigned long long>(mDeliveries_), static_cast<double>(mSends_) * per,
                    static_cast<double>(mAcks_) * per, static_cast<double>(mDeliveries_) * per,
                    static_cast<unsigned long long>(mRxBytes_), cpu,
                    static_cast<unsigned long long>(totalSends_ - std::min(totalSends_, totalAcks_ + rejects_)), opt_.targets.size(),
                    static_cast<unsigned long long>(mCross_), static_cast<double>(mCross_) * per, opt_.drain,
                    static_cast<unsigned long long>(windowOwed_), static_cast<unsigned long long>(windowDelivered_));
        std::printf("\"reject_codes\":{");
        bool first = true;
        for (const auto& [code, n] : rejectCodes_) {
            std::printf("%s\"%s\":%llu", first ? "" : ",", code.c_str(), static_cast<unsigned long long>(n));
            first = false;
        }
        std::printf("},");
        if (opt_.mode == Mode::storm) {
            std::printf("\"storm_clients\":%zu,\"caught_up\":%zu,\"storm_seconds\":%.3f,\"storm_deliveries\":%llu,\"order_errors\":%llu,"
                        "\"gaps\":%llu,\"not_recovered\":%llu,\"fill_messages\":%zu,\"fill_seconds\":%.3f,",
                        clientsTo_ - clientsFrom_, caughtUp_, stormEnd_ > stormStart_ ? static_cast<double>(stormEnd_ - stormStart_) / 1e9 : 0.0,
                        static_cast<unsigned long long>(stormDeliveries_), static_cast<unsigned long long>(orderErrors_),
                        static_cast<unsigned long long>(gaps_), static_cast<unsigned long long>(notRecovered_),
                        opt_.behind * opt_.rooms, fillEnd_ > fillStart_ ? static_cast<double>(fillEnd_ - fillStart_) / 1e9 : 0.0);
            catchUp_.writeJson(stdout, "catch_up_us");
            std::printf(",");
        }
        latency_.writeJson(stdout, "latency_us");
        std::printf(",");
        crossLatency_.writeJson(stdout, "cross_latency_us");
        std::printf(",");
        ackLatency_.writeJson(stdout, "ack_latency_us");
        std::printf(",");
        sendLag_.writeJson(stdout, "send_lag_us");
        std::printf("}\n");
    } else {
        std::printf("%s (%s, %s%s%s): %zu connections ready of %zu, %zu rooms, errors %llu (closes %llu, refused sends %llu)\n",
                    opt_.targets.front().url.c_str(), proto, mode, tlsInfo_.empty() ? "" : ", ", tlsInfo_.c_str(), ready_,
                    conns_.size(), opt_.rooms, static_cast<unsigned long long>(errors_), static_cast<unsigned long long>(closes_),
                    static_cast<unsigned long long>(rejects_));
        if (measured && opt_.mode != Mode::storm)
            std::printf("window %.2f s: %.0f sends/s, %.0f acks/s, %.0f deliveries/s; load generator CPU %.0f %%\n", secs,
                        static_cast<double>(mSends_) * per, static_cast<double>(mAcks_) * per, static_cast<double>(mDeliveries_) * per,
                        secs > 0 ? 100 * cpu / secs : 0.0);
        latency_.writeLine(stdout, "latency", 1e6, "ms");
        crossLatency_.writeLine(stdout, "cross-server", 1e6, "ms");
        ackLatency_.writeLine(stdout, "ack latency", 1e6, "ms");
        if (opt_.drain > 0 && measured)
            std::printf("window sends: %llu deliveries owed, %llu delivered by the end of the %.1f s drain\n",
                        static_cast<unsigned long long>(windowOwed_), static_cast<unsigned long long>(windowDelivered_), opt_.drain);
        sendLag_.writeLine(stdout, "send lag", 1e6, "ms");
        if (opt_.mode == Mode::storm) {
            std::printf("storm: %zu of %zu clients caught up in %.3f s, %llu deliveries, order errors %llu, gaps %llu; fill %zu messages in %.2f s\n",
                        caughtUp_, clientsTo_ - clientsFrom_, static_cast<double>(stormEnd_ - stormStart_) / 1e9,
                        static_cast<unsigned long long>(stormDeliveries_), static_cast<unsigned long long>(orderErrors_),
                        static_cast<unsigned long long>(gaps_), opt_.behind * opt_.rooms, static_cast<double>(fillEnd_ - fillStart_) / 1e9);
            catchUp_.writeLine(stdout, "catch-up", 1e9, "s");
        }
    }
    std::fflush(stdout);
    phase_ = Phase::done;
}

int Load::run() {
    fds_ = std::make_unique<EventFds>(opt_.mode == Mode::idle || opt_.goOnStdin);
    ep_ = fds_->epoll();

    // Storm: fillers first (rooms x fillersPerRoom), then the clients. Otherwise only members.
    if (opt_.mode == Mode::storm) {
        fillersFrom_ = 0;
        fillersTo_ = opt_.rooms * opt_.fillersPerRoom;
        clientsFrom_ = fillersTo_;
        clientsTo_ = fillersTo_ + opt_.connections;
    } else {
        clientsFrom_ = 0;
        clientsTo_ = opt_.connections;
    }
    conns_.resize(clientsTo_);
    for (std::size_t i = 0; i < conns_.size(); ++i) {
        conns_[i].index = static_cast<std::uint32_t>(i < clientsFrom_ ? i : i - clientsFrom_);
        conns_[i].room = static_cast<std::uint32_t>((i < clientsFrom_ ? i : i - clientsFrom_) % opt_.rooms);
        // Member k of room r on server (k + r) % N: each room's members round-robin over the servers.
        const std::size_t k = (i < clientsFrom_ ? i : i - clientsFrom_) / opt_.rooms;
        conns_[i].node = static_cast<std::uint8_t>((k + conns_[i].room) % opt_.targets.size());
    }
    if (opt_.mode == Mode::storm) {
        phase_ = Phase::filling;
        openRange(fillersFrom_, fillersTo_, Role::filler);
    } else {
        openRange(clientsFrom_, clientsTo_, opt_.mode == Mode::storm ? Role::storm : Role::member);
    }
    bool opening = true, fillStarted = false, stdinClosed = false;
    const std::uint64_t runStart = nowNs();
    std::uint64_t openDeadline = runStart + secsNs(opt_.rampUp + opt_.connectTimeout), phaseEnd = openDeadline;
    if (opt_.rampUp > 0 && (opt_.mode == Mode::fanout || opt_.mode == Mode::closed)) startTraffic(runStart);
    std::array<epoll_event, 1024> events{};
    for (long turn = 0; turn < 2'000'000'000L && phase_ != Phase::done; ++turn) {
        std::uint64_t now = nowNs();
        // --ramp-up paces the members' connections evenly over its seconds.
        const std::size_t allowed =
            openFrom_ + rampAllowed(openTo_ - openFrom_, phase_ == Phase::connecting ? opt_.rampUp : 0, now - runStart);
        while (opening && pending_ < opt_.connectBatch && nextToOpen_ < std::min(openTo_, allowed)) openNext();
        const long long cap = !paused_.empty() ? 2 : opening && opt_.rampUp > 0 ? 10 : 100;
        const long long waitMs = std::clamp<long long>(phaseEnd > now ? static_cast<long long>((phaseEnd - now) / 1'000'000) + 1 : 0, 0, cap);
        const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), static_cast<int>(waitMs));
        for (int k = 0; k < n; ++k) {
            const std::uint64_t tok = events[static_cast<std::size_t>(k)].data.u64;
            if (tok == EventFds::kTimer) {
                fds_->consumeTimer();
                tick(nowNs());
            } else if (tok == EventFds::kSignal) {
                stop_ = true;
            } else if (tok == EventFds::kStdin) {
                char b[256];
                const ssize_t r = read(STDIN_FILENO, b, sizeof b);
                if (r <= 0) {
                    fds_->forgetStdin();
                    stdinClosed = true;  // while opening: the opening goes on, the hold then ends at once
                    if (phase_ == Phase::hold || phase_ == Phase::waitGo) stop_ = true;
                } else if (phase_ == Phase::waitGo) {
                    phaseEnd = 0;  // "go"
                }
            } else {
                onEvent(static_cast<std::size_t>(tok), events[static_cast<std::size_t>(k)].events);
            }
        }
        now = nowNs();
        if (!paused_.empty()) resumeDue(now);
        progress_.update(now, phaseName(phase_), ready_, openTo_ - openFrom_, allDeliveries_ + stormDeliveries_, "delivery", errors_);
        if (stop_) {
            if (phase_ != Phase::done) {
                if (opening) phaseLine(opt_.report, "open " + std::to_string(ready_) + " errors " + std::to_string(errors_));
                finish(now);
            }
            break;
        }
        if (opening) {
            const bool allTried = nextToOpen_ == openTo_ && pending_ == 0;
            if (!allTried && now < openDeadline) continue;
            for (std::size_t i = openFrom_; i < openTo_; ++i) {
                Conn& c = conns_[i];
                if (c.st == St::unused) ++errors_;
                if (c.st == St::connecting || c.st == St::tls || c.st == St::upgrading || c.st == St::setup)
                    fail(c, "not set up before --connect-timeout", ETIMEDOUT);
            }
            opening = false;
            if (phase_ == Phase::filling && !fillStarted) {
                fillStarted = true;
                startFill();
                phaseEnd = now + secsNs(opt_.stormTimeout);
                continue;
            }
            phaseLine(opt_.report, "open " + std::to_string(ready_) + " errors " + std::to_string(errors_));
            if (ready_ == 0) {
                finish(now);
                break;
            }
            if (opt_.mode == Mode::idle) {
                phase_ = Phase::hold;
                phaseEnd = stdinClosed ? now : now + secsNs(opt_.holdMax);
            } else if (opt_.mode == Mode::storm) {
                if (opt_.goOnStdin) {
                    phaseLine(opt_.report, "ready");
                    phase_ = Phase::waitGo;
                    phaseEnd = stdinClosed ? now : now + secsNs(opt_.holdMax);  // no go can come any more
                } else {
                    phase_ = Phase::waitGo;
                    phaseEnd = now;
                }
            } else {
                phase_ = Phase::warmup;
                phaseEnd = now + secsNs(opt_.warmup);
                if (!trafficStarted_) startTraffic(now);
            }
            continue;
        }
        switch (phase_) {
        case Phase::filling:
            if (fillLeft_ == 0 || now >= phaseEnd) {
                std::fprintf(stderr, "tongdao bench: filled %zu rooms with %zu messages each in %.2f s\n", opt_.rooms, opt_.behind,
                             static_cast<double>((fillEnd_ ? fillEnd_ : now) - fillStart_) / 1e9);
                if (fillLeft_ != 0) {
                    std::fprintf(stderr, "tongdao bench: the fill did not finish within --storm-timeout\n");
                    ++errors_;
                }
                openRange(clientsFrom_, clientsTo_, Role::storm);
                opening = true;
                openDeadline = now + secsNs(opt_.connectTimeout);
                phaseEnd = openDeadline;
            }
            break;
        case Phase::waitGo:
            if (now >= phaseEnd) {
                if (phaseEnd != 0 && opt_.goOnStdin) {  // --hold-max passed without a go
                    finish(now);
                    break;
                }
                phaseLine(opt_.report, "measuring");
                cpuStart_ = cpuSeconds();
                measureStart_ = nowNs();
                phase_ = Phase::storm;
                phaseEnd = measureStart_ + secsNs(opt_.stormTimeout);
                startStorm(measureStart_);
            }
            break;
        case Phase::storm: {
            std::size_t live = 0;
            for (std::size_t i = clientsFrom_; i < clientsTo_; ++i) live += conns_[i].st == St::ready ? 1u : 0u;
            if (caughtUp_ >= live || now >= phaseEnd) {
                stormEnd_ = now;
                measureEnd_ = now;
                finish(now);
            }
            break;
        }
        case Phase::warmup:
            if (now >= phaseEnd) {
                countMembers();  // every member is set up by now, --ramp-up or not
                phaseLine(opt_.report, "measuring");
                cpuStart_ = cpuSeconds();
                measureStart_ = nowNs();
                phase_ = Phase::measure;
                phaseEnd = measureStart_ + secsNs(opt_.duration);
            }
            break;
        case Phase::measure:
            if (now >= phaseEnd) {
                measureEnd_ = now;
                if (opt_.mode == Mode::fanout && opt_.drain > 0) {
                    cpuEnd_ = cpuSeconds();
                    phaseLine(opt_.report, "window end");
                    phase_ = Phase::drain;
                    phaseEnd = now + secsNs(opt_.drain);
                } else {
                    finish(now);
                }
            }
            break;
        case Phase::drain:
            if (now >= phaseEnd) finish(now);
            break;
        case Phase::hold:
            heartbeat(now);
            if (now >= phaseEnd) finish(now);
            break;
        default:
            break;
        }
        if (phase_ == Phase::hold || phase_ == Phase::waitGo) heartbeat(now);
    }
    if (phase_ != Phase::done) finish(nowNs());
    for (auto& c : conns_)
        if (c.fd >= 0) close(c.fd);
    return ready_ > 0 ? 0 : 1;
}

} // namespace

int runChat(ChatOptions options) {
    normalize(options);
    const std::size_t extra = options.mode == ChatMode::storm ? options.rooms * options.fillersPerRoom : 0;
    raiseFdLimit(options.connections + extra + 16);
    std::signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); // the send schedule's timer fires on time, not 50 us late
    return Load(std::move(options)).run();
}

} // namespace tongdao::bench
