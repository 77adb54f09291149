#include "wire.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

namespace tongdao::chat {

namespace json = boost::json;

namespace {

constexpr std::int64_t maxSafeInteger = (std::int64_t{1} << 53);

Failure bad(std::string message) { return {Code::badRequest, std::move(message)}; }

struct OpName {
    std::string_view name;
    Op op;
};
constexpr OpName ops[] = {
    {"hello", Op::hello},     {"join", Op::join},         {"leave", Op::leave},   {"send", Op::send},
    {"edit", Op::edit},       {"delete", Op::remove},     {"history", Op::history}, {"read", Op::read},
    {"typing", Op::typing},   {"presence", Op::presence}, {"rooms", Op::rooms},   {"ping", Op::ping},
};

/** An integer value within ±2^53 (JSON numbers a JavaScript client can hold exactly). */
std::optional<std::int64_t> safeInteger(const json::value& v) {
    if (v.is_int64()) {
        const auto i = v.get_int64();
        if (i >= -maxSafeInteger && i <= maxSafeInteger) return i;
    } else if (v.is_uint64()) {
        if (v.get_uint64() <= static_cast<std::uint64_t>(maxSafeInteger)) return static_cast<std::int64_t>(v.get_uint64());
    }
    return std::nullopt;
}

} // namespace

std::string_view codeName(Code c) noexcept {
    switch (c) {
    case Code::badRequest: return "bad_request";
    case Code::unsupportedVersion: return "unsupported_version";
    case Code::unauthorized: return "unauthorized";
    case Code::forbidden: return "forbidden";
    case Code::notJoined: return "not_joined";
    case Code::notFound: return "not_found";
    case Code::tooLarge: return "too_large";
    case Code::limitExceeded: return "limit_exceeded";
    case Code::rateLimited: return "rate_limited";
    case Code::unavailable: return "unavailable";
    case Code::internal: return "internal";
    }
    return "internal";
}

int httpStatus(Code c) noexcept {
    switch (c) {
    case Code::badRequest:
    case Code::unsupportedVersion: return 400;
    case Code::unauthorized: return 401;
    case Code::forbidden:
    case Code::notJoined: return 403;
    case Code::notFound: return 404;
    case Code::tooLarge: return 413;
    case Code::limitExceeded:
    case Code::rateLimited: return 429;
    case Code::unavailable: return 503;
    case Code::internal: return 500;
    }
    return 500;
}

std::optional<Failure> parseRequest(std::string_view text, const ParseLimits& limits, Request& out) {
    out = Request{};
    // Bounded before parsing: the size here, the nesting while parsing.
    if (text.size() > limits.maxBytes) return Failure{Code::tooLarge, "request over the size limit"};
    json::parse_options opts;
    opts.max_depth = limits.maxDepth;
    std::error_code ec;
    json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, opts);
    if (ec) {
        if (ec == json::error::too_deep) return bad("request nested too deeply");
        return bad("request is not valid JSON: " + ec.message());
    }
    if (!v.is_object()) return bad("request is not a JSON object");
    out.fields = std::move(v.get_object());
    // No op: not a request at all, so its id is not echoed (docs/PROTOCOL.md §2).
    const auto* op = out.fields.if_contains("op");
    if (!op || !op->is_string()) return bad("request has no op");
    if (const auto* id = out.fields.if_contains("id")) {
        if (id->is_string()) {
            const std::string_view idText(id->get_string().data(), id->get_string().size());
            if (utf8Length(idText) > 64) return bad("id longer than 64 characters");
        } else if (!safeInteger(*id)) {
            return bad("id must be a string or an integer within ±2^53");
        }
        out.id = json::serialize(*id);
    } else {
        return bad("request has no id");
    }
    const std::string_view name(op->get_string().data(), op->get_string().size());
    for (const auto& o : ops)
        if (o.name == name) {
            out.op = o.op;
            return std::nullopt;
        }
    std::string shown(utf8Prefix(name, 32));
    for (char& c : shown)
        if (static_cast<unsigned char>(c) < 0x20 || c == '\'') c = '?';
    return bad("unknown op '" + shown + "'");
}

std::optional<Failure> needString(const json::object& o, std::string_view key, std::string_view& out) {
    const auto* v = o.if_contains(json::string_view(key.data(), key.size()));
    if (!v) return bad(std::string(key) + " is required");
    if (!v->is_string()) return bad(std::string(key) + " must be a string");
    out = std::string_view(v->get_string().data(), v->get_string().size());
    return std::nullopt;
}

std::optional<Failure> optSeq(const json::object& o, std::string_view key, std::uint64_t& out, bool& present) {
    present = false;
    const auto* v = o.if_contains(json::string_view(key.data(), key.size()));
    if (!v || v->is_null()) return std::nullopt;
    const auto i = safeInteger(*v);
    if (!i || *i < 0) return bad(std::string(key) + " must be an integer from 0 to 2^53");
    out = static_cast<std::uint64_t>(*i);
    present = true;
    return std::nullopt;
}

std::optional<Failure> optBool(const json::object& o, std::string_view key, bool& out) {
    const auto* v = o.if_contains(json::string_view(key.data(), key.size()));
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_bool()) return bad(std::string(key) + " must be true or false");
    out = v->get_bool();
    return std::nullopt;
}

