// src/chat/sqlite_store: the one-node chat store (store.hpp's contract) on a real SQLite file in
// a temporary directory. Every wait on a callback is bounded, so a bug fails instead of hanging.
#include "chat/sqlite_store.hpp"

#include "chat/sqlite_db.hpp" // only to age the schema version of a file

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tongdao::chat {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto timeout = 5s;

/** The value of a store callback, or an exception (a test failure) after 5 s. */
template <class T>
T await(std::future<T> f, std::chrono::seconds limit = timeout) {
    if (f.wait_for(limit) != std::future_status::ready) throw std::runtime_error("a store callback did not come in time");
    return f.get();
}

class TempDir {
public:
    TempDir() {
        static std::atomic<unsigned> counter{0};
        std::random_device rd;
        path_ = fs::temp_directory_path() / ("tongdao-chat-store-" + std::to_string(::getpid()) + "-" +
                                             std::to_string(counter++) + "-" + std::to_string(rd()));
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

std::int64_t nowMs() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// --- synchronous faces on the asynchronous calls ------------------------------------------

struct Opened {
    StoreStatus status;
    RoomInfo info;
};
Opened openRoom(Store& s, std::string room) {
    auto p = std::make_shared<std::promise<Opened>>();
    auto f = p->get_future();
    s.openRoom(std::move(room), [p](StoreStatus st, RoomInfo info) { p->set_value({st, std::move(info)}); });
    return await(std::move(f));
}

std::future<AppendResult> appendAsync(Store& s, AppendRequest req) {
    auto p = std::make_shared<std::promise<AppendResult>>();
    auto f = p->get_future();
    s.append(std::move(req), [p](AppendResult r) { p->set_value(std::move(r)); });
    return f;
}
AppendResult append(Store& s, AppendRequest req) { return await(appendAsync(s, std::move(req))); }

ReadResult read(Store& s, std::string room, ReadQuery::Dir dir, std::uint64_t from, std::uint32_t limit) {
    auto p = std::make_shared<std::promise<ReadResult>>();
    auto f = p->get_future();
    s.read({std::move(room), dir, from, limit}, [p](ReadResult r) { p->set_value(std::move(r)); });
    return await(std::move(f));
}
ReadResult readAll(Store& s, std::string room) { return read(s, std::move(room), ReadQuery::Dir::after, 0, 1000); }

MemberInfo memberInfo(Store& s, std::string room, std::string user) {
    auto p = std::make_shared<std::promise<MemberInfo>>();
    auto f = p->get_future();
    s.memberInfo(std::move(room), std::move(user), [p](MemberInfo m) { p->set_value(m); });
    return await(std::move(f));
}

MemberInfo addMember(Store& s, std::string room, std::string user, std::uint64_t readSeq) {
    auto p = std::make_shared<std::promise<MemberInfo>>();
    auto f = p->get_future();
    s.addMember(std::move(room), std::move(user), readSeq, [p](MemberInfo m) { p->set_value(m); });
    return await(std::move(f));
}

StoreStatus removeMember(Store& s, std::string room, std::string user) {
    auto p = std::make_shared<std::promise<StoreStatus>>();
    auto f = p->get_future();
    s.removeMember(std::move(room), std::move(user), [p](StoreStatus st) { p->set_value(st); });
    return await(std::move(f));
}

struct Marked {
    StoreStatus status;
    std::uint64_t mark;
    bool moved;
};
Marked markRead(Store& s, std::string room, std::string user, std::uint64_t seq) {
    auto p = std::make_shared<std::promise<Marked>>();
    auto f = p->get_future();
    s.markRead(std::move(room), std::move(user), seq,
               [p](StoreStatus st, std::uint64_t mark, bool moved) { p->set_value({st, mark, moved}); });
    return await(std::move(f));
}

std::pair<StoreStatus, std::vector<UserRoom>> userRooms(Store& s, std::string user, std::uint32_t limit) {
    auto p = std::make_shared<std::promise<std::pair<StoreStatus, std::vector<UserRoom>>>>();
    auto f = p->get_future();
    s.userRooms(std::move(user), limit, [p](StoreStatus st, std::vector<UserRoom> v) { p->set_value({st, std::move(v)}); });
    return await(std::move(f));
}

std::pair<StoreStatus, std::vector<RoomSummary>> listRooms(Store& s, std::uint32_t limit) {
    auto p = std::make_shared<std::promise<std::pair<StoreStatus, std::vector<RoomSummary>>>>();
    auto f = p->get_future();
    s.listRooms(limit, [p](StoreStatus st, std::vector<RoomSummary> v) { p->set_value({st, std::move(v)}); });
    return await(std::move(f));
}

AppendRequest msg(std::string room, std::string user, std::string cid, std::string body = R"("hi")") {
    AppendRequest r;
    r.room = std::move(room);
    r.kind = EventKind::message;
    r.name = user + " (name)";
    r.user = std::move(user);
    r.cid = std::move(cid);
    r.body = std::move(body);
    return r;
}

AppendRequest edit(std::string room, std::string user, std::uint64_t target, std::string body, std::string cid = {}) {
    AppendRequest r = msg(std::move(room), std::move(user), std::move(cid), std::move(body));
    r.kind = EventKind::edit;
    r.target = target;
    return r;
}

AppendRequest del(std::string room, std::string user, std::uint64_t target) {
    AppendRequest r = msg(std::move(room), std::move(user), {}, "null");
    r.kind = EventKind::remove;
    r.target = target;
    return r;
}

std::vector<std::uint64_t> seqs(const ReadResult& r) {
    std::vector<std::uint64_t> out;
    for (const auto& e : r.events) out.push_back(e.seq);
    return out;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> out;
    for (auto i = from; i <= to; ++i) out.push_back(i);
    return out;
}

class SqliteStoreTest : public ::testing::Test {
protected:
    SqliteOptions options() const {
        SqliteOptions o;
        o.dir = dir_.path() / "data"; // created by the store
        return o;
    }
    static std::unique_ptr<SqliteStore> open(SqliteOptions o) { return std::make_unique<SqliteStore>(std::move(o)); }
    std::unique_ptr<SqliteStore> open() const { return open(options()); }
    fs::path file() const { return dir_.path() / "data" / "chat.db"; }

    TempDir dir_;
};

// --- rooms and seqs -----------------------------------------------------------------------

TEST_F(SqliteStoreTest, OpenRoomCreatesAnEpochThatSurvivesReopening) {
    std::string epoch;
    {
        auto store = open();
        const auto r = openRoom(*store, "lobby");
        ASSERT_EQ(r.status, StoreStatus::ok);
        EXPECT_EQ(r.info.seq, 0u);
        ASSERT_EQ(r.info.epoch.size(), 16u);
        EXPECT_TRUE(std::all_of(r.info.epoch.begin(), r.info.epoch.end(),
                                [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
            << r.info.epoch;
        epoch = r.info.epoch;
        EXPECT_EQ(openRoom(*store, "lobby").info.epoch, epoch);
        const auto other = openRoom(*store, "news");
        EXPECT_EQ(other.info.epoch.size(), 16u);
        EXPECT_NE(other.info.epoch, epoch);
        ASSERT_EQ(append(*store, msg("lobby", "alice", "c1")).status, StoreStatus::ok);
        ASSERT_EQ(append(*store, msg("lobby", "alice", "c2")).status, StoreStatus::ok);
        EXPECT_EQ(openRoom(*store, "lobby").info.seq, 2u);
        store->close();
    }
    EXPECT_TRUE(fs::exists(file()));
    auto store = open();
    const auto r = openRoom(*store, "lobby");
    ASSERT_EQ(r.status, StoreStatus::ok);
    EXPECT_EQ(r.info.epoch, epoch);
    EXPECT_EQ(r.info.seq, 2u);
    EXPECT_EQ(readAll(*store, "lobby").epoch, epoch);
    EXPECT_EQ(append(*store, msg("lobby", "alice", "c3")).event.seq, 3u);
}

TEST_F(SqliteStoreTest, AppendGivesSeqsInOrderAndStoresTheEvent) {
    auto store = open();
    const auto before = nowMs();
    std::vector<AppendResult> results;
    for (int i = 1; i <= 3; ++i) {
        auto req = msg("lobby", "alice", "c" + std::to_string(i), R"({"text":"m)" + std::to_string(i) + R"("})");
        req.name = "Alice";
        results.push_back(append(*store, std::move(req)));
    }
    const auto after = nowMs();
    for (std::size_t i = 0; i < results.size(); ++i) {
        SCOPED_TRACE(i);
        const auto& r = results[i];
        ASSERT_EQ(r.status, StoreStatus::ok);
        EXPECT_EQ(r.room, "lobby");
        EXPECT_EQ(r.event.seq, i + 1);
        EXPECT_EQ(r.event.kind, EventKind::message);
        EXPECT_EQ(r.event.state, MessageState::normal);
        EXPECT_EQ(r.event.user, "alice");
        EXPECT_EQ(r.event.name, "Alice");
        EXPECT_EQ(r.event.cid, "c" + std::to_string(i + 1));
        EXPECT_EQ(r.event.body, R"({"text":"m)" + std::to_string(i + 1) + R"("})");
        EXPECT_EQ(r.event.target, 0u);
        EXPECT_GE(r.event.ts, before);
        EXPECT_LE(r.event.ts, after);
        if (i) {
            EXPECT_GE(r.event.ts, results[i - 1].event.ts);
        }
    }
    const auto history = readAll(*store, "lobby");
    ASSERT_EQ(history.status, StoreStatus::ok);
    ASSERT_EQ(seqs(history), range(1, 3));
    for (std::size_t i = 0; i < 3; ++i) {
        const auto& e = history.events[i];
        EXPECT_EQ(e.ts, results[i].event.ts);
        EXPECT_EQ(e.user, "alice");
        EXPECT_EQ(e.name, "Alice");
        EXPECT_EQ(e.cid, results[i].event.cid);
        EXPECT_EQ(e.body, results[i].event.body);
    }
    // Rooms count apart.
    EXPECT_EQ(append(*store, msg("other", "alice", "x1")).event.seq, 1u);
    EXPECT_EQ(append(*store, msg("lobby", "alice", "x2")).event.seq, 4u);
}

TEST_F(SqliteStoreTest, ThousandConcurrentAppendsAreGapFreeAndCalledBackInSeqOrder) {
    constexpr int threads = 4, perThread = 250, rooms = 5, total = threads * perThread;
    // Declared before the store, so the store (and its threads) goes first.
    struct State {
        std::mutex mu;
        std::map<std::string, std::vector<std::uint64_t>> order; ///< seqs as the callbacks came, per room
        std::set<std::pair<std::string, std::string>> stored;     ///< (user, cid) of the ok results
        int failures = 0;
        int count = 0;
        std::promise<void> all;
    };
    auto state = std::make_shared<State>();
    auto store = open();
    std::vector<std::thread> submitters;
    for (int t = 0; t < threads; ++t) {
        submitters.emplace_back([&store, state, t] {
            for (int i = 0; i < perThread; ++i) {
                const int n = t * perThread + i;
                auto req = msg("room" + std::to_string(n % rooms), "u" + std::to_string(t), "c" + std::to_string(i));
                store->append(std::move(req), [state](AppendResult r) {
                    std::lock_guard lk(state->mu);
                    if (r.status == StoreStatus::ok) {
                        state->order[r.room].push_back(r.event.seq);
                        state->stored.emplace(r.event.user, r.event.cid);
                    } else {
                        ++state->failures;
                    }
                    if (++state->count == total) state->all.set_value();
                });
            }
        });
    }
    for (auto& th : submitters) th.join();
    await(state->all.get_future(), 60s);

    std::lock_guard lk(state->mu);
    EXPECT_EQ(state->failures, 0);
    EXPECT_EQ(state->stored.size(), static_cast<std::size_t>(total));
    std::size_t sum = 0;
    ASSERT_EQ(state->order.size(), static_cast<std::size_t>(rooms));
    for (const auto& [room, got] : state->order) {
        SCOPED_TRACE(room);
        sum += got.size();
        EXPECT_EQ(got.size(), static_cast<std::size_t>(total / rooms));
        // In increasing seq order as the callbacks came, and gap-free from 1.
        EXPECT_EQ(got, range(1, got.size()));
        const auto history = readAll(*store, room);
        EXPECT_EQ(seqs(history), range(1, got.size()));
        EXPECT_EQ(history.seq, got.size());
        EXPECT_EQ(openRoom(*store, room).info.seq, got.size());
    }
    EXPECT_EQ(sum, static_cast<std::size_t>(total));
    EXPECT_EQ(store->stats().eventsStored, static_cast<std::uint64_t>(total));
}

// --- idempotency ----------------------------------------------------------------------------

TEST_F(SqliteStoreTest, SameUserAndCidIsADuplicateOfTheFirst) {
    {
        auto store = open();
        const auto first = append(*store, msg("lobby", "alice", "k1", R"("one")"));
        ASSERT_EQ(first.status, StoreStatus::ok);
        ASSERT_EQ(first.event.seq, 1u);

        const auto dup = append(*store, msg("lobby", "alice", "k1", R"("two")"));
        EXPECT_EQ(dup.status, StoreStatus::duplicate);
        EXPECT_EQ(dup.room, "lobby");
        EXPECT_EQ(dup.event.seq, 1u);
        EXPECT_EQ(dup.event.ts, first.event.ts);
        EXPECT_EQ(dup.event.body, R"("one")");
        EXPECT_EQ(dup.event.cid, "k1");
        EXPECT_EQ(dup.event.user, "alice");

        // The duplicate took no seq and was not stored.
        EXPECT_EQ(append(*store, msg("lobby", "alice", "k2")).event.seq, 2u);
        EXPECT_EQ(seqs(readAll(*store, "lobby")), range(1, 2));

        // Naming another room: still the first, and the result names the first room.
        const auto elsewhere = append(*store, msg("news", "alice", "k1", R"("three")"));
        EXPECT_EQ(elsewhere.status, StoreStatus::duplicate);
        EXPECT_EQ(elsewhere.room, "lobby");
        EXPECT_EQ(elsewhere.event.seq, 1u);
        EXPECT_EQ(elsewhere.event.body, R"("one")");
        const auto news = readAll(*store, "news");
        EXPECT_TRUE(news.events.empty());
        EXPECT_EQ(news.seq, 0u);

        // Another user's cid is another key.
        const auto bob = append(*store, msg("lobby", "bob", "k1"));
        EXPECT_EQ(bob.status, StoreStatus::ok);
        EXPECT_EQ(bob.event.seq, 3u);
    }
    // After a restart.
    auto store = open();
    auto dup = append(*store, msg("lobby", "alice", "k1", R"("four")"));
    EXPECT_EQ(dup.status, StoreStatus::duplicate);
    EXPECT_EQ(dup.room, "lobby");
    EXPECT_EQ(dup.event.seq, 1u);
    EXPECT_EQ(dup.event.body, R"("one")");
    dup = append(*store, msg("elsewhere", "bob", "k1"));
    EXPECT_EQ(dup.status, StoreStatus::duplicate);
    EXPECT_EQ(dup.room, "lobby");
    EXPECT_EQ(dup.event.seq, 3u);
    EXPECT_EQ(append(*store, msg("lobby", "carol", "k1")).event.seq, 4u);
}

TEST_F(SqliteStoreTest, DuplicatesInOneBatchAndEmptyCids) {
    auto store = open();
    // Submitted together (very likely one transaction): one is stored, the other is its duplicate.
    auto f1 = appendAsync(*store, msg("lobby", "alice", "same", R"(1)"));
    auto f2 = appendAsync(*store, msg("lobby", "alice", "same", R"(2)"));
    auto f3 = appendAsync(*store, msg("other", "alice", "same", R"(3)"));
    const auto r1 = await(std::move(f1)), r2 = await(std::move(f2)), r3 = await(std::move(f3));
    EXPECT_EQ(r1.status, StoreStatus::ok);
    EXPECT_EQ(r2.status, StoreStatus::duplicate);
    EXPECT_EQ(r3.status, StoreStatus::duplicate);
    EXPECT_EQ(r2.event.seq, r1.event.seq);
    EXPECT_EQ(r3.room, "lobby");
    EXPECT_EQ(r2.event.body, "1");
    // No cid: never deduplicated.
    const auto a = append(*store, msg("lobby", "alice", ""));
    const auto b = append(*store, msg("lobby", "alice", ""));
    EXPECT_EQ(a.status, StoreStatus::ok);
    EXPECT_EQ(b.status, StoreStatus::ok);
    EXPECT_EQ(a.event.seq, 2u);
    EXPECT_EQ(b.event.seq, 3u);
    EXPECT_EQ(readAll(*store, "lobby").events.at(1).cid, "");
}

// --- edit and delete ----------------------------------------------------------------------

TEST_F(SqliteStoreTest, EditAndDelete) {
    auto store = open();
    ASSERT_EQ(append(*store, msg("lobby", "alice", "a1", R"("hello")")).event.seq, 1u);
    ASSERT_EQ(append(*store, msg("lobby", "bob", "b1", R"("yo")")).event.seq, 2u);

    const auto e = append(*store, edit("lobby", "alice", 1, R"({"text":"hello!"})"));
    ASSERT_EQ(e.status, StoreStatus::ok);
    EXPECT_EQ(e.event.seq, 3u);
    EXPECT_EQ(e.event.kind, EventKind::edit);
    EXPECT_EQ(e.event.target, 1u);
    EXPECT_EQ(e.event.body, R"({"text":"hello!"})");
    EXPECT_EQ(e.event.cid, "");

    // Someone else's message; not a message; no such seq; another room's seq.
    EXPECT_EQ(append(*store, edit("lobby", "bob", 1, "1")).status, StoreStatus::forbidden);
    EXPECT_EQ(append(*store, del("lobby", "alice", 2)).status, StoreStatus::forbidden);
    EXPECT_EQ(append(*store, edit("lobby", "alice", 3, "1")).status, StoreStatus::notFound); // an edit event
    EXPECT_EQ(append(*store, del("lobby", "alice", 3)).status, StoreStatus::notFound);
    EXPECT_EQ(append(*store, edit("lobby", "alice", 99, "1")).status, StoreStatus::notFound);
    EXPECT_EQ(append(*store, edit("lobby", "alice", 0, "1")).status, StoreStatus::notFound);
    EXPECT_EQ(append(*store, edit("news", "bob", 2, "1")).status, StoreStatus::notFound);

    auto h = readAll(*store, "lobby");
    ASSERT_EQ(seqs(h), range(1, 3));
    EXPECT_EQ(h.events[0].kind, EventKind::message);
    EXPECT_EQ(h.events[0].state, MessageState::edited);
    EXPECT_EQ(h.events[0].body, R"({"text":"hello!"})");
    EXPECT_EQ(h.events[0].cid, "a1");
    EXPECT_EQ(h.events[1].state, MessageState::normal);
    EXPECT_EQ(h.events[2].kind, EventKind::edit);
    EXPECT_EQ(h.events[2].target, 1u);
    EXPECT_EQ(h.events[2].body, R"({"text":"hello!"})");

    const auto d = append(*store, del("lobby", "alice", 1));
    ASSERT_EQ(d.status, StoreStatus::ok);
    EXPECT_EQ(d.event.seq, 4u);
    EXPECT_EQ(d.event.kind, EventKind::remove);
    EXPECT_EQ(d.event.target, 1u);
    EXPECT_EQ(d.event.body, "null");

    h = readAll(*store, "lobby");
    ASSERT_EQ(seqs(h), range(1, 4));
    EXPECT_EQ(h.events[0].state, MessageState::deleted);
    EXPECT_EQ(h.events[0].body, "null");
    EXPECT_EQ(h.events[2].body, "null"); // the edit keeps no text of a deleted message
    EXPECT_EQ(h.events[2].kind, EventKind::edit);
    EXPECT_EQ(h.events[3].kind, EventKind::remove);
    EXPECT_EQ(h.events[3].body, "null");
    EXPECT_EQ(h.events[1].body, R"("yo")");

    // A deleted message can be neither edited nor deleted again (by anyone).
    EXPECT_EQ(append(*store, edit("lobby", "alice", 1, "2")).status, StoreStatus::notFound);
    EXPECT_EQ(append(*store, del("lobby", "alice", 1)).status, StoreStatus::notFound);
    EXPECT_EQ(append(*store, del("lobby", "bob", 1)).status, StoreStatus::notFound);
    // Refusals took no seq.
    EXPECT_EQ(append(*store, msg("lobby", "bob", "b2")).event.seq, 5u);

    // An edit with a cid is deduplicated like a send.
    const auto e1 = append(*store, edit("lobby", "bob", 2, R"("yo!")", "e-1"));
    ASSERT_EQ(e1.status, StoreStatus::ok);
    EXPECT_EQ(e1.event.seq, 6u);
    const auto e2 = append(*store, edit("lobby", "bob", 2, R"("yo!!")", "e-1"));
    EXPECT_EQ(e2.status, StoreStatus::duplicate);
    EXPECT_EQ(e2.event.seq, 6u);
    EXPECT_EQ(e2.event.kind, EventKind::edit);
    EXPECT_EQ(readAll(*store, "lobby").events.at(1).body, R"("yo!")");
}

// --- reading ------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, ReadAfterBeforeLatestWithLimitAndMore) {
    auto store = open();
    const auto epoch = openRoom(*store, "r").info.epoch;
    for (int i = 1; i <= 10; ++i) ASSERT_EQ(append(*store, msg("r", "u", "c" + std::to_string(i))).event.seq, std::uint64_t(i));
    using Dir = ReadQuery::Dir;
    struct Case {
        Dir dir;
        std::uint64_t from;
        std::uint32_t limit;
        std::vector<std::uint64_t> want;
        bool more;
    };
    const Case cases[] = {
        {Dir::after, 0, 3, {1, 2, 3}, true},      {Dir::after, 7, 3, {8, 9, 10}, false},
        {Dir::after, 6, 3, {7, 8, 9}, true},      {Dir::after, 10, 3, {}, false},
        {Dir::after, 50, 3, {}, false},           {Dir::after, 0, 10, range(1, 10), false},
        {Dir::after, 0, 100, range(1, 10), false}, {Dir::before, 5, 2, {3, 4}, true},
        {Dir::before, 3, 5, {1, 2}, false},       {Dir::before, 1, 5, {}, false},
        {Dir::before, 11, 3, {8, 9, 10}, true},   {Dir::before, 100, 3, {8, 9, 10}, true},
        {Dir::latest, 0, 4, {7, 8, 9, 10}, true}, {Dir::latest, 0, 10, range(1, 10), false},
        {Dir::latest, 0, 1, {10}, true},          {Dir::latest, 99, 2, {9, 10}, true},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(::testing::Message() << "dir " << int(c.dir) << " from " << c.from << " limit " << c.limit);
        const auto r = read(*store, "r", c.dir, c.from, c.limit);
        ASSERT_EQ(r.status, StoreStatus::ok);
        EXPECT_EQ(seqs(r), c.want);
        EXPECT_EQ(r.more, c.more);
        EXPECT_EQ(r.oldest, 1u);
        EXPECT_EQ(r.seq, 10u);
        EXPECT_EQ(r.epoch, epoch);
    }
    // A room that does not exist: no epoch, nothing kept.
    const auto none = read(*store, "nowhere", Dir::latest, 0, 10);
    EXPECT_EQ(none.status, StoreStatus::ok);
    EXPECT_TRUE(none.events.empty());
    EXPECT_FALSE(none.more);
    EXPECT_EQ(none.seq, 0u);
    EXPECT_EQ(none.oldest, 1u);
    EXPECT_EQ(none.epoch, "");
    // An empty room that exists: oldest is seq + 1.
    openRoom(*store, "empty");
    const auto empty = read(*store, "empty", Dir::latest, 0, 10);
    EXPECT_TRUE(empty.events.empty());
    EXPECT_EQ(empty.oldest, 1u);
    EXPECT_EQ(empty.epoch.size(), 16u);
}

// --- retention ----------------------------------------------------------------------------

TEST_F(SqliteStoreTest, RetentionByCountKeepsTheLatestAndSeqContinues) {
    auto o = options();
    o.retentionMessages = 5;
    {
        auto store = open(o);
        for (int i = 1; i <= 12; ++i)
            ASSERT_EQ(append(*store, msg("r", "u", "c" + std::to_string(i))).event.seq, std::uint64_t(i));
        auto h = readAll(*store, "r");
        EXPECT_EQ(seqs(h), range(8, 12));
        EXPECT_EQ(h.oldest, 8u);
        EXPECT_EQ(h.seq, 12u);
        h = read(*store, "r", ReadQuery::Dir::latest, 0, 50);
        EXPECT_EQ(seqs(h), range(8, 12));
        EXPECT_FALSE(h.more);
        h = read(*store, "r", ReadQuery::Dir::before, 8, 50);
        EXPECT_TRUE(h.events.empty());
        EXPECT_FALSE(h.more);
        EXPECT_EQ(h.oldest, 8u);

        // All at once (one or a few transactions): the same outcome.
        std::vector<std::future<AppendResult>> futures;
        for (int i = 1; i <= 12; ++i) futures.push_back(appendAsync(*store, msg("burst", "u", "b" + std::to_string(i))));
        for (auto& f : futures) ASSERT_EQ(await(std::move(f)).status, StoreStatus::ok);
        h = readAll(*store, "burst");
        EXPECT_EQ(seqs(h), range(8, 12));
        EXPECT_EQ(h.oldest, 8u);
    }
    auto store = open(o);
    EXPECT_EQ(openRoom(*store, "r").info.seq, 12u);
    const auto next = append(*store, msg("r", "u", "c13"));
    ASSERT_EQ(next.status, StoreStatus::ok);
    EXPECT_EQ(next.event.seq, 13u);
    auto h = readAll(*store, "r");
    EXPECT_EQ(seqs(h), range(9, 13));
    EXPECT_EQ(h.oldest, 9u);
    // A cid is remembered only as long as its message is kept.
    EXPECT_EQ(append(*store, msg("r", "u", "c12")).status, StoreStatus::duplicate);
    const auto again = append(*store, msg("r", "u", "c1"));
    EXPECT_EQ(again.status, StoreStatus::ok);
    EXPECT_EQ(again.event.seq, 14u);
}

// --- members ------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, MembersReadMarksAndUnreadCounts) {
    auto store = open();
    for (int i = 1; i <= 3; ++i) append(*store, msg("m", "bob", "b" + std::to_string(i)));

    auto info = memberInfo(*store, "m", "alice");
    EXPECT_EQ(info.status, StoreStatus::ok);
    EXPECT_FALSE(info.member);
    EXPECT_EQ(info.readSeq, 0u);
    EXPECT_EQ(info.unread, 0u);
    info = memberInfo(*store, "no-such-room", "alice");
    EXPECT_EQ(info.status, StoreStatus::ok);
    EXPECT_FALSE(info.member);

    info = addMember(*store, "m", "alice", 1);
    EXPECT_EQ(info.status, StoreStatus::ok);
    EXPECT_TRUE(info.member);
    EXPECT_EQ(info.readSeq, 1u);
    EXPECT_EQ(info.unread, 2u);
    info = memberInfo(*store, "m", "alice");
    EXPECT_TRUE(info.member);
    EXPECT_EQ(info.readSeq, 1u);
    EXPECT_EQ(info.unread, 2u);

    // Adding again keeps the mark.
    info = addMember(*store, "m", "alice", 3);
    EXPECT_EQ(info.readSeq, 1u);
    EXPECT_EQ(info.unread, 2u);

    // Unread counts others' messages only, not deleted ones, not edit/delete events.
    append(*store, msg("m", "alice", "a1")); // 4
    EXPECT_EQ(memberInfo(*store, "m", "alice").unread, 2u);
    append(*store, msg("m", "bob", "b5")); // 5
    append(*store, msg("m", "bob", "b6")); // 6
    EXPECT_EQ(memberInfo(*store, "m", "alice").unread, 4u);
    ASSERT_EQ(append(*store, del("m", "bob", 5)).event.seq, 7u);
    EXPECT_EQ(memberInfo(*store, "m", "alice").unread, 3u);
    ASSERT_EQ(append(*store, edit("m", "bob", 6, R"("edited")")).event.seq, 8u);
    EXPECT_EQ(memberInfo(*store, "m", "alice").unread, 3u);

    // The mark is monotonic and capped at the room's seq.
    auto m = markRead(*store, "m", "alice", 6);
    EXPECT_EQ(m.status, StoreStatus::ok);
    EXPECT_EQ(m.mark, 6u);
    EXPECT_TRUE(m.moved);
    EXPECT_EQ(memberInfo(*store, "m", "alice").unread, 0u);
    m = markRead(*store, "m", "alice", 3);
    EXPECT_EQ(m.status, StoreStatus::ok);
    EXPECT_EQ(m.mark, 6u);
    EXPECT_FALSE(m.moved);
    m = markRead(*store, "m", "alice", 6);
    EXPECT_EQ(m.mark, 6u);
    EXPECT_FALSE(m.moved);
    m = markRead(*store, "m", "alice", 1000);
    EXPECT_EQ(m.mark, 8u);
    EXPECT_TRUE(m.moved);
    m = markRead(*store, "m", "alice", 1000);
    EXPECT_EQ(m.mark, 8u);
    EXPECT_FALSE(m.moved);
    info = memberInfo(*store, "m", "alice");
    EXPECT_EQ(info.readSeq, 8u);
    EXPECT_EQ(info.unread, 0u);

    // Not a member (say, it left from another connection): the read makes it none again.
    m = markRead(*store, "m", "carol", 5);
    EXPECT_EQ(m.status, StoreStatus::ok);
    EXPECT_EQ(m.mark, 0u);
    EXPECT_FALSE(m.moved);
    EXPECT_FALSE(memberInfo(*store, "m", "carol").member);
    EXPECT_FALSE(markRead(*store, "no-such-room", "carol", 5).moved);

    // A new member's mark is capped too.
    info = addMember(*store, "m", "carol", 1000);
    EXPECT_EQ(info.readSeq, 8u);
    EXPECT_EQ(info.unread, 0u);

    // Leaving forgets the mark.
    EXPECT_EQ(removeMember(*store, "m", "alice"), StoreStatus::ok);
    EXPECT_FALSE(memberInfo(*store, "m", "alice").member);
    EXPECT_EQ(removeMember(*store, "m", "alice"), StoreStatus::ok);      // not a member: no error
    EXPECT_EQ(removeMember(*store, "nowhere", "alice"), StoreStatus::ok); // no room: no error
    info = addMember(*store, "m", "alice", 2);
    EXPECT_EQ(info.readSeq, 2u);
    EXPECT_EQ(info.unread, 2u); // bob's 3 and 6 (5 deleted), not alice's 4

    // Kept across restarts.
    store.reset();
    store = open();
    info = memberInfo(*store, "m", "alice");
    EXPECT_TRUE(info.member);
    EXPECT_EQ(info.readSeq, 2u);
    EXPECT_EQ(info.unread, 2u);
    EXPECT_EQ(memberInfo(*store, "m", "carol").readSeq, 8u);
}

TEST_F(SqliteStoreTest, UserRoomsAndListRoomsAreSortedByName) {
    auto store = open();
    std::map<std::string, std::string> epochs;
    for (const char* room : {"zeta", "alpha", "Mid", "beta", "alpha.2", "0day"}) epochs[room] = openRoom(*store, room).info.epoch;
    append(*store, msg("zeta", "bob", "z1"));
    append(*store, msg("zeta", "bob", "z2"));
    append(*store, msg("alpha", "alice", "a1"));
    addMember(*store, "zeta", "alice", 1);
    addMember(*store, "alpha", "alice", 0);
    addMember(*store, "Mid", "alice", 0);
    addMember(*store, "beta", "bob", 0);

    auto [st, all] = listRooms(*store, 100);
    ASSERT_EQ(st, StoreStatus::ok);
    std::vector<std::string> names;
    for (const auto& r : all) {
        names.push_back(r.room);
        EXPECT_EQ(r.epoch, epochs[r.room]);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"0day", "Mid", "alpha", "alpha.2", "beta", "zeta"}));
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
    EXPECT_EQ(all.at(5).seq, 2u);
    EXPECT_EQ(all.at(2).seq, 1u);
    EXPECT_EQ(all.at(1).seq, 0u);
    const auto two = listRooms(*store, 2);
    ASSERT_EQ(two.second.size(), 2u);
    EXPECT_EQ(two.second[0].room, "0day");
    EXPECT_EQ(two.second[1].room, "Mid");

    auto [st2, mine] = userRooms(*store, "alice", 100);
    ASSERT_EQ(st2, StoreStatus::ok);
    ASSERT_EQ(mine.size(), 3u);
    EXPECT_EQ(mine[0].room, "Mid");
    EXPECT_EQ(mine[1].room, "alpha");
    EXPECT_EQ(mine[2].room, "zeta");
    EXPECT_EQ(mine[2].epoch, epochs["zeta"]);
    EXPECT_EQ(mine[2].seq, 2u);
    EXPECT_EQ(mine[2].readSeq, 1u);
    EXPECT_EQ(mine[2].unread, 1u);
    EXPECT_EQ(mine[1].seq, 1u);
    EXPECT_EQ(mine[1].readSeq, 0u);
    EXPECT_EQ(mine[1].unread, 0u); // her own message
    EXPECT_EQ(userRooms(*store, "alice", 1).second.size(), 1u);
    EXPECT_EQ(userRooms(*store, "alice", 1).second.at(0).room, "Mid");
    const auto nobody = userRooms(*store, "nobody", 100);
    EXPECT_EQ(nobody.first, StoreStatus::ok);
    EXPECT_TRUE(nobody.second.empty());
    removeMember(*store, "alpha", "alice");
    EXPECT_EQ(userRooms(*store, "alice", 100).second.size(), 2u);
}

// --- files, limits, lifecycle ---------------------------------------------------------------

TEST_F(SqliteStoreTest, NewerSchemaVersionIsRefused) {
    {
        auto store = open();
        openRoom(*store, "x");
    }
    {
        sqlite::Db db(file());
        EXPECT_EQ(db.queryInt("PRAGMA user_version"), SqliteStore::schemaVersion);
        db.exec("PRAGMA user_version = 99");
    }
    EXPECT_THROW(SqliteStore{options()}, std::runtime_error);
    sqlite::Db db(file());
    EXPECT_EQ(db.queryInt("PRAGMA user_version"), 99); // left as it was
}

TEST_F(SqliteStoreTest, UnusableDirectoryOrFileIsRefused) {
    {
        std::ofstream(dir_.path() / "plain-file") << "x";
    }
    auto o = options();
    o.dir = dir_.path() / "plain-file";
    EXPECT_THROW(SqliteStore{o}, std::runtime_error);
    // A chat.db that is not a database.
    fs::create_directories(dir_.path() / "garbage");
    std::ofstream(dir_.path() / "garbage" / "chat.db") << std::string(4096, 'g');
    o.dir = dir_.path() / "garbage";
    EXPECT_THROW(SqliteStore{o}, std::runtime_error);
}

/** Holds the writer thread inside a callback until released (or 5 s). */
struct Gate {
    std::promise<void> entered;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
};

TEST_F(SqliteStoreTest, FullQueueFailsUnavailableAndStoresNothing) {
    auto o = options();
    o.maxQueue = 1;
    auto store = open(o);
    auto gate = std::make_shared<Gate>();
    auto first = std::make_shared<std::promise<AppendResult>>();
    store->append(msg("q", "u", "c1"), [gate, first](AppendResult r) {
        first->set_value(std::move(r));
        gate->entered.set_value();
        (void)gate->released.wait_for(timeout); // the writer thread waits here
    });
    await(gate->entered.get_future());
    EXPECT_EQ(await(first->get_future()).event.seq, 1u);

    auto queued = appendAsync(*store, msg("q", "u", "c2"));   // fills the queue of 1
    auto refused = appendAsync(*store, msg("q", "u", "c3"));  // over it
    const auto r = await(std::move(refused));
    EXPECT_EQ(r.status, StoreStatus::unavailable);
    EXPECT_EQ(r.event.seq, 0u);
    // Other writes are refused the same way while the queue is full.
    auto p = std::make_shared<std::promise<StoreStatus>>();
    store->openRoom("q2", [p](StoreStatus st, RoomInfo) { p->set_value(st); });
    EXPECT_EQ(await(p->get_future()), StoreStatus::unavailable);

    gate->release.set_value();
    const auto q = await(std::move(queued));
    EXPECT_EQ(q.status, StoreStatus::ok);
    EXPECT_EQ(q.event.seq, 2u);
    // Nothing of the refused one was stored: its cid is free and the seqs have no hole.
    const auto retry = append(*store, msg("q", "u", "c3"));
    EXPECT_EQ(retry.status, StoreStatus::ok);
    EXPECT_EQ(retry.event.seq, 3u);
    EXPECT_EQ(seqs(readAll(*store, "q")), range(1, 3));
}

TEST_F(SqliteStoreTest, FullReadQueueFailsUnavailable) {
    auto o = options();
    o.maxQueue = 1;
    o.readers = 1;
    auto store = open(o);
    append(*store, msg("q", "u", "c1"));
    auto gate = std::make_shared<Gate>();
    store->read({"q", ReadQuery::Dir::after, 0, 10}, [gate](ReadResult) {
        gate->entered.set_value();
        (void)gate->released.wait_for(timeout); // the only reader waits here
    });
    await(gate->entered.get_future());
    auto queued = std::make_shared<std::promise<ReadResult>>();
    store->read({"q", ReadQuery::Dir::after, 0, 10}, [queued](ReadResult r) { queued->set_value(std::move(r)); });
    auto refused = std::make_shared<std::promise<MemberInfo>>();
    store->memberInfo("q", "u", [refused](MemberInfo m) { refused->set_value(m); });
    EXPECT_EQ(await(refused->get_future()).status, StoreStatus::unavailable);
    gate->release.set_value();
    const auto r = await(queued->get_future());
    EXPECT_EQ(r.status, StoreStatus::ok);
    EXPECT_EQ(seqs(r), range(1, 1));
}

// A call refused at once (queue full, store closed) answers `unavailable`, possibly before it
// returns (store.hpp): callers post results to their loop and hold no lock across a call.
TEST_F(SqliteStoreTest, RefusedCallsAnswerUnavailable) {
    auto o = options();
    o.maxQueue = 1;
    auto store = open(o);
    auto gate = std::make_shared<Gate>();
    store->append(msg("q", "u", "c1"), [gate](AppendResult) {
        gate->entered.set_value();
        (void)gate->released.wait_for(timeout);
    });
    await(gate->entered.get_future());
    auto queued = appendAsync(*store, msg("q", "u", "c2"));

    struct Seen {
        std::atomic<bool> returned{false};
        std::atomic<bool> inline_{false};
        std::thread::id thread;
        std::promise<void> done;
    };
    const auto check = [&](const char* what, auto&& call) {
        SCOPED_TRACE(what);
        auto seen = std::make_shared<Seen>();
        call([seen] {
            seen->inline_ = !seen->returned.load();
            seen->thread = std::this_thread::get_id();
            seen->done.set_value();
        });
        seen->returned = true;
        await(seen->done.get_future());
    };
    check("append over a full queue", [&](auto cb) {
        store->append(msg("q", "u", "c3"), [cb](AppendResult r) {
            EXPECT_EQ(r.status, StoreStatus::unavailable);
            cb();
        });
    });
    gate->release.set_value();
    EXPECT_EQ(await(std::move(queued)).status, StoreStatus::ok);

    store->close();
    check("append after close", [&](auto cb) {
        store->append(msg("q", "u", "c4"), [cb](AppendResult r) {
            EXPECT_EQ(r.status, StoreStatus::unavailable);
            cb();
        });
    });
    check("read after close", [&](auto cb) {
        store->read({"q", ReadQuery::Dir::after, 0, 10}, [cb](ReadResult r) {
            EXPECT_EQ(r.status, StoreStatus::unavailable);
            cb();
        });
    });
}

TEST_F(SqliteStoreTest, AfterCloseEveryCallIsUnavailable) {
    auto store = open();
    append(*store, msg("r", "u", "c1"));
    store->close();
    store->close(); // twice is fine
    EXPECT_EQ(append(*store, msg("r", "u", "c2")).status, StoreStatus::unavailable);
    EXPECT_EQ(openRoom(*store, "r").status, StoreStatus::unavailable);
    EXPECT_EQ(readAll(*store, "r").status, StoreStatus::unavailable);
    EXPECT_EQ(memberInfo(*store, "r", "u").status, StoreStatus::unavailable);
    EXPECT_EQ(addMember(*store, "r", "u", 0).status, StoreStatus::unavailable);
    EXPECT_EQ(removeMember(*store, "r", "u"), StoreStatus::unavailable);
    EXPECT_EQ(markRead(*store, "r", "u", 1).status, StoreStatus::unavailable);
    EXPECT_FALSE(markRead(*store, "r", "u", 1).moved);
    EXPECT_EQ(userRooms(*store, "u", 10).first, StoreStatus::unavailable);
    EXPECT_EQ(listRooms(*store, 10).first, StoreStatus::unavailable);
    store.reset();
    // Nothing after the close was written.
    store = open();
    EXPECT_EQ(seqs(readAll(*store, "r")), range(1, 1));
}

TEST_F(SqliteStoreTest, CloseFinishesWhatIsQueued) {
    auto store = open();
    std::vector<std::future<AppendResult>> futures;
    for (int i = 1; i <= 50; ++i) futures.push_back(appendAsync(*store, msg("r", "u", "c" + std::to_string(i))));
    store->close();
    for (auto& f : futures) EXPECT_EQ(await(std::move(f)).status, StoreStatus::ok);
    store.reset();
    store = open();
    EXPECT_EQ(seqs(readAll(*store, "r")), range(1, 50));
}

TEST_F(SqliteStoreTest, CommitDelayGathersWritesIntoOneCommit) {
    auto o = options();
    o.commitDelay = std::chrono::milliseconds(400);
    auto store = open(o);
    openRoom(*store, "r");
    const auto commitsBefore = store->stats().commits;
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::future<AppendResult>> futures;
    for (int i = 1; i <= 20; ++i) {
        futures.push_back(appendAsync(*store, msg("r", "u", "c" + std::to_string(i))));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::uint64_t seq = 0;
    for (auto& f : futures) {
        const auto r = await(std::move(f));
        ASSERT_EQ(r.status, StoreStatus::ok);
        EXPECT_EQ(r.event.seq, ++seq);
    }
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(350)) << "the first waited for the delay";
    EXPECT_EQ(store->stats().commits - commitsBefore, 1u) << "all twenty in one transaction";
    // Closing does not wait for the delay: what is queued is committed at once.
    futures.clear();
    for (int i = 21; i <= 25; ++i) futures.push_back(appendAsync(*store, msg("r", "u", "c" + std::to_string(i))));
    const auto closing = std::chrono::steady_clock::now();
    store->close();
    EXPECT_LT(std::chrono::steady_clock::now() - closing, std::chrono::milliseconds(300));
    for (auto& f : futures) EXPECT_EQ(await(std::move(f)).status, StoreStatus::ok);
    store.reset();
    EXPECT_EQ(seqs(readAll(*open(), "r")), range(1, 25));
}

TEST_F(SqliteStoreTest, NormalSyncAndOneReaderWork) {
    auto o = options();
    o.fullSync = false;
    o.readers = 0; // at least one is used
    std::string epoch;
    {
        auto store = open(o);
        epoch = openRoom(*store, "r").info.epoch;
        for (int i = 1; i <= 5; ++i) ASSERT_EQ(append(*store, msg("r", "u", "c" + std::to_string(i))).event.seq, std::uint64_t(i));
        EXPECT_EQ(seqs(readAll(*store, "r")), range(1, 5));
        EXPECT_EQ(addMember(*store, "r", "v", 2).unread, 3u);
    }
    auto store = open(o);
    const auto h = readAll(*store, "r");
    EXPECT_EQ(seqs(h), range(1, 5));
    EXPECT_EQ(h.epoch, epoch);
    EXPECT_EQ(append(*store, msg("r", "u", "c1")).status, StoreStatus::duplicate);
    EXPECT_EQ(append(*store, msg("r", "u", "c6")).event.seq, 6u);
    EXPECT_EQ(memberInfo(*store, "r", "v").readSeq, 2u);
}

TEST_F(SqliteStoreTest, Stats) {
    auto store = open();
    for (int i = 1; i <= 3; ++i) append(*store, msg("r", "u", "c" + std::to_string(i)));
    append(*store, msg("r", "u", "c1")); // a duplicate stores nothing
    append(*store, edit("r", "v", 1, "1")); // forbidden: nothing
    const auto s = store->stats();
    EXPECT_EQ(s.eventsStored, 3u);
    EXPECT_GE(s.commits, 3u);
    EXPECT_EQ(s.failures, 0u);
    ASSERT_EQ(s.commitBounds.size(), s.commitCounts.size());
    ASSERT_FALSE(s.commitBounds.empty());
    EXPECT_TRUE(std::is_sorted(s.commitBounds.begin(), s.commitBounds.end()));
    EXPECT_TRUE(std::is_sorted(s.commitCounts.begin(), s.commitCounts.end()));
    EXPECT_LE(s.commitCounts.back(), s.commits);
    EXPECT_GE(s.commitSum, 0.0);
}

} // namespace
} // namespace tongdao::chat
