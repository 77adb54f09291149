#include "redis_store.hpp"

#include "redis_scripts.hpp"
#include "tongdao/log.hpp"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <charconv>
#include <chrono>

namespace tongdao::chat {

namespace {

AppendResult appendFailed() {
    AppendResult r;
    r.status = StoreStatus::unavailable;
    return r;
}

ReadResult readFailed() {
    ReadResult r;
    r.status = StoreStatus::unavailable;
    return r;
}

MemberInfo memberFailed() {
    MemberInfo m;
    m.status = StoreStatus::unavailable;
    return m;
}

using redis::at;
using redis::integer;
using redis::isError;
using redis::size;
using redis::splitFields;
using redis::text;

constexpr const char* scriptText[] = {redis::appendScript, redis::readScript, redis::memberScript,
                                      redis::markReadScript, redis::openScript, redis::presenceScript};

/** Reads of a feed's missing events, at most this many a time. */
constexpr std::uint32_t fillPage = 100;
/** An open that no subscription confirmed by then fails (the caller tries again later). */
constexpr std::int64_t openTimeoutMs = 3000;

std::int64_t steadyMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string sha1Hex(std::string_view s) {
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
    return toHex(d, sizeof d);
}

std::uint64_t toU64(std::string_view s) {
    std::uint64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

// The keys of a room (redis_scripts.hpp): its name is the hash tag.
std::string key(const std::string& room, const char* suffix = "") { return "td:{" + room + "}" + suffix; }
std::string userKey(const std::string& user) { return "td:u:{" + user + "}"; }
constexpr const char* roomsKey = "td:rooms";

/** The room of a channel td:{R}:e. */
std::string_view channelRoom(std::string_view channel) {
    if (channel.size() < 7 || channel.substr(0, 4) != "td:{" || channel.substr(channel.size() - 3) != "}:e") return {};
    return channel.substr(4, channel.size() - 7);
}

StoredEvent eventFrom(const redisReply* r, std::size_t i, std::uint64_t& originToken, std::string_view self) {
    StoredEvent e;
    e.seq = static_cast<std::uint64_t>(integer(at(r, i)));
    e.ts = integer(at(r, i + 1));
    e.kind = static_cast<EventKind>(integer(at(r, i + 2)));
    e.state = static_cast<MessageState>(integer(at(r, i + 3)));
    e.target = static_cast<std::uint64_t>(integer(at(r, i + 4)));
    e.user = text(at(r, i + 5));
    e.name = text(at(r, i + 6));
    e.cid = text(at(r, i + 7));
    e.body = text(at(r, i + 8));
    const auto origin = text(at(r, i + 9));
    originToken = origin.size() > self.size() && origin.substr(0, self.size()) == self ? toU64(origin.substr(self.size())) : 0;
    return e;
}

} // namespace

RedisStore::RedisStore(RedisOptions options) : options_(std::move(options)) {
    if (options_.topology.seeds.empty()) throw std::invalid_argument("the Redis store needs an address");
    if (options_.node.empty()) options_.node = newEpoch().substr(0, 8);
    for (std::size_t i = 0; i < scriptCount; ++i) shas_[i] = sha1Hex(scriptText[i]);
}

RedisStore::~RedisStore() { close(); }

void RedisStore::close() {
    if (closed_.exchange(true)) return;
    // The loops have stopped: nothing else touches the connections now.
    if (router_) router_->stop();
    ticker_.reset();
    feeds_.clear();
    router_.reset();
}

void RedisStore::run(std::function<void()> f) {
    net::Loop& l = options_.loop();
    if (l.isInLoopThread()) {
        if (!started_) begin();
        return f();
    }
    l.post([this, f = std::move(f)] {
        if (closed_) return;
        if (!started_) begin();
        f();
    });
}

void RedisStore::begin() {
    started_ = true;
    auto& io = options_.loop().context();
    router_ = std::make_unique<redis::RedisRouter>(io, options_.topology, "tongdao:" + options_.node);
    router_->onMessage = [this](std::string_view c, std::string_view p) { message(c, p); };
    router_->onSubscribed = [this](const std::string& c) { subscribed(c); };
    router_->onReady = [this] {
        // A command connection is back: what the others stored meanwhile is read now.
        for (auto& [room, f] : feeds_)
            if (f->open) fill(*f);
        checkSettings();
    };
    router_->start();
    ticker_ = std::make_unique<asio::steady_timer>(io);
    tick();
    using Kind = redis::Topology::Kind;
    const auto& t = options_.topology;
    const std::string waits = t.waitReplicas > 0 ? ", acking and delivering what " + std::to_string(t.waitReplicas) +
                                                       (t.waitReplicas == 1 ? " replica has" : " replicas have")
                                                 : "";
    log(LogLevel::info, "chat store: Redis %s as node %s%s",
        t.kind == Kind::cluster ? "Cluster" : t.kind == Kind::sentinel ? "behind Sentinel" : "standalone", options_.node.c_str(),
        waits.c_str());
}

void RedisStore::checkSettings() {
    if (settingsChecked_) return;
    settingsChecked_ = true;
    // What makes an acked message survive Redis' own failures (docs/SCALING.md): said once.
    router_->command("", {"INFO", "persistence"}, [replicas = options_.topology.waitReplicas](const redisReply* r) {
        if (!r || text(r).find("aof_enabled:1") != std::string_view::npos) return; // no answer: nothing to say
        if (replicas > 0)
            log(LogLevel::info, "chat store: Redis runs without AOF: acked messages live on the master and on "
                                "--redis-wait-replicas (%d) of its replicas; a restart of them all loses them "
                                "(docs/SCALING.md)", replicas);
        else
            log(LogLevel::warn, "chat store: Redis runs without AOF (appendonly no): a Redis restart loses acked "
                                "messages; their rooms then start new histories (docs/SCALING.md)");
    });
    if (const int want = options_.topology.waitReplicas; want > 0)
        router_->command("", {"INFO", "replication"}, [want](const redisReply* r) {
            const auto info = text(r);
            const auto at = info.find("connected_slaves:");
            if (at == std::string_view::npos) return;
            int have = 0;
            const auto digits = info.substr(at + 17);
            std::from_chars(digits.data(), digits.data() + digits.size(), have);
            if (have < want)
                log(LogLevel::warn, "chat store: the Redis master has %d replicas connected, --redis-wait-replicas wants %d: "
                                    "sends, joins and history answer unavailable until it has them", have, want);
        });
    router_->command("", {"CONFIG", "GET", "maxmemory-policy"}, [](const redisReply* r) {
        const auto policy = text(at(r, 1));
        if (!policy.empty() && policy != "noeviction")
            log(LogLevel::warn, "chat store: Redis evicts keys (maxmemory-policy %.*s): history may vanish; use noeviction",
                static_cast<int>(policy.size()), policy.data());
    });
}

void RedisStore::tick() {
    ticker_->expires_after(std::chrono::seconds(1));
    ticker_->async_wait([this](const asio::error_code& ec) {
        if (ec || closed_) return;
        const auto now = steadyMs();
        const bool check = ++ticks_ % 5 == 0;
        for (auto it = feeds_.begin(); it != feeds_.end();) {
            Feed& f = *it->second;
            if (!f.open && !f.waiters.empty() && now - f.openSince > openTimeoutMs) finishOpen(f, StoreStatus::unavailable);
            settleSyncs(f, false); // those waiting too long go on with what is there
            // Let go by the service and nothing in flight: its channel and its memory go.
            if (f.released && f.waiters.empty() && f.mine.empty() && f.syncs.empty() && !f.opening && !f.filling) {
                router_->unsubscribe(f.channel);
                it = feeds_.erase(it);
                continue;
            }
            // The tail no channel message announced (the last one lost with a connection).
            if (check && f.open) fill(f);
            ++it;
        }
        tick();
    });
}

void RedisStore::script(Script s, std::vector<std::string> keysAndArgs, std::size_t keys, redis::Callback cb) {
    if (!router_) return cb(nullptr);
    auto cmd = std::make_shared<std::vector<std::string>>();
    cmd->reserve(keysAndArgs.size() + 3);
    cmd->emplace_back("EVALSHA");
    cmd->push_back(shas_[s]);
    cmd->push_back(std::to_string(keys));
    for (auto& a : keysAndArgs) cmd->push_back(std::move(a));
    // Slotted by its first key; hiredis copied the command out when it was sent, so a
    // NOSCRIPT answer turns the same arguments into an EVAL without another copy.
    router_->command((*cmd)[3], cmd, [this, s, cmd, cb = std::move(cb)](const redisReply* r) mutable {
        if (r && r->type == REDIS_REPLY_ERROR && text(r).substr(0, 8) == "NOSCRIPT") {
            // A Redis that lost its script cache (a restart, a failover): EVAL loads it again.
            (*cmd)[0] = "EVAL";
            (*cmd)[1] = scriptText[s];
            return router_->command((*cmd)[3], cmd, std::move(cb));
        }
        cb(r);
    });
}

// --- feeds ----------------------------------------------------------------------------------

RedisStore::Feed* RedisStore::feed(const std::string& room) {
    const auto it = feeds_.find(room);
    return it == feeds_.end() ? nullptr : it->second.get();
}

void RedisStore::openRoom(std::string room, std::function<void(StoreStatus, RoomInfo)> done) {
    if (closed_) return done(StoreStatus::unavailable, {});
    run([this, room = std::move(room), done = std::move(done)]() mutable {
        auto& slot = feeds_[room];
        if (!slot) {
            slot = std::make_unique<Feed>();
            slot->room = room;
            slot->channel = key(room, ":e");
            slot->candidate = newEpoch();
        }
        Feed& f = *slot;
        f.released = false;
        if (f.open) return done(StoreStatus::ok, RoomInfo{f.epoch, f.delivered});
        if (f.waiters.empty()) f.openSince = steadyMs();
        f.waiters.push_back(std::move(done));
        // Subscribed first, then the position read: nothing published in between is missed.
        router_->subscribe(f.channel);
        if (f.subscribed) openFeed(f);
    });
}

void RedisStore::subscribed(const std::string& channel) {
    const auto room = channelRoom(channel);
    Feed* f = feed(std::string(room));
    if (!f) return;
    f->subscribed = true;
    if (!f->open) return openFeed(*f);
    fill(*f); // subscribed again after a loss: what the channel carried meanwhile
}

void RedisStore::openFeed(Feed& f, const std::string& stale) {
    if (f.opening || f.open) return;
    f.opening = true;
    std::vector<std::string> ka{key(f.room), newEpoch()};
    if (!stale.empty()) ka.push_back(stale);
    script(openS, std::move(ka), 1, [this, room = f.room](const redisReply* r) {
        Feed* fp = feed(room);
        if (!fp) return;
        Feed& f2 = *fp;
        f2.opening = false;
        if (isError(r) || size(r) < 2) {
            counters_.failed();
            return finishOpen(f2, StoreStatus::unavailable);
        }
        f2.epoch = text(at(r, 0));
        f2.delivered = static_cast<std::uint64_t>(integer(at(r, 1)));
        f2.open = true;
        if (f2.reopening) {
            f2.reopening = false;
            if (listener_) listener_->roomReset(room, f2.epoch);
        } else if (f2.resyncing) {
            f2.resyncing = false;
            if (listener_) listener_->roomResync(room, f2.delivered);
        }
        router_->command(roomsKey, {"ZADD", roomsKey, "0", room}, [](const redisReply*) {});
        finishOpen(f2, StoreStatus::ok);
        drain(f2);
    });
}

void RedisStore::finishOpen(Feed& f, StoreStatus st) {
    auto waiters = std::move(f.waiters);
    f.waiters.clear();
    for (auto& w : waiters) w(st, RoomInfo{f.epoch, f.delivered});
}

void RedisStore::message(std::string_view channel, std::string_view payload) {
    Feed* f = feed(std::string(channelRoom(channel)));
    if (!f || payload.size() < 2) return;
    std::vector<std::string_view> p;
    if (payload[0] == 'E') {
        // E epoch origin seq ts kind target user name cid body
        if (!splitFields(payload, '\n', 10, p)) return;
        Incoming in;
        in.event.seq = toU64(p[3]);
        in.event.ts = static_cast<std::int64_t>(toU64(p[4]));
        in.event.kind = static_cast<EventKind>(toU64(p[5]));
        in.event.target = toU64(p[6]);
        in.event.user = p[7];
        in.event.name = p[8];
        in.event.cid = p[9];
        in.event.body = p[10];
        const std::string self = options_.node + ":";
        if (p[2].size() > self.size() && p[2].substr(0, self.size()) == self) in.token = toU64(p[2].substr(self.size()));
        return offer(*f, std::string(p[1]), std::move(in));
    }
    if (!listener_) return;
    Signal s;
    if (payload[0] == 'P' && splitFields(payload, '\n', 4, p)) {
        // P node join name user
        s.kind = Signal::Kind::presence;
        s.node = p[1];
        s.join = p[2] == "1";
        s.name = p[3];
        s.user = p[4];
    } else if (payload[0] == 'T' && splitFields(payload, '\n', 2, p)) {
        s.kind = Signal::Kind::relay;
        s.node = p[1];
        s.event = p[2];
    } else {
        return;
    }
    if (s.node != options_.node) listener_->remoteSignal(f->room, std::move(s));
}

void RedisStore::answer(Feed& f, std::unordered_map<std::uint64_t, Mine>::iterator m, bool fanOut) {
    auto done = std::move(m->second.done);
    auto res = std::move(m->second.result);
    f.mine.erase(m);
    res.fanOut = fanOut;
    done(std::move(res));
}

void RedisStore::offer(Feed& f, const std::string& epoch, Incoming in) {
    if (f.retired.contains(epoch)) {
        // An event of a history lost meanwhile: only a sender still waits for it.
        if (in.token)
            if (const auto m = f.mine.find(in.token); m != f.mine.end() && m->second.replied) answer(f, m, false);
        return;
    }
    if (f.open && !epoch.empty() && epoch != f.epoch) reset(f, epoch);
    auto [it, added] = f.ahead.try_emplace(in.event.seq, std::move(in));
    if (!added && !it->second.token) it->second.token = in.token;
    drain(f);
}

void RedisStore::drain(Feed& f) {
    if (!f.open) return;
    while (!f.ahead.empty()) {
        auto it = f.ahead.begin();
        const auto seq = it->first;
        const auto token = it->second.token;
        auto m = token ? f.mine.find(token) : f.mine.end();
        if (seq > f.delivered + 1) break;
        if (seq == f.delivered + 1 && m != f.mine.end() && !m->second.replied) break; // its reply first
        Incoming in = std::move(it->second);
        f.ahead.erase(it);
        if (seq <= f.delivered) {
            // Already handed on (read with the position, or filled): its sender still waits.
            if (m != f.mine.end() && m->second.replied) answer(f, m, false);
            continue;
        }
        f.delivered = seq;
        if (m != f.mine.end()) {
            answer(f, m, true);
        } else if (listener_) {
            AppendResult res;
            res.room = f.room;
            res.event = std::move(in.event);
            listener_->remoteStored(std::move(res));
        }
    }
    // A seq missing before what arrived: the channel lost it; the stream has it.
    if (!f.ahead.empty() && f.ahead.begin()->first > f.delivered + 1) fill(f);
    if (f.ahead.size() > maxAhead) return resync(f);
    settleSyncs(f, false);
}

void RedisStore::resync(Feed& f) {
    log(LogLevel::warn, "chat store: room '%s': %zu events wait behind seq %llu; its members here resume from the store",
        f.room.c_str(), f.ahead.size(), static_cast<unsigned long long>(f.delivered + 1));
    for (auto& [seq, in] : f.ahead) {
        if (!in.token) continue;
        const auto m = f.mine.find(in.token);
        if (m != f.mine.end() && m->second.replied) answer(f, m, false); // stored: its sender hears it
    }
    f.ahead.clear();
    f.open = false;
    f.resyncing = true;
    settleSyncs(f, true);
    openFeed(f);
}

void RedisStore::settleSyncs(Feed& f, bool all) {
    if (f.syncs.empty()) return;
    const auto now = steadyMs();
    std::vector<std::function<void()>> ready;
    std::erase_if(f.syncs, [&](Feed::Sync& s) {
        if (!all && s.upTo > f.delivered && now - s.since < openTimeoutMs) return false;
        ready.push_back(std::move(s.done));
        return true;
    });
    for (auto& d : ready) d();
}

void RedisStore::sync(std::string room, std::function<void()> done) {
    if (closed_) return done();
    run([this, room = std::move(room), done = std::move(done)]() mutable {
        Feed* f = feed(room);
        if (!f || !f->open) return done();
        router_->command(key(room), {"HGET", key(room), "seq"}, [this, room, done = std::move(done)](const redisReply* r) mutable {
            Feed* f2 = feed(room);
            const auto latest = static_cast<std::uint64_t>(integer(r));
            if (!f2 || !f2->open || isError(r) || latest <= f2->delivered) return done();
            f2->syncs.push_back({latest, steadyMs(), std::move(done)});
            fill(*f2);
        });
    });
}

void RedisStore::fill(Feed& f) {
    if (f.filling || !f.open) return;
    f.filling = true;
    const auto from = f.delivered;
    script(readS, {key(f.room), key(f.room, ":x"), key(f.room, ":b"), key(f.room, ":v"), "a", std::to_string(from),
                   std::to_string(fillPage)},
           4, [this, room = f.room, from](const redisReply* r) {
        Feed* fp = feed(room);
        if (!fp) return;
        Feed& f2 = *fp;
        f2.filling = false;
        if (isError(r) || size(r) < 4) return; // tried again at the next tick or reconnect
        const std::string epoch(text(at(r, 0)));
        if (epoch.empty() || (epoch != f2.epoch && !f2.retired.contains(epoch))) {
            // The room's data is gone (a flush, an eviction, a failover without it) or
            // started again: a new history, which the members are told of.
            if (epoch.empty()) {
                f2.open = false;
                f2.reopening = true;
                reset(f2, "");
                return openFeed(f2);
            }
            reset(f2, epoch);
            return fill(f2);
        }
        if (epoch != f2.epoch || f2.delivered != from) return drain(f2); // moved on meanwhile
        const auto latest = static_cast<std::uint64_t>(integer(at(r, 1)));
        if (latest < f2.delivered) {
            // Seqs this node handed on are gone, under the same epoch: Redis went back to an
            // older copy (a restart without AOF, a failover to a replica that lagged). The
            // room starts a new history rather than give the same seqs to other events.
            log(LogLevel::error, "chat store: room '%s' is at seq %llu in Redis, %llu were delivered: its data went back",
                room.c_str(), static_cast<unsigned long long>(latest), static_cast<unsigned long long>(f2.delivered));
            f2.open = false;
            f2.reopening = true;
            const auto stale = f2.epoch;
            reset(f2, "");
            return openFeed(f2, stale);
        }
        const auto oldest = static_cast<std::uint64_t>(integer(at(r, 2)));
        const bool more = integer(at(r, 3)) != 0;
        std::uint64_t first = 0;
        for (std::size_t i = 4; i + 9 < size(r); i += 10) {
            Incoming in;
            in.event = eventFrom(r, i, in.token, options_.node + ":");
            in.event.state = MessageState::normal; // live events go as they were sent
            if (!first) first = in.event.seq;
            f2.ahead.try_emplace(in.event.seq, std::move(in));
        }
        // Seqs the stream no longer has (retention): passed over, and said in the log.
        const auto next = first ? first : std::min(oldest, latest + 1);
        if (next > f2.delivered + 1 && f2.delivered < latest) {
            log(LogLevel::warn, "chat store: room '%s': seqs %llu-%llu are no longer kept; passed over", room.c_str(),
                static_cast<unsigned long long>(f2.delivered + 1), static_cast<unsigned long long>(next - 1));
            f2.delivered = std::min(next, latest + 1) - 1;
        }
        drain(f2);
        if (more) fill(f2);
    });
}

void RedisStore::reset(Feed& f, const std::string& epoch) {
    log(LogLevel::warn, "chat store: room '%s': its history was lost (epoch %s -> %s)", f.room.c_str(), f.epoch.c_str(),
        epoch.empty() ? "none" : epoch.c_str());
    if (!f.epoch.empty()) f.retired.insert(f.epoch);
    f.epoch = epoch;
    f.delivered = 0;
    // What waits for a place in the old history: answered (it was stored there), not delivered.
    auto ahead = std::move(f.ahead);
    f.ahead.clear();
    for (auto& [seq, in] : ahead) {
        if (!in.token) continue;
        const auto m = f.mine.find(in.token);
        if (m != f.mine.end() && m->second.replied) answer(f, m, false);
    }
    settleSyncs(f, true);
    if (listener_ && !epoch.empty()) listener_->roomReset(f.room, epoch);
}

// --- writes -------------------------------------------------------------------------------

void RedisStore::append(AppendRequest req, std::function<void(AppendResult)> done) {
    if (closed_) return done(appendFailed());
    run([this, req = std::move(req), done = std::move(done)]() mutable {
        const auto token = ++tokens_;
        const auto start = std::chrono::steady_clock::now();
        Feed* f = feed(req.room);
        std::vector<std::string> ka{key(req.room), key(req.room, ":x"), key(req.room, ":b"), key(req.room, ":c"),
                                    key(req.room, ":v"), std::to_string(static_cast<int>(req.kind)),
                                    std::to_string(req.target), req.user, req.name, req.cid, req.body,
                                    std::to_string(options_.retentionMessages),
                                    std::to_string(static_cast<std::uint64_t>(options_.retentionDays) * 86'400'000),
                                    options_.node + ":" + std::to_string(token),
                                    // Waiting for replicas, the node publishes once they have it.
                                    options_.topology.waitReplicas > 0 ? std::string() : key(req.room, ":e"),
                                    f ? f->candidate : newEpoch()};
        if (f) f->mine[token].done = std::move(done);
        auto reply = [this, token, start, req = std::move(req), done = f ? nullptr : std::move(done)](const redisReply* r) mutable {
            AppendResult res;
            res.room = req.room;
            const auto status = text(at(r, 0));
            std::string epoch;
            if (isError(r) || size(r) < 1) {
                if (r) log(LogLevel::error, "chat store: append to '%s': %.*s", req.room.c_str(), static_cast<int>(text(r).size()),
                           text(r).data());
                counters_.failed();
                res.status = StoreStatus::unavailable;
            } else if (status == "notfound") {
                res.status = StoreStatus::notFound;
            } else if (status == "forbidden") {
                res.status = StoreStatus::forbidden;
            } else {
                res.status = status == "dup" ? StoreStatus::duplicate : StoreStatus::ok;
                epoch = text(at(r, 1));
                StoredEvent& e = res.event;
                e.seq = static_cast<std::uint64_t>(integer(at(r, 2)));
                e.ts = integer(at(r, 3));
                e.kind = req.kind;
                e.target = req.target;
                e.user = std::move(req.user);
                e.name = std::move(req.name);
                e.cid = std::move(req.cid);
                e.body = req.kind == EventKind::remove ? "null" : std::move(req.body);
                if (res.status == StoreStatus::ok && size(r) >= 5) publish(res.room, std::string(text(at(r, 4))));
                if (res.status == StoreStatus::ok) {
                    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                    counters_.committed(1, secs);
                }
            }
            if (done) return done(std::move(res)); // a room not open here: nothing to order
            Feed* f2 = feed(res.room); // before `res` is moved into the call
            ownReply(f2, token, std::move(res), epoch);
        };
        script(appendS, std::move(ka), 5, std::move(reply));
    });
}

void RedisStore::ownReply(Feed* f, std::uint64_t token, AppendResult res, const std::string& epoch) {
    if (!f) return;
    const auto m = f->mine.find(token);
    if (m == f->mine.end()) return;
    if (res.status != StoreStatus::ok) {
        // Refused, a duplicate, or no answer: the sender hears it now. Had the script run
        // unanswered, its event still comes through the feed, as anyone else's.
        auto done = std::move(m->second.done);
        f->mine.erase(m);
        done(std::move(res));
        return drain(*f);
    }
    m->second.replied = true;
    if (epoch == f->candidate) f->candidate = newEpoch(); // taken: the next re-creation needs another
    Incoming in;
    in.event = res.event;
    in.token = token;
    m->second.result = std::move(res);
    if (!f->open) {
        f->ahead.try_emplace(in.event.seq, std::move(in)); // ordered once the position is known
        return;
    }
    offer(*f, epoch, std::move(in));
}

// --- reads --------------------------------------------------------------------------------

void RedisStore::read(ReadQuery q, std::function<void(ReadResult)> done) {
    if (closed_) return done(readFailed());
    run([this, q = std::move(q), done = std::move(done)]() mutable {
        const char* dir = q.dir == ReadQuery::Dir::after ? "a" : q.dir == ReadQuery::Dir::before ? "b" : "l";
        script(readS, {key(q.room), key(q.room, ":x"), key(q.room, ":b"), key(q.room, ":v"), dir, std::to_string(q.from),
                       std::to_string(q.limit)},
               4, [this, room = q.room, done = std::move(done)](const redisReply* r) {
            ReadResult res;
            if (isError(r) || size(r) < 4) {
                res.status = StoreStatus::unavailable;
                return done(std::move(res));
            }
            res.epoch = text(at(r, 0));
            res.seq = static_cast<std::uint64_t>(integer(at(r, 1)));
            res.oldest = static_cast<std::uint64_t>(integer(at(r, 2)));
            res.more = integer(at(r, 3)) != 0;
            std::uint64_t token = 0;
            for (std::size_t i = 4; i + 9 < size(r); i += 10) res.events.push_back(eventFrom(r, i, token, {}));
            // A history that changed under an open room: its feed learns it too.
            if (Feed* f = feed(room); f && f->open && res.epoch != f->epoch && !f->retired.contains(res.epoch)) fill(*f);
            done(std::move(res));
        });
    });
}

namespace {

MemberInfo memberFrom(const redisReply* r) {
    MemberInfo m;
    if (isError(r) || size(r) < 5) {
        m.status = StoreStatus::unavailable;
        return m;
    }
    m.member = integer(at(r, 0)) != 0;
    m.readSeq = static_cast<std::uint64_t>(integer(at(r, 1)));
    m.unread = static_cast<std::uint64_t>(integer(at(r, 2)));
    return m;
}

} // namespace

void RedisStore::memberInfo(std::string room, std::string user, std::function<void(MemberInfo)> done) {
    if (closed_) return done(memberFailed());
    run([this, room = std::move(room), user = std::move(user), done = std::move(done)]() mutable {
        script(memberS, {key(room), key(room, ":x"), key(room, ":v"), key(room, ":m"), user, "0", "0", std::to_string(unreadScanCap)},
               4, [done = std::move(done)](const redisReply* r) { done(memberFrom(r)); });
    });
}

void RedisStore::addMember(std::string room, std::string user, std::uint64_t readSeq, std::function<void(MemberInfo)> done) {
    if (closed_) return done(memberFailed());
    run([this, room = std::move(room), user = std::move(user), readSeq, done = std::move(done)]() mutable {
        // The user's list of rooms first: a room listed whose membership failed is skipped
        // by `userRooms`; a membership never listed would be lost to it.
        router_->command(userKey(user), {"SADD", userKey(user), room}, [this, room, user, readSeq, done = std::move(done)](const redisReply* r) mutable {
            if (isError(r)) return done(memberFailed());
            script(memberS, {key(room), key(room, ":x"), key(room, ":v"), key(room, ":m"), user, "1", std::to_string(readSeq),
                             std::to_string(unreadScanCap)},
                   4, [done = std::move(done)](const redisReply* r2) { done(memberFrom(r2)); });
        });
    });
}

void RedisStore::removeMember(std::string room, std::string user, std::function<void(StoreStatus)> done) {
    if (closed_) return done(StoreStatus::unavailable);
    run([this, room = std::move(room), user = std::move(user), done = std::move(done)]() mutable {
        router_->command(key(room), {"HDEL", key(room, ":m"), user}, [this, room, user, done = std::move(done)](const redisReply* r) mutable {
            if (isError(r)) return done(StoreStatus::unavailable);
            router_->command(userKey(user), {"SREM", userKey(user), room}, [done = std::move(done)](const redisReply* r2) {
                done(isError(r2) ? StoreStatus::unavailable : StoreStatus::ok);
            });
        });
    });
}

void RedisStore::markRead(std::string room, std::string user, std::uint64_t seq,
                          std::function<void(StoreStatus, std::uint64_t, bool)> done) {
    if (closed_) return done(StoreStatus::unavailable, 0, false);
    run([this, room = std::move(room), user = std::move(user), seq, done = std::move(done)]() mutable {
        script(markReadS, {key(room), key(room, ":m"), user, std::to_string(seq)}, 2, [done = std::move(done)](const redisReply* r) {
            if (isError(r) || size(r) < 2) return done(StoreStatus::unavailable, 0, false);
            done(StoreStatus::ok, static_cast<std::uint64_t>(integer(at(r, 0))), integer(at(r, 1)) != 0);
        });
    });
}

void RedisStore::userRooms(std::string user, std::uint32_t limit,
                           std::function<void(StoreStatus, std::vector<UserRoom>)> done) {
    if (closed_) return done(StoreStatus::unavailable, {});
    run([this, user = std::move(user), limit, done = std::move(done)]() mutable {
        router_->command(userKey(user), {"SMEMBERS", userKey(user)}, [this, user, limit, done = std::move(done)](const redisReply* r) mutable {
            if (isError(r)) return done(StoreStatus::unavailable, {});
            std::vector<std::string> names;
            for (std::size_t i = 0; i < size(r); ++i) names.emplace_back(text(at(r, i)));
            std::sort(names.begin(), names.end());
            if (names.size() > limit) names.resize(limit);
            if (names.empty()) return done(StoreStatus::ok, {});
            // One script a room (rooms live on different slots), answered together.
            struct Gather {
                std::vector<UserRoom> rooms;
                std::size_t left = 0;
                bool failed = false;
                std::function<void(StoreStatus, std::vector<UserRoom>)> done;
            };
            auto g = std::make_shared<Gather>();
            g->rooms.resize(names.size());
            g->left = names.size();
            g->done = std::move(done);
            for (std::size_t i = 0; i < names.size(); ++i) {
                g->rooms[i].room = names[i];
                script(memberS, {key(names[i]), key(names[i], ":x"), key(names[i], ":v"), key(names[i], ":m"), user, "0", "0",
                                 std::to_string(unreadScanCap)},
                       4, [g, i](const redisReply* r2) {
                    if (isError(r2) || size(r2) < 5) {
                        g->failed = true;
                    } else {
                        auto& ur = g->rooms[i];
                        if (integer(at(r2, 0)) == 0) ur.room.clear(); // listed, not a member (a failed join)
                        ur.readSeq = static_cast<std::uint64_t>(integer(at(r2, 1)));
                        ur.unread = static_cast<std::uint64_t>(integer(at(r2, 2)));
                        ur.epoch = text(at(r2, 3));
                        ur.seq = static_cast<std::uint64_t>(integer(at(r2, 4)));
                    }
                    if (--g->left > 0) return;
                    if (g->failed) return g->done(StoreStatus::unavailable, {});
                    std::erase_if(g->rooms, [](const UserRoom& ur) { return ur.room.empty(); });
                    g->done(StoreStatus::ok, std::move(g->rooms));
                });
            }
        });
    });
}

void RedisStore::listRooms(std::uint32_t limit, std::function<void(StoreStatus, std::vector<RoomSummary>)> done) {
    if (closed_) return done(StoreStatus::unavailable, {});
    run([this, limit, done = std::move(done)]() mutable {
        router_->command(roomsKey, {"ZRANGE", roomsKey, "0", std::to_string(static_cast<long long>(limit) - 1)},
                         [this, done = std::move(done)](const redisReply* r) mutable {
            if (isError(r)) return done(StoreStatus::unavailable, {});
            if (size(r) == 0) return done(StoreStatus::ok, {});
            struct Gather {
                std::vector<RoomSummary> rooms;
                std::size_t left = 0;
                bool failed = false;
                std::function<void(StoreStatus, std::vector<RoomSummary>)> done;
            };
            auto g = std::make_shared<Gather>();
            g->left = size(r);
            g->rooms.resize(size(r));
            g->done = std::move(done);
            for (std::size_t i = 0; i < size(r); ++i) {
                g->rooms[i].room = text(at(r, i));
                const auto k = key(g->rooms[i].room);
                router_->command(k, {"HMGET", k, "epoch", "seq"}, [g, i](const redisReply* r2) {
                    if (isError(r2) || size(r2) < 2) {
                        g->failed = true;
                    } else {
                        g->rooms[i].epoch = text(at(r2, 0));
                        g->rooms[i].seq = static_cast<std::uint64_t>(integer(at(r2, 1)));
                    }
                    if (--g->left > 0) return;
                    if (g->failed) return g->done(StoreStatus::unavailable, {});
                    g->done(StoreStatus::ok, std::move(g->rooms));
                });
            }
        });
    });
}

void RedisStore::releaseRoom(std::string room) {
    if (closed_) return;
    run([this, room = std::move(room)] {
        if (Feed* f = feed(room)) f->released = true; // dropped by the next tick, once idle
    });
}

// --- signals and presence ------------------------------------------------------------------

void RedisStore::publish(const std::string& room, std::string payload) {
    const auto channel = key(room, ":e");
    router_->command(channel, {"SPUBLISH", channel, std::move(payload)}, [](const redisReply*) {});
}

void RedisStore::signal(std::string room, Signal s) {
    if (closed_) return;
    run([this, room = std::move(room), s = std::move(s)] {
        std::string payload;
        if (s.kind == Signal::Kind::presence) {
            payload = "P\n" + options_.node + "\n" + (s.join ? "1" : "0") + "\n" + s.name + "\n" + s.user;
        } else {
            payload = "T\n" + options_.node + "\n" + s.event;
        }
        publish(room, std::move(payload));
    });
}

void RedisStore::presenceSet(std::string room, std::string user, std::string name, bool online) {
    if (closed_) return;
    run([this, room = std::move(room), user = std::move(user), name = std::move(name), online]() mutable {
        std::vector<std::string> ka{key(room, ":p"), key(room, ":pn"), options_.node, std::to_string(presenceTtlMs),
                                    online ? "on" : "off", std::move(user)};
        if (online) ka.push_back(std::move(name));
        script(presenceS, std::move(ka), 2, [](const redisReply*) {});
    });
}

void RedisStore::presenceSync(std::string room, bool full, std::function<void(PresenceState)> done) {
    if (closed_) {
        PresenceState ps;
        ps.status = StoreStatus::unavailable;
        return done(std::move(ps));
    }
    run([this, room = std::move(room), full, done = std::move(done)]() mutable {
        script(presenceS, {key(room, ":p"), key(room, ":pn"), options_.node, std::to_string(presenceTtlMs), full ? "full" : "sync"}, 2,
               [full, done = std::move(done)](const redisReply* r) {
            PresenceState ps;
            if (isError(r) || size(r) < 1) {
                ps.status = StoreStatus::unavailable;
                return done(std::move(ps));
            }
            ps.expired = integer(at(r, 0)) != 0;
            std::size_t i = 1, n = size(r) - 1;
            if (full) {
                n = static_cast<std::size_t>(integer(at(r, 1)));
                i = 2;
            }
            for (std::size_t k = 0; k < n && i < size(r); ++k, ++i) ps.nodes.emplace_back(text(at(r, i)));
            for (; i + 2 < size(r); i += 3)
                ps.entries.push_back({std::string(text(at(r, i))), std::string(text(at(r, i + 1))), std::string(text(at(r, i + 2)))});
            done(std::move(ps));
        });
    });
}

StoreStats RedisStore::stats() const { return counters_.stats(); }

} // namespace tongdao::chat
