#pragma once
// The chat protocol's wire format (docs/PROTOCOL.md): requests parsed and checked, replies
// and events written. No sockets, no threads: fuzzed on its own (fuzz/chat_request.cpp).

#include "store.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tongdao::chat {

enum class Op : std::uint8_t {
    hello, join, leave, send, edit, remove, history, read, typing, presence, rooms, ping, unknown
};

/** Stable error codes (docs/PROTOCOL.md §3). */
enum class Code : std::uint8_t {
    badRequest, unsupportedVersion, unauthorized, forbidden, notJoined, notFound, tooLarge,
    limitExceeded, rateLimited, unavailable, internal
};
std::string_view codeName(Code c) noexcept;
/** The HTTP status the HTTP API answers a code with. */
int httpStatus(Code c) noexcept;

/** A request as read off the wire. */
struct Request {
    Op op = Op::unknown;
    std::string id = "null";   ///< the id as JSON text, echoed verbatim in the reply
    boost::json::object fields; ///< the whole request object
};

/** A failure to read or check a request: the code and a message for people. */
struct Failure {
    Code code = Code::badRequest;
    std::string message;
};

/** The limits a request is checked against before and while it is parsed. */
struct ParseLimits {
    std::size_t maxBytes = 24 * 1024;
    std::size_t maxDepth = 32;
};

/** Parses one request. On failure `out.id` is still set when the id could be read. */
std::optional<Failure> parseRequest(std::string_view text, const ParseLimits& limits, Request& out);

// --- field access: nullopt when absent; a Failure when present but wrong ------------------

/** A required string field. */
std::optional<Failure> needString(const boost::json::object& o, std::string_view key, std::string_view& out);
/** An optional non-negative integer up to 2^53; `present` tells whether it was there. */
std::optional<Failure> optSeq(const boost::json::object& o, std::string_view key, std::uint64_t& out, bool& present);
std::optional<Failure> optBool(const boost::json::object& o, std::string_view key, bool& out);
/** A required room name, checked: 1-64 of [A-Za-z0-9_.:-]. */
std::optional<Failure> needRoom(const boost::json::object& o, std::string_view& out);
bool validRoomName(std::string_view room) noexcept;
/** The first `maxChars` code points of UTF-8 text (never a cut inside one). */
std::string_view utf8Prefix(std::string_view s, std::size_t maxChars) noexcept;
std::size_t utf8Length(std::string_view s) noexcept;
/** A cid: 1-64 printable ASCII characters. */
bool validCid(std::string_view cid) noexcept;
/** A display name: 1-32 characters (bytes ≤ 128), no control characters. */
bool validName(std::string_view name) noexcept;

/** The body field serialised compactly; a Failure when missing or over `maxBody` bytes. */
std::optional<Failure> needBody(const boost::json::object& o, std::size_t maxBody, std::string& out);

// --- writing ------------------------------------------------------------------------------

/** Appends JSON to a string, one object at a time: `{"k":v,...}`. */
class JsonOut {
public:
    JsonOut() { s_ = "{"; }
    JsonOut& str(std::string_view key, std::string_view v);
    JsonOut& num(std::string_view key, std::uint64_t v);
    JsonOut& inum(std::string_view key, std::int64_t v);
    JsonOut& boolean(std::string_view key, bool v);
    /** `v` is JSON text, written as it is. */
    JsonOut& raw(std::string_view key, std::string_view v);
    std::string done() {
        s_ += '}';
        return std::move(s_);
    }

private:
    void key(std::string_view k);
    std::string s_;
    bool first_ = true;
};

/** JSON text for a string. */
std::string quoted(std::string_view s);

/** `{"op":"reply","id":ID,"ok":true` — add fields, then `done()`. */
JsonOut okReply(std::string_view id);
std::string errorReply(std::string_view id, Code code, std::string_view message, std::uint64_t retryAfterMs = 0);

/** A stored event as its live event / history entry (message, edit, delete). */
std::string eventJson(std::string_view room, const StoredEvent& e);
/** The same, appended to an array being built (no allocation of its own). */
void appendEvent(std::string& out, std::string_view room, const StoredEvent& e);

} // namespace tongdao::chat
