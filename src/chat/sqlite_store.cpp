#include "sqlite_store.hpp"

#include "sqlite_db.hpp"
#include "tongdao/log.hpp"

#include <chrono>
#include <unordered_map>
#include <unordered_set>

namespace tongdao::chat {

namespace {

using sqlite::Db;
using sqlite::Stmt;

std::int64_t nowMs() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Schema migrations: entry i takes the database from version i to i + 1. Never edit one
// that has shipped; add the next.
constexpr const char* migrations[] = {
    // 0 -> 1
    "CREATE TABLE rooms("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  epoch TEXT NOT NULL,"
    "  seq INTEGER NOT NULL DEFAULT 0," // latest seq: the truth even when retention emptied the room
    "  created INTEGER NOT NULL);"
    "CREATE TABLE events("
    "  room INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  kind INTEGER NOT NULL,"          // EventKind
    "  state INTEGER NOT NULL DEFAULT 0," // MessageState
    "  target INTEGER,"
    "  user TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  cid TEXT,"
    "  body TEXT NOT NULL,"
    "  PRIMARY KEY(room, seq)) WITHOUT ROWID;"
    // (user, cid) is the idempotency key of a send: unique for as long as the event is kept.
    "CREATE UNIQUE INDEX events_cid ON events(user, cid) WHERE cid IS NOT NULL;"
    "CREATE INDEX events_ts ON events(ts);"
    "CREATE TABLE members("
    "  user TEXT NOT NULL,"
    "  room INTEGER NOT NULL,"
    "  read_seq INTEGER NOT NULL,"
    "  PRIMARY KEY(user, room)) WITHOUT ROWID;",
};
static_assert(std::size(migrations) == SqliteStore::schemaVersion);

void migrate(Db& db) {
    const auto version = db.queryInt("PRAGMA user_version");
    if (version > SqliteStore::schemaVersion)
        throw std::runtime_error("the database has schema version " + std::to_string(version) +
                                 ", newer than this build's " + std::to_string(SqliteStore::schemaVersion));
    for (auto v = version; v < SqliteStore::schemaVersion; ++v) {
        db.exec("BEGIN IMMEDIATE");
        try {
            db.exec(migrations[v]);
            db.exec(("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
            db.exec("COMMIT");
        } catch (...) {
            db.exec("ROLLBACK");
            throw;
        }
        log(LogLevel::info, "chat store: schema migrated to version %lld", static_cast<long long>(v + 1));
    }
}

void configure(Db& db, bool fullSync) {
    // WAL: readers never block the writer, and a commit is one append to the log.
    if (db.queryText("PRAGMA journal_mode=WAL") != "wal")
        throw std::runtime_error("the chat store needs journal_mode=WAL, and SQLite refused it");
    // FULL syncs the WAL at each commit (survives power loss); NORMAL only at checkpoints
    // (survives a killed process, as the OS still has the writes).
    db.exec(fullSync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    db.exec("PRAGMA foreign_keys=OFF");
    // Pages are read through a mapping rather than a read() each (measured: the writer
    // spent a tenth of its time in read syscalls), and the hot ones stay in a larger cache.
    db.exec("PRAGMA mmap_size=1073741824");
    db.exec("PRAGMA cache_size=-32768");
}

StoredEvent readEvent(const Stmt& st, int first) {
    StoredEvent e;
    e.seq = st.unsignedInt(first);
    e.ts = st.integer(first + 1);
    e.kind = static_cast<EventKind>(st.integer(first + 2));
    e.state = static_cast<MessageState>(st.integer(first + 3));
    e.target = st.isNull(first + 4) ? 0 : st.unsignedInt(first + 4);
    e.user = st.text(first + 5);
    e.name = st.text(first + 6);
    e.cid = st.text(first + 7);
    e.body = st.text(first + 8);
    return e;
}

#define EVENT_COLUMNS "seq, ts, kind, state, target, user, name, cid, body"
#define EVENT_COLUMNS_E "e.seq, e.ts, e.kind, e.state, e.target, e.user, e.name, e.cid, e.body"

/** A room as a reader sees it: id, epoch and latest seq; id 0 when it does not exist. */
struct RoomRow {
    std::int64_t id = 0;
    std::string epoch;
    std::uint64_t seq = 0;
};

RoomRow findRoom(Db& db, std::string_view name) {
    auto st = db.prepared("SELECT id, epoch, seq FROM rooms WHERE name = ?");
    st.bind(1, name);
    RoomRow r;
    if (st.step()) {
        r.id = st.integer(0);
        r.epoch = st.text(1);
        r.seq = st.unsignedInt(2);
    }
    return r;
}

std::uint64_t oldestSeq(Db& db, std::int64_t room, std::uint64_t latest) {
    auto st = db.prepared("SELECT MIN(seq) FROM events WHERE room = ?");
    st.bind(1, room);
    if (st.step() && !st.isNull(0)) return st.unsignedInt(0);
    return latest + 1;
}

std::uint64_t unreadCount(Db& db, std::int64_t room, std::uint64_t after, std::string_view user) {
    auto st = db.prepared("SELECT COUNT(*) FROM events WHERE room = ? AND seq > ? AND kind = 0 AND state < 2 AND user <> ?");
    st.bind(1, room).bind(2, after).bind(3, user);
    return st.step() ? st.unsignedInt(0) : 0;
}

/** Runs `f` in one read transaction, so every query of it sees one snapshot. */
template <class F>
void snapshot(Db& db, F&& f) {
    db.exec("BEGIN");
    try {
        f();
        db.exec("COMMIT");
    } catch (...) {
        try {
            db.exec("ROLLBACK");
        } catch (...) {
        }
        throw;
    }
}

} // namespace

// --- the writer's state: its connection and each room's position --------------------------

struct SqliteStore::Writer {
    static constexpr std::size_t kCachedRooms = 100'000;
    struct Room {
        std::int64_t id = 0;
        std::string epoch;
        std::uint64_t seq = 0;    ///< the last seq given out (committed, or in the open transaction)
        std::uint64_t oldest = 0; ///< the oldest seq kept
    };

    Writer(const std::filesystem::path& file, const SqliteOptions& o) : db(file), options(o) {
        configure(db, o.fullSync);
        migrate(db);
    }

    /** The room, loaded from the table (created when `create`); null if absent. */
    Room* room(const std::string& name, bool create) {
        if (auto it = rooms.find(name); it != rooms.end()) return &it->second;
        auto row = findRoom(db, name);
        if (!row.id) {
            if (!create) return nullptr;
            row.epoch = newEpoch();
            auto st = db.prepared("INSERT INTO rooms(name, epoch, seq, created) VALUES(?, ?, 0, ?)");
            st.bind(1, name).bind(2, row.epoch).bind(3, nowMs()).run();
            row.id = sqlite3_last_insert_rowid(db.handle());
            log(LogLevel::debug, "chat store: room '%s' created, epoch %s", name.c_str(), row.epoch.c_str());
        }
        Room r{row.id, row.epoch, row.seq, oldestSeq(db, row.id, row.seq)};
        return &rooms.emplace(name, std::move(r)).first->second;
    }

    /** After a rollback the cached positions may be ahead of the table: load them again. */
    void forget() {
        rooms.clear();
        touched.clear();
    }

    void append(const AppendRequest& req, AppendResult& res) {
        if (!req.cid.empty()) {
            auto st = db.prepared("SELECT r.name, " EVENT_COLUMNS_E " FROM events e JOIN rooms r ON r.id = e.room "
                                  "WHERE e.user = ? AND e.cid = ?");
            st.bind(1, req.user).bind(2, req.cid);
            if (st.step()) {
                res.status = StoreStatus::duplicate;
                res.room = st.text(0);
                res.event = readEvent(st, 1);
                return;
            }
        }
        Room* r = room(req.room, true);
        if (req.kind != EventKind::message) {
            auto st = db.prepared("SELECT user, kind, state FROM events WHERE room = ? AND seq = ?");
            st.bind(1, r->id).bind(2, req.target);
            if (!st.step() || st.integer(1) != static_cast<int>(EventKind::message) ||
                st.integer(2) == static_cast<int>(MessageState::deleted)) {
                res.status = StoreStatus::notFound;
                return;
            }
            if (st.text(0) != req.user) {
                res.status = StoreStatus::forbidden;
                return;
            }
        }
        StoredEvent& e = res.event;
        e.seq = r->seq + 1;
        e.ts = nowMs();
        e.kind = req.kind;
        e.target = req.target;
        e.user = req.user;
        e.name = req.name;
        e.cid = req.cid;
        e.body = req.kind == EventKind::remove ? "null" : req.body;
        {
            auto st = db.prepared("INSERT INTO events(room, seq, ts, kind, state, target, user, name, cid, body) "
                                  "VALUES(?, ?, ?, ?, 0, ?, ?, ?, ?, ?)");
            st.bind(1, r->id).bind(2, e.seq).bind(3, e.ts).bind(4, static_cast<int>(e.kind));
            if (e.target) st.bind(5, e.target);
            st.bind(6, e.user).bind(7, e.name).bind(8, e.cid, true).bind(9, e.body).run();
        }
        if (req.kind == EventKind::edit) {
            auto st = db.prepared("UPDATE events SET body = ?, state = 1 WHERE room = ? AND seq = ?");
            st.bind(1, e.body).bind(2, r->id).bind(3, req.target).run();
        } else if (req.kind == EventKind::remove) {
            // A deleted message keeps no text anywhere: neither its own row nor its edits.
            auto st = db.prepared("UPDATE events SET body = 'null', state = 2 WHERE room = ? AND seq = ?");
            st.bind(1, r->id).bind(2, req.target).run();
            auto edits = db.prepared("UPDATE events SET body = 'null' WHERE room = ? AND target = ? AND kind = 1");
            edits.bind(1, r->id).bind(2, req.target).run();
        }
        r->seq = e.seq;
        if (r->oldest > e.seq) r->oldest = e.seq; // the first event kept
        touched.insert(r);
        res.room = req.room;
        ++stored;
    }

    /** At the end of a batch: each room's latest seq, and retention by count. */
    void finishBatch() {
        for (Room* r : touched) {
            auto st = db.prepared("UPDATE rooms SET seq = ? WHERE id = ?");
            st.bind(1, r->seq).bind(2, r->id).run();
            const auto keep = options.retentionMessages;
            if (keep && r->seq >= keep && r->oldest + keep <= r->seq) {
                auto del = db.prepared("DELETE FROM events WHERE room = ? AND seq <= ?");
                del.bind(1, r->id).bind(2, r->seq - keep).run();
                r->oldest = r->seq - keep + 1;
            }
        }
        touched.clear();
        // The positions are a cache of the rooms table: bounded, and read again when dropped.
        if (rooms.size() > kCachedRooms) rooms.clear();
    }

    /** Retention by age, every minute or so. */
    void trimByAge() {
        if (!options.retentionDays) return;
        const auto cutoff = nowMs() - static_cast<std::int64_t>(options.retentionDays) * 86'400'000;
        auto del = db.prepared("DELETE FROM events WHERE ts < ?");
        del.bind(1, cutoff).run();
        if (sqlite3_changes(db.handle()) > 0) {
            for (auto& [name, r] : rooms) r.oldest = oldestSeq(db, r.id, r.seq);
        }
    }

    Db db;
    const SqliteOptions& options;
    std::unordered_map<std::string, Room> rooms;
    std::unordered_set<Room*> touched;
    std::uint64_t stored = 0;
};

// --- lifecycle --------------------------------------------------------------------------

SqliteStore::SqliteStore(SqliteOptions options) : options_(std::move(options)) {
    std::error_code ec;
    std::filesystem::create_directories(options_.dir, ec);
    if (ec) throw std::runtime_error("cannot create the data directory " + options_.dir.string() + ": " + ec.message());
    file_ = options_.dir / "chat.db";
    writer_ = std::make_unique<Writer>(file_, options_);
    // Readers open only once the schema exists.
    std::vector<std::unique_ptr<Db>> readerDbs;
    for (unsigned i = 0; i < std::max(1u, options_.readers); ++i) {
        auto db = std::make_unique<Db>(file_);
        db->exec("PRAGMA query_only=1");
        db->exec("PRAGMA mmap_size=1073741824");
        readerDbs.push_back(std::move(db));
    }
    writerThread_ = std::thread([this] { writerMain(); });
    for (auto& db : readerDbs) {
        readerThreads_.emplace_back([this, d = std::shared_ptr<Db>(std::move(db))]() mutable {
            Db* raw = d.get();
            for (;;) {
                ReadOp op;
                {
                    std::unique_lock lk(rmu_);
                    rcv_.wait(lk, [&] { return stopping_ || !reads_.empty(); });
                    if (reads_.empty()) return;
                    op = std::move(reads_.front());
                    reads_.pop_front();
                }
                op(raw);
            }
        });
    }
}

SqliteStore::~SqliteStore() { close(); }

void SqliteStore::close() {
    {
        std::scoped_lock lk(wmu_, rmu_);
        if (stopping_) return;
        stopping_ = true;
    }
    wcv_.notify_all();
    rcv_.notify_all();
    if (writerThread_.joinable()) writerThread_.join();
    for (auto& t : readerThreads_)
        if (t.joinable()) t.join();
}

// --- the writer ------------------------------------------------------------------------

void SqliteStore::submit(WriteOp op) {
    {
        std::lock_guard lk(wmu_);
        if (!stopping_ && writes_.size() < options_.maxQueue) {
            writes_.push_back(std::move(op));
            // The writer waits for a first write, or (gathering for the commit delay) a full batch.
            if (writes_.size() == 1 || writes_.size() >= options_.maxBatch) wcv_.notify_one();
            return;
        }
    }
    op.finish(false); // overloaded or closed: fail fast, nothing written
}

void SqliteStore::writerMain() {
    std::vector<WriteOp> batch;
    auto lastTrim = std::chrono::steady_clock::now();
    for (;;) {
        {
            std::unique_lock lk(wmu_);
            wcv_.wait_for(lk, std::chrono::seconds(30), [&] { return stopping_ || !writes_.empty(); });
            if (writes_.empty() && stopping_) return;
            if (options_.commitDelay.count() > 0 && !writes_.empty()) {
                // More writes join the batch meanwhile: fewer, larger transactions and syncs.
                const auto until = std::chrono::steady_clock::now() + options_.commitDelay;
                wcv_.wait_until(lk, until, [&] { return stopping_ || writes_.size() >= options_.maxBatch; });
            }
            // Everything pending, up to a bound: one transaction, one sync.
            while (!writes_.empty() && batch.size() < options_.maxBatch) {
                batch.push_back(std::move(writes_.front()));
                writes_.pop_front();
            }
        }
        if (options_.retentionDays && std::chrono::steady_clock::now() - lastTrim > std::chrono::minutes(1)) {
            lastTrim = std::chrono::steady_clock::now();
            batch.push_back({[](Writer& w) { w.trimByAge(); }, [](bool) {}});
        }
        if (!batch.empty()) commitBatch(batch);
        batch.clear();
    }
}

void SqliteStore::commitBatch(std::vector<WriteOp>& batch) {
    auto& w = *writer_;
    const auto start = std::chrono::steady_clock::now();
    const auto storedBefore = w.stored;
    bool ok = false;
    try {
        w.db.exec("BEGIN IMMEDIATE");
        for (auto& op : batch) op.apply(w);
        w.finishBatch();
        w.db.exec("COMMIT");
        ok = true;
    } catch (const std::exception& e) {
        log(LogLevel::error, "chat store: a batch of %zu writes failed and was rolled back: %s", batch.size(), e.what());
        try {
            if (!sqlite3_get_autocommit(w.db.handle())) w.db.exec("ROLLBACK");
        } catch (const std::exception& e2) {
            log(LogLevel::error, "chat store: rollback: %s", e2.what());
        }
        w.forget();
        w.stored = storedBefore;
        counters_.failed();
    }
    if (ok)
        counters_.committed(w.stored - storedBefore,
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    for (auto& op : batch) op.finish(ok);
}

StoreStats SqliteStore::stats() const { return counters_.stats(); }

// --- writes -----------------------------------------------------------------------------

void SqliteStore::openRoom(std::string room, std::function<void(StoreStatus, RoomInfo)> done) {
    auto info = std::make_shared<RoomInfo>();
    submit({[room = std::move(room), info](Writer& w) {
                auto* r = w.room(room, true);
                info->epoch = r->epoch;
                info->seq = r->seq;
            },
            [info, done = std::move(done)](bool ok) {
                done(ok ? StoreStatus::ok : StoreStatus::unavailable, ok ? std::move(*info) : RoomInfo{});
            }});
}

void SqliteStore::append(AppendRequest request, std::function<void(AppendResult)> done) {
    auto res = std::make_shared<AppendResult>();
    submit({[req = std::move(request), res](Writer& w) { w.append(req, *res); },
            [res, done = std::move(done)](bool ok) {
                if (!ok) *res = AppendResult{StoreStatus::unavailable, {}, {}};
                done(std::move(*res));
            }});
}

void SqliteStore::addMember(std::string room, std::string user, std::uint64_t readSeq,
                            std::function<void(MemberInfo)> done) {
    auto info = std::make_shared<MemberInfo>();
    submit({[room = std::move(room), user = std::move(user), readSeq, info](Writer& w) {
                auto* r = w.room(room, true);
                auto ins = w.db.prepared("INSERT OR IGNORE INTO members(user, room, read_seq) VALUES(?, ?, ?)");
                ins.bind(1, user).bind(2, r->id).bind(3, std::min(readSeq, r->seq)).run();
                auto st = w.db.prepared("SELECT read_seq FROM members WHERE user = ? AND room = ?");
                st.bind(1, user).bind(2, r->id);
                info->member = true;
                info->readSeq = st.step() ? st.unsignedInt(0) : readSeq;
                info->unread = unreadCount(w.db, r->id, info->readSeq, user);
            },
            [info, done = std::move(done)](bool ok) {
                if (!ok) info->status = StoreStatus::unavailable;
                done(*info);
            }});
}

void SqliteStore::removeMember(std::string room, std::string user, std::function<void(StoreStatus)> done) {
    submit({[room = std::move(room), user = std::move(user)](Writer& w) {
                if (auto* r = w.room(room, false)) {
                    auto st = w.db.prepared("DELETE FROM members WHERE user = ? AND room = ?");
                    st.bind(1, user).bind(2, r->id).run();
                }
            },
            [done = std::move(done)](bool ok) { done(ok ? StoreStatus::ok : StoreStatus::unavailable); }});
}

void SqliteStore::markRead(std::string room, std::string user, std::uint64_t seq,
                           std::function<void(StoreStatus, std::uint64_t, bool)> done) {
    struct Out {
        std::uint64_t mark = 0;
        bool moved = false;
    };
    auto out = std::make_shared<Out>();
    submit({[room = std::move(room), user = std::move(user), seq, out](Writer& w) {
                auto* r = w.room(room, false);
                if (!r) return; // no such room: no member, nothing to mark
                const auto capped = std::min(seq, r->seq);
                auto up = w.db.prepared("UPDATE members SET read_seq = ? WHERE user = ? AND room = ? AND read_seq < ?");
                up.bind(1, capped).bind(2, user).bind(3, r->id).bind(4, capped).run();
                out->moved = sqlite3_changes(w.db.handle()) > 0;
                auto st = w.db.prepared("SELECT read_seq FROM members WHERE user = ? AND room = ?");
                st.bind(1, user).bind(2, r->id);
                out->mark = st.step() ? st.unsignedInt(0) : 0;
            },
            [out, done = std::move(done)](bool ok) {
                done(ok ? StoreStatus::ok : StoreStatus::unavailable, out->mark, ok && out->moved);
            }});
}

// --- reads ------------------------------------------------------------------------------

void SqliteStore::submitRead(ReadOp op) {
    {
        std::lock_guard lk(rmu_);
        if (!stopping_ && reads_.size() < options_.maxQueue) {
            reads_.push_back(std::move(op));
            rcv_.notify_one();
            return;
        }
    }
    op(nullptr);
}

void SqliteStore::read(ReadQuery q, std::function<void(ReadResult)> done) {
    submitRead([q = std::move(q), done = std::move(done)](Db* db) {
        ReadResult res;
        if (!db) {
            res.status = StoreStatus::unavailable;
            return done(std::move(res));
        }
        try {
            snapshot(*db, [&] {
                const auto room = findRoom(*db, q.room);
                res.seq = room.seq;
                res.epoch = room.epoch;
                if (!room.id) {
                    res.oldest = 1;
                    return;
                }
                res.oldest = oldestSeq(*db, room.id, room.seq);
                const char* sql = q.dir == ReadQuery::Dir::after
                                      ? "SELECT " EVENT_COLUMNS " FROM events WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?"
                                      : "SELECT " EVENT_COLUMNS " FROM events WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?";
                auto st = db->prepared(sql);
                const std::uint64_t from = q.dir == ReadQuery::Dir::latest ? room.seq + 1 : q.from;
                st.bind(1, room.id).bind(2, from).bind(3, static_cast<std::int64_t>(q.limit) + 1);
                while (st.step()) res.events.push_back(readEvent(st, 0));
                if (res.events.size() > q.limit) {
                    res.more = true;
                    res.events.pop_back();
                }
                if (q.dir != ReadQuery::Dir::after) std::reverse(res.events.begin(), res.events.end());
            });
        } catch (const std::exception& e) {
            log(LogLevel::error, "chat store: read of '%s': %s", q.room.c_str(), e.what());
            res = ReadResult{};
            res.status = StoreStatus::unavailable;
        }
        done(std::move(res));
    });
}

void SqliteStore::memberInfo(std::string room, std::string user, std::function<void(MemberInfo)> done) {
    submitRead([room = std::move(room), user = std::move(user), done = std::move(done)](Db* db) {
        MemberInfo info;
        if (!db) {
            info.status = StoreStatus::unavailable;
            return done(info);
        }
        try {
            snapshot(*db, [&] {
                const auto r = findRoom(*db, room);
                if (!r.id) return;
                auto st = db->prepared("SELECT read_seq FROM members WHERE user = ? AND room = ?");
                st.bind(1, user).bind(2, r.id);
                if (!st.step()) return;
                info.member = true;
                info.readSeq = st.unsignedInt(0);
                info.unread = unreadCount(*db, r.id, info.readSeq, user);
            });
        } catch (const std::exception& e) {
            log(LogLevel::error, "chat store: member of '%s': %s", room.c_str(), e.what());
            info = MemberInfo{StoreStatus::unavailable, false, 0, 0};
        }
        done(info);
    });
}

void SqliteStore::userRooms(std::string user, std::uint32_t limit,
                            std::function<void(StoreStatus, std::vector<UserRoom>)> done) {
    submitRead([user = std::move(user), limit, done = std::move(done)](Db* db) {
        std::vector<UserRoom> out;
        if (!db) return done(StoreStatus::unavailable, std::move(out));
        try {
            snapshot(*db, [&] {
                auto st = db->prepared("SELECT r.id, r.name, r.epoch, r.seq, m.read_seq FROM members m "
                                       "JOIN rooms r ON r.id = m.room WHERE m.user = ? ORDER BY r.name LIMIT ?");
                st.bind(1, user).bind(2, static_cast<std::int64_t>(limit));
                std::vector<std::int64_t> ids;
                while (st.step()) {
                    ids.push_back(st.integer(0));
                    out.push_back({st.text(1), st.text(2), st.unsignedInt(3), st.unsignedInt(4), 0});
                }
                for (std::size_t i = 0; i < out.size(); ++i) out[i].unread = unreadCount(*db, ids[i], out[i].readSeq, user);
            });
        } catch (const std::exception& e) {
            log(LogLevel::error, "chat store: rooms of a user: %s", e.what());
            return done(StoreStatus::unavailable, {});
        }
        done(StoreStatus::ok, std::move(out));
    });
}

void SqliteStore::listRooms(std::uint32_t limit, std::function<void(StoreStatus, std::vector<RoomSummary>)> done) {
    submitRead([limit, done = std::move(done)](Db* db) {
        std::vector<RoomSummary> out;
        if (!db) return done(StoreStatus::unavailable, std::move(out));
        try {
            auto st = db->prepared("SELECT name, epoch, seq FROM rooms ORDER BY name LIMIT ?");
            st.bind(1, static_cast<std::int64_t>(limit));
            while (st.step()) out.push_back({st.text(0), st.text(1), st.unsignedInt(2)});
        } catch (const std::exception& e) {
            log(LogLevel::error, "chat store: list rooms: %s", e.what());
            return done(StoreStatus::unavailable, {});
        }
        done(StoreStatus::ok, std::move(out));
    });
}

} // namespace tongdao::chat
