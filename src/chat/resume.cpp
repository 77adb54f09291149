// Joining a room and catching up: the member is registered at the room's loop, its read
// mark and the room's kept history read, the reply sent, then every event it is owed, a page
// at a time, until it has what its loop has seen; then it takes the live events.

#include "service_impl.hpp"

namespace tongdao::chat {

namespace {

/** Catch-up reads this many events at a time, and pauses above this backlog. */
constexpr std::uint32_t pageSize = 100;
constexpr std::size_t catchUpBacklog = 64 * 1024;
/** Catch-up reads in flight per loop: pages held in memory at once. */
constexpr std::uint32_t catchUpSlots = 16;

} // namespace

// --- join: register at the room, read membership and the first page, reply, catch up ------

void Service::Impl::join(Session& s, Request& req) {
    auto jc = std::make_shared<JoinContext>();
    std::string_view room;
    if (auto e = needRoom(req.fields, room)) return fail(s, req.id, e->code, e->message);
    if (auto e = optSeq(req.fields, "since", jc->since, jc->hasSince)) return fail(s, req.id, e->code, e->message);
    if (const auto* ep = req.fields.if_contains("epoch"); ep && !ep->is_null()) {
        if (!ep->is_string()) return fail(s, req.id, Code::badRequest, "epoch must be a string");
        jc->epochGiven = std::string(ep->get_string());
    }
    if (!s.identity->mayJoin(room)) return fail(s, req.id, Code::forbidden, "the token does not allow this room");
    if (!s.rooms.contains(std::string(room)) && s.rooms.size() >= here().limits.maxRoomsPerConnection)
        return fail(s, req.id, Code::limitExceeded, "more rooms than a connection may join");
    jc->sid = s.id;
    jc->room = std::string(room);
    jc->replyId = req.id;
    startJoin(s, std::move(jc));
}

void Service::Impl::startJoin(Session& s, std::shared_ptr<JoinContext> jc) {
    if (s.rooms.contains(jc->room)) {
        jc->already = true;
    } else {
        JoinedRoom jr;
        jr.readGen = jc->gen = ++s.nextRead;
        s.rooms.emplace(jc->room, jr);
        ++here().local[jc->room].sessions;
    }
    joinAtRoom(jc, s.user, s.name);
}

void Service::Impl::joinAtRoom(std::shared_ptr<JoinContext> jc, std::string user, std::string name) {
    onLoop(roomLoop(jc->room), [this, jc, user = std::move(user), name = std::move(name)] {
        withRoom(jc->room, [this, jc, user, name](Room* room) {
            if (room && store->shared() && jc->hasSince && !jc->synced && jc->since > room->seq) {
                // A resume past this node's position: another node stored more than this one
                // has handed on yet (its subscription was down). Caught up first, then joined.
                jc->synced = true;
                return store->sync(jc->room, [this, jc, user, name] { joinAtRoom(jc, user, name); });
            }
            if (!room) {
                return toSession(jc->sid, [this, jc](Session& self) {
                    jc->failed = true;
                    jc->code = Code::unavailable;
                    jc->message = "the store is unavailable";
                    joinComplete(self, jc);
                });
            }
            roomJoin(*room, jc->sid, user, name, [this, jc](bool ok, std::uint64_t seq, std::string epoch) {
                toSession(jc->sid, [this, jc, ok, seq, epoch = std::move(epoch)](Session& self) {
                    if (!ok) {
                        jc->failed = true;
                        jc->code = Code::limitExceeded;
                        jc->message = "the room is full";
                    } else {
                        jc->seq = seq;
                        jc->epoch = epoch;
                    }
                    joinGranted(self, jc);
                });
            });
        });
    });
}

void Service::Impl::joinGranted(Session& s, std::shared_ptr<JoinContext> jc) {
    if (jc->failed) return joinComplete(s, jc);
    // Everything up to jc->seq is committed; everything after it comes to this loop.
    LocalRoom& lr = here().local[jc->room];
    lr.lastSeq = std::max(lr.lastSeq, jc->seq);
    if (!jc->hasSince || jc->already) {
        jc->cursor = jc->seq;
    } else if ((!jc->epochGiven.empty() && jc->epochGiven != jc->epoch) || jc->since > jc->seq) {
        // A position from another history (or one this room never reached): it was lost.
        jc->gapEpoch = true;
        jc->cursor = 0;
    } else {
        jc->cursor = jc->since;
    }
    store->memberInfo(jc->room, s.user, [this, jc](MemberInfo info) {
        toSession(jc->sid, [this, jc, info](Session& self) {
            if (info.status != StoreStatus::ok) {
                jc->failed = true;
                jc->code = Code::unavailable;
                jc->message = "the store is unavailable";
                return joinComplete(self, jc);
            }
            if (info.member) {
                jc->member = info;
                return joinRead(self, jc);
            }
            // A new member: its read mark starts at the room's latest seq.
            store->addMember(jc->room, self.user, jc->seq, [this, jc](MemberInfo added) {
                toSession(jc->sid, [this, jc, added](Session& again) {
                    if (added.status != StoreStatus::ok) {
                        jc->failed = true;
                        jc->code = Code::unavailable;
                        jc->message = "the store is unavailable";
                        return joinComplete(again, jc);
                    }
                    jc->member = added;
                    joinRead(again, jc);
                });
            });
        });
    });
}

void Service::Impl::joinRead(Session& s, std::shared_ptr<JoinContext> jc) {
    (void)s;
    // Where the room's kept history starts, for `recovered` and `oldest`; the events come
    // with the catch-up, which shares its loop's read slots with every other one.
    ReadQuery q{jc->room, ReadQuery::Dir::after, jc->cursor, 0};
    store->read(std::move(q), [this, jc](ReadResult res) {
        toSession(jc->sid, [this, jc, res = std::move(res)](Session& self) mutable {
            if (res.status != StoreStatus::ok) {
                jc->failed = true;
                jc->code = Code::unavailable;
                jc->message = "the store is unavailable";
            } else if (res.epoch != jc->epoch) {
                // The history changed between the room's position and this read (a shared
                // store lost its data): the position means nothing now. The room resets.
                jc->failed = true;
                jc->code = Code::unavailable;
                jc->message = "the room's history was reset; join again";
            }
            jc->page = std::move(res);
            joinComplete(self, jc);
        });
    });
}

namespace {

/** The join reply's fields (after op/id/ok, or after room/ok in a hello's rooms). */
void joinFields(JsonOut& o, const Service::Impl::JoinContext& jc, bool recovered) {
    o.num("seq", jc.seq).str("epoch", jc.epoch).boolean("recovered", recovered).num("oldest", jc.page.oldest);
    o.num("unread", jc.member.unread).num("readSeq", jc.member.readSeq);
    if (jc.already) o.boolean("already", true);
}

bool isRecovered(const Service::Impl::JoinContext& jc) {
    if (!jc.hasSince || jc.already) return true;
    if (jc.gapEpoch) return false;
    return !(jc.cursor < jc.seq && jc.page.oldest > jc.cursor + 1);
}

} // namespace

void Service::Impl::joinComplete(Session& s, std::shared_ptr<JoinContext> jc) {
    if (jc->failed && !jc->already) {
        // Undo what this join did on this connection; the room forgets it on our leave.
        const auto it = s.rooms.find(jc->room);
        if (it != s.rooms.end() && it->second.readGen == jc->gen) leaveRoom(s, jc->room);
    }
    if (!jc->failed) {
        const bool recovered = isRecovered(*jc);
        if (jc->hasSince && !jc->already) {
            auto& counter = recovered ? metrics.resumesRecovered : jc->gapEpoch ? metrics.resumesEpoch : metrics.resumesRetention;
            counter.fetch_add(1, std::memory_order_relaxed);
        } else if (!jc->already) {
            metrics.joinsFresh.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if (!jc->hello) {
        if (jc->failed) return fail(s, jc->replyId, jc->code, jc->message);
        JsonOut o = okReply(jc->replyId);
        o.str("room", jc->room);
        joinFields(o, *jc, isRecovered(*jc));
        reply(s, o.done());
        return joinDeliver(s, *jc);
    }
    auto hs = jc->hello;
    if (--hs->pending > 0) return;
    // Every room of the hello is done: the reply, then each room's catch-up.
    s.helloInFlight = false;
    std::string out = std::move(hs->head);
    out += ",\"rooms\":[";
    bool first = true;
    for (const auto& j : hs->joins) {
        if (!first) out += ',';
        first = false;
        JsonOut o;
        o.str("room", j->room);
        if (j->failed) {
            o.boolean("ok", false).str("code", codeName(j->code)).str("message", j->message);
        } else {
            o.boolean("ok", true);
            joinFields(o, *j, isRecovered(*j));
        }
        out += o.done();
    }
    out += "]}";
    reply(s, std::move(out));
    for (auto& j : hs->joins) {
        j->hello.reset(); // breaks the cycle hello -> joins -> hello
        if (!j->failed) joinDeliver(s, *j);
    }
}

void Service::Impl::joinDeliver(Session& s, JoinContext& jc) {
    if (jc.already) return;
    const auto it = s.rooms.find(jc.room);
    if (it == s.rooms.end() || it->second.readGen != jc.gen) return; // left (and maybe joined again) meanwhile
    JoinedRoom& jr = it->second;
    jr.phase = JoinedRoom::Phase::catchingUp;
    jr.cursor = jc.cursor;
    if (jc.gapEpoch) {
        reply(s, JsonOut().str("op", "gap").str("room", jc.room).str("reason", "epoch").str("epoch", jc.epoch).done());
    }
    if (!sendEvents(s, jc.room, jr, jc.page.events)) {
        jr.waitDrain = true;
        here().drainWaiters.insert(s.id);
        return;
    }
    catchUpPage(s, jc.room, jr);
}

bool Service::Impl::sendEvents(Session& s, const std::string& room, JoinedRoom& jr, const std::vector<StoredEvent>& events) {
    // Only up to what this loop has seen: later events reach it live, and would come twice.
    const auto upTo = here().local[room].lastSeq;
    for (const auto& e : events) {
        if (e.seq <= jr.cursor) continue;
        if (e.seq > upTo) break;
        if (e.seq > jr.cursor + 1) {
            // Older than the retention kept: said, never skipped silently.
            reply(s, JsonOut().str("op", "gap").str("room", room).num("from", jr.cursor + 1).num("to", e.seq - 1)
                         .str("reason", "retention").done());
        }
        if (!s.ws || s.ws->getBufferedAmount() > catchUpBacklog) return false;
        s.ws->sendText(eventJson(room, e));
        metrics.deliveries.fetch_add(1, std::memory_order_relaxed);
        jr.cursor = e.seq;
    }
    return true;
}

void Service::Impl::catchUpPage(Session& s, const std::string& room, JoinedRoom& jr) {
    if (jr.phase != JoinedRoom::Phase::catchingUp || jr.reading || jr.waitDrain || jr.queued || !s.ws) return;
    Shard& sh = here();
    LocalRoom& lr = sh.local[room];
    if (jr.cursor >= lr.lastSeq) {
        // Caught up with everything this loop has seen: from now on the live events. Nothing
        // can arrive between this check and the subscription: both happen on this loop.
        s.ws->subscribe("r/" + room);
        jr.phase = JoinedRoom::Phase::live;
        ++lr.live;
        return;
    }
    if (s.ws->getBufferedAmount() > catchUpBacklog) {
        jr.waitDrain = true;
        sh.drainWaiters.insert(s.id);
        return;
    }
    catchUpRead(s, room, jr);
}

void Service::Impl::catchUpRead(Session& s, const std::string& room, JoinedRoom& jr) {
    Shard& sh = here();
    if (sh.catchUpReads >= catchUpSlots) {
        if (!jr.queued) {
            jr.queued = true;
            sh.catchUpWaiting.emplace_back(s.id, room, jr.readGen);
        }
        return;
    }
    ++sh.catchUpReads;
    jr.reading = true;
    jr.readGen = ++s.nextRead;
    const auto loop = sh.index;
    store->read({room, ReadQuery::Dir::after, jr.cursor, pageSize}, [this, loop, sid = s.id, room, gen = jr.readGen](ReadResult res) {
        onLoop(loop, [this, sid, room, gen, res = std::move(res)] {
            Shard& shard2 = here();
            --shard2.catchUpReads;
            Session* sp = shard2.find(sid);
            const auto it = sp ? sp->rooms.find(room) : decltype(sp->rooms.end()){};
            if (sp && it != sp->rooms.end() && it->second.readGen == gen) {
                Session& self = *sp;
                JoinedRoom& joined = it->second;
                joined.reading = false;
                if (res.status != StoreStatus::ok) {
                    // The client resumes from its position once the store is back.
                    if (self.ws) self.ws->end(1013, "store unavailable");
                } else if (res.events.empty() && res.seq < shard2.local[room].lastSeq) {
                    // The store has less than this loop delivered: its history was reset.
                    if (self.ws) self.ws->end(1012, "room history reset");
                } else {
                    if (res.events.empty() && res.oldest > joined.cursor + 1) {
                        // Retention removed everything after the cursor: say so, then go on from there.
                        const auto to = std::min({res.oldest - 1, res.seq, shard2.local[room].lastSeq});
                        reply(self, JsonOut().str("op", "gap").str("room", room).num("from", joined.cursor + 1).num("to", to)
                                     .str("reason", "retention").done());
                        joined.cursor = to;
                    }
                    if (!sendEvents(self, room, joined, res.events)) {
                        joined.waitDrain = true;
                        shard2.drainWaiters.insert(self.id);
                    } else {
                        catchUpPage(self, room, joined);
                    }
                }
            }
            releaseCatchUpSlot(shard2);
        });
    });
}

void Service::Impl::releaseCatchUpSlot(Shard& sh) {
    while (sh.catchUpReads < catchUpSlots && !sh.catchUpWaiting.empty()) {
        auto [sid, room, gen] = std::move(sh.catchUpWaiting.front());
        sh.catchUpWaiting.pop_front();
        Session* s = sh.find(sid);
        if (!s) continue;
        const auto it = s->rooms.find(room);
        if (it == s->rooms.end() || it->second.readGen != gen || !it->second.queued) continue;
        it->second.queued = false;
        catchUpPage(*s, room, it->second);
    }
}

} // namespace tongdao::chat
