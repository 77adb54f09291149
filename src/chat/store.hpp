#pragma once
// The chat store: what the room logic needs from durable storage, behind one interface, so
// that the SQLite engine (one node) and the Redis engine (several nodes) are interchangeable.
//
// Every call is asynchronous: it returns at once and its callback runs later on one of the
// store's own threads — except a call refused at once (the store is closed, or its queue is
// full), whose callback runs before the call returns, with `unavailable`. Callers post the
// result back to their loop either way, and hold no lock across a call.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tongdao::chat {

/** The kinds of stored event; every one takes a seq of its room. */
enum class EventKind : std::uint8_t { message = 0, edit = 1, remove = 2 };

/** A message's state as history shows it (only for `EventKind::message`). */
enum class MessageState : std::uint8_t { normal = 0, edited = 1, deleted = 2 };

/** One stored event of a room. `body` is JSON text ("null" for a delete). */
struct StoredEvent {
    std::uint64_t seq = 0;
    std::int64_t ts = 0;
    EventKind kind = EventKind::message;
    MessageState state = MessageState::normal;
    std::uint64_t target = 0; ///< edit, delete: the seq of the message they change
    std::string user;
    std::string name;
    std::string cid; ///< empty when none was given
    std::string body;
};

/** How a call ended. */
enum class StoreStatus : std::uint8_t {
    ok,
    duplicate,   ///< append: this (user, cid) was stored before; the event is that first one
    notFound,    ///< edit/delete: no such message, or it is deleted
    forbidden,   ///< edit/delete: the message is someone else's
    unavailable, ///< the store failed or is overloaded; nothing was written
};

/** A room's identity and position. */
struct RoomInfo {
    std::string epoch;
    std::uint64_t seq = 0; ///< latest stored seq, 0 for none
};

struct AppendRequest {
    std::string room;
    EventKind kind = EventKind::message;
    std::uint64_t target = 0;
    std::string user;
    std::string name;
    std::string cid; ///< empty: not deduplicated (edit/delete without cid)
    std::string body;
};

struct AppendResult {
    StoreStatus status = StoreStatus::ok;
    std::string room;  ///< the room of the stored event (a duplicate may name another)
    StoredEvent event; ///< as stored (ok), or the first one (duplicate)
    /** False when the event reached this node's members already (a shared store whose reply
     *  came after the room's position had passed it): only the sender's reply is owed. */
    bool fanOut = true;
};

/** A range of events to read. */
struct ReadQuery {
    std::string room;
    enum class Dir : std::uint8_t { after, before, latest } dir = Dir::after;
    std::uint64_t from = 0; ///< after: seq > from; before: seq < from
    std::uint32_t limit = 50;
};

struct ReadResult {
    StoreStatus status = StoreStatus::ok;
    std::vector<StoredEvent> events; ///< ascending seq
    bool more = false;               ///< further events in the asked direction
    std::uint64_t oldest = 0;        ///< oldest seq kept (seq + 1 when none)
    std::uint64_t seq = 0;           ///< the room's latest seq when read
    std::string epoch;               ///< the room's epoch; empty if the room does not exist
};

/** A user's membership of a room. */
struct MemberInfo {
    StoreStatus status = StoreStatus::ok;
    bool member = false;
    std::uint64_t readSeq = 0;
    std::uint64_t unread = 0;
};

struct UserRoom {
    std::string room;
    std::string epoch;
    std::uint64_t seq = 0;
    std::uint64_t readSeq = 0;
    std::uint64_t unread = 0;
};

struct RoomSummary {
    std::string room;
    std::string epoch;
    std::uint64_t seq = 0;
};

/** Figures for /metrics. */
struct StoreStats {
    std::uint64_t eventsStored = 0;
    std::uint64_t commits = 0;
    std::uint64_t failures = 0;
    /** Commit latency histogram: counts at or below each bound (seconds), cumulative. */
    std::vector<double> commitBounds;
    std::vector<std::uint64_t> commitCounts;
    double commitSum = 0;
};

/** What one node tells the others of a room, through a shared store: not stored. */
struct Signal {
    /** presence: a user online or not on the sender; relay: an event for every member (typing, read). */
    enum class Kind : std::uint8_t { presence, relay } kind = Kind::presence;
    std::string node; ///< the sender
    std::string user, name;
    bool join = false; ///< presence: came online (true) or went offline
    std::string event; ///< relay: the event, as JSON
};

/** A user online on another node, as a shared store keeps it. */
struct PresenceEntry {
    std::string node, user, name;
};

/** What a store shared by several nodes reports to this node, on the store's thread. */
class StoreListener {
public:
    virtual ~StoreListener() = default;
    /** An event of an open room stored by another node (or by this one, its reply lost); per
     *  room in seq order, interleaved in that order with this node's own append callbacks. */
    virtual void remoteStored(AppendResult result) = 0;
    virtual void remoteSignal(const std::string& room, Signal s) = 0;
    /** The room's history was lost and starts again under a new epoch. */
    virtual void roomReset(const std::string& room, const std::string& epoch) = 0;
    /** This node fell too far behind the room to order its events in memory: it goes on from
     *  `seq`, and its members resume from the store what came before. */
    virtual void roomResync(const std::string& room, std::uint64_t seq) = 0;
};

