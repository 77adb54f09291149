// One connection's side of the protocol: requests read, checked and answered on the
// connection's loop; rooms reached by posting to their loops; the store by its callbacks.

#include "service_impl.hpp"

#include "tongdao/log.hpp"

#include <boost/json/array.hpp>

#include <chrono>

namespace tongdao::chat {

namespace json = boost::json;

namespace {

std::int64_t wallMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

Code codeOf(StoreStatus s) {
    switch (s) {
    case StoreStatus::notFound: return Code::notFound;
    case StoreStatus::forbidden: return Code::forbidden;
    default: return Code::unavailable;
    }
}

std::string_view messageOf(StoreStatus s) {
    switch (s) {
    case StoreStatus::notFound: return "no such message in this room";
    case StoreStatus::forbidden: return "that message is someone else's";
    default: return "the store is unavailable; nothing was stored";
    }
}

} // namespace

// --- connection events --------------------------------------------------------------------

void Service::Impl::onOpen(WebSocket& ws) {
    Shard& sh = here();
    auto* s = ws.getUserData<Session>();
    s->id = (static_cast<SessionId>(sh.index) << 40) | sh.nextId++;
    s->ws = &ws;
    sh.sessions.emplace(s->id, s);
    sh.helloDeadlines.emplace_back(sh.loop->now() + options.helloTimeout, s->id);
}

void Service::Impl::onMessage(WebSocket& ws, std::string_view text, MessageKind kind) {
    auto* s = ws.getUserData<Session>();
    metrics.requests.fetch_add(1, std::memory_order_relaxed);
    if (kind != MessageKind::text) return fail(*s, "null", Code::badRequest, "requests are JSON text messages, not binary");
    Request req;
    if (auto f = parseRequest(text, limits, req)) return fail(*s, req.id, f->code, f->message);
    handle(*s, req);
}

void Service::Impl::onDrain(WebSocket& ws) {
    auto* s = ws.getUserData<Session>();
    here().drainWaiters.erase(s->id);
    for (auto& [name, jr] : s->rooms) {
        if (!jr.waitDrain) continue;
        jr.waitDrain = false;
        catchUpPage(*s, name, jr);
    }
}

void Service::Impl::onClose(WebSocket& ws) {
    auto* s = ws.getUserData<Session>();
    Shard& sh = here();
    while (!s->rooms.empty()) leaveRoom(*s, s->rooms.begin()->first);
    sh.sessions.erase(s->id);
    sh.drainWaiters.erase(s->id);
    if (s->counted) users.disconnect(s->user);
    s->counted = false;
    s->ws = nullptr;
}

void Service::Impl::reply(Session& s, std::string text) {
    if (s.ws) s.ws->sendText(text);
}

void Service::Impl::fail(Session& s, std::string_view id, Code code, std::string_view message, std::uint64_t retryAfterMs) {
    reply(s, errorReply(id, code, message, retryAfterMs));
    countError(s, code);
}

void Service::Impl::countError(Session& s, Code code) {
    metrics.errorReplies.fetch_add(1, std::memory_order_relaxed);
    if (code != Code::badRequest && code != Code::tooLarge && code != Code::unsupportedVersion) return;
    // Sustained abuse: over 20 such errors within 10 s closes with 1008 (docs/PROTOCOL.md §3).
    const auto now = here().loop->now();
    if (now - s.errorWindow >= 10) {
        s.errorWindow = now;
        s.errors = 0;
    }
    if (++s.errors > 20 && s.ws) s.ws->end(1008, "too many bad requests");
}

void Service::Impl::handle(Session& s, Request& req) {
    if (!s.authed() && req.op != Op::hello && req.op != Op::ping)
        return fail(s, req.id, Code::unauthorized, "hello first");
    switch (req.op) {
    case Op::hello: return hello(s, req);
    case Op::join: return join(s, req);
    case Op::leave: return leave(s, req);
    case Op::send: return send(s, req);
    case Op::edit: return change(s, req, EventKind::edit);
    case Op::remove: return change(s, req, EventKind::remove);
    case Op::history: return history(s, req);
    case Op::read: return read(s, req);
    case Op::typing: return typing(s, req);
    case Op::presence: return presence(s, req);
    case Op::rooms: return rooms(s, req);
    case Op::ping: return reply(s, okReply(req.id).inum("ts", wallMs()).done());
    case Op::unknown: break;
    }
    fail(s, req.id, Code::badRequest, "unknown op");
}

// --- hello ----------------------------------------------------------------------------------

void Service::Impl::hello(Session& s, Request& req) {
    const auto& f = req.fields;
    if (s.authed() || s.helloInFlight) return fail(s, req.id, Code::badRequest, "hello was already done on this connection");
    const auto* v = f.if_contains("v");
    if (!v || !(v->is_int64() || v->is_uint64()) || v->to_number<std::int64_t>() != 1) {
        reply(s, JsonOut()
                     .str("op", "reply").raw("id", req.id).boolean("ok", false).str("code", "unsupported_version")
                     .str("message", "protocol version not supported (v must be 1)").raw("versions", "[1]")
                     .done());
        return countError(s, Code::unsupportedVersion);
    }
    std::string_view token = s.queryToken;
    if (const auto* t = f.if_contains("token")) {
        if (!t->is_string()) return fail(s, req.id, Code::badRequest, "token must be a string");
        token = std::string_view(t->get_string().data(), t->get_string().size());
    }
    auto id = std::make_shared<Identity>();
    if (!token.empty()) {
        if (!verifier) return fail(s, req.id, Code::unauthorized, "this server takes no tokens");
        std::string why;
        const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
        auto verified = verifier->verify(token, now, why);
        if (!verified) return fail(s, req.id, Code::unauthorized, why);
        *id = std::move(*verified);
        if (!validName(id->name)) id->name = std::string(utf8Prefix(id->user, 32));
    } else {
        if (!options.anonymous) return fail(s, req.id, Code::unauthorized, "a token is required");
        std::string_view name;
        if (auto e = needString(f, "name", name)) return fail(s, req.id, e->code, e->message);
        if (!validName(name)) return fail(s, req.id, Code::badRequest, "name must be 1-32 characters, no control characters");
        id->user = std::string(name);
        id->name = id->user;
    }
    // The rooms to resume, checked before anything takes effect.
    std::vector<std::shared_ptr<JoinContext>> joins;
    if (const auto* rooms = f.if_contains("rooms"); rooms && !rooms->is_null()) {
        if (!rooms->is_array()) return fail(s, req.id, Code::badRequest, "rooms must be an array");
        if (rooms->get_array().size() > here().limits.maxRoomsPerConnection)
            return fail(s, req.id, Code::limitExceeded, "more rooms than a connection may join");
        for (const auto& r : rooms->get_array()) {
            if (!r.is_object()) return fail(s, req.id, Code::badRequest, "each of rooms must be an object");
            auto jc = std::make_shared<JoinContext>();
            std::string_view room;
            if (auto e = needRoom(r.get_object(), room)) return fail(s, req.id, e->code, e->message);
            if (auto e = optSeq(r.get_object(), "since", jc->since, jc->hasSince)) return fail(s, req.id, e->code, e->message);
            if (const auto* ep = r.get_object().if_contains("epoch"); ep && ep->is_string())
                jc->epochGiven = std::string(ep->get_string());
            jc->room = std::string(room);
            for (const auto& other : joins)
                if (other->room == jc->room) return fail(s, req.id, Code::badRequest, "a room is named twice");
            joins.push_back(std::move(jc));
        }
    }
    s.user = id->user;
    s.name = id->name;
    s.queryToken.clear();
    s.queryToken.shrink_to_fit();
    if (id->exp > 0) here().tokenExpiries.emplace(id->exp, s.id);
    s.identity = std::move(id);
    users.connect(s.user);
    s.counted = true;

    JsonOut head = okReply(req.id);
    head.str("user", s.user).str("name", s.name);
    JsonOut about;
    about.str("name", "tongdao").num("protocol", 1).num("maxBody", options.maxBody).num("maxFrame", limits.maxBytes);
    about.num("heartbeatMs", 25000).num("idleTimeoutMs", std::uint64_t{options.idleTimeout} * 1000);
    head.raw("server", about.done());
    if (joins.empty()) return reply(s, head.done());

    auto hs = std::make_shared<HelloState>();
    hs->replyId = req.id;
    hs->head = head.done();
    hs->head.pop_back(); // reopened: the rooms array goes in
    hs->pending = joins.size();
    hs->joins = joins;
    s.helloInFlight = true;
    for (auto& jc : joins) {
        jc->sid = s.id;
        jc->hello = hs;
        if (!s.identity->mayJoin(jc->room)) {
            jc->failed = true;
            jc->code = Code::forbidden;
            jc->message = "the token does not allow this room";
            joinComplete(s, jc);
            continue;
        }
        startJoin(s, jc);
    }
}

// --- leave ------------------------------------------------------------------------------------

void Service::Impl::leaveRoom(Session& s, std::string room) {
    const auto it = s.rooms.find(room);
    if (it == s.rooms.end()) return;
    Shard& sh = here();
    if (it->second.phase == JoinedRoom::Phase::live && s.ws) s.ws->unsubscribe("r/" + room);
    if (auto lr = sh.local.find(room); lr != sh.local.end()) {
        if (it->second.phase == JoinedRoom::Phase::live) --lr->second.live;
        if (--lr->second.sessions == 0) sh.local.erase(lr);
    }
    s.rooms.erase(it);
    onLoop(roomLoop(room), [this, room, sid = s.id, user = s.user] {
        withRoom(room, [this, sid, user](Room* r) {
            if (r) roomLeave(*r, sid, user);
        });
    });
}

void Service::Impl::leave(Session& s, Request& req) {
    std::string_view room;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    leaveRoom(s, std::string(room));
    store->removeMember(std::string(room), s.user, [this, sid = s.id, id = req.id](StoreStatus st) {
        toSession(sid, [this, id, st](Session& self) {
            if (st != StoreStatus::ok) return fail(self, id, Code::unavailable, "the store is unavailable");
            reply(self, okReply(id).done());
        });
    });
}

// --- send, edit, delete -------------------------------------------------------------------

void Service::Impl::storeEvent(AppendRequest req, std::function<void(const AppendResult&)> ack, SessionId except) {
    const auto ackLoop = here().index;
    const auto loop = roomLoop(req.room);
    store->append(std::move(req), [this, ack = std::move(ack), ackLoop, loop, except](AppendResult r) mutable {
        if (r.status != StoreStatus::ok || !r.fanOut) {
            return onLoop(ackLoop, [ack = std::move(ack), r = std::move(r)] { ack(r); });
        }
        // Stored: to the room's loop, which moves its seq on and fans the event out.
        onLoop(loop, [this, ack = std::move(ack), ackLoop, except, r = std::move(r)]() mutable {
            auto name = r.room;
            withRoom(name, [this, ack = std::move(ack), ackLoop, except, r = std::move(r)](Room* room) mutable {
                if (!room) {
                    // Stored, but the room cannot be opened to fan out: members get it on resume.
                    return onLoop(ackLoop, [ack = std::move(ack), r = std::move(r)] { ack(r); });
                }
                roomStored(*room, std::move(r), ackLoop, std::move(ack), except);
            });
        });
    });
}

namespace {

std::function<void(const AppendResult&)> sendAck(Service::Impl& impl, SessionId sid, std::string id, std::string room) {
    return [&impl, sid, id = std::move(id), room = std::move(room)](const AppendResult& r) {
        Session* s = impl.here().find(sid);
        if (!s) return;
        if (r.status != StoreStatus::ok && r.status != StoreStatus::duplicate)
            return impl.fail(*s, id, codeOf(r.status), messageOf(r.status));
        JsonOut o = okReply(id);
        o.num("seq", r.event.seq).inum("ts", r.event.ts);
        if (r.status == StoreStatus::duplicate) {
            impl.metrics.duplicates.fetch_add(1, std::memory_order_relaxed);
            o.boolean("duplicate", true);
            if (r.room != room) o.str("room", r.room);
        }
        impl.reply(*s, o.done());
    };
}

} // namespace

void Service::Impl::send(Session& s, Request& req) {
    std::string_view room, cid;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    if (auto e = needString(req.fields, "cid", cid)) return fail(s, req.id, e->code, e->message);
    if (!validCid(cid)) return fail(s, req.id, Code::badRequest, "cid must be 1-64 printable ASCII characters");
    bool excludeSelf = false;
    if (auto e = optBool(req.fields, "excludeSelf", excludeSelf)) return fail(s, req.id, e->code, e->message);
    std::string body;
    if (auto e = needBody(req.fields, options.maxBody, body)) return fail(s, req.id, e->code, e->message);
    if (!s.rooms.contains(std::string(room))) return fail(s, req.id, Code::notJoined, "join the room first");
    if (const auto wait = users.takeSend(s.user, here().limits.rateLimit, here().limits.rateBurst))
        return fail(s, req.id, Code::rateLimited, "too many messages", wait);
    metrics.sends.fetch_add(1, std::memory_order_relaxed);
    AppendRequest ar{std::string(room), EventKind::message, 0, s.user, s.name, std::string(cid), std::move(body)};
    storeEvent(std::move(ar), sendAck(*this, s.id, req.id, std::string(room)), excludeSelf ? s.id : 0);
}

void Service::Impl::change(Session& s, Request& req, EventKind kind) {
    std::string_view room, cid;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    std::uint64_t target = 0;
    bool hasTarget = false;
    if (auto e = optSeq(req.fields, "target", target, hasTarget)) return fail(s, req.id, e->code, e->message);
    if (!hasTarget || target == 0) return fail(s, req.id, Code::badRequest, "target (a seq) is required");
    if (req.fields.contains("cid")) {
        if (auto e = needString(req.fields, "cid", cid)) return fail(s, req.id, e->code, e->message);
        if (!validCid(cid)) return fail(s, req.id, Code::badRequest, "cid must be 1-64 printable ASCII characters");
    }
    std::string body = "null";
    if (kind == EventKind::edit)
        if (auto e = needBody(req.fields, options.maxBody, body)) return fail(s, req.id, e->code, e->message);
    if (!s.rooms.contains(std::string(room))) return fail(s, req.id, Code::notJoined, "join the room first");
    if (const auto wait = users.takeSend(s.user, here().limits.rateLimit, here().limits.rateBurst))
        return fail(s, req.id, Code::rateLimited, "too many messages", wait);
    AppendRequest ar{std::string(room), kind, target, s.user, s.name, std::string(cid), std::move(body)};
    storeEvent(std::move(ar), sendAck(*this, s.id, req.id, std::string(room)), 0);
}

// --- history, read, typing, presence, rooms ---------------------------------------------------

void Service::Impl::history(Session& s, Request& req) {
    std::string_view room;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    if (!s.identity->mayJoin(room)) return fail(s, req.id, Code::forbidden, "the token does not allow this room");
    std::uint64_t before = 0, after = 0, limit = 50;
    bool hasBefore = false, hasAfter = false, hasLimit = false;
    if (auto e = optSeq(req.fields, "before", before, hasBefore)) return fail(s, req.id, e->code, e->message);
    if (auto e = optSeq(req.fields, "after", after, hasAfter)) return fail(s, req.id, e->code, e->message);
    if (auto e = optSeq(req.fields, "limit", limit, hasLimit)) return fail(s, req.id, e->code, e->message);
    if (hasBefore && hasAfter) return fail(s, req.id, Code::badRequest, "give before or after, not both");
    if (limit < 1 || limit > 100) return fail(s, req.id, Code::badRequest, "limit must be 1-100");
    ReadQuery q{std::string(room), hasAfter ? ReadQuery::Dir::after : hasBefore ? ReadQuery::Dir::before : ReadQuery::Dir::latest,
                hasAfter ? after : before, static_cast<std::uint32_t>(limit)};
    store->read(std::move(q), [this, sid = s.id, id = req.id, room = std::string(room)](ReadResult res) {
        toSession(sid, [this, id, room, res = std::move(res)](Session& self) {
            if (res.status != StoreStatus::ok) return fail(self, id, Code::unavailable, "the store is unavailable");
            std::string events = "[";
            for (std::size_t i = 0; i < res.events.size(); ++i) {
                if (i) events += ',';
                appendEvent(events, room, res.events[i]);
            }
            events += ']';
            JsonOut o = okReply(id);
            o.str("room", room).num("seq", res.seq).str("epoch", res.epoch).num("oldest", res.oldest);
            o.boolean("more", res.more).raw("events", events);
            reply(self, o.done());
        });
    });
}

void Service::Impl::read(Session& s, Request& req) {
    std::string_view room;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    std::uint64_t seq = 0;
    bool hasSeq = false;
    if (auto e = optSeq(req.fields, "seq", seq, hasSeq)) return fail(s, req.id, e->code, e->message);
    if (!hasSeq) return fail(s, req.id, Code::badRequest, "seq is required");
    if (!s.rooms.contains(std::string(room))) return fail(s, req.id, Code::notJoined, "join the room first");
    store->markRead(std::string(room), s.user, seq,
                    [this, sid = s.id, id = req.id, room = std::string(room), user = s.user](StoreStatus st,
                                                                                              std::uint64_t mark, bool moved) {
                        toSession(sid, [this, id, st, mark](Session& self) {
                            if (st != StoreStatus::ok) return fail(self, id, Code::unavailable, "the store is unavailable");
                            reply(self, okReply(id).num("seq", mark).done());
                        });
                        if (!moved) return;
                        onLoop(roomLoop(room), [this, room, user, mark] {
                            withRoom(room, [this, user, mark](Room* r) {
                                if (!r) return;
                                JsonOut o;
                                o.str("op", "read").str("room", r->name).str("user", user).num("seq", mark);
                                roomRelay(*r, o.done(), 0);
                            });
                        });
                    });
}

void Service::Impl::typing(Session& s, Request& req) {
    std::string_view room;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    bool active = true;
    if (auto e = optBool(req.fields, "active", active)) return fail(s, req.id, e->code, e->message);
    if (!s.rooms.contains(std::string(room))) return fail(s, req.id, Code::notJoined, "join the room first");
    reply(s, okReply(req.id).done());
    onLoop(roomLoop(room), [this, room = std::string(room), sid = s.id, user = s.user, name = s.name, active] {
        withRoom(room, [this, sid, user, name, active](Room* r) {
            if (r) roomTyping(*r, sid, user, name, active);
        });
    });
}

void Service::Impl::presence(Session& s, Request& req) {
    std::string_view room;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    if (!s.rooms.contains(std::string(room))) return fail(s, req.id, Code::notJoined, "join the room first");
    onLoop(roomLoop(room), [this, room = std::string(room), sid = s.id, id = req.id] {
        withRoom(room, [this, sid, id, room](Room* r) {
            std::string list = "[";
            std::size_t count = 0;
            if (r) {
                auto add = [&](const std::string& user, const std::string& name) {
                    if (count++ >= 1000) return;
                    if (list.size() > 1) list += ',';
                    list += JsonOut().str("user", user).str("name", name).done();
                };
                for (const auto& [user, on] : r->online) add(user, on.name);
                for (const auto& [user, ru] : r->remote)
                    if (!r->online.contains(user)) add(user, ru.name); // online on another node
            }
            list += ']';
            toSession(sid, [this, id, room, list = std::move(list), count, ok = r != nullptr](Session& self) {
                if (!ok) return fail(self, id, Code::unavailable, "the store is unavailable");
                reply(self, okReply(id).str("room", room).num("count", count).raw("users", list).done());
            });
        });
    });
}

void Service::Impl::rooms(Session& s, Request& req) {
    store->userRooms(s.user, 1000, [this, sid = s.id, id = req.id](StoreStatus st, std::vector<UserRoom> list) {
        toSession(sid, [this, id, st, list = std::move(list)](Session& self) {
            if (st != StoreStatus::ok) return fail(self, id, Code::unavailable, "the store is unavailable");
            std::string out = "[";
            for (const auto& r : list) {
                if (out.size() > 1) out += ',';
                out += JsonOut().str("room", r.room).num("seq", r.seq).str("epoch", r.epoch).num("readSeq", r.readSeq)
                           .num("unread", r.unread).boolean("joined", self.rooms.contains(r.room)).done();
            }
            out += ']';
            reply(self, okReply(id).raw("rooms", out).done());
        });
    });
}

} // namespace tongdao::chat
