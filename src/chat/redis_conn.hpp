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
// - `RedisRouter`: one node (standalone) or a Redis Cluster's masters, by hash slot, with
//   MOVED/ASK followed and the slot map reloaded.
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
/** The Cluster hash slot of a key (CRC16/XMODEM of its hash tag, mod 16384). */
std::uint16_t keySlot(std::string_view key) noexcept;

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

    /** Sends one command. Not ready, or too many in flight: `cb(nullptr)` before returning. */
    void command(const std::vector<std::string_view>& args, Callback cb);
    /** Runs each time the connection is (again) ready, before any queued command's reply. */
    std::function<void()> onReady;
    /** Runs when a ready connection is lost. */
    std::function<void()> onDown;

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
    int backoffMs_ = 0;
    std::size_t inFlight_ = 0;
    std::deque<std::int64_t> sentAt_; ///< ms of each unanswered command, oldest first
};

/** A sharded pub/sub connection. Channels are kept and subscribed again after a reconnect. */
class RedisSubscriber : public std::enable_shared_from_this<RedisSubscriber> {
public:
    RedisSubscriber(asio::io_context& io, Endpoint ep, std::string name);
    ~RedisSubscriber();

    void start();
    void stop();
    bool ready() const noexcept { return ready_; }

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

    /** Unread input beyond this is a broken server: the connection is dropped. */
    static constexpr std::size_t maxInput = 64 * 1024 * 1024;

private:
    void connect();
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
    asio::ip::tcp::resolver resolver_;
    asio::ip::tcp::socket socket_;
    asio::steady_timer retry_;
    redisReader* reader_ = nullptr;
    std::vector<char> in_;
    std::string out_, writing_;
    bool running_ = false, ready_ = false, connecting_ = false;
    int backoffMs_ = 0;
    std::uint64_t gen_ = 0; ///< tells a stale socket's handlers from the current one's
    std::unordered_set<std::string> channels_;
    /** SUNSUBSCRIBEs sent on this connection and not answered yet, by channel: their answers
     *  are ours, not a slot that moved (even when the channel was wanted again since). */
    std::unordered_map<std::string, std::uint32_t> unsubscribing_;
    std::size_t handshakeReplies_ = 0; ///< AUTH/CLIENT SETNAME replies still to skip
};

/**
 * Redis standalone or Cluster: the command connection and the subscriber of the node that
 * owns each slot.
 */
class RedisRouter {
public:
    /** Standalone: one endpoint. Cluster: seeds, `cluster` true. */
    RedisRouter(asio::io_context& io, std::vector<Endpoint> seeds, bool cluster, std::string name);
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
    std::vector<Endpoint> seeds_;
    bool cluster_;
    std::string name_;
    std::unordered_map<std::string, std::unique_ptr<Node>> nodes_; ///< by "host:port"
    std::vector<Node*> slots_;                                    ///< cluster: 16384 owners
    std::unordered_map<std::string, Node*> channelNode_;          ///< where each channel is subscribed
    asio::steady_timer refresh_;
    bool refreshing_ = false;
    bool running_ = false;
    std::int64_t lastRefresh_ = 0;
};

} // namespace tongdao::chat::redis
