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

/** The members of each room go round-robin over the targets. `connections` 0: rooms × members;
 *  `window`: sends in flight per member (closed); `rate`: messages/s per member (fanout). */
struct ChatOptions : LoadOptions {
    std::string namePrefix = "u", roomPrefix;
    ChatProto proto = ChatProto::tongdao;
    ChatMode mode = ChatMode::closed;
    std::size_t rooms = 10, members = 100, bodySize = 100;
    std::size_t behind = 2000, fillersPerRoom = 0;
    double stormTimeout = 300, drain = 0;
    bool goOnStdin = false;
    /** Not empty: every member says hello with an HS256 token signed with this (its user name
     *  as `sub`), for servers without --anonymous; empty: hello {name}. */
    std::string tokenSecret;
};

/** Runs the load to its end; the exit status (0 when any member was set up). */
int runChat(ChatOptions options);

} // namespace tongdao::bench
