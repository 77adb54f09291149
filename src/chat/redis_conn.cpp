#include "redis_conn.hpp"

#include "tongdao/log.hpp"
#include "tongdao/net/loop.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <asio/connect.hpp>
#include <asio/post.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <optional>
#include <stdexcept>

namespace tongdao::chat::redis {

namespace {

std::int64_t steadyMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/** The next reconnect delay: 100 ms doubling to 2 s. */
int nextBackoff(int current) { return current == 0 ? 100 : std::min(current * 2, 2000); }

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string hostPort(const std::string& host, std::uint16_t port) { return host + ":" + std::to_string(port); }

/** "host:port" into its parts; false if malformed. */
bool splitHostPort(std::string_view s, std::string& host, std::uint16_t& port) {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    auto h = s.substr(0, colon);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    unsigned p = 0;
    const auto ps = s.substr(colon + 1);
    const auto [end, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), p);
    if (ec != std::errc{} || end != ps.data() + ps.size() || p == 0 || p > 65535) return false;
    host = std::string(h);
    port = static_cast<std::uint16_t>(p);
    return true;
}

std::string percentDecode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
            unsigned v = 0;
            const auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
            if (ec == std::errc{} && end == s.data() + i + 3) {
                out += static_cast<char>(v);
                i += 2;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

/** The handshake every connection makes: AUTH, SELECT, CLIENT SETNAME. */
std::vector<std::vector<std::string>> handshakeCommands(const Endpoint& ep, const std::string& name, bool select) {
    std::vector<std::vector<std::string>> cmds;
    if (!ep.password.empty()) {
        if (ep.user.empty()) cmds.push_back({"AUTH", ep.password});
        else cmds.push_back({"AUTH", ep.user, ep.password});
    }
    if (select && ep.db != 0) cmds.push_back({"SELECT", std::to_string(ep.db)});
    cmds.push_back({"CLIENT", "SETNAME", name});
    return cmds;
}

std::string format(const std::vector<std::string_view>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (auto a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    char* cmd = nullptr;
    const int n = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()), argv.data(), lens.data());
    if (n < 0 || !cmd) throw std::bad_alloc();
    std::string out(cmd, static_cast<std::size_t>(n));
    redisFreeCommand(cmd);
    return out;
}

} // namespace

Endpoint parseUrl(std::string_view url) {
    Endpoint ep;
    std::string_view rest = url;
    if (startsWith(rest, "redis://")) {
        rest.remove_prefix(8);
    } else if (rest.find("://") != std::string_view::npos) {
        throw std::invalid_argument("only redis:// URLs are supported (TLS to Redis is not)");
    }
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
        const auto cred = rest.substr(0, at);
        rest.remove_prefix(at + 1);
        if (const auto colon = cred.find(':'); colon != std::string_view::npos) {
            ep.user = percentDecode(cred.substr(0, colon));
            ep.password = percentDecode(cred.substr(colon + 1));
        } else {
            ep.password = percentDecode(cred);
        }
    }
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
        const auto db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty()) {
            const auto [end, ec] = std::from_chars(db.data(), db.data() + db.size(), ep.db);
            if (ec != std::errc{} || end != db.data() + db.size() || ep.db < 0)
                throw std::invalid_argument("the database in a redis:// URL is a number: /0, /1, ...");
        }
    }
    if (rest.find(':') == std::string_view::npos) {
        ep.host = std::string(rest.empty() ? "127.0.0.1" : rest);
        if (ep.host.size() >= 2 && ep.host.front() == '[') ep.host = ep.host.substr(1, ep.host.size() - 2);
        return ep;
    }
    if (!splitHostPort(rest, ep.host, ep.port)) throw std::invalid_argument("expected host:port, got '" + std::string(rest) + "'");
    return ep;
}

Topology parseTopology(std::string_view url) {
    Topology t;
    constexpr std::string_view scheme = "redis-sentinel://";
    if (!startsWith(url, scheme)) {
        t.seeds.push_back(parseUrl(url));
        return t;
    }
    t.kind = Topology::Kind::sentinel;
    std::string_view rest = url.substr(scheme.size());
    const auto hash = rest.find('#');
    if (hash == std::string_view::npos || hash + 1 == rest.size())
        throw std::invalid_argument("a redis-sentinel:// URL names its master after '#': redis-sentinel://host:26379#mymaster");
    t.master = percentDecode(rest.substr(hash + 1));
    rest = rest.substr(0, hash);
    // The credentials and the database are the master's: parsed as a redis:// URL of it.
    const auto at = rest.rfind('@');
    const auto slash = rest.find('/', at == std::string_view::npos ? 0 : at);
    const auto hosts = rest.substr(at == std::string_view::npos ? 0 : at + 1,
                                   slash == std::string_view::npos ? std::string_view::npos
                                                                   : slash - (at == std::string_view::npos ? 0 : at + 1));
    std::string master = "redis://";
    if (at != std::string_view::npos) master.append(rest.substr(0, at + 1));
    master += "h:1";
    if (slash != std::string_view::npos) master.append(rest.substr(slash));
    t.credentials = parseUrl(master);
    t.credentials.host.clear();
    t.credentials.port = 0;
    std::vector<std::string_view> list;
    splitFields(hosts, ',', static_cast<std::size_t>(std::count(hosts.begin(), hosts.end(), ',')), list);
    for (const auto one : list) {
        if (one.empty()) throw std::invalid_argument("an empty Sentinel address in a redis-sentinel:// URL");
        Endpoint s;
        const bool bracketed = one.front() == '[';
        const auto close = one.find(']');
        const bool hasPort = bracketed ? close != std::string_view::npos && close + 1 < one.size() : one.find(':') != std::string_view::npos;
        if (hasPort) {
            if (!splitHostPort(one, s.host, s.port))
                throw std::invalid_argument("expected host:port of a Sentinel, got '" + std::string(one) + "'");
        } else {
            s.host = std::string(bracketed && close != std::string_view::npos ? one.substr(1, close - 1) : one);
            s.port = 26379;
        }
        t.seeds.push_back(std::move(s));
    }
    return t;
}

