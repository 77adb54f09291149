#pragma once
// The chat service's state (DESIGN.md "Chat server"). Threads: a room belongs to the loop
// its name hashes to and is touched only there; a session belongs to its connection's loop.
// They talk by posting closures to each other's loop; the store calls back on its threads,
// and its callbacks post to a loop too. Nothing here takes a lock but the user registry.

#include "auth.hpp"
#include "store.hpp"
#include "tongdao/chat/service.hpp"
#include "tongdao/net/loop.hpp"
#include "wire.hpp"

#include <array>
#include <atomic>
#include <deque>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <unordered_set>

namespace tongdao::chat {

struct Session;

/** Session ids are unique across loops: the loop in the top bits. */
using SessionId = std::uint64_t;
inline std::uint32_t loopOf(SessionId id) noexcept { return static_cast<std::uint32_t>(id >> 40); }

/** Per-user state shared by a user's connections on every loop: connections and send budget. */
class UserRegistry {
public:
    /** Counts a connection in; returns true for the user's first. */
    bool connect(const std::string& user);
    void disconnect(const std::string& user);
    /** Takes one send from the user's token bucket; 0 if allowed, else ms until one is. */
    std::uint64_t takeSend(const std::string& user, double rate, double burst);
    std::uint64_t usersOnline() const noexcept { return online_.load(std::memory_order_relaxed); }

private:
    struct Entry {
        std::uint32_t connections = 0;
        double tokens = -1; ///< < 0: full (never used)
        std::int64_t lastNs = 0;
    };
    struct Part {
        std::mutex mu;
        std::unordered_map<std::string, Entry> users;
    };
    Part& part(const std::string& user) { return parts_[std::hash<std::string>{}(user) % parts_.size()]; }
    std::array<Part, 16> parts_;
    std::atomic<std::uint64_t> online_{0};
};

/** A room as its owning loop knows it: position, member connections, who is online. */
struct Room {
    std::string name;
    std::string topic; ///< the pub/sub topic its live events go to on each loop
    enum class State : std::uint8_t { closed, opening, open } state = State::closed;
    std::string epoch;
    std::uint64_t seq = 0;
    std::vector<std::function<void(Room*)>> waiting; ///< until open (null: opening failed)
    std::vector<std::uint32_t> loopMembers;          ///< member connections per loop
    std::unordered_set<SessionId> members;           ///< member connections
    struct Online {
        std::string name;
        std::uint32_t connections = 0;
        std::uint32_t leaveAt = 0; ///< loop time when a pending "leave" is announced; 0: none
    };
    std::unordered_map<std::string, Online> online;
    std::uint32_t pendingLeaves = 0;
    std::unordered_map<std::string, std::int64_t> typingAt; ///< user -> steady ms of the last relayed typing
    /** Several nodes: users online on other nodes, by user, then node -> steady ms of the
     *  last change (a sync answer older than a signal does not undo it). */
    struct Remote {
        std::string name;
        std::unordered_map<std::string, std::int64_t> nodes;
    };
    std::unordered_map<std::string, Remote> remote;
    std::unordered_map<std::string, std::int64_t> remoteGone; ///< user "\n" node -> steady ms it left
    std::uint32_t nextPresenceSync = 0; ///< loop time of the next presence refresh (several nodes)
    bool presenceSyncing = false;
    std::uint32_t idleSince = 0; ///< loop time it was first seen with nothing going on; 0: in use
};

/** One connection's view of a room it joined. */
struct JoinedRoom {
    enum class Phase : std::uint8_t { joining, catchingUp, live } phase = Phase::joining;
    bool reading = false;     ///< a catch-up page is being read
    bool waitDrain = false;   ///< paused until the socket's backlog drains
    bool queued = false;      ///< waiting for one of its loop's catch-up read slots
    std::uint64_t cursor = 0; ///< last seq delivered to this connection
    std::uint32_t readGen = 0; ///< tells the answer to this join's read from a stale one
};

/** What one loop knows of a room some of its connections joined. */
struct LocalRoom {
    std::uint64_t lastSeq = 0;   ///< the latest seq delivered on this loop (or known committed)
    std::uint32_t sessions = 0;  ///< connections of this loop that joined it
    std::uint32_t live = 0;      ///< of which subscribed to its live events
};

/** The connection's user data: identity, rooms joined, error budget. */
struct Session {
    SessionId id = 0;
    WebSocket* ws = nullptr;
    std::string user;  ///< empty until hello
    std::string name;
    std::shared_ptr<const Identity> identity;
    std::string queryToken; ///< a token from the URL, until hello reads it
    std::unordered_map<std::string, JoinedRoom> rooms;
    std::uint32_t errorWindow = 0; ///< loop time the error count started
    std::uint16_t errors = 0;
    std::uint32_t nextRead = 0;
    bool helloInFlight = false;
    bool counted = false; ///< counted in the user registry