/** Lower-case hex of `n` bytes. */
std::string toHex(const unsigned char* bytes, std::size_t n);
/** A new room's epoch: 16 hex digits from the CSPRNG (also a node's default name). */
std::string newEpoch();

/** Counters every store keeps for StoreStats; thread-safe. */
class StoreCounters {
public:
    /** One commit (a transaction, a script call) of `events` events that took `seconds`. */
    void committed(std::uint64_t events, double seconds) noexcept;
    void failed() noexcept { failures_.fetch_add(1, std::memory_order_relaxed); }
    StoreStats stats() const;

private:
    static constexpr double bounds_[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5};
    std::atomic<std::uint64_t> events_{0}, commits_{0}, failures_{0}, nanos_{0};
    std::atomic<std::uint64_t> buckets_[std::size(bounds_) + 1] = {};
};

class Store {
public:
    virtual ~Store() = default;

    /** The room's epoch and latest seq; the room is created (with a new epoch) if new. */
    virtual void openRoom(std::string room, std::function<void(StoreStatus, RoomInfo)> done) = 0;
    /**
     * Stores one event: deduplicates on (user, cid), assigns the room's next seq and the
     * time, and calls back once the event is durable. Callbacks of one room come in seq order.
     */
    virtual void append(AppendRequest request, std::function<void(AppendResult)> done) = 0;
    virtual void read(ReadQuery query, std::function<void(ReadResult)> done) = 0;

    /** The user's membership of a room, with its unread count. */
    virtual void memberInfo(std::string room, std::string user, std::function<void(MemberInfo)> done) = 0;
    /** Makes the user a member (if not yet) with a read mark of `readSeq`; the mark kept. */
    virtual void addMember(std::string room, std::string user, std::uint64_t readSeq,
                           std::function<void(MemberInfo)> done) = 0;
    virtual void removeMember(std::string room, std::string user, std::function<void(StoreStatus)> done) = 0;
    /**
     * Raises a member's read mark to `seq` (never lowers it, never past the room's latest);
     * calls back with the mark kept. Not a member (left meanwhile): nothing changes, mark 0.
     */
    virtual void markRead(std::string room, std::string user, std::uint64_t seq,
                          std::function<void(StoreStatus, std::uint64_t mark, bool moved)> done) = 0;
    /** The rooms the user is a member of, by name, at most `limit`. */
    virtual void userRooms(std::string user, std::uint32_t limit,
                           std::function<void(StoreStatus, std::vector<UserRoom>)> done) = 0;
    /** All rooms, by name, at most `limit`. */
    virtual void listRooms(std::uint32_t limit, std::function<void(StoreStatus, std::vector<RoomSummary>)> done) = 0;

    virtual StoreStats stats() const = 0;

    /** Connects (a store that does so lazily otherwise); the server's loops exist. */
    virtual void start() {}

    // --- several nodes: a store they share (the default is one node alone) -----------------
    /** True when other nodes share this store: the calls below then do something. */
    virtual bool shared() const noexcept { return false; }
    /** This node's name among the nodes. */
    virtual std::string node() const { return {}; }
    /** Where remote events go, for the rooms opened with `openRoom`. Set before any call. */
    virtual void setListener(StoreListener* listener) { (void)listener; }
    /** Tells the other nodes' members of the room (presence, typing, read); best effort. */
    virtual void signal(std::string room, Signal s) { (void)room, (void)s; }
    /**
     * Calls back once this node has handed on every event the store had when asked (a node
     * may lag behind the store: a resume past its position waits for it).
     */
    virtual void sync(std::string room, std::function<void()> done) {
        (void)room;
        done();
    }
    /** A user came online in the room on this node (`online`), or went offline here. */
    virtual void presenceSet(std::string room, std::string user, std::string name, bool online) {
        (void)room, (void)user, (void)name, (void)online;
    }
    /** What a presence refresh answers. */
    struct PresenceState {
        StoreStatus status = StoreStatus::ok;
        bool expired = false;               ///< this node's entries had expired: set them again
        std::vector<std::string> nodes;     ///< the nodes live in the room (this one too)
        std::vector<PresenceEntry> entries; ///< `full`: the other nodes' online users
    };
    /**
     * Renews this node's presence in the room (a node's entries go when it stops renewing
     * them); `full` also answers with the other nodes' entries (a room opening here).
     */
    virtual void presenceSync(std::string room, bool full, std::function<void(PresenceState)> done) {
        (void)room, (void)full;
        done({});
    }
    /** The service let go of the room (no member on this node): what the store keeps for it
     *  may go too (on Redis, its subscription), until `openRoom` again. */
    virtual void releaseRoom(std::string room) { (void)room; }
    /** Finishes what is queued and stops the store's threads. Callbacks may still run. */
    virtual void close() = 0;
};

} // namespace tongdao::chat
