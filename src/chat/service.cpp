#include "service_impl.hpp"

#include "redis_store.hpp"
#include "sqlite_store.hpp"
#include "tongdao/log.hpp"

#include <chrono>
#include <cstdio>

namespace tongdao::chat {

// --- the user registry --------------------------------------------------------------------

bool UserRegistry::connect(const std::string& user) {
    auto& p = part(user);
    std::lock_guard lk(p.mu);
    const bool first = p.users[user].connections++ == 0;
    if (first) online_.fetch_add(1, std::memory_order_relaxed);
    return first;
}

void UserRegistry::disconnect(const std::string& user) {
    auto& p = part(user);
    std::lock_guard lk(p.mu);
    const auto it = p.users.find(user);
    if (it == p.users.end() || it->second.connections == 0) return;
    if (--it->second.connections == 0) {
        online_.fetch_sub(1, std::memory_order_relaxed);
        // The bucket goes with the last connection: a reconnect gets a full one, which is
        // what a burst limit allows anyway.
        p.users.erase(it);
    }
}

std::uint64_t UserRegistry::takeSend(const std::string& user, double rate, double burst) {
    if (rate <= 0) return 0;
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch()).count();
    auto& p = part(user);
    std::lock_guard lk(p.mu);
    auto& e = p.users[user];
    if (e.tokens < 0) {
        e.tokens = burst;
    } else {
        e.tokens = std::min(burst, e.tokens + static_cast<double>(now - e.lastNs) * 1e-9 * rate);
    }
    e.lastNs = now;
    if (e.tokens >= 1) {
        e.tokens -= 1;
        return 0;
    }
    return static_cast<std::uint64_t>((1 - e.tokens) / rate * 1000) + 1;
}

// --- the service ----------------------------------------------------------------------------

Service::Impl::Impl(Server& s, ChatOptions o) : server(s), options(std::move(o)) {
    if (!options.redis.empty() || !options.redisCluster.empty()) {
        RedisOptions ro;
        if (!options.redis.empty() && !options.redisCluster.empty())
            throw std::runtime_error("give a Redis server or a Redis Cluster, not both");
        if (!options.redis.empty()) {
            ro.topology = redis::parseTopology(options.redis);
        } else {
            ro.topology.kind = redis::Topology::Kind::cluster;
            for (const auto& seed : options.redisCluster) ro.topology.seeds.push_back(redis::parseUrl(seed));
        }
        ro.topology.waitReplicas = static_cast<int>(options.redisWaitReplicas);
        ro.node = options.nodeId;
        ro.retentionMessages = options.retentionMessages;
        ro.retentionDays = options.retentionDays;
        // The store runs on the first loop; the loops exist once the server listens.
        ro.loop = [&s]() -> net::Loop& { return s.loop(0); };
        if (options.commitDelay > 0)
            throw std::runtime_error("--commit-delay applies to SQLite, not to Redis (--redis or --redis-cluster)");
        store = std::make_unique<RedisStore>(std::move(ro));
    } else {
        if (options.redisWaitReplicas > 0)
            throw std::runtime_error("--redis-wait-replicas applies to Redis (--redis or --redis-cluster), not to SQLite");
        SqliteOptions so;
        so.dir = options.dataDir;
        so.fullSync = options.fullSync;
        so.commitDelay = std::chrono::milliseconds(options.commitDelay);
        so.retentionMessages = options.retentionMessages;
        so.retentionDays = options.retentionDays;
        store = std::make_unique<SqliteStore>(so);
    }
    store->setListener(this);
    if (!options.authSecret.empty()) verifier = std::make_unique<TokenVerifier>(options.authSecret);
    limits.maxBytes = options.maxBody + 8 * 1024;
    for (unsigned i = 0; i < s.threads(); ++i) {
        shards.push_back(std::make_unique<Shard>());
        shards.back()->index = i;
        shards.back()->limits = Limits::of(options);
    }
}

std::uint32_t Service::Impl::roomLoop(std::string_view room) const noexcept {
    // FNV-1a: stable across runs and builds (std::hash need not be).
    std::uint64_t h = 1469598103934665603ull;
    for (char c : room) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return static_cast<std::uint32_t>(h % shards.size());
}

Shard& Service::Impl::here() {
    net::Loop* loop = net::Loop::current();
    Shard& sh = *shards[loop ? loop->index() % shards.size() : 0];
    if (!sh.loop) sh.loop = loop;
    if (!sh.ticking && loop) {
        sh.ticking = true;
        loop->onTick([this, &sh] { tick(sh); });
    }
    return sh;
}

void Service::Impl::onLoop(std::uint32_t loop, std::function<void()> f) {
    net::Loop* current = net::Loop::current();
    if (current && current->index() == loop) return f();
    Shard& sh = *shards[loop];
    {
        std::lock_guard lk(sh.mailboxMu);
        sh.mailbox.push_back(std::move(f));
        if (sh.mailboxPosted) return;
        sh.mailboxPosted = true;
    }
    server.loop(loop).post([this, &sh] { drainMailbox(sh); });
}

