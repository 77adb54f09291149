// Rooms: each on the loop its name hashes to. Its seq follows commit order (the store calls
// back in seq order and each callback is posted here in turn); fan-out happens after commit.

#include "service_impl.hpp"

#include "tongdao/log.hpp"

#include <algorithm>
#include <chrono>

namespace tongdao::chat {

namespace {

std::int64_t steadyMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/** How long a presence change learned from a signal outweighs a sync answer. */
constexpr std::int64_t signalWinsMs = 10000;
/** Seconds between presence refreshes of a room, when several nodes share it. */
constexpr std::uint32_t presenceSyncEvery = 5;

} // namespace

bool Service::Impl::onlineAnywhere(const Room& room, const std::string& user) const {
    return room.online.contains(user) || room.remote.contains(user);
}

std::size_t Service::Impl::onlineCount(const Room& room) const {
    std::size_t n = room.online.size();
    for (const auto& [user, r] : room.remote)
        if (!room.online.contains(user)) ++n;
    return n;
}

void Service::Impl::announcePresence(Room& room, const std::string& user, const std::string& name, bool join) {
    // Every join told to every member is quadratic in the room's size: past the limit the
    // room's presence is asked for (`presence`), not announced.
    const auto count = onlineCount(room);
    if (count > here().limits.maxPresenceEvents) return;
    JsonOut o;
    o.str("op", "presence").str("room", room.name).str("user", user).str("name", name).str("state", join ? "join" : "leave");
    o.num("count", count);
    roomBroadcast(room, o.done(), 0);
}

void Service::Impl::localPresence(Room& room, const std::string& user, const std::string& name, bool join) {
    if (store->shared()) {
        // The entry first, then the signal (one connection, one order): a node that opens
        // the room after the signal went finds the entry.
        store->presenceSet(room.name, user, name, join);
        store->signal(room.name, Signal{Signal::Kind::presence, store->node(), user, name, join, {}});
        if (room.remote.contains(user)) return; // online elsewhere all along
    }
    announcePresence(room, user, name, join);
}

void Service::Impl::remotePresence(Room& room, const std::string& node, const std::string& user, const std::string& name,
                                   bool join) {
    const auto now = steadyMs();
    const bool before = onlineAnywhere(room, user);
    const auto gone = user + "\n" + node;
    if (join) {
        auto& r = room.remote[user];
        r.name = name;
        r.nodes[node] = now;
        room.remoteGone.erase(gone);
    } else {
        const auto it = room.remote.find(user);
        if (it == room.remote.end() || !it->second.nodes.erase(node)) return;
        room.remoteGone[gone] = now;
        if (it->second.nodes.empty()) room.remote.erase(it);
    }
    if (before != onlineAnywhere(room, user)) announcePresence(room, user, name, join);
}

void Service::Impl::presenceSync(Room& room, bool full, std::function<void()> then) {
    if (room.presenceSyncing) {
        if (then) then();
        return;
    }
    room.presenceSyncing = true;
    store->presenceSync(room.name, full, [this, name = room.name, full, then = std::move(then)](Store::PresenceState ps) mutable {
        onLoop(roomLoop(name), [this, name, full, ps = std::move(ps), then = std::move(then)] {
            Shard& sh = here();
            const auto it = sh.rooms.find(name);
            if (it == sh.rooms.end()) return;
            Room& r = *it->second;
            r.presenceSyncing = false;
            reconcilePresence(r, ps, full);
            if (then) then();
        });
    });
}

void Service::Impl::reconcilePresence(Room& r, const Store::PresenceState& ps, bool full) {
    if (ps.status != StoreStatus::ok) return;
    if (ps.expired) {
        // This node was taken for dead (it could not renew in time): its entries are set again.
        for (const auto& [user, on] : r.online) store->presenceSet(r.name, user, on.name, true);
    }
    const auto now = steadyMs();
    if (full) {
        for (const auto& e : ps.entries) {
            const auto g = r.remoteGone.find(e.user + "\n" + e.node);
            if (g != r.remoteGone.end() && now - g->second < signalWinsMs) continue; // it left since
            const auto ru = r.remote.find(e.user);
            if (ru == r.remote.end() || !ru->second.nodes.contains(e.node)) remotePresence(r, e.node, e.user, e.name, true);
        }
    }
    // Users of nodes no longer live (a node that died), unless a signal told of them after
    // the store was read.
    const std::unordered_set<std::string> live(ps.nodes.begin(), ps.nodes.end());
    std::vector<std::pair<std::string, std::string>> expired;
    for (const auto& [user, ru] : r.remote)
        for (const auto& [node, at] : ru.nodes)
            if (!live.contains(node) && now - at >= signalWinsMs) expired.emplace_back(user, node);
    for (const auto& [user, node] : expired) {
        const auto name = r.remote[user].name;
        remotePresence(r, node, user, name, false);
    }
    std::erase_if(r.remoteGone, [now](const auto& g) { return now - g.second >= signalWinsMs; });
}

void Service::Impl::withRoom(const std::string& name, std::function<void(Room*)> f) {
    Shard& sh = here();
    auto& slot = sh.rooms[name];
    if (!slot) {
        slot = std::make_unique<Room>();
        slot->name = name;
        slot->topic = "r/" + name;
        slot->loopMembers.assign(shards.size(), 0);
        metrics.rooms.fetch_add(1, std::memory_order_relaxed);
    }
    Room* r = slot.get();
    if (r->state == Room::State::open) return f(r);
    r->waiting.push_back(std::move(f));
    if (r->state == Room::State::opening) return;
    r->state = Room::State::opening;
    store->openRoom(name, [this, loop = sh.index, name](StoreStatus st, RoomInfo info) {
        onLoop(loop, [this, name, st, info = std::move(info)] {
            Shard& shard2 = here();
            const auto it = shard2.rooms.find(name);
            if (it == shard2.rooms.end()) return;
            Room* opened = it->second.get();
            auto waiting = std::move(opened->waiting);
            opened->waiting.clear();
            if (st != StoreStatus::ok) {
                opened->state = Room::State::closed; // the next request tries again
                for (auto& w : waiting) w(nullptr);
                return;
            }
            opened->epoch = info.epoch;
            opened->seq = std::max(opened->seq, info.seq);
            auto ready = [opened, waiting = std::move(waiting)]() mutable {
                opened->state = Room::State::open;
                for (auto& w : waiting) w(opened);
            };
            // Several nodes: who is online elsewhere is known before the first join here.
            if (!store->shared()) return ready();
            opened->waiting = {}; // joins that come meanwhile wait too
            presenceSync(*opened, true, [opened, ready = std::move(ready)]() mutable {
                auto later = std::move(opened->waiting);
                ready();
                for (auto& w : later) w(opened);
            });
        });
    });
}

void Service::Impl::roomJoin(Room& room, SessionId sid, const std::string& user, const std::string& name,
                             std::function<void(bool, std::uint64_t, std::string)> done) {
    if (room.members.contains(sid)) return done(true, room.seq, room.epoch);
    if (room.members.size() >= here().limits.maxRoomMembers) return done(false, room.seq, room.epoch);
    room.members.insert(sid);
    room.idleSince = 0; // in use: the idle time counts again from the last member's leave
    ++room.loopMembers[loopOf(sid)];
    auto& on = room.online[user];
    if (on.connections++ == 0) {
        if (on.leaveAt) {
            // Back within the grace: the leave was never announced, so neither is this join.
            on.leaveAt = 0;
            --room.pendingLeaves;
        } else {
            on.name = name;
            localPresence(room, user, name, true);
        }
    }
    // What this loop has posted to the member's loop so far is everything up to room.seq.
    done(true, room.seq, room.epoch);
}

void Service::Impl::roomLeave(Room& room, SessionId sid, const std::string& user) {
    if (!room.members.erase(sid)) return;
    room.idleSince = 0;
    --room.loopMembers[loopOf(sid)];
    const auto it = room.online.find(user);
    if (it == room.online.end() || it->second.connections == 0) return;
    if (--it->second.connections > 0) return;
    Shard& sh = here();
    const auto grace = sh.limits.presenceGrace;
    if (grace == 0) {
        const auto name = it->second.name;
        room.online.erase(it);
        room.typingAt.erase(user);
        localPresence(room, user, name, false);
        return;
    }
    // The loop's clock ticks whole seconds: one more, so the leave comes after the full grace.
    it->second.leaveAt = sh.loop->now() + grace + 1;
    ++room.pendingLeaves;
    sh.roomsWithLeaves.insert(&room);
}

void Service::Impl::presenceTick(Shard& sh) {
    const auto now = sh.loop->now();
    if (store->shared()) {
        for (auto& [name, room] : sh.rooms) {
            if (room->state != Room::State::open || now < room->nextPresenceSync) continue;
            if (room->online.empty() && room->remote.empty() && room->nextPresenceSync) continue;
            room->nextPresenceSync = now + presenceSyncEvery;
            presenceSync(*room, false);
        }
    }
    for (auto rit = sh.roomsWithLeaves.begin(); rit != sh.roomsWithLeaves.end();) {
        Room& room = **rit;
        for (auto it = room.online.begin(); it != room.online.end() && room.pendingLeaves;) {
            if (it->second.leaveAt && it->second.leaveAt <= now) {
                const auto user = it->first;
                const auto name = it->second.name;
                it = room.online.erase(it);
                --room.pendingLeaves;
                room.typingAt.erase(user);
                localPresence(room, user, name, false);
            } else {
                ++it;
            }
        }
        rit = room.pendingLeaves ? std::next(rit) : sh.roomsWithLeaves.erase(rit);
    }
    releaseIdleRooms(sh);
}

void Service::Impl::releaseIdleRooms(Shard& sh) {
    const auto now = sh.loop->now();
    if (now < sh.nextRoomSweep) return;
    const auto idleFor = sh.limits.roomIdleSeconds;
    sh.nextRoomSweep = now + std::clamp<std::uint32_t>(idleFor / 4, 1, 10);
    for (auto it = sh.rooms.begin(); it != sh.rooms.end();) {
        Room& r = *it->second;
        // Nothing holds it: no member, no leave to announce, nobody waiting for it to open, no
        // presence refresh in flight (their answers find it by name; none holds a pointer).
        const bool settled = r.state != Room::State::opening && r.waiting.empty() && r.members.empty() &&
                             r.online.empty() && r.pendingLeaves == 0 && !r.presenceSyncing;
        if (!settled) {
            r.idleSince = 0;
            ++it;
            continue;
        }
        if (r.idleSince == 0) r.idleSince = now;
        if (now - r.idleSince < idleFor) {
            ++it;
            continue;
        }
        sh.roomsWithLeaves.erase(&r);
        store->releaseRoom(r.name);
        metrics.rooms.fetch_sub(1, std::memory_order_relaxed);
        it = sh.rooms.erase(it);
    }
}

void Service::Impl::roomStored(Room& room, AppendResult result, std::uint32_t ackLoop,
                               std::function<void(const AppendResult&)> ack, SessionId except) {
    const auto& e = result.event;
    if (e.seq <= room.seq && room.state == Room::State::open) {
        // Within the position the room opened at: its members read it from the store.
        if (ack) onLoop(ackLoop, [ack = std::move(ack), r = std::move(result)] { ack(r); });
        return;
    }
    if (e.seq > room.seq + 1 && room.state == Room::State::open)
        log(LogLevel::error, "chat: room '%s' went from seq %llu to %llu", room.name.c_str(),
            static_cast<unsigned long long>(room.seq), static_cast<unsigned long long>(e.seq));
    room.seq = std::max(room.seq, e.seq);
    auto event = std::make_shared<const std::string>(eventJson(room.name, e));
    auto shared = std::make_shared<const AppendResult>(std::move(result));
    for (std::uint32_t l = 0; l < shards.size(); ++l) {
        const bool acking = l == ackLoop && ack;
        if (!acking && room.loopMembers[l] == 0) continue;
        onLoop(l, [this, name = room.name, event, shared, seq = e.seq, except,
                   a = acking ? std::move(ack) : std::function<void(const AppendResult&)>{}] {
            // The sender's reply leaves before its copy of the event (docs/PROTOCOL.md, send).
            if (a) a(*shared);
            deliverLocal(name, seq, *event, except);
        });
    }
}

void Service::Impl::roomBroadcast(Room& room, std::string event, SessionId except) {
    auto shared = std::make_shared<const std::string>(std::move(event));
    for (std::uint32_t l = 0; l < shards.size(); ++l) {
        if (room.loopMembers[l] == 0) continue;
        onLoop(l, [this, name = room.name, topic = room.topic, shared, except] {
            Shard& sh = here();
            const auto it = sh.local.find(name);
            if (it == sh.local.end() || it->second.live == 0) return;
            WebSocket* skip = nullptr;
            if (except)
                if (Session* s = sh.find(except)) skip = s->ws;
            server.publishLocal(topic, *shared, MessageKind::text, skip);
        });
    }
}

void Service::Impl::roomRelay(Room& room, std::string event, SessionId except) {
    if (store->shared()) store->signal(room.name, Signal{Signal::Kind::relay, store->node(), {}, {}, false, event});
    roomBroadcast(room, std::move(event), except);
}

void Service::Impl::roomTyping(Room& room, SessionId sid, const std::string& user, const std::string& name,
                               bool active) {
    if (!room.members.contains(sid)) return;
    const auto now = steadyMs();
    auto& last = room.typingAt[user];
    // At most one "typing" per user and room every 2 s; "stopped" always passes, and does not
    // open a new window.
    if (active && last && now - last < 2000) return;
    if (active) last = now;
    JsonOut o;
    o.str("op", "typing").str("room", room.name).str("user", user).str("name", name).boolean("active", active);
    o.num("expiresMs", 5000);
    roomRelay(room, o.done(), sid);
}

void Service::Impl::deliverLocal(const std::string& room, std::uint64_t seq, const std::string& event,
                                 SessionId except) {
    Shard& sh = here();
    const auto it = sh.local.find(room);
    if (it == sh.local.end()) return;
    LocalRoom& lr = it->second;
    lr.lastSeq = std::max(lr.lastSeq, seq);
    if (lr.live == 0) return;
    WebSocket* skip = nullptr;
    if (except)
        if (Session* s = sh.find(except)) {
            const auto jr = s->rooms.find(room);
            if (jr != s->rooms.end() && jr->second.phase == JoinedRoom::Phase::live) skip = s->ws;
        }
    // Counted first: a send may close another connection, whose leave can free `lr`.
    metrics.deliveries.fetch_add(lr.live - (skip ? 1 : 0), std::memory_order_relaxed);
    server.publishLocal("r/" + room, event, MessageKind::text, skip);
}

// --- several nodes -------------------------------------------------------------------------------

void Service::Impl::remoteStored(AppendResult result) {
    const auto loop = roomLoop(result.room);
    onLoop(loop, [this, r = std::move(result)]() mutable {
        auto name = r.room;
        // A room let go has no member here: its next opening reads the position from the store.
        if (!here().rooms.contains(name)) return;
        withRoom(name, [this, r = std::move(r)](Room* room) mutable {
            if (room) roomStored(*room, std::move(r), 0, nullptr, 0);
        });
    });
}

void Service::Impl::remoteSignal(const std::string& room, Signal s) {
    onLoop(roomLoop(room), [this, room, s = std::move(s)] {
        Shard& sh = here();
        const auto it = sh.rooms.find(room);
        if (it == sh.rooms.end() || it->second->state != Room::State::open) return;
        Room& r = *it->second;
        if (s.kind == Signal::Kind::relay) return roomBroadcast(r, s.event, 0);
        remotePresence(r, s.node, s.user, s.name, s.join);
    });
}

void Service::Impl::roomReset(const std::string& room, const std::string& epoch) {
    onLoop(roomLoop(room), [this, room, epoch] {
        Shard& sh = here();
        const auto it = sh.rooms.find(room);
        if (it == sh.rooms.end()) return;
        Room& r = *it->second;
        log(LogLevel::warn, "chat: room '%s' starts a new history (epoch %s): its members resume", room.c_str(), epoch.c_str());
        r.epoch = epoch;
        closeMembers(r, 0, 1012, "room history reset");
    });
}

void Service::Impl::roomResync(const std::string& room, std::uint64_t seq) {
    onLoop(roomLoop(room), [this, room, seq] {
        Shard& sh = here();
        const auto it = sh.rooms.find(room);
        if (it == sh.rooms.end()) return;
        closeMembers(*it->second, seq, 1013, "catching up");
    });
}

void Service::Impl::closeMembers(Room& r, std::uint64_t seq, std::uint16_t code, const char* reason) {
    r.seq = seq;
    // Every member connection resumes: after a reset its join says `recovered: false` with a
    // gap of reason "epoch", rather than seqs that mean something else now; after a resync it
    // reads from the store what this node skipped.
    for (std::uint32_t l = 0; l < shards.size(); ++l) {
        if (r.loopMembers[l] == 0) continue;
        onLoop(l, [this, room = r.name, seq, code, reason] {
            Shard& s2 = here();
            if (auto lr = s2.local.find(room); lr != s2.local.end()) lr->second.lastSeq = seq;
            for (auto& [id, sess] : s2.sessions)
                if (sess->ws && sess->rooms.contains(room)) sess->ws->end(code, reason);
        });
    }
}

} // namespace tongdao::chat
