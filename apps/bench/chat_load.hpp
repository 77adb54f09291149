#pragma once
// The chat engine of `tongdao bench --chat ROOMS`: members of rooms that send and receive on a
// chat protocol, every delivery timed from its send (chat_load.cpp).

#include "common.hpp"

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tongdao::bench {

enum class ChatProto : std::uint8_t { tongdao, socketio };
enum class ChatMode : std::uint8_t { fanout, closed, idle, storm };

struct ChatOptions {
    std::vector<Target> targets;    ///< the members of each room round-robin over these
    std::string namePrefix = "u", roomPrefix;
    ChatProto proto = ChatProto::tongdao;
    ChatMode mode = ChatMode::closed;
    std::size_t rooms = 10, members = 100, connections = 0, bodySize = 100;
    std::size_t connectBatch = 256, behind = 2000, fillersPerRoom = 0;
    std::uint32_t window = 1;       ///< closed: sends in flight per member
    double rate = 1;                ///< fanout: messages/s per member
    double duration = 10, warmup = 1, rampUp = 0, connectTimeout = 120, holdMax = 3600, stormTimeout = 300, drain = 0;
    bool goOnStdin = false;
    std::vector<in_addr> sourceIps;
    Report report;
};

/** Runs the load to its end; the exit status (0 when any member was set up). */
int runChat(ChatOptions options);

} // namespace tongdao::bench
