#pragma once
/**
 * @file
 * The chat service of tongdao-server (docs/PROTOCOL.md): rooms, durable history,
 * exactly-once sends, resume, presence, receipts, on a `tongdao::Server`.
 *
 * @code
 *   tongdao::Server server({.port = 8080});
 *   tongdao::chat::Service chat(server, {.dataDir = "data", .anonymous = true});
 *   server.listen();
 *   server.run();
 * @endcode
 */

#include "tongdao/server/server.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tongdao::chat {

/** The chat server's settings, with their defaults (docs/PROTOCOL.md §7). */
struct ChatOptions {
    std::filesystem::path dataDir = "tongdao-data"; ///< where the SQLite database lives (one node)
    /** redis://[user:password@]host:port[/db], or the master that Sentinel names,
     *  redis-sentinel://[user:password@]host:port[,host:port...][/db]#master: nodes sharing
     *  this Redis act as one server (docs/SCALING.md); the SQLite store is not used then. */
    std::string redis;
    std::vector<std::string> redisCluster; ///< instead of `redis`: Cluster masters, host:port (seeds)
    /** Acks and deliveries wait until this many replicas have the writes (Redis WAIT). */
    std::uint32_t redisWaitReplicas = 0;
    std::string nodeId;                    ///< this node's name among several; random when empty
    bool fullSync = true;                  ///< --durability full (power loss) or normal (a killed process)
    /** SQLite: ms the writer lets writes gather before a commit (fewer syncs, for that much latency). */
    std::uint32_t commitDelay = 0;
    std::uint64_t retentionMessages = 0;   ///< stored events kept per room; 0 = all
    std::uint32_t retentionDays = 0;       ///< 0 = forever
    bool anonymous = false;                ///< accept `hello {name}` without a token
    std::string authSecret;                ///< HS256 secret for tokens; empty = no tokens
    std::vector<std::string> allowedOrigins; ///< browsers' Origin values admitted (with appids: either)
    std::vector<std::string> allowedAppids;  ///< mini-program appids admitted by their Referer
    std::string apiKey;                    ///< bearer key of the HTTP API; empty = API off
    std::size_t maxBody = 16 * 1024;
    std::uint32_t maxRoomsPerConnection = 100;
    std::uint32_t maxRoomMembers = 10000;  ///< member connections per room
    double rateLimit = 20;                 ///< sends per second per user
    double rateBurst = 100;
    std::uint32_t presenceGrace = 5;       ///< seconds a user stays "online" after its last connection left
    std::uint32_t maxPresenceEvents = 1000; ///< presence events only while a room has at most this many online
    std::uint32_t idleTimeout = 60;        ///< seconds without any message before a connection is closed
    std::uint32_t helloTimeout = 30;
    /** Seconds a room with no member here is kept in memory (and, on Redis, subscribed to)
     *  before it is let go; it opens again from the store on the next request. */
    std::uint32_t roomIdleSeconds = 60;
    Compression compression = Compression::shared;
    std::string path = "/chat";
};

class Service {
public:
    /**
     * Opens the store (throws std::runtime_error if it cannot) and adds the chat endpoint and
     * the HTTP API to `server`. Call before `server.listen()`; the service must outlive the
     * server's loops.
     */
    Service(Server& server, ChatOptions options);
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    /**
     * Applies new settings while connections stay: allowed origins and appids, rate limits,
     * rooms per connection, members per room, presence grace and events. Thread-safe. Returns
     * the names of the settings that differ and only a restart changes.
     */
    std::vector<std::string> reload(const ChatOptions& next);
    /** Starts what runs before any client comes (a shared store connects), after `listen()`. */
    void start();
    /** The chat counters in Prometheus text format (to append to the server's). */
    std::string prometheusMetrics() const;
    /** Stops the store's threads once the server's loops have stopped. */
    void close();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace tongdao::chat
