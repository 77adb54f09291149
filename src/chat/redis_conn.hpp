#pragma once
// Connections to Redis, driven by one of the server's Asio loops (docs/SCALING.md).
//
// - `RedisCommands`: hiredis' async API with an adapter of our own: hiredis asks for read
//   and write interest through hooks, Asio waits on the descriptor and calls hiredis back.
//   Its `cleanup` hook may fire inside a hiredis callback, so every wait holds the adapter
//   by a shared pointer and checks that the context is still there.
// - `RedisSubscriber`: sharded pub/sub (SSUBSCRIBE, Redis 7). hiredis 0.14's async context
//   routes pub/sub messages by classic channel names only and asserts on any reply it has
//   no callback for, so the subscriber reads its own socket and parses with hiredis'
//   reply reader instead.
// - `RedisRouter`: one node (standalone, or the master that Redis Sentinel names) or a Redis
//   Cluster's masters, by hash slot, with MOVED/ASK followed and the slot map reloaded.
// - `SentinelWatch`: asks Sentinel for the master's address and follows `+switch-master`.
//
// With `waitReplicas`, a command connection acts on no reply before a `WAIT` sent after it
// says that many replicas have everything up to it: what a node acks or delivers then
// survives a failover to one of those replicas.
//
// Every connection reconnects by itself with backoff; while it is down its commands fail at
// once (the callback runs before `command` returns). Nothing here blocks a loop: names are
// resolved by Asio, connects are non-blocking. All of it lives on one loop's thread.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

struct redisAsyncContext;
struct redisReply;
struct redisReader;

namespace tongdao::chat::redis {

/** Where and how to connect: from `redis://[user:password@]host:port[/db]`. */
struct Endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string user;
    std::string password;
    int db = 0;
};

/** Parses a redis:// URL (or a bare host:port); throws std::invalid_argument with the reason. */
Endpoint parseUrl(std::string_view url);

/** Where Redis is, and what a reply waits for. */
struct Topology {
    enum class Kind { standalone, cluster, sentinel };
    Kind kind = Kind::standalone;
    /** The server (standalone), some of the Cluster's masters, or the Sentinels. Standalone
     *  and Cluster: the credentials and database of the servers are the first seed's. */
    std::vector<Endpoint> seeds;
    std::string master;   ///< sentinel: the name Sentinel monitors the master by
    Endpoint credentials; ///< sentinel: user, password and database of the master (no host)
    int waitReplicas = 0; ///< replies are acted on once this many replicas have the writes
    int waitTimeoutMs = 1000;
};

/**
 * `redis://…` (standalone) or `redis-sentinel://[user:password@]host[:port][,host[:port]…][/db]#master`
 * (the Sentinels, 26379 by default; the credentials and database are the master's). Throws
 * std::invalid_argument with the reason.
 */
Topology parseTopology(std::string_view url);
/** The Cluster hash slot of a key (CRC16/XMODEM of its hash tag, mod 16384). */
std::uint16_t keySlot(std::string_view key) noexcept;
/** Splits `s` at its first `n` `sep`s: n + 1 parts, the last holding the rest; false if fewer. */
bool splitFields(std::string_view s, char sep, std::size_t n, std::vector<std::string_view>& out);

/** A reply, or null when there is none (not connected, connection lost, timed out). */
using Callback = std::function<void(const redisReply*)>;

/** Reply helpers: tolerant of null and of type mismatches. */
bool isError(const redisReply* r) noexcept;
std::string_view text(const redisReply* r) noexcept; ///< string, status or error text; "" otherwise
long long integer(const redisReply* r) noexcept;      ///< an integer, or a string of digits; 0 otherwise
std::size_t size(const redisReply* r) noexcept;       ///< array elements
const redisReply* at(const redisReply* r, std::size_t i) noexcept;

class RedisCommands : public std::enable_shared_from_this<RedisCommands> {
public:
    RedisCommands(asio::io_context& io, Endpoint ep, std::string name);
    ~RedisCommands();
    RedisCommands(const RedisCommands&) = delete;
    RedisCommands& operator=(const RedisCommands&) = delete;

