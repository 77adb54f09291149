#pragma once
// The chat store: what the room logic needs from durable storage, behind one interface, so
// that the SQLite engine (one node) and the Redis engine (several nodes) are interchangeable.
//
// Every call is asynchronous: it returns at once and its callback runs later on one of the
// store's own threads — except a call refused at once (the store is closed, or its queue is
// full), whose callback runs before the call returns, with `unavailable`. Callers post the
// result back to their loop either way, and hold no lock across a call.

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
    /** Finishes what is queued and stops the store's threads. Callbacks may still run. */
    virtual void close() = 0;
};

} // namespace tongdao::chat