void Service::Impl::drainMailbox(Shard& sh) {
    std::vector<std::function<void()>> work;
    {
        std::lock_guard lk(sh.mailboxMu);
        work.swap(sh.mailbox);
    }
    for (auto& f : work) {
        try {
            f();
        } catch (const std::exception& e) {
            log(LogLevel::error, "chat: posted work threw: %s", e.what());
        }
    }
    {
        std::lock_guard lk(sh.mailboxMu);
        if (sh.mailbox.empty()) {
            sh.mailboxPosted = false;
            return;
        }
    }
    // More came meanwhile: after whatever else the loop has to do.
    server.loop(sh.index).post([this, &sh] { drainMailbox(sh); });
}

void Service::Impl::toSession(SessionId id, std::function<void(Session&)> f) {
    onLoop(loopOf(id), [this, id, f = std::move(f)] {
        if (Session* s = here().find(id)) f(*s);
    });
}

void Service::Impl::tick(Shard& sh) {
    const auto now = sh.loop->now();
    while (!sh.helloDeadlines.empty() && sh.helloDeadlines.front().first <= now) {
        const auto id = sh.helloDeadlines.front().second;
        sh.helloDeadlines.pop_front();
        if (Session* s = sh.find(id); s && !s->authed()) s->ws->end(4000, "hello timeout");
    }
    const auto wall = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
    while (!sh.tokenExpiries.empty() && sh.tokenExpiries.top().first <= wall) {
        const auto id = sh.tokenExpiries.top().second;
        sh.tokenExpiries.pop();
        if (Session* s = sh.find(id); s && s->identity && s->identity->exp && s->identity->exp <= wall)
            s->ws->end(4001, "token expired");
    }
    // A paused catch-up whose socket drained without a drain event (nothing was refused).
    for (auto it = sh.drainWaiters.begin(); it != sh.drainWaiters.end();) {
        Session* s = sh.find(*it);
        if (!s) {
            it = sh.drainWaiters.erase(it);
            continue;
        }
        ++it;
        if (s->ws->getBufferedAmount() == 0) onDrain(*s->ws);
    }
    presenceTick(sh);
}

// --- the public face ------------------------------------------------------------------------

Service::Service(Server& server, ChatOptions options) : impl_(std::make_unique<Impl>(server, std::move(options))) {
    auto* impl = impl_.get();
    const auto& o = impl->options;
    WebSocketBehavior b;
    b.maxPayloadLength = impl->limits.maxBytes;
    b.idleTimeout = o.idleTimeout;
    b.sendPingsAutomatically = true;
    // Live events are never dropped: a client that cannot keep up is closed, and resumes.
    b.maxBackpressure = 1024 * 1024;
    b.closeOnBackpressureLimit = true;
    b.validateOutgoingText = false; // every text we send is JSON we wrote from valid UTF-8
    b.compression = o.compression;
    b.upgrade = [impl](UpgradeRequest& req, UpgradeResponse& res) {
        const auto& opt = impl->here().limits; // a reload may change them
        if (!opt.allowedOrigins.empty() || !opt.allowedAppids.empty()) {
            bool allowed = false;
            const auto origin = req.header("Origin");
            for (const auto& a : opt.allowedOrigins) allowed = allowed || origin == a;
            // The mini-program Referer: https://servicewechat.com/{appid}/{version}/page-frame.html
            const auto referer = req.header("Referer");
            constexpr std::string_view prefix = "https://servicewechat.com/";
            if (!allowed && referer.substr(0, prefix.size()) == prefix) {
                const auto rest = referer.substr(prefix.size());
                const auto slash = rest.find('/');
                const auto appid = rest.substr(0, slash);
                const bool tail = slash != std::string_view::npos && rest.ends_with("/page-frame.html");
                for (const auto& a : opt.allowedAppids) allowed = allowed || (tail && appid == a);
            }
            if (!allowed) return res.reject(403, "origin or mini-program appid not allowed");
        }
        std::string_view protocol;
        if (!req.protocols().empty()) {
            for (auto p : req.protocols())
                if (p == "tongdao.chat.v1") protocol = p;
            if (protocol.empty()) return res.reject(400, "sub-protocol tongdao.chat.v1 not offered");
        }
        Session s;
        if (const auto token = req.queryParam("token"); !token.empty()) {
            s.queryToken = std::string(token);
        }
        res.accept(std::move(s), protocol);
    };
    b.open = [impl](WebSocket& ws) { impl->onOpen(ws); };
    b.message = [impl](WebSocket& ws, std::string_view msg, MessageKind kind) { impl->onMessage(ws, msg, kind); };
    b.drain = [impl](WebSocket& ws) { impl->onDrain(ws); };
    b.close = [impl](WebSocket& ws, int, std::string_view) { impl->onClose(ws); };
    server.ws<Session>(o.path, std::move(b));
    impl->addHttpApi();
}