    /** Connects, and keeps reconnecting after any loss, until `stop()`. */
    void start();
    void stop();
    bool ready() const noexcept { return ready_; }
    const Endpoint& endpoint() const noexcept { return ep_; }
    /** Another address (a failover): the connection moves there now. An empty host waits. */
    void setEndpoint(const Endpoint& ep);
    /** Checks with ROLE that the server is a master, and leaves it if it answers READONLY. */
    void requireMaster(bool on) noexcept { requireMaster_ = on; }
    /** Replies wait for a WAIT of `replicas` (0: none) for `waitMs`; one WAIT serves
     *  every command sent in the same turn. A WAIT short of `replicas` fails them (null).
     *  INFO, CONFIG, CLUSTER, ROLE, PING and ASKING are answered at once. */
    void waitFor(int replicas, int waitMs) noexcept { waitReplicas_ = replicas, waitTimeoutMs_ = waitMs; }

    /** Sends one command. Not ready, or too many in flight: `cb(nullptr)` before returning. */
    void command(const std::vector<std::string_view>& args, Callback cb);
    /** Runs each time the connection is (again) ready, before any queued command's reply. */
    std::function<void()> onReady;
    /** Runs when a ready connection is lost. */
    std::function<void()> onDown;
    /** Runs when the server turned out not to be a master (ROLE, READONLY). */
    std::function<void()> onNotMaster;

    /** Commands sent and not yet answered, beyond which `command` fails at once. */
    static constexpr std::size_t maxInFlight = 100000;
    /** A command unanswered this long marks the connection dead (its commands fail). */
    static constexpr int timeoutMs = 5000;

    struct Adapter;

private:
    void connect();
    void connected(int status);
    void disconnected();
    void retryLater();
    void handshake();
    void watchdog();
    static void onReply(redisAsyncContext* ac, void* reply, void* priv);
    void notMaster(const char* why);
    void queueWait();
    void release(bool replicated);

    asio::io_context& io_;
    Endpoint ep_;
    std::string name_;
    asio::ip::tcp::resolver resolver_;
    asio::steady_timer retry_;
    asio::steady_timer watch_;
    redisAsyncContext* ac_ = nullptr;
    std::shared_ptr<Adapter> adapter_;
    bool running_ = false;
    bool ready_ = false;
    bool connecting_ = false; ///< resolving, before a context exists
    bool requireMaster_ = false;
    int backoffMs_ = 0;
    std::size_t inFlight_ = 0;
    std::deque<std::int64_t> sentAt_; ///< ms of each unanswered command, oldest first
    int waitReplicas_ = 0, waitTimeoutMs_ = 1000;
    bool waitQueued_ = false;
    std::int64_t lastWaitWarn_ = 0;
    /** Replies in, waiting for the answer of the WAIT sent after their commands. */
    std::vector<std::pair<Callback, std::unique_ptr<redisReply, void (*)(void*)>>> held_;
};

/** A pub/sub connection, sharded (SSUBSCRIBE) or classic (SUBSCRIBE). Channels are kept
 *  and subscribed again after a reconnect. */
class RedisSubscriber : public std::enable_shared_from_this<RedisSubscriber> {
public:
    RedisSubscriber(asio::io_context& io, Endpoint ep, std::string name, bool sharded = true);
    ~RedisSubscriber();

    void start();
    void stop();
    bool ready() const noexcept { return ready_; }
    const Endpoint& endpoint() const noexcept { return ep_; }
    /** Another address: a live connection moves there now; a retry that waits goes there
     *  now too, or (`now` false) when its time comes. */
    void setEndpoint(const Endpoint& ep, bool now = true);

    void subscribe(const std::string& channel);
    void unsubscribe(const std::string& channel);
    bool has(const std::string& channel) const { return channels_.contains(channel); }

    std::function<void(std::string_view channel, std::string_view payload)> onMessage;
    /** A channel's subscription is confirmed: from here on its messages arrive. */
    std::function<void(const std::string& channel)> onSubscribed;
    /** The server ended a subscription (a slot moved): subscribe elsewhere. */
    std::function<void(const std::string& channel)> onDropped;
    /** The connection was lost: every subscription with it. */
    std::function<void()> onDown;
    /** A connection could not be made, or was lost (after `onDown`), its retry scheduled:
     *  the time to pick another address with `setEndpoint(ep, false)`. */
    std::function<void()> onFailed;

