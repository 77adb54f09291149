// The HTTP API for the application's own backend (docs/PROTOCOL.md §8): post into a room
// with an idempotency key, read a room's history and presence, list the rooms.

#include "service_impl.hpp"

#include <boost/json/parse.hpp>

#include <openssl/crypto.h>

#include <charconv>

namespace tongdao::chat {

namespace json = boost::json;

namespace {

constexpr std::string_view prefix = "/api/rooms/";

HttpResponse jsonResponse(int status, std::string body) {
    HttpResponse res;
    res.status = status;
    res.body = std::move(body);
    res.setHeader("Content-Type", "application/json");
    res.setHeader("Cache-Control", "no-store");
    return res;
}

HttpResponse errorResponse(Code code, std::string_view message) {
    auto res = jsonResponse(httpStatus(code), JsonOut().str("code", codeName(code)).str("message", message).done());
    if (code == Code::unauthorized) res.setHeader("WWW-Authenticate", "Bearer");
    return res;
}

bool authorized(const HttpRequest& req, const std::string& key) {
    const auto h = req.header("Authorization");
    constexpr std::string_view bearer = "Bearer ";
    if (h.size() != bearer.size() + key.size() || h.substr(0, bearer.size()) != bearer) return false;
    return CRYPTO_memcmp(h.data() + bearer.size(), key.data(), key.size()) == 0;
}

bool parseSeq(std::string_view s, std::uint64_t& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size() && out <= (std::uint64_t{1} << 53);
}

/** The responder, shared: answers cross loops inside copyable callbacks. */
using Responder = std::shared_ptr<HttpResponder>;

void answer(const Responder& r, HttpResponse res) {
    net::Loop* loop = r->loop();
    if (!loop) return;
    if (loop->isInLoopThread()) return r->respond(std::move(res));
    loop->post([r, res = std::move(res)]() mutable { r->respond(std::move(res)); });
}

/** GET /api/rooms: who is online is known to each room's loop; each loop is asked in turn. */
struct RoomsGather {
    std::vector<RoomSummary> rooms;
    std::vector<std::size_t> online;
};

void gatherOnline(Service::Impl& impl, Responder r, std::shared_ptr<RoomsGather> g, std::uint32_t loop) {
    if (loop == impl.shards.size()) {
        std::string out = "[";
        for (std::size_t i = 0; i < g->rooms.size(); ++i) {
            if (i) out += ',';
            out += JsonOut().str("room", g->rooms[i].room).num("seq", g->rooms[i].seq).str("epoch", g->rooms[i].epoch)
                       .num("online", g->online[i]).done();
        }
        out += ']';
        return answer(r, jsonResponse(200, JsonOut().raw("rooms", out).done()));
    }
    impl.onLoop(loop, [&impl, r, g, loop] {
        Shard& sh = impl.here();
        for (std::size_t i = 0; i < g->rooms.size(); ++i) {
            if (impl.roomLoop(g->rooms[i].room) != loop) continue;
            if (const auto it = sh.rooms.find(g->rooms[i].room); it != sh.rooms.end()) g->online[i] = it->second->online.size();
        }
        gatherOnline(impl, r, g, loop + 1);
    });
}

} // namespace

void Service::Impl::addHttpApi() {
    if (options.apiKey.empty()) return;
    // POST /api/rooms/ROOM/messages
    server.route("POST", std::string(prefix) + "*", [this](const HttpRequest& req, HttpResponder responder) {
        auto r = std::make_shared<HttpResponder>(std::move(responder));
        if (!authorized(req, options.apiKey)) return answer(r, errorResponse(Code::unauthorized, "a valid bearer key is required"));
        auto rest = req.path().substr(prefix.size());
        const auto slash = rest.find('/');
        const auto room = rest.substr(0, slash);
        if (slash == std::string_view::npos || rest.substr(slash) != "/messages")
            return answer(r, errorResponse(Code::notFound, "POST /api/rooms/ROOM/messages is the only POST"));
        if (!validRoomName(room)) return answer(r, errorResponse(Code::badRequest, "bad room name"));
        std::error_code ec;
        json::parse_options opts;
        opts.max_depth = limits.maxDepth;
        auto v = json::parse(json::string_view(req.body().data(), req.body().size()), ec, {}, opts);
        if (ec || !v.is_object()) return answer(r, errorResponse(Code::badRequest, "the body must be a JSON object"));
        const auto& o = v.get_object();
        std::string_view user, name, cid = req.header("Idempotency-Key");
        if (auto f = needString(o, "user", user)) return answer(r, errorResponse(f->code, f->message));
        if (user.empty() || user.size() > 128) return answer(r, errorResponse(Code::badRequest, "user must be 1-128 characters"));
        name = user;
        if (o.contains("name")) {
            if (auto f = needString(o, "name", name)) return answer(r, errorResponse(f->code, f->message));
            if (!validName(name)) return answer(r, errorResponse(Code::badRequest, "name must be 1-32 characters"));
        }
        if (cid.empty() && o.contains("cid"))
            if (auto f = needString(o, "cid", cid)) return answer(r, errorResponse(f->code, f->message));
        if (cid.empty()) return answer(r, errorResponse(Code::badRequest, "an Idempotency-Key header (or cid) is required"));
        if (!validCid(cid)) return answer(r, errorResponse(Code::badRequest, "the idempotency key must be 1-64 printable ASCII characters"));
        std::string body;
        if (auto f = needBody(o, options.maxBody, body)) return answer(r, errorResponse(f->code, f->message));
        metrics.sends.fetch_add(1, std::memory_order_relaxed);
        AppendRequest ar{std::string(room), EventKind::message, 0, std::string(user), std::string(name), std::string(cid),
                         std::move(body)};
        storeEvent(std::move(ar), [this, r](const AppendResult& res) {
            if (res.status != StoreStatus::ok && res.status != StoreStatus::duplicate)
                return answer(r, errorResponse(Code::unavailable, "the store is unavailable; nothing was stored"));
            if (res.status == StoreStatus::duplicate) metrics.duplicates.fetch_add(1, std::memory_order_relaxed);
            answer(r, jsonResponse(200, JsonOut().str("room", res.room).num("seq", res.event.seq).inum("ts", res.event.ts)
                                            .boolean("duplicate", res.status == StoreStatus::duplicate).done()));
        }, 0);
    });

    // GET /api/rooms/ROOM/messages and /api/rooms/ROOM/presence
    server.route("GET", std::string(prefix) + "*", [this](const HttpRequest& req, HttpResponder responder) {
        auto r = std::make_shared<HttpResponder>(std::move(responder));
        if (!authorized(req, options.apiKey)) return answer(r, errorResponse(Code::unauthorized, "a valid bearer key is required"));
        auto rest = req.path().substr(prefix.size());
        const auto slash = rest.find('/');
        const std::string room(rest.substr(0, slash));
        const auto what = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
        if (!validRoomName(room)) return answer(r, errorResponse(Code::badRequest, "bad room name"));
        if (what == "/messages") {
            std::uint64_t before = 0, after = 0, limit = 50;
            const auto qb = req.queryParam("before"), qa = req.queryParam("after"), ql = req.queryParam("limit");
            if ((!qb.empty() && !parseSeq(qb, before)) || (!qa.empty() && !parseSeq(qa, after)) ||
                (!ql.empty() && !parseSeq(ql, limit)) || (!qa.empty() && !qb.empty()) || limit < 1 || limit > 100)
                return answer(r, errorResponse(Code::badRequest, "before or after: a seq; limit: 1-100"));
            ReadQuery q{room, !qa.empty() ? ReadQuery::Dir::after : !qb.empty() ? ReadQuery::Dir::before : ReadQuery::Dir::latest,
                        !qa.empty() ? after : before, static_cast<std::uint32_t>(limit)};
            return store->read(std::move(q), [r, room](ReadResult res) {
                if (res.status != StoreStatus::ok) return answer(r, errorResponse(Code::unavailable, "the store is unavailable"));
                std::string events = "[";
                for (std::size_t i = 0; i < res.events.size(); ++i) {
                    if (i) events += ',';
                    appendEvent(events, room, res.events[i]);
                }
                events += ']';
                answer(r, jsonResponse(200, JsonOut().str("room", room).num("seq", res.seq).str("epoch", res.epoch)
                                                .num("oldest", res.oldest).boolean("more", res.more).raw("events", events)
                                                .done()));
            });
        }
        if (what == "/presence") {
            return onLoop(roomLoop(room), [this, r, room] {
                Shard& sh = here();
                const auto it = sh.rooms.find(room);
                std::string list = "[";
                std::size_t count = 0;
                if (it != sh.rooms.end()) {
                    for (const auto& [user, on] : it->second->online) {
                        if (count++ >= 1000) continue;
                        if (list.size() > 1) list += ',';
                        list += JsonOut().str("user", user).str("name", on.name).done();
                    }
                }
                list += ']';
                answer(r, jsonResponse(200, JsonOut().str("room", room).num("count", count).raw("users", list).done()));
            });
        }
        answer(r, errorResponse(Code::notFound, "GET /api/rooms/ROOM/messages or /api/rooms/ROOM/presence"));
    });

    // GET /api/rooms
    server.route("GET", "/api/rooms", [this](const HttpRequest& req, HttpResponder responder) {
        auto r = std::make_shared<HttpResponder>(std::move(responder));
        if (!authorized(req, options.apiKey)) return answer(r, errorResponse(Code::unauthorized, "a valid bearer key is required"));
        store->listRooms(10000, [this, r](StoreStatus st, std::vector<RoomSummary> list) {
            if (st != StoreStatus::ok) return answer(r, errorResponse(Code::unavailable, "the store is unavailable"));
            auto g = std::make_shared<RoomsGather>();
            g->online.assign(list.size(), 0);
            g->rooms = std::move(list);
            gatherOnline(*this, r, std::move(g), 0);
        });
    });
}

} // namespace tongdao::chat