bool splitFields(std::string_view s, char sep, std::size_t n, std::vector<std::string_view>& out) {
    out.clear();
    for (std::size_t i = 0; i < n; ++i) {
        const auto at = s.find(sep);
        if (at == std::string_view::npos) return false;
        out.push_back(s.substr(0, at));
        s.remove_prefix(at + 1);
    }
    out.push_back(s);
    return true;
}

std::uint16_t keySlot(std::string_view key) noexcept {
    // The hash tag: between the first '{' and the next '}', when not empty.
    if (const auto open = key.find('{'); open != std::string_view::npos) {
        const auto close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
    }
    // CRC16/XMODEM (polynomial 0x1021), as Redis Cluster defines the slot.
    std::uint16_t crc = 0;
    for (const char ch : key) {
        const auto c = static_cast<unsigned char>(ch);
        crc ^= static_cast<std::uint16_t>(c << 8);
        for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
    }
    return crc & 16383;
}

bool isError(const redisReply* r) noexcept { return !r || r->type == REDIS_REPLY_ERROR; }

std::string_view text(const redisReply* r) noexcept {
    if (!r) return {};
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
        return {r->str, r->len};
    return {};
}

long long integer(const redisReply* r) noexcept {
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    long long v = 0;
    if (r->type == REDIS_REPLY_STRING) std::from_chars(r->str, r->str + r->len, v);
    return v;
}

std::size_t size(const redisReply* r) noexcept { return r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0; }

const redisReply* at(const redisReply* r, std::size_t i) noexcept { return i < size(r) ? r->element[i] : nullptr; }

namespace {
/**
 * A turn of the loop running on this thread, if one does: the callbacks of the replies read
 * in it then queue for the sockets what leaves at its end, one write per socket (or after the
 * write delay), as the events a loop reads itself do.
 */
std::optional<net::Loop::Turn> loopTurn() {
    net::Loop* loop = net::Loop::current();
    if (!loop) return std::nullopt;
    return std::optional<net::Loop::Turn>(std::in_place, *loop);
}
} // namespace

// --- the hiredis adapter ----------------------------------------------------------------------

struct RedisCommands::Adapter : std::enable_shared_from_this<Adapter> {
    Adapter(asio::io_context& io, int fd, redisAsyncContext* c) : sd(io, fd), ac(c) {}

    asio::posix::stream_descriptor sd;
    redisAsyncContext* ac; ///< null once hiredis cleaned up (the descriptor is hiredis' to close)
    bool reading = false, writing = false, waitRead = false, waitWrite = false;

    void armRead() {
        if (!ac || !reading || waitRead) return;
        waitRead = true;
        sd.async_wait(asio::posix::stream_descriptor::wait_read, [self = shared_from_this()](const asio::error_code& ec) {
            self->waitRead = false;
            if (ec || !self->ac || !self->reading) return;
            {
                const auto turn = loopTurn();
                redisAsyncHandleRead(self->ac); // may free the context: cleanup() runs inside
            }
            self->armRead();
        });
    }
    void armWrite() {
        if (!ac || !writing || waitWrite) return;
        waitWrite = true;
        sd.async_wait(asio::posix::stream_descriptor::wait_write, [self = shared_from_this()](const asio::error_code& ec) {
            self->waitWrite = false;
            if (ec || !self->ac || !self->writing) return;
            redisAsyncHandleWrite(self->ac);
            self->armWrite();
        });
    }
    void cleanup() {
        ac = nullptr;
        reading = writing = false;
        asio::error_code ec;
        sd.cancel(ec);
        (void)sd.release(); // hiredis closes the descriptor
    }

    static Adapter& of(void* p) { return *static_cast<Adapter*>(p); }
    static void addRead(void* p) { of(p).reading = true, of(p).armRead(); }
    static void delRead(void* p) { of(p).reading = false; }
    static void addWrite(void* p) { of(p).writing = true, of(p).armWrite(); }
    static void delWrite(void* p) { of(p).writing = false; }
    static void cleanupHook(void* p) { of(p).cleanup(); }
};

// --- command connections ------------------------------------------------------------------------