Service::~Service() { close(); }

void Service::start() { impl_->store->start(); }

std::vector<std::string> Service::reload(const ChatOptions& next) {
    auto& impl = *impl_;
    const auto& o = impl.options;
    std::vector<std::string> later;
    auto diff = [&](const char* name, bool differs) {
        if (differs) later.emplace_back(name);
    };
    diff("data-dir", o.dataDir != next.dataDir);
    diff("durability", o.fullSync != next.fullSync);
    diff("commit-delay", o.commitDelay != next.commitDelay);
    diff("redis", o.redis != next.redis);
    diff("redis-cluster", o.redisCluster != next.redisCluster);
    diff("redis-wait-replicas", o.redisWaitReplicas != next.redisWaitReplicas);
    diff("node-id", o.nodeId != next.nodeId);
    diff("retention-messages", o.retentionMessages != next.retentionMessages);
    diff("retention-days", o.retentionDays != next.retentionDays);
    diff("anonymous", o.anonymous != next.anonymous);
    diff("auth-secret-file", o.authSecret != next.authSecret);
    diff("api-key-file", o.apiKey != next.apiKey);
    diff("max-body", o.maxBody != next.maxBody);
    // The rest, on every loop, each in its own turn: no lock on the paths that read them.
    const auto limits = std::make_shared<const Limits>(Limits::of(next));
    for (std::uint32_t l = 0; l < impl.shards.size(); ++l)
        impl.onLoop(l, [&impl, limits] { impl.here().limits = *limits; });
    return later;
}

void Service::close() {
    if (impl_->closed.exchange(true)) return;
    impl_->store->close();
}

std::string Service::prometheusMetrics() const {
    const auto& m = impl_->metrics;
    const auto st = impl_->store->stats();
    std::string out;
    char line[256];
    auto counter = [&](const char* name, const char* help, std::uint64_t v, const char* labels = "") {
        std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s counter\n%s%s %llu\n", name, help, name, name, labels,
                      static_cast<unsigned long long>(v));
        out += line;
    };
    auto gauge = [&](const char* name, const char* help, std::uint64_t v) {
        std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
                      static_cast<unsigned long long>(v));
        out += line;
    };
    auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    counter("tongdao_chat_events_stored_total", "Stored events (messages, edits, deletes) committed.", st.eventsStored);
    counter("tongdao_chat_sends_total", "send requests accepted for storing.", load(m.sends));
    counter("tongdao_chat_duplicate_sends_total", "Sends answered from the dedupe key, not stored again.",
            load(m.duplicates));
    counter("tongdao_chat_deliveries_total", "Stored events delivered to connections (live and catch-up).",
            load(m.deliveries));
    counter("tongdao_chat_requests_total", "Requests received.", load(m.requests));
    counter("tongdao_chat_error_replies_total", "Requests answered with an error.", load(m.errorReplies));
    counter("tongdao_chat_store_failures_total", "Store transactions that failed and were rolled back.", st.failures);
    out += "# HELP tongdao_chat_resumes_total Joins with a position, by outcome.\n"
           "# TYPE tongdao_chat_resumes_total counter\n";
    auto resume = [&](const char* outcome, std::uint64_t v) {
        std::snprintf(line, sizeof line, "tongdao_chat_resumes_total{outcome=\"%s\"} %llu\n", outcome,
                      static_cast<unsigned long long>(v));
        out += line;
    };
    resume("recovered", load(m.resumesRecovered));
    resume("gap_retention", load(m.resumesRetention));
    resume("gap_epoch", load(m.resumesEpoch));
    counter("tongdao_chat_joins_fresh_total", "Joins without a position.", load(m.joinsFresh));
    gauge("tongdao_chat_rooms", "Rooms loaded on this node.", load(m.rooms));
    gauge("tongdao_chat_users_online", "Users with at least one connection after hello.", impl_->users.usersOnline());
    out += "# HELP tongdao_chat_commit_seconds Time of one store transaction (group commit).\n"
           "# TYPE tongdao_chat_commit_seconds histogram\n";
    for (std::size_t i = 0; i < st.commitBounds.size(); ++i) {
        std::snprintf(line, sizeof line, "tongdao_chat_commit_seconds_bucket{le=\"%g\"} %llu\n", st.commitBounds[i],
                      static_cast<unsigned long long>(st.commitCounts[i]));
        out += line;
    }
    std::snprintf(line, sizeof line,
                  "tongdao_chat_commit_seconds_bucket{le=\"+Inf\"} %llu\ntongdao_chat_commit_seconds_sum %.6f\n"
                  "tongdao_chat_commit_seconds_count %llu\n",
                  static_cast<unsigned long long>(st.commits), st.commitSum, static_cast<unsigned long long>(st.commits));
    out += line;
    return out;
}

} // namespace tongdao::chat