std::string_view utf8Prefix(std::string_view s, std::size_t maxChars) noexcept {
    std::size_t chars = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        // A code point starts at every byte that is not a continuation byte (10xxxxxx).
        if ((static_cast<unsigned char>(s[i]) & 0xc0) != 0x80 && chars++ == maxChars) return s.substr(0, i);
    }
    return s;
}

std::size_t utf8Length(std::string_view s) noexcept {
    std::size_t chars = 0;
    for (char c : s) chars += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
    return chars;
}

bool validRoomName(std::string_view room) noexcept {
    if (room.empty() || room.size() > 64) return false;
    for (char c : room) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                        c == '.' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::optional<Failure> needRoom(const json::object& o, std::string_view& out) {
    if (auto f = needString(o, "room", out)) return f;
    if (!validRoomName(out)) return bad("room must be 1-64 characters of A-Z a-z 0-9 _ . : -");
    return std::nullopt;
}

bool validCid(std::string_view cid) noexcept {
    if (cid.empty() || cid.size() > 64) return false;
    for (char c : cid)
        if (c < 0x21 || c > 0x7e) return false;
    return true;
}

bool validName(std::string_view name) noexcept {
    if (name.empty() || name.size() > 128) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const auto c = static_cast<unsigned char>(name[i]);
        if (c < 0x20 || c == 0x7f) return false;
        // U+0080-U+009F, the C1 controls, are C2 80 to C2 9F in UTF-8 (the text is valid UTF-8).
        if (c == 0xc2 && i + 1 < name.size() && static_cast<unsigned char>(name[i + 1]) < 0xa0) return false;
    }
    return utf8Length(name) <= 32;
}

namespace {

/** False if a number in `v` is beyond a double's range: it would be written as "Infinity". */
bool allFinite(const json::value& v) {
    switch (v.kind()) {
    case json::kind::double_: return std::isfinite(v.get_double());
    case json::kind::array:
        for (const auto& e : v.get_array())
            if (!allFinite(e)) return false;
        return true;
    case json::kind::object:
        for (const auto& e : v.get_object())
            if (!allFinite(e.value())) return false;
        return true;
    default: return true;
    }
}

} // namespace

std::optional<Failure> needBody(const json::object& o, std::size_t maxBody, std::string& out) {
    const auto* v = o.if_contains("body");
    if (!v) return bad("body is required");
    // Nesting is bounded by the parser's max_depth, so is this recursion.
    if (!allFinite(*v)) return bad("body holds a number beyond the range of a double");
    out = json::serialize(*v);
    if (out.size() > maxBody) return Failure{Code::tooLarge, "body over " + std::to_string(maxBody) + " bytes"};
    return std::nullopt;
}

// --- writing ------------------------------------------------------------------------------

std::string quoted(std::string_view s) { return json::serialize(json::string_view(s.data(), s.size())); }

void JsonOut::key(std::string_view k) {
    if (!first_) s_ += ',';
    first_ = false;
    s_ += '"';
    s_ += k; // keys are our own literals: nothing to escape
    s_ += "\":";
}

JsonOut& JsonOut::str(std::string_view k, std::string_view v) {
    key(k);
    s_ += quoted(v);
    return *this;
}

JsonOut& JsonOut::num(std::string_view k, std::uint64_t v) {
    key(k);
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    s_.append(buf, r.ptr);
    return *this;
}

JsonOut& JsonOut::inum(std::string_view k, std::int64_t v) {
    key(k);
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    s_.append(buf, r.ptr);
    return *this;
}

JsonOut& JsonOut::boolean(std::string_view k, bool v) {
    key(k);
    s_ += v ? "true" : "false";
    return *this;
}

JsonOut& JsonOut::raw(std::string_view k, std::string_view v) {
    key(k);
    s_ += v;
    return *this;
}

JsonOut okReply(std::string_view id) {
    JsonOut o;
    o.str("op", "reply").raw("id", id).boolean("ok", true);
    return o;
}

std::string errorReply(std::string_view id, Code code, std::string_view message, std::uint64_t retryAfterMs) {
    JsonOut o;
    o.str("op", "reply").raw("id", id).boolean("ok", false).str("code", codeName(code)).str("message", message);
    if (code == Code::rateLimited || retryAfterMs) o.num("retryAfterMs", retryAfterMs);
    return o.done();
}

void appendEvent(std::string& out, std::string_view room, const StoredEvent& e) {
    JsonOut o;
    o.str("op", e.kind == EventKind::message ? "message" : e.kind == EventKind::edit ? "edit" : "delete");
    o.str("room", room).num("seq", e.seq).inum("ts", e.ts).str("user", e.user).str("name", e.name);
    if (e.kind == EventKind::message) {
        o.str("cid", e.cid);
        if (e.state == MessageState::edited) o.boolean("edited", true);
        if (e.state == MessageState::deleted) o.boolean("deleted", true);
    } else {
        o.num("target", e.target);
    }
    if (e.kind != EventKind::remove) o.raw("body", e.body);
    out += o.done();
}

std::string eventJson(std::string_view room, const StoredEvent& e) {
    std::string s;
    appendEvent(s, room, e);
    return s;
}

} // namespace tongdao::chat