namespace {

RedisCommands* owner(const redisAsyncContext* ac) { return static_cast<RedisCommands*>(ac->data); }

struct Pending {
    Callback cb;
    bool user = true;  ///< false: a handshake command, answered inside
    bool held = false; ///< its reply waits for the WAIT sent after it
    bool wait = false; ///< that WAIT
};

/** Commands whose replies hold no chat data (the server's settings and slot map): used at
 *  once, not held for a WAIT, so that they work while replicas are away. */
bool aboutTheServer(std::string_view command) {
    constexpr std::array<std::string_view, 6> names{"INFO", "CONFIG", "CLUSTER", "ROLE", "PING", "ASKING"};
    for (auto n : names)
        if (command.size() == n.size() &&
            std::equal(n.begin(), n.end(), command.begin(), [](char a, char b) { return a == (b & ~0x20); }))
            return true;
    return false;
}

/** A deep copy of a reply, freed by freeReplyObject (hiredis frees its own after the callback). */
redisReply* copyReply(const redisReply* r) {
    auto* c = static_cast<redisReply*>(std::calloc(1, sizeof(redisReply)));
    if (!c) throw std::bad_alloc();
    c->type = r->type;
    c->integer = r->integer;
    if (r->str) {
        c->str = static_cast<char*>(std::malloc(r->len + 1));
        if (!c->str) throw std::bad_alloc();
        std::memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        c->element = static_cast<redisReply**>(std::calloc(r->elements, sizeof(redisReply*)));
        if (!c->element) throw std::bad_alloc();
        c->elements = r->elements;
        for (std::size_t i = 0; i < r->elements; ++i)
            if (r->element[i]) c->element[i] = copyReply(r->element[i]);
    }
    return c;
}

} // namespace

RedisCommands::RedisCommands(asio::io_context& io, Endpoint ep, std::string name)
    : io_(io), ep_(std::move(ep)), name_(std::move(name)), resolver_(io), retry_(io), watch_(io) {}

RedisCommands::~RedisCommands() { stop(); }

void RedisCommands::start() {
    if (running_) return;
    running_ = true;
    connect();
}

void RedisCommands::stop() {
    running_ = false;
    ready_ = false;
    resolver_.cancel();
    retry_.cancel();
    watch_.cancel();
    if (ac_) {
        auto* ac = ac_;
        ac_ = nullptr;
        ac->data = nullptr;
        redisAsyncFree(ac); // pending callbacks run with no reply, and go nowhere (running_ is false)
    }
}

void RedisCommands::setEndpoint(const Endpoint& ep) {
    if (ep.host == ep_.host && ep.port == ep_.port) return;
    ep_.host = ep.host;
    ep_.port = ep.port;
    backoffMs_ = 0;
    if (!running_) return;
    if (ac_) {
        ::shutdown(ac_->c.fd, SHUT_RDWR); // hiredis reads EOF, fails what is pending; we reconnect there
    } else if (!connecting_) {
        retry_.cancel();
        connect();
    }
}

void RedisCommands::connect() {
    // No address yet: setEndpoint starts it. Connected or on the way: a retry timer that had
    // fired as it was cancelled has nothing to do.
    if (!running_ || ac_ || connecting_ || ep_.host.empty()) return;
    connecting_ = true;
    resolver_.async_resolve(ep_.host, std::to_string(ep_.port),
                            [self = weak_from_this()](const asio::error_code& ec, asio::ip::tcp::resolver::results_type res) {
        auto me = self.lock();
        if (!me) return;
        me->connecting_ = false;
        if (!me->running_) return;
        if (ec || res.empty()) {
            log(LogLevel::warn, "redis %s: cannot resolve %s: %s", me->name_.c_str(), me->ep_.host.c_str(), ec.message().c_str());
            return me->retryLater();
        }
        const auto addr = res.begin()->endpoint().address().to_string();
        redisAsyncContext* ac = redisAsyncConnect(addr.c_str(), me->ep_.port);
        if (!ac || ac->err) {
            log(LogLevel::warn, "redis %s: connect: %s", me->name_.c_str(), ac ? ac->errstr : "out of memory");
            if (ac) redisAsyncFree(ac);
            return me->retryLater();
        }
        me->ac_ = ac;
        ac->data = me.get();
        me->adapter_ = std::make_shared<Adapter>(me->io_, ac->c.fd, ac);
        ac->ev.data = me->adapter_.get();
        ac->ev.addRead = Adapter::addRead;
        ac->ev.delRead = Adapter::delRead;
        ac->ev.addWrite = Adapter::addWrite;
        ac->ev.delWrite = Adapter::delWrite;
        ac->ev.cleanup = Adapter::cleanupHook;
        redisAsyncSetConnectCallback(ac, [](const redisAsyncContext* c, int status) {
            if (auto* o = owner(c)) o->connected(status);
        });
        redisAsyncSetDisconnectCallback(ac, [](const redisAsyncContext* c, int) {
            if (auto* o = owner(c)) o->disconnected();
        });
        me->handshake(); // queued now, written once connected
    });
}

void RedisCommands::connected(int status) {
    if (status != REDIS_OK) {
        // hiredis frees the context after this callback, without a disconnect callback.
        log(LogLevel::debug, "redis %s: cannot connect to %s", name_.c_str(), hostPort(ep_.host, ep_.port).c_str());
        ac_ = nullptr;
        inFlight_ = 0;
        sentAt_.clear();
        retryLater();
    }
}