    /** Unread input beyond this is a broken server: the connection is dropped. */
    static constexpr std::size_t maxInput = 64 * 1024 * 1024;

private:
    void reconnect();
    void connect();
    void drop();
    void fail(const char* why);
    void retryLater();
    void readSome();
    void write(std::string bytes);
    void flush();
    void handle(const redisReply* r);
    void send(const std::vector<std::string_view>& args);

    asio::io_context& io_;
    Endpoint ep_;
    std::string name_;
    bool sharded_;
    asio::ip::tcp::resolver resolver_;
    asio::ip::tcp::socket socket_;
    asio::steady_timer retry_;
    redisReader* reader_ = nullptr;
    std::vector<char> in_;
    std::string out_, writing_;
    bool running_ = false, ready_ = false, connecting_ = false, retrying_ = false;
    int backoffMs_ = 0;
    std::uint64_t gen_ = 0; ///< tells a stale socket's handlers from the current one's
    std::unordered_set<std::string> channels_;
    /** SUNSUBSCRIBEs sent on this connection and not answered yet, by channel: their answers
     *  are ours, not a slot that moved (even when the channel was wanted again since). */
    std::unordered_map<std::string, std::uint32_t> unsubscribing_;
    std::size_t handshakeReplies_ = 0; ///< AUTH/CLIENT SETNAME replies still to skip
};

/**
 * The master Redis Sentinel names for `master`: asked of one Sentinel (`SENTINEL
 * get-master-addr-by-name`) when its connection is made and on `refresh()`, and followed
 * through failovers by its `+switch-master` messages. A Sentinel that cannot be reached, or
 * knows no such master, gives way to the next.
 */
class SentinelWatch {
public:
    SentinelWatch(asio::io_context& io, std::vector<Endpoint> sentinels, std::string master, std::string name);
    ~SentinelWatch();

    void start();
    void stop();
    /** Asks again (at most once a second): the master did not answer as one. */
    void refresh();

    /** The master is (now) at host:port. */
    std::function<void(const std::string& host, std::uint16_t port)> onMaster;

private:
    void ask();
    void next(bool now = true);

    std::vector<Endpoint> sentinels_;
    std::string master_;
    std::size_t at_ = 0;
    std::int64_t lastAsk_ = 0;
    std::shared_ptr<RedisCommands> cmd_;
    std::shared_ptr<RedisSubscriber> sub_;
};

/**
 * Redis standalone, behind Sentinel, or Cluster: the command connection and the subscriber
 * of the node that owns each slot.
 */
class RedisRouter {
public:
    RedisRouter(asio::io_context& io, Topology topology, std::string name);
    ~RedisRouter();

    void start();
    void stop();
    bool cluster() const noexcept { return cluster_; }

    /** A command on the node that owns `slotKey`'s slot; MOVED and ASK are followed once. */
    void command(std::string_view slotKey, std::vector<std::string> args, Callback cb);
    /** The same, with arguments the caller keeps (to send them again). */
    void command(std::string_view slotKey, std::shared_ptr<std::vector<std::string>> args, Callback cb);
    void subscribe(const std::string& channel);
    void unsubscribe(const std::string& channel);

    std::function<void(std::string_view channel, std::string_view payload)> onMessage;
    std::function<void(const std::string& channel)> onSubscribed;
    /** A command connection became ready (scripts to load, positions to check). */
    std::function<void()> onReady;

private:
    struct Node {
        Endpoint ep;
        std::shared_ptr<RedisCommands> cmd;
        std::shared_ptr<RedisSubscriber> sub;
    };
    Node& node(const std::string& hostPort);
    Node* forSlot(std::uint16_t slot);
    void refreshSlots();
    void scheduleRefresh();
    void send(Node* n, std::uint16_t slot, std::shared_ptr<std::vector<std::string>> args, Callback cb, int hops,
              bool asking);
    void placeChannel(const std::string& channel);

    asio::io_context& io_;
    Topology topology_;
    bool cluster_;
    std::string name_;
    std::unique_ptr<SentinelWatch> sentinel_;
    std::unordered_map<std::string, std::unique_ptr<Node>> nodes_; ///< by "host:port"
    std::vector<Node*> slots_;                                    ///< cluster: 16384 owners
    std::unordered_map<std::string, Node*> channelNode_;          ///< where each channel is subscribed
    asio::steady_timer refresh_;
    bool refreshing_ = false;
    bool running_ = false;
    std::int64_t lastRefresh_ = 0;
};

} // namespace tongdao::chat::redis
