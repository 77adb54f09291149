#pragma once
/**
 * @file
 * The HTTP/1.1 head (request or status line and header fields, RFC 9112) that an
 * opening handshake and a plain request are made of: incremental, bounded parsing and
 * formatting. No body parsing: a handshake has none, and the server reads a request's
 * Content-Length bytes itself (src/server/http_routes.cpp) by `contentLength`.
 */

#include "tongdao/error.hpp"
#include "tongdao/protocol/types.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tongdao::protocol::http {

/** Bounds on what a parser accepts; beyond them it answers 431. */
struct Limits {
    std::size_t maxHeadBytes = 8 * 1024; ///< the whole head: start line and header fields
    std::size_t maxHeaders = 64;         ///< header fields
};

/** One header field; views into the parser's storage. */
struct Header {
    std::string_view name;
    std::string_view value;
};

/** Header fields in arrival order, looked up case-insensitively (RFC 9110 §5.1). */
class HeaderList {
public:
    void add(std::string_view name, std::string_view value) { fields_.push_back({name, value}); }
    void clear() noexcept { fields_.clear(); }

    /** The first field of this name, if any. */
    std::optional<std::string_view> find(std::string_view name) const noexcept;
    /** How many fields have this name. */
    std::size_t count(std::string_view name) const noexcept;
    /**
     * True if the comma-separated lists of every field of this name contain `token`,
     * compared case-insensitively (the rule for Connection and Upgrade).
     */
    bool hasToken(std::string_view name, std::string_view token) const noexcept;
    /** Every element of the comma-separated lists of this name, trimmed, empty ones skipped. */
    std::vector<std::string_view> list(std::string_view name) const;

    auto begin() const noexcept { return fields_.begin(); }
    auto end() const noexcept { return fields_.end(); }
    std::size_t size() const noexcept { return fields_.size(); }

private:
    std::vector<Header> fields_;
};

/**
 * The body length that a message's Content-Length fields give (RFC 9112 §6.3): 0 without
 * any; empty if a value is not digits or the values differ (a list repeating one value is
 * that value, RFC 9110 §8.6). A length too large for 64 bits saturates.
 */
std::optional<std::uint64_t> contentLength(const HeaderList& headers) noexcept;

/** A parsed request head. Views stay valid while the parser that made it lives. */
struct Request {
    std::string_view method;
    std::string_view target; ///< as sent: origin-form "/path?query" (or absolute-form)
    int versionMajor = 1;
    int versionMinor = 1;
    HeaderList headers;

    /** The target's path, without the query. */
    std::string_view path() const noexcept;
    /** The target's query, without the '?', empty if none. */
    std::string_view query() const noexcept;
};

/** A parsed status line and headers. */
struct Response {
    int status = 0;
    std::string_view reason;
    int versionMajor = 1;
    int versionMinor = 1;
    HeaderList headers;
};

/** Where an incremental parse stands. */
enum class ParseStatus : std::uint8_t { needMore, done, failed };

/**
 * Collects a head from bytes arriving in any pieces, up to the empty line that ends it,
 * then parses it. Bytes after the head are not consumed: they belong to what follows
 * (WebSocket frames after a handshake).
 */
class HeadParser {
public:
    explicit HeadParser(Limits limits = {}) : limits_(limits) {}

    /**
     * Consumes bytes of the head from `in` and reports how many in `consumed`.
     * On `failed`, `error()` tells why (`httpMalformed`, `headersTooLarge`, `tooManyHeaders`).
     */
    ParseStatus feedRequest(Bytes in, std::size_t& consumed);
    ParseStatus feedResponse(Bytes in, std::size_t& consumed);

    const Request& request() const noexcept { return request_; }
    const Response& response() const noexcept { return response_; }
    std::error_code error() const noexcept { return error_; }
    ParseStatus status() const noexcept { return status_; }

private:
    ParseStatus collect(Bytes in, std::size_t& consumed);
    ParseStatus fail(tongdao::error e);
    bool parseFields(std::string_view fields, HeaderList& out);
    static bool checkFieldLine(std::string_view line, std::string_view& name, std::string_view& value);
    bool parseRequestLine(std::string_view line);
    bool parseStatusLine(std::string_view line);

    Limits limits_;
    std::string head_;
    std::size_t lineStart_ = 0; ///< where the line being collected starts in head_
    std::size_t lines_ = 0;     ///< complete lines so far, start line included
    bool requestMode_ = true;
    ParseStatus status_ = ParseStatus::needMore;
    std::error_code error_;
    Request request_;
    Response response_;
};

/** True if `s` is a token (RFC 9110 §5.6.2). */
bool isToken(std::string_view s) noexcept;

/** ASCII case-insensitive equality. */
bool iequals(std::string_view a, std::string_view b) noexcept;

/** The standard reason phrase for a status code ("Not Found"), or "Unknown". */
std::string_view reasonPhrase(int status) noexcept;

/** Extra header fields a caller adds to a request or response. */
using HeaderFields = std::vector<std::pair<std::string, std::string>>;

/**
 * Formats a complete response with a body: status line, the given fields (which should
 * include `Content-Type` when there is a body), `Content-Length`, an empty line, the body.
 * With `headOnly` (an answer to HEAD), the body is counted in Content-Length but left out.
 */
std::string formatResponse(int status, const HeaderFields& fields, std::string_view body, bool headOnly = false);

/** True if a header value is safe to emit: no CR, LF or NUL (no header injection). */
bool isSafeFieldValue(std::string_view v) noexcept;

/** The value of parameter `name` in a query string ("a=1&b=2"), not percent-decoded; empty if absent. */
std::string_view queryParam(std::string_view query, std::string_view name) noexcept;

} // namespace tongdao::protocol::http