void RedisCommands::handshake() {
    auto cmds = handshakeCommands(ep_, name_, true);
    if (requireMaster_) cmds.push_back({"ROLE"});
    auto left = std::make_shared<std::size_t>(cmds.size());
    for (const auto& c : cmds) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : c) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        auto* p = new Pending{[this, left, what = c[0]](const redisReply* r) {
            if (!r) return; // the connection went: it is made again
            if (isError(r)) {
                log(LogLevel::error, "redis %s: %s failed: %.*s", name_.c_str(), what.c_str(), static_cast<int>(text(r).size()),
                    text(r).data());
                if (ac_) ::shutdown(ac_->c.fd, SHUT_RDWR); // reconnects, and says it again
                return;
            }
            if (what == "ROLE" && text(at(r, 0)) != "master") return notMaster("its ROLE is not master");
            if (--*left > 0) return;
            ready_ = true;
            backoffMs_ = 0;
            log(LogLevel::info, "redis %s: connected to %s", name_.c_str(), hostPort(ep_.host, ep_.port).c_str());
            watchdog();
            if (onReady) onReady();
        }, false};
        if (redisAsyncCommandArgv(ac_, &RedisCommands::onReply, p, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
            REDIS_OK) {
            delete p;
            return;
        }
        ++inFlight_;
        sentAt_.push_back(steadyMs());
    }
}

void RedisCommands::notMaster(const char* why) {
    log(LogLevel::warn, "redis %s: %s is no master (%s): leaving it", name_.c_str(), hostPort(ep_.host, ep_.port).c_str(), why);
    if (ac_) ::shutdown(ac_->c.fd, SHUT_RDWR);
    if (onNotMaster) onNotMaster();
}

void RedisCommands::disconnected() {
    const bool was = ready_;
    ac_ = nullptr;
    ready_ = false;
    inFlight_ = 0;
    sentAt_.clear();
    watch_.cancel();
    release(false); // replies that waited for a WAIT that will not come
    if (running_) {
        log(LogLevel::warn, "redis %s: connection to %s lost", name_.c_str(), hostPort(ep_.host, ep_.port).c_str());
        if (was && onDown) onDown();
        retryLater();
    }
}

void RedisCommands::retryLater() {
    if (!running_) return;
    backoffMs_ = nextBackoff(backoffMs_);
    retry_.expires_after(std::chrono::milliseconds(backoffMs_));
    retry_.async_wait([self = weak_from_this()](const asio::error_code& ec) {
        if (auto me = self.lock(); me && !ec) me->connect();
    });
}

void RedisCommands::watchdog() {
    watch_.expires_after(std::chrono::seconds(1));
    watch_.async_wait([self = weak_from_this()](const asio::error_code& ec) {
        auto me = self.lock();
        if (!me || ec || !me->ac_) return;
        if (!me->sentAt_.empty() && steadyMs() - me->sentAt_.front() > timeoutMs) {
            log(LogLevel::warn, "redis %s: no reply for %d ms: dropping the connection", me->name_.c_str(), timeoutMs);
            ::shutdown(me->ac_->c.fd, SHUT_RDWR); // hiredis reads EOF, fails what is pending, we reconnect
        }
        me->watchdog();
    });
}

void RedisCommands::onReply(redisAsyncContext* ac, void* reply, void* priv) {
    std::unique_ptr<Pending> p(static_cast<Pending*>(priv));
    auto* self = owner(ac);
    if (!self || !self->running_) return; // stopping: nobody to tell
    if (self->inFlight_) --self->inFlight_;
    if (!self->sentAt_.empty()) self->sentAt_.pop_front();
    const auto* r = static_cast<const redisReply*>(reply);
    if (self->requireMaster_ && r && r->type == REDIS_REPLY_ERROR && startsWith(text(r), "READONLY"))
        self->notMaster("READONLY");
    if (p->wait) {
        const long long have = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        if (r && have < self->waitReplicas_) {
            const auto now = steadyMs();
            if (now - self->lastWaitWarn_ >= 5000) {
                self->lastWaitWarn_ = now;
                log(LogLevel::warn, "redis %s: %lld of %d replicas confirmed the writes within %d ms: they are not acked",
                    self->name_.c_str(), have, self->waitReplicas_, self->waitTimeoutMs_);
            }
        }
        return self->release(have >= self->waitReplicas_);
    }
    if (!r) self->release(false); // the connection went: earlier replies fail first, in order
    if (p->held && r) {
        self->held_.emplace_back(std::move(p->cb), std::unique_ptr<redisReply, void (*)(void*)>(copyReply(r), freeReplyObject));
        return;
    }
    p->cb(r);
}

void RedisCommands::queueWait() {
    if (waitQueued_) return;
    waitQueued_ = true;
    // After the handler that sent the command: one WAIT for all that this turn sends.
    asio::post(io_, [self = weak_from_this()] {
        auto me = self.lock();
        if (!me) return;
        me->waitQueued_ = false;
        if (!me->ac_ || !me->running_) return; // the connection went: disconnected() failed them
        const auto n = std::to_string(me->waitReplicas_), ms = std::to_string(me->waitTimeoutMs_);
        const char* argv[] = {"WAIT", n.c_str(), ms.c_str()};
        const std::size_t lens[] = {4, n.size(), ms.size()};
        auto* p = new Pending{[](const redisReply*) {}};
        p->wait = true;
        if (redisAsyncCommandArgv(me->ac_, &RedisCommands::onReply, p, 3, argv, lens) != REDIS_OK) {
            delete p;
            return me->release(false);
        }
        ++me->inFlight_;
        me->sentAt_.push_back(steadyMs());
    });
}