    bool authed() const noexcept { return !user.empty(); }
};

/** The settings a reload changes (ChatOptions' names), a copy on each loop. */
struct Limits {
    std::vector<std::string> allowedOrigins, allowedAppids;
    double rateLimit = 0, rateBurst = 0;
    std::uint32_t maxRoomsPerConnection = 0, maxRoomMembers = 0, presenceGrace = 0, maxPresenceEvents = 0;
    std::uint32_t roomIdleSeconds = 0;

    static Limits of(const ChatOptions& o) {
        return {o.allowedOrigins, o.allowedAppids, o.rateLimit, o.rateBurst, o.maxRoomsPerConnection, o.maxRoomMembers,
                o.presenceGrace, o.maxPresenceEvents, o.roomIdleSeconds};
    }
};

/** What one loop owns: its sessions, the rooms hashed to it, its view of joined rooms. */
struct Shard {
    Limits limits; ///< this loop's copy: read here without a lock, replaced by a reload
    std::uint32_t index = 0;
    net::Loop* loop = nullptr; ///< set on first use (the server's loops exist after listen)
    std::uint64_t nextId = 1;
    std::unordered_map<SessionId, Session*> sessions;
    std::unordered_map<std::string, LocalRoom> local;
    std::unordered_map<std::string, std::unique_ptr<Room>> rooms;
    std::unordered_set<Room*> roomsWithLeaves;
    std::uint32_t nextRoomSweep = 0; ///< loop time of the next look for idle rooms
    std::deque<std::pair<std::uint32_t, SessionId>> helloDeadlines;
    std::priority_queue<std::pair<std::int64_t, SessionId>, std::vector<std::pair<std::int64_t, SessionId>>,
                        std::greater<>> tokenExpiries;
    std::unordered_set<SessionId> drainWaiters; ///< sessions with a catch-up paused on backpressure
    /** Catch-up reads in flight from this loop, and those waiting for one of its slots: a
     *  reconnect storm costs a bounded amount of memory, whatever the number of clients. */
    std::uint32_t catchUpReads = 0;
    std::deque<std::tuple<SessionId, std::string, std::uint32_t>> catchUpWaiting;
    bool ticking = false;
    /** Work posted here from other threads, run in one turn: a writer batch's results then
     *  leave in one write per connection, not one per event. */
    std::mutex mailboxMu;
    std::vector<std::function<void()>> mailbox;
    bool mailboxPosted = false;

    Session* find(SessionId id) const {
        const auto it = sessions.find(id);
        return it == sessions.end() ? nullptr : it->second;
    }
};

struct Metrics {
    std::atomic<std::uint64_t> deliveries{0}, sends{0}, duplicates{0}, requests{0}, errorReplies{0};
    std::atomic<std::uint64_t> resumesRecovered{0}, resumesRetention{0}, resumesEpoch{0}, joinsFresh{0};
    std::atomic<std::uint64_t> rooms{0};
};

struct Service::Impl final : StoreListener {
    Impl(Server& s, ChatOptions o);

    Server& server;
    ChatOptions options;
    std::unique_ptr<Store> store;
    std::unique_ptr<TokenVerifier> verifier;
    std::vector<std::unique_ptr<Shard>> shards;
    UserRegistry users;
    Metrics metrics;
    ParseLimits limits;
    std::atomic<bool> closed{false};

    // --- plumbing (service.cpp) ---------------------------------------------------------
    std::uint32_t roomLoop(std::string_view room) const noexcept;
    Shard& shard(std::uint32_t loop) { return *shards[loop]; }
    /** The shard of the calling loop, its loop pointer set and its tick installed. */
    Shard& here();
    /** Runs `f` on loop `loop` (at once if that is the calling loop). */
    void onLoop(std::uint32_t loop, std::function<void()> f);
    /** Runs `f` with the session on its loop, if it is still there. */
    void toSession(SessionId id, std::function<void(Session&)> f);
    void tick(Shard& sh);
    void drainMailbox(Shard& sh);

    // --- rooms (room.cpp): all on the room's loop -----------------------------------------
    /** Runs `f` with the room open (null if it could not be opened). */
    void withRoom(const std::string& name, std::function<void(Room*)> f);
    void roomJoin(Room& room, SessionId sid, const std::string& user, const std::string& name,
                  std::function<void(bool ok, std::uint64_t seq, std::string epoch)> done);
    void roomLeave(Room& room, SessionId sid, const std::string& user);
    /** A stored event: the room's seq moves on, the sender gets its reply, members the event. */
    /** On `ackLoop`, `ack` runs before that loop's members get the event. */
    void roomStored(Room& room, AppendResult result, std::uint32_t ackLoop,
                    std::function<void(const AppendResult&)> ack, SessionId except);
    /** An ephemeral event to the room's member connections, on every loop, but `except`. */
    void roomBroadcast(Room& room, std::string event, SessionId except);
    /** The same, and to the members on the other nodes (typing, read). */
    void roomRelay(Room& room, std::string event, SessionId except);
    void roomTyping(Room& room, SessionId sid, const std::string& user, const std::string& name, bool active);
    void presenceTick(Shard& sh);
    /** Lets go of the rooms that had no member here for `roomIdleSeconds` (memory, and on
     *  Redis their subscriptions, stay bounded by the rooms in use). */
    void releaseIdleRooms(Shard& sh);
    /** A user came online in the room on this node, or went offline: the members (and the
     *  other nodes) are told, unless another node still has the user online. */
    void localPresence(Room& room, const std::string& user, const std::string& name, bool join);
    /** The presence event to this node's members. */
    void announcePresence(Room& room, const std::string& user, const std::string& name, bool join);
    bool onlineAnywhere(const Room& room, const std::string& user) const;
    std::size_t onlineCount(const Room& room) const;
    void remotePresence(Room& room, const std::string& node, const std::string& user, const std::string& name, bool join);
    /** Renews this node's presence in the room, learns which nodes live (`full`: and their
     *  users); then `then`. */
    void presenceSync(Room& room, bool full, std::function<void()> then = {});
    void reconcilePresence(Room& room, const Store::PresenceState& ps, bool full);

