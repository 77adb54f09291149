#pragma once
// The store of several nodes: Redis, standalone or Cluster (docs/SCALING.md).
//
// Everything runs on one loop of the node (the store's thread, in store.hpp's terms): its
// connections, its scripts' replies, its subscriptions. A send is one EVALSHA (dedupe, seq,
// stream append, publish, atomically). Each room opened here has a feed: the room's events
// in seq order, from three sources — this node's script replies, the shard channel, and
// reads of the stream that fill what the channel missed (Redis pub/sub is at-most-once).
// The feed hands them on in order and without a gap the stream does not have: this node's
// own events to their append callbacks (after their reply, so a sender's reply precedes its
// copy), the others' to the listener.

#include "redis_conn.hpp"
#include "store.hpp"

#include "tongdao/net/loop.hpp"

#include <array>
#include <atomic>
#include <map>
#include <set>

namespace tongdao::chat {

struct RedisOptions {
    redis::Topology topology; ///< standalone, behind Sentinel, or Cluster; and what a reply waits for
    std::string node;                    ///< this node's name; random when empty
    std::uint64_t retentionMessages = 0; ///< events kept per room; 0 = all
    std::uint32_t retentionDays = 0;     ///< 0 = forever
    /** The loop the store runs on (the server's loops exist once it listens). */
    std::function<net::Loop&()> loop;
};

class RedisStore final : public Store {
public:
    explicit RedisStore(RedisOptions options);
    ~RedisStore() override;

    void openRoom(std::string room, std::function<void(StoreStatus, RoomInfo)> done) override;
    void append(AppendRequest request, std::function<void(AppendResult)> done) override;
    void read(ReadQuery query, std::function<void(ReadResult)> done) override;
    void memberInfo(std::string room, std::string user, std::function<void(MemberInfo)> done) override;
    void addMember(std::string room, std::string user, std::uint64_t readSeq,
                   std::function<void(MemberInfo)> done) override;
    void removeMember(std::string room, std::string user, std::function<void(StoreStatus)> done) override;
    void markRead(std::string room, std::string user, std::uint64_t seq,
                  std::function<void(StoreStatus, std::uint64_t, bool)> done) override;
    void userRooms(std::string user, std::uint32_t limit,
                   std::function<void(StoreStatus, std::vector<UserRoom>)> done) override;
    void listRooms(std::uint32_t limit, std::function<void(StoreStatus, std::vector<RoomSummary>)> done) override;
    StoreStats stats() const override;
    void close() override;
    void start() override {
        run([] {});
    }

    bool shared() const noexcept override { return true; }
    std::string node() const override { return options_.node; }
    void setListener(StoreListener* listener) override { listener_ = listener; }
    void signal(std::string room, Signal s) override;
    void presenceSet(std::string room, std::string user, std::string name, bool online) override;
    void presenceSync(std::string room, bool full, std::function<void(PresenceState)> done) override;
    void sync(std::string room, std::function<void()> done) override;
    void releaseRoom(std::string room) override;

    /** Unread counts stop at this many events scanned (docs/SCALING.md). */
    static constexpr int unreadScanCap = 10000;
    /** A node's presence entries live this long unless it refreshes them. */
    static constexpr int presenceTtlMs = 20000;
    /** Events a feed holds back waiting for a missing one, beyond which it resyncs. */
    static constexpr std::size_t maxAhead = 10000;

private:
    enum Script : std::uint8_t { appendS, readS, memberS, markReadS, openS, presenceS, scriptCount };

    /** An event on its way through a feed; `token` is ours when this node appended it. */
    struct Incoming {
        StoredEvent event;
        std::uint64_t token = 0;
    };
    struct Mine {
        std::function<void(AppendResult)> done;
        bool replied = false;
        AppendResult result;
    };
    struct Feed {
        std::string room, channel, epoch;
        std::string candidate; ///< the epoch a re-creation of the room would take (unused so far)
        std::set<std::string> retired; ///< epochs of histories lost: their late events are ignored
        bool open = false, subscribed = false, opening = false, filling = false;
        bool reopening = false; ///< its data vanished: opened again, under a new epoch
        bool released = false;  ///< the service let go of the room: unsubscribed and dropped once idle
        bool resyncing = false; ///< too far behind: opened again at the room's position
        std::uint64_t delivered = 0; ///< the latest seq handed on
        std::int64_t openSince = 0;
        std::map<std::uint64_t, Incoming> ahead;
        std::unordered_map<std::uint64_t, Mine> mine;
        std::vector<std::function<void(StoreStatus, RoomInfo)>> waiters;
        struct Sync {
            std::uint64_t upTo = 0; ///< done once delivered reaches it
            std::int64_t since = 0;
            std::function<void()> done;
        };
        std::vector<Sync> syncs;
    };

    /** Runs `f` on the store's loop (at once when called there), starting the store first. */
    void run(std::function<void()> f);
    void begin();
    void tick();
    /** Warns of Redis settings under which acked messages can be lost. */
    void checkSettings();
    void script(Script s, std::vector<std::string> keysAndArgs, std::size_t keys, redis::Callback cb);

    Feed* feed(const std::string& room);
    void subscribed(const std::string& channel);
    void message(std::string_view channel, std::string_view payload);
    /** To the room's channel: a signal, or an event the append script returned instead of
     *  publishing it (the node waits for replicas first). */
    void publish(const std::string& room, std::string payload);
    /** Reads the room's position (creating the room, or replacing a `stale` epoch). */
    void openFeed(Feed& f, const std::string& stale = {});
    void finishOpen(Feed& f, StoreStatus st);
    void offer(Feed& f, const std::string& epoch, Incoming in);
    void drain(Feed& f);
    /** This node's append `m`, stored: its sender gets the reply; `fanOut` false when the
     *  event reached the members already (its place in the feed was passed). */
    void answer(Feed& f, std::unordered_map<std::uint64_t, Mine>::iterator m, bool fanOut);
    void fill(Feed& f);
    void reset(Feed& f, const std::string& epoch);
    /** Too many events wait for a missing one: the feed starts again at the room's position. */
    void resync(Feed& f);
    /** Answers the syncs the feed has reached (`all`: every one, and those waiting too long). */
    void settleSyncs(Feed& f, bool all);
    void ownReply(Feed* f, std::uint64_t token, AppendResult result, const std::string& epoch);

    RedisOptions options_;
    std::unique_ptr<redis::RedisRouter> router_;
    std::array<std::string, scriptCount> shas_;
    std::unordered_map<std::string, std::unique_ptr<Feed>> feeds_;
    StoreListener* listener_ = nullptr;
    std::unique_ptr<asio::steady_timer> ticker_;
    std::uint64_t tokens_ = 0;
    std::uint32_t ticks_ = 0;
    bool started_ = false;
    bool settingsChecked_ = false;
    std::atomic<bool> closed_{false};
    StoreCounters counters_;
};

} // namespace tongdao::chat