void RedisCommands::release(bool replicated) {
    if (held_.empty()) return;
    auto held = std::move(held_);
    held_.clear();
    for (auto& [cb, r] : held) cb(replicated ? r.get() : nullptr);
}

void RedisCommands::command(const std::vector<std::string_view>& args, Callback cb) {
    if (!ready_ || !ac_ || inFlight_ >= maxInFlight) return cb(nullptr);
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (auto a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    const bool held = waitReplicas_ > 0 && !aboutTheServer(args.empty() ? std::string_view() : args[0]);
    auto* p = new Pending{std::move(cb)};
    p->held = held;
    if (redisAsyncCommandArgv(ac_, &RedisCommands::onReply, p, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
        auto failed = std::move(p->cb);
        delete p;
        return failed(nullptr);
    }
    ++inFlight_;
    sentAt_.push_back(steadyMs());
    if (held) queueWait();
}

// --- the subscriber ---------------------------------------------------------------------------

RedisSubscriber::RedisSubscriber(asio::io_context& io, Endpoint ep, std::string name, bool sharded)
    : io_(io), ep_(std::move(ep)), name_(std::move(name)), sharded_(sharded), resolver_(io), socket_(io), retry_(io),
      in_(64 * 1024) {}

RedisSubscriber::~RedisSubscriber() {
    stop();
    if (reader_) redisReaderFree(reader_);
}

void RedisSubscriber::start() {
    if (running_) return;
    running_ = true;
    connect();
}

void RedisSubscriber::stop() {
    running_ = false;
    retrying_ = false;
    retry_.cancel();
    drop();
}

void RedisSubscriber::setEndpoint(const Endpoint& ep, bool now) {
    if (ep.host == ep_.host && ep.port == ep_.port) return;
    ep_.host = ep.host;
    ep_.port = ep.port;
    if (now && retrying_) {
        retrying_ = false;
        retry_.cancel();
        backoffMs_ = 0;
        return connect();
    }
    reconnect();
}

void RedisSubscriber::reconnect() {
    if (!running_ || retrying_) return; // a retry that waits goes to the current address
    const bool was = ready_;
    drop();
    backoffMs_ = 0;
    if (was && onDown) onDown();
    connect();
}

void RedisSubscriber::connect() {
    // No address yet: setEndpoint starts it. Connected or on the way: a retry timer that had
    // fired as it was cancelled has nothing to do.
    if (!running_ || connecting_ || ready_ || ep_.host.empty()) return;
    connecting_ = true;
    const auto gen = ++gen_;
    resolver_.async_resolve(ep_.host, std::to_string(ep_.port),
                            [self = weak_from_this(), gen](const asio::error_code& ec, asio::ip::tcp::resolver::results_type res) {
        auto me = self.lock();
        if (!me || gen != me->gen_) return;
        if (ec) return me->fail("cannot resolve the host");
        asio::async_connect(me->socket_, res, [self, gen](const asio::error_code& ec2, const asio::ip::tcp::endpoint&) {
            auto me2 = self.lock();
            if (!me2 || gen != me2->gen_) return;
            if (ec2) return me2->fail(nullptr);
            me2->connecting_ = false;
            me2->socket_.set_option(asio::ip::tcp::no_delay(true));
            if (me2->reader_) redisReaderFree(me2->reader_);
            me2->reader_ = redisReaderCreate();
            me2->handshakeReplies_ = 0;
            me2->unsubscribing_.clear(); // a new connection: nothing of the old one is answered
            for (const auto& c : handshakeCommands(me2->ep_, me2->name_, false)) {
                std::vector<std::string_view> v(c.begin(), c.end());
                me2->send(v);
                ++me2->handshakeReplies_;
            }
            me2->ready_ = true;
            me2->backoffMs_ = 0;
            for (const auto& ch : me2->channels_) me2->send({me2->sharded_ ? "SSUBSCRIBE" : "SUBSCRIBE", ch});
            me2->flush(); // the handshake, also with no channel yet
            me2->readSome();
        });
    });
}

void RedisSubscriber::drop() {
    ready_ = false;
    connecting_ = false;
    ++gen_;
    resolver_.cancel();
    asio::error_code ec;
    socket_.close(ec);
    out_.clear();
    writing_.clear();
}

void RedisSubscriber::fail(const char* why) {
    const bool was = ready_;
    drop();
    if (!running_) return;
    if (why) log(LogLevel::warn, "redis %s: %s", name_.c_str(), why);
    if (was && onDown) onDown();
    retryLater();
    if (onFailed) onFailed();
}

void RedisSubscriber::retryLater() {
    backoffMs_ = nextBackoff(backoffMs_);
    retrying_ = true;
    retry_.expires_after(std::chrono::milliseconds(backoffMs_));
    retry_.async_wait([self = weak_from_this()](const asio::error_code& ec) {
        auto me = self.lock();
        if (!me || ec) return;
        me->retrying_ = false;
        me->connect();
    });
}

void RedisSubscriber::readSome() {
    socket_.async_read_some(asio::buffer(in_), [self = weak_from_this(), gen = gen_](const asio::error_code& ec, std::size_t n) {
        auto me = self.lock();
        if (!me || gen != me->gen_) return;
        if (ec) return me->fail("subscriber connection lost");
        if (redisReaderFeed(me->reader_, me->in_.data(), n) != REDIS_OK) return me->fail("bad input from the server");
        const auto turn = loopTurn();
        for (;;) {
            void* reply = nullptr;
            if (redisReaderGetReply(me->reader_, &reply) != REDIS_OK) return me->fail("bad input from the server");
            if (!reply) break;
            me->handle(static_cast<const redisReply*>(reply));
            freeReplyObject(reply);
            if (gen != me->gen_) return; // a callback dropped the connection
        }
        if (me->reader_->len - me->reader_->pos > maxInput) return me->fail("a reply beyond 64 MiB");
        me->readSome();
    });
}

void RedisSubscriber::handle(const redisReply* r) {
    if (handshakeReplies_ > 0) {
        --handshakeReplies_;
        if (isError(r)) {
            log(LogLevel::error, "redis %s: handshake: %.*s", name_.c_str(), static_cast<int>(text(r).size()), text(r).data());
            fail(nullptr);
        }
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        // A MOVED for an SSUBSCRIBE sent before the slot map was current: the router replaces it.
        log(LogLevel::warn, "redis %s: %.*s", name_.c_str(), static_cast<int>(r->len), r->str);
        return;
    }
    if (size(r) < 2) return;
    const auto kind = text(at(r, 0));
    const std::string channel(text(at(r, 1)));
    if (kind == "smessage" || kind == "message") {
        if (onMessage && size(r) >= 3) onMessage(channel, text(at(r, 2)));
    } else if (kind == "ssubscribe" || kind == "subscribe") {
        if (channels_.contains(channel) && onSubscribed) onSubscribed(channel);
    } else if (kind == "sunsubscribe" || kind == "unsubscribe") {
        if (const auto u = unsubscribing_.find(channel); u != unsubscribing_.end()) {
            if (--u->second == 0) unsubscribing_.erase(u); // the answer to our own
            return;
        }
        // Not asked for while we still want it: the slot moved to another node.
        if (channels_.erase(channel) && onDropped) onDropped(channel);
    }
}

void RedisSubscriber::send(const std::vector<std::string_view>& args) {
    out_ += format(args);
    flush();
}

void RedisSubscriber::flush() {
    if (!writing_.empty() || out_.empty() || !ready_) return;
    writing_.swap(out_);
    asio::async_write(socket_, asio::buffer(writing_), [self = weak_from_this(), gen = gen_](const asio::error_code& ec, std::size_t) {
        auto me = self.lock();
        if (!me || gen != me->gen_) return;
        if (ec) return me->fail("subscriber connection lost");
        me->writing_.clear();
        me->flush();
    });
}

void RedisSubscriber::subscribe(const std::string& channel) {
    if (!channels_.insert(channel).second) return;
    if (ready_) send({sharded_ ? "SSUBSCRIBE" : "SUBSCRIBE", channel});
}

void RedisSubscriber::unsubscribe(const std::string& channel) {
    if (!channels_.erase(channel)) return;
    if (!ready_) return;
    ++unsubscribing_[channel];
    send({sharded_ ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", channel});
}

// --- Sentinel -----------------------------------------------------------------------------------

SentinelWatch::SentinelWatch(asio::io_context& io, std::vector<Endpoint> sentinels, std::string master, std::string name)
    : sentinels_(std::move(sentinels)), master_(std::move(master)) {
    if (sentinels_.empty()) throw std::invalid_argument("no Sentinel address");
    cmd_ = std::make_shared<RedisCommands>(io, sentinels_.front(), name + ":cmd");
    cmd_->onReady = [this] { ask(); }; // at most once a second, also while Sentinels come and go
    sub_ = std::make_shared<RedisSubscriber>(io, sentinels_.front(), name + ":sub", false);
    sub_->subscribe("+switch-master");
    sub_->onMessage = [this](std::string_view, std::string_view payload) {
        // "<name> <old ip> <old port> <new ip> <new port>"
        std::vector<std::string_view> f;
        unsigned port = 0;
        if (!splitFields(payload, ' ', 4, f) || f[0] != master_) return;
        const auto [end, ec] = std::from_chars(f[4].data(), f[4].data() + f[4].size(), port);
        if (ec != std::errc{} || end != f[4].data() + f[4].size() || port == 0 || port > 65535) return;
        log(LogLevel::warn, "redis sentinel: master '%s' moved from %.*s:%.*s to %.*s:%u", master_.c_str(),
            static_cast<int>(f[1].size()), f[1].data(), static_cast<int>(f[2].size()), f[2].data(),
            static_cast<int>(f[3].size()), f[3].data(), port);
        if (onMaster) onMaster(std::string(f[3]), static_cast<std::uint16_t>(port));
    };
    sub_->onFailed = [this] { next(false); }; // that Sentinel is away: the retries go to the next
}

SentinelWatch::~SentinelWatch() { stop(); }

void SentinelWatch::start() {
    cmd_->start();
    sub_->start();
}

void SentinelWatch::stop() {
    cmd_->stop();
    sub_->stop();
}

void SentinelWatch::next(bool now) {
    at_ = (at_ + 1) % sentinels_.size();
    cmd_->setEndpoint(sentinels_[at_]);
    sub_->setEndpoint(sentinels_[at_], now);
}

void SentinelWatch::refresh() { ask(); }

void SentinelWatch::ask() {
    const auto now = steadyMs();
    if (now - lastAsk_ < 1000) return;
    lastAsk_ = now;
    cmd_->command({"SENTINEL", "get-master-addr-by-name", master_}, [this](const redisReply* r) {
        const auto& where = cmd_->endpoint();
        if (!r) return; // not connected: the connection's retries, or the subscriber's failure, move on
        if (size(r) < 2) {
            log(LogLevel::error, "redis sentinel %s knows no master '%s'%s%.*s", hostPort(where.host, where.port).c_str(),
                master_.c_str(), isError(r) ? ": " : "", static_cast<int>(text(r).size()), text(r).data());
            return next();
        }
        const auto port = integer(at(r, 1));
        log(LogLevel::debug, "redis sentinel %s: master '%s' at %.*s:%lld", hostPort(where.host, where.port).c_str(),
            master_.c_str(), static_cast<int>(text(at(r, 0)).size()), text(at(r, 0)).data(), port);
        if (port > 0 && port < 65536 && onMaster) onMaster(std::string(text(at(r, 0))), static_cast<std::uint16_t>(port));
    });
}

// --- the router ---------------------------------------------------------------------------------

RedisRouter::RedisRouter(asio::io_context& io, Topology topology, std::string name)
    : io_(io), topology_(std::move(topology)), cluster_(topology_.kind == Topology::Kind::cluster), name_(std::move(name)),
      refresh_(io) {
    if (topology_.seeds.empty()) throw std::invalid_argument("no Redis address");
    if (topology_.kind == Topology::Kind::sentinel)
        sentinel_ = std::make_unique<SentinelWatch>(io_, topology_.seeds, topology_.master, name_ + ":sentinel");
}

RedisRouter::~RedisRouter() { stop(); }

RedisRouter::Node& RedisRouter::node(const std::string& hp) {
    auto& slot = nodes_[hp];
    if (!slot) {
        slot = std::make_unique<Node>();
        // Credentials as the seeds have them; behind Sentinel, no address until it names one.
        Endpoint ep = sentinel_ ? topology_.credentials : topology_.seeds.front();
        if (!hp.empty() && !splitHostPort(hp, ep.host, ep.port)) throw std::invalid_argument("bad node address " + hp);
        slot->ep = ep;
        slot->cmd = std::make_shared<RedisCommands>(io_, ep, name_ + ":cmd");
        slot->cmd->waitFor(topology_.waitReplicas, topology_.waitTimeoutMs);
        if (sentinel_) {
            slot->cmd->requireMaster(true);
            slot->cmd->onNotMaster = [this] { sentinel_->refresh(); };
        }
        slot->cmd->onReady = [this] {
            if (cluster_ && slots_.empty()) refreshSlots();
            if (onReady) onReady();
        };
        slot->cmd->onDown = [this] {
            if (cluster_) refreshSlots(); // a failover may have moved its slots
        };
        if (running_) slot->cmd->start();
    }
    return *slot;
}

void RedisRouter::start() {
    if (running_) return;
    running_ = true;
    if (sentinel_) node("").cmd->start();
    else
        for (const auto& s : topology_.seeds) node(hostPort(s.host, s.port)).cmd->start();
    if (!cluster_) {
        Node& n = *nodes_.begin()->second;
        n.sub = std::make_shared<RedisSubscriber>(io_, n.ep, name_ + ":sub");
        n.sub->onMessage = [this](std::string_view c, std::string_view p) {
            if (onMessage) onMessage(c, p);
        };
        n.sub->onSubscribed = [this](const std::string& c) {
            if (onSubscribed) onSubscribed(c);
        };
        n.sub->start();
        if (!sentinel_) return;
        sentinel_->onMaster = [this](const std::string& host, std::uint16_t port) {
            Node& m = *nodes_.begin()->second;
            if (m.ep.host == host && m.ep.port == port) return;
            log(LogLevel::info, "redis %s: the master '%s' is at %s", name_.c_str(), topology_.master.c_str(),
                hostPort(host, port).c_str());
            m.ep.host = host;
            m.ep.port = port;
            m.cmd->setEndpoint(m.ep);
            m.sub->setEndpoint(m.ep);
        };
        sentinel_->start();
    }
    scheduleRefresh();
}

void RedisRouter::scheduleRefresh() {
    // Cluster: the slot map is reloaded every few seconds (a failover or a resharding moves
    // slots). Sentinel: while the master does not answer, the Sentinels are asked each second
    // (a +switch-master may have been published while the watch was reconnecting).
    refresh_.expires_after(std::chrono::seconds(cluster_ ? 5 : 1));
    refresh_.async_wait([this](const asio::error_code& ec) {
        if (ec || !running_) return;
        if (cluster_) refreshSlots();
        else if (!nodes_.begin()->second->cmd->ready()) sentinel_->refresh();
        scheduleRefresh();
    });
}

void RedisRouter::stop() {
    if (!running_) return;
    running_ = false;
    refresh_.cancel();
    if (sentinel_) sentinel_->stop();
    for (auto& [hp, n] : nodes_) {
        n->cmd->stop();
        if (n->sub) n->sub->stop();
    }
}

RedisRouter::Node* RedisRouter::forSlot(std::uint16_t slot) {
    if (!cluster_) return nodes_.begin()->second.get();
    return slots_.empty() ? nullptr : slots_[slot];
}

void RedisRouter::refreshSlots() {
    if (!cluster_ || refreshing_) return;
    const auto now = steadyMs();
    if (now - lastRefresh_ < 500 && !slots_.empty()) return;
    Node* asker = nullptr;
    for (auto& [hp, n] : nodes_)
        if (n->cmd->ready()) {
            asker = n.get();
            break;
        }
    if (!asker) return;
    refreshing_ = true;
    lastRefresh_ = now;
    asker->cmd->command({"CLUSTER", "SLOTS"}, [this, askHost = asker->ep.host](const redisReply* r) {
        refreshing_ = false;
        if (!running_ || isError(r) || size(r) == 0) return;
        std::vector<Node*> map(16384, nullptr);
        for (std::size_t i = 0; i < size(r); ++i) {
            const auto* range = at(r, i);
            const auto* master = at(range, 2);
            if (size(master) < 2) continue;
            std::string host(text(at(master, 0)));
            if (host.empty() || host == "?") host = askHost; // an unknown endpoint: the one we asked
            const auto port = static_cast<std::uint16_t>(integer(at(master, 1)));
            Node& n = node(hostPort(host, port));
            if (!n.sub) {
                n.sub = std::make_shared<RedisSubscriber>(io_, n.ep, name_ + ":sub");
                n.sub->onMessage = [this](std::string_view c, std::string_view p) {
                    if (onMessage) onMessage(c, p);
                };
                n.sub->onSubscribed = [this](const std::string& c) {
                    if (onSubscribed) onSubscribed(c);
                };
                n.sub->onDropped = [this](const std::string& c) {
                    lastRefresh_ = 0;
                    refreshSlots();
                    placeChannel(c);
                };
                n.sub->start();
            }
            const auto lo = integer(at(range, 0)), hi = integer(at(range, 1));
            for (long long s = lo; s <= hi && s < 16384; ++s) map[static_cast<std::size_t>(s)] = &n;
        }
        slots_ = std::move(map);
        // Channels follow their slots.
        for (auto& [ch, where] : channelNode_) {
            Node* owner = slots_[keySlot(ch)];
            if (owner == where) continue;
            if (where && where->sub) where->sub->unsubscribe(ch);
            where = owner;
            if (owner && owner->sub) owner->sub->subscribe(ch);
        }
    });
}

void RedisRouter::command(std::string_view slotKey, std::vector<std::string> args, Callback cb) {
    command(slotKey, std::make_shared<std::vector<std::string>>(std::move(args)), std::move(cb));
}

void RedisRouter::command(std::string_view slotKey, std::shared_ptr<std::vector<std::string>> args, Callback cb) {
    const auto slot = keySlot(slotKey);
    Node* n = forSlot(slot);
    if (!n) {
        refreshSlots();
        return cb(nullptr);
    }
    send(n, slot, std::move(args), std::move(cb), 0, false);
}

void RedisRouter::send(Node* n, std::uint16_t slot, std::shared_ptr<std::vector<std::string>> args, Callback cb, int hops,
                       bool asking) {
    if (asking) n->cmd->command({"ASKING"}, [](const redisReply*) {});
    std::vector<std::string_view> view(args->begin(), args->end());
    n->cmd->command(view, [this, slot, args, cb = std::move(cb), hops](const redisReply* r) mutable {
        if (r && r->type == REDIS_REPLY_ERROR && hops < 2) {
            const auto t = text(r);
            const bool moved = startsWith(t, "MOVED "), ask = startsWith(t, "ASK ");
            if (moved || ask) {
                // "MOVED <slot> <host>:<port>": go there, and learn the new map meanwhile.
                const auto sp = t.rfind(' ');
                std::string host;
                std::uint16_t port = 0;
                if (sp != std::string_view::npos && splitHostPort(t.substr(sp + 1), host, port)) {
                    Node& target = node(hostPort(host, port));
                    if (moved) {
                        if (!slots_.empty()) slots_[slot] = &target;
                        refreshSlots();
                    }
                    return send(&target, slot, std::move(args), std::move(cb), hops + 1, ask);
                }
            }
        }
        cb(r);
    });
}

void RedisRouter::placeChannel(const std::string& channel) {
    Node* owner = forSlot(keySlot(channel));
    auto& where = channelNode_[channel];
    if (where == owner && owner && owner->sub && owner->sub->has(channel)) return;
    if (where && where != owner && where->sub) where->sub->unsubscribe(channel);
    where = owner;
    if (owner && owner->sub) owner->sub->subscribe(channel);
}

void RedisRouter::subscribe(const std::string& channel) { placeChannel(channel); }

void RedisRouter::unsubscribe(const std::string& channel) {
    const auto it = channelNode_.find(channel);
    if (it == channelNode_.end()) return;
    if (it->second && it->second->sub) it->second->sub->unsubscribe(channel);
    channelNode_.erase(it);
}

} // namespace tongdao::chat::redis
