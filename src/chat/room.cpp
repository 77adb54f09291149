// Rooms: each on the loop its name hashes to. Its seq follows commit order (the store calls
// back in seq order and each callback is posted here in turn); fan-out happens after commit.

#include "service_impl.hpp"

#include "tongdao/log.hpp"

#include <chrono>

namespace tongdao::chat {

namespace {

std::int64_t steadyMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string presenceEvent(const Room& room, const std::string& user, const std::string& name, bool join) {
    JsonOut o;
    o.str("op", "presence").str("room", room.name).str("user", user).str("name", name).str("state", join ? "join" : "leave");
    o.num("count", room.online.size());
    return o.done();
}

} // namespace

void Service::Impl::announcePresence(Room& room, const std::string& user, const std::string& name, bool join) {
    // Every join told to every member is quadratic in the room's size: past the limit the
    // room's presence is asked for (`presence`), not announced.
    if (room.online.size() > options.maxPresenceEvents) return;
    roomBroadcast(room, presenceEvent(room, user, name, join), 0);
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
            opened->state = Room::State::open;
            opened->epoch = info.epoch;
            opened->seq = std::max(opened->seq, info.seq);
            for (auto& w : waiting) w(opened);
        });
    });
}

void Service::Impl::roomJoin(Room& room, SessionId sid, const std::string& user, const std::string& name,
                             std::function<void(bool, std::uint64_t, std::string)> done) {
    if (room.members.contains(sid)) return done(true, room.seq, room.epoch);
    if (room.members.size() >= options.maxRoomMembers) return done(false, room.seq, room.epoch);
    room.members.insert(sid);
    ++room.loopMembers[loopOf(sid)];
    auto& on = room.online[user];
    if (on.connections++ == 0) {
        if (on.leaveAt) {
            // Back within the grace: the leave was never announced, so neither is this join.
            on.leaveAt = 0;
            --room.pendingLeaves;
        } else {
            on.name = name;
            announcePresence(room, user, name, true);
        }
    }
    // What this loop has posted to the member's loop so far is everything up to room.seq.
    done(true, room.seq, room.epoch);
}

void Service::Impl::roomLeave(Room& room, SessionId sid, const std::string& user) {
    if (!room.members.erase(sid)) return;
    --room.loopMembers[loopOf(sid)];
    const auto it = room.online.find(user);
    if (it == room.online.end() || it->second.connections == 0) return;
    if (--it->second.connections > 0) return;
    if (options.presenceGrace == 0) {
        const auto name = it->second.name;
        room.online.erase(it);
        room.typingAt.erase(user);
        announcePresence(room, user, name, false);
        return;
    }
    Shard& sh = here();
    // The loop's clock ticks whole seconds: one more, so the leave comes after the full grace.
    it->second.leaveAt = sh.loop->now() + options.presenceGrace + 1;
    ++room.pendingLeaves;
    sh.roomsWithLeaves.insert(&room);
}

void Service::Impl::presenceTick(Shard& sh) {
    const auto now = sh.loop->now();
    for (auto rit = sh.roomsWithLeaves.begin(); rit != sh.roomsWithLeaves.end();) {
        Room& room = **rit;
        for (auto it = room.online.begin(); it != room.online.end() && room.pendingLeaves;) {
            if (it->second.leaveAt && it->second.leaveAt <= now) {
                const auto user = it->first;
                const auto name = it->second.name;
                it = room.online.erase(it);
                --room.pendingLeaves;
                room.typingAt.erase(user);
                announcePresence(room, user, name, false);
            } else {
                ++it;
            }
        }
        rit = room.pendingLeaves ? std::next(rit) : sh.roomsWithLeaves.erase(rit);
    }
}

void Service::Impl::roomStored(Room& room, AppendResult result, std::uint32_t ackLoop,
                               std::function<void(const AppendResult&)> ack, SessionId except) {
    const auto& e = result.event;
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
    roomBroadcast(room, o.done(), sid);
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
    server.publishLocal("r/" + room, event, MessageKind::text, skip);
    metrics.deliveries.fetch_add(lr.live - (skip ? 1 : 0), std::memory_order_relaxed);
}

} // namespace tongdao::chat