    // --- several nodes: what the shared store reports (StoreListener) ---------------------
    void remoteStored(AppendResult result) override;
    void remoteSignal(const std::string& room, Signal s) override;
    void roomReset(const std::string& room, const std::string& epoch) override;
    void roomResync(const std::string& room, std::uint64_t seq) override;
    /** Closes this node's member connections of a room (they resume), its position at `seq`. */
    void closeMembers(Room& r, std::uint64_t seq, std::uint16_t code, const char* reason);

    // --- sessions (session.cpp): all on the session's loop ---------------------------------
    void onOpen(WebSocket& ws);
    void onMessage(WebSocket& ws, std::string_view text, MessageKind kind);
    void onDrain(WebSocket& ws);
    void onClose(WebSocket& ws);
    void handle(Session& s, Request& req);
    void reply(Session& s, std::string text);
    void fail(Session& s, std::string_view id, Code code, std::string_view message, std::uint64_t retryAfterMs = 0);
    /** Counts an error reply; closes with 1008 on sustained abuse (docs/PROTOCOL.md §3). */
    void countError(Session& s, Code code);
    void hello(Session& s, Request& req);
    void join(Session& s, Request& req);
    void leave(Session& s, Request& req);
    void send(Session& s, Request& req);
    void change(Session& s, Request& req, EventKind kind);
    /** Stores an event and, once stored, fans it out; `ack` runs on the calling loop. */
    void storeEvent(AppendRequest req, std::function<void(const AppendResult&)> ack, SessionId except);
    void history(Session& s, Request& req);
    void read(Session& s, Request& req);
    void typing(Session& s, Request& req);
    void presence(Session& s, Request& req);
    void rooms(Session& s, Request& req);
    /** Local view of a room: delivers a stored event to this loop's live connections. */
    void deliverLocal(const std::string& room, std::uint64_t seq, const std::string& event, SessionId except);
    void leaveRoom(Session& s, std::string room); // by value: callers pass keys of s.rooms
    /** Sends stored events past the connection's cursor; false when paused on backpressure. */
    bool sendEvents(Session& s, const std::string& room, JoinedRoom& jr, const std::vector<StoredEvent>& events);

    struct JoinContext;
    struct HelloState;
    void startJoin(Session& s, std::shared_ptr<JoinContext> jc);
    /** The room's part of a join, on the room's loop. */
    void joinAtRoom(std::shared_ptr<JoinContext> jc, std::string user, std::string name);
    void joinGranted(Session& s, std::shared_ptr<JoinContext> jc);
    void joinRead(Session& s, std::shared_ptr<JoinContext> jc);
    void joinComplete(Session& s, std::shared_ptr<JoinContext> jc);
    void joinDeliver(Session& s, JoinContext& jc);
    /** Catch-up in progress: the connection's next page, or live when caught up. */
    void catchUpPage(Session& s, const std::string& room, JoinedRoom& jr);
    void catchUpRead(Session& s, const std::string& room, JoinedRoom& jr);
    /** A catch-up read ended: its slot goes to the next connection waiting for one. */
    void releaseCatchUpSlot(Shard& sh);

    // --- HTTP API (http_api.cpp) -------------------------------------------------------
    void addHttpApi();
};

/** A join in progress, from the request to the last event of its first page. */
struct Service::Impl::JoinContext {
    SessionId sid = 0;
    std::string room;
    std::string replyId;
    bool hasSince = false;
    std::uint64_t since = 0;
    std::string epochGiven;
    std::shared_ptr<HelloState> hello; ///< set when part of a hello
    std::uint32_t gen = 0;             ///< the JoinedRoom's readGen when this join made it
    bool synced = false;               ///< the room's position was brought up to the store's
    // Filled in on the way.
    bool failed = false;
    Code code = Code::internal;
    std::string message;
    bool already = false;
    std::uint64_t seq = 0;
    std::string epoch;
    bool gapEpoch = false;
    std::uint64_t cursor = 0;
    MemberInfo member;
    ReadResult page;
};

struct Service::Impl::HelloState {
    std::string replyId;
    std::string head; ///< the reply up to its rooms array
    std::vector<std::shared_ptr<JoinContext>> joins;
    std::size_t pending = 0;
};

} // namespace tongdao::chat
