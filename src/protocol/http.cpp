#include "tongdao/protocol/http.hpp"

#include <charconv>
#include <cstring>
#include <limits>

namespace tongdao::protocol::http {
namespace {

constexpr bool isTchar(unsigned char c) noexcept {
    // RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
    //                          "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~': return true;
    default: return false;
    }
}

constexpr unsigned char lower(unsigned char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c | 0x20) : c;
}

std::string_view trimOws(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// RFC 9110 §5.5: field-value = *field-content; VCHAR, obs-text, SP and HTAB only.
bool isFieldValue(std::string_view v) noexcept {
    for (char ch : v) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7F) return false;
    }
    return true;
}

// "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3)
bool parseVersion(std::string_view s, int& major, int& minor) noexcept {
    if (s.size() != 8 || s.substr(0, 5) != "HTTP/" || s[6] != '.') return false;
    if (s[5] < '0' || s[5] > '9' || s[7] < '0' || s[7] > '9') return false;
    major = s[5] - '0';
    minor = s[7] - '0';
    return true;
}

// Calls f(element) for each trimmed, non-empty element of a comma-separated list.
template <class F>
void forEachElement(std::string_view list, F&& f) {
    while (!list.empty()) {
        const auto comma = list.find(',');
        const auto element = trimOws(list.substr(0, comma));
        if (!element.empty()) f(element);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
}

} // namespace

bool isToken(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (char c : s)
        if (!isTchar(static_cast<unsigned char>(c))) return false;
    return true;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(static_cast<unsigned char>(a[i])) != lower(static_cast<unsigned char>(b[i]))) return false;
    return true;
}

bool isSafeFieldValue(std::string_view v) noexcept { return isFieldValue(v); }

// --- HeaderList ---------------------------------------------------------------------

std::optional<std::string_view> HeaderList::find(std::string_view name) const noexcept {
    for (const auto& f : fields_)
        if (iequals(f.name, name)) return f.value;
    return std::nullopt;
}

std::size_t HeaderList::count(std::string_view name) const noexcept {
    std::size_t n = 0;
    for (const auto& f : fields_)
        if (iequals(f.name, name)) ++n;
    return n;
}

bool HeaderList::hasToken(std::string_view name, std::string_view token) const noexcept {
    bool found = false;
    for (const auto& f : fields_)
        if (!found && iequals(f.name, name))
            forEachElement(f.value, [&](std::string_view e) { found = found || iequals(e, token); });
    return found;
}

std::vector<std::string_view> HeaderList::list(std::string_view name) const {
    std::vector<std::string_view> out;
    for (const auto& f : fields_)
        if (iequals(f.name, name)) forEachElement(f.value, [&](std::string_view e) { out.push_back(e); });
    return out;
}

std::optional<std::uint64_t> contentLength(const HeaderList& headers) noexcept {
    constexpr auto max = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t length = 0;
    bool seen = false;
    for (const auto& f : headers) {
        if (!iequals(f.name, "Content-Length")) continue;
        // RFC 9110 §8.6: one value, or a list repeating one value; anything else is invalid
        // (RFC 9112 §6.3: an unrecoverable error). An empty element is invalid too.
        std::string_view rest = f.value;
        for (;;) {
            const auto comma = rest.find(',');
            auto item = rest.substr(0, comma);
            while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
            while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
            if (item.empty()) return std::nullopt;
            std::uint64_t v = 0;
            for (const char c : item) {
                if (c < '0' || c > '9') return std::nullopt;
                // Saturates: any such length is over every limit anyway.
                v = v > (max - 9) / 10 ? max : v * 10 + static_cast<std::uint64_t>(c - '0');
            }
            if (seen && v != length) return std::nullopt;
            length = v;
            seen = true;
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return length;
}

// --- Request ------------------------------------------------------------------------

std::string_view Request::path() const noexcept { return target.substr(0, target.find('?')); }

std::string_view Request::query() const noexcept {
    const auto q = target.find('?');
    return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

// --- HeadParser ---------------------------------------------------------------------

ParseStatus HeadParser::fail(tongdao::error e) {
    error_ = e;
    status_ = ParseStatus::failed;
    return status_;
}

// Appends bytes up to and including the empty line that ends the head. Lines end in
// LF, optionally preceded by CR (RFC 9112 §2.2 lets a recipient accept a bare LF). Each
// line is checked as soon as it is complete, so garbage is refused at its first line
// rather than when a blank line, the size limit or a timeout comes.
ParseStatus HeadParser::collect(Bytes in, std::size_t& consumed) {
    consumed = 0;
    if (status_ != ParseStatus::needMore) return status_;
    const char* p = reinterpret_cast<const char*>(in.data());
    const std::size_t n = in.size();
    std::size_t i = 0;
    while (i < n) {
        const void* nl = std::memchr(p + i, '\n', n - i);
        const std::size_t end = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - p) + 1 : n;
        if (head_.size() + (end - i) > limits_.maxHeadBytes) {
            consumed = end;
            return fail(tongdao::error::headersTooLarge);
        }
        head_.append(p + i, end - i);
        i = end;
        if (!nl) break;
        std::string_view line(head_.data() + lineStart_, head_.size() - lineStart_ - 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.find('\r') != std::string_view::npos) {
            consumed = i;
            return fail(tongdao::error::httpMalformed); // a bare CR (RFC 9112 §2.2)
        }
        if (line.empty()) {
            if (lines_ == 0) { // RFC 9112 §2.2: empty lines before the start line are ignored
                head_.clear();
                lineStart_ = 0;
                continue;
            }
            consumed = i;
            return ParseStatus::done;
        }
        std::string_view name, value;
        const bool ok = lines_ == 0 ? (requestMode_ ? parseRequestLine(line) : parseStatusLine(line))
                                    : checkFieldLine(line, name, value);
        // The start line was parsed into views of head_, which may still move: the views
        // are made again once the head is whole.
        request_ = Request{};
        response_ = Response{};
        if (!ok) {
            consumed = i;
            return fail(tongdao::error::httpMalformed);
        }
        if (lines_ > limits_.maxHeaders) {
            consumed = i;
            return fail(tongdao::error::tooManyHeaders);
        }
        ++lines_;
        lineStart_ = head_.size();
    }
    consumed = n;
    return ParseStatus::needMore;
}

bool HeadParser::parseRequestLine(std::string_view line) {
    // request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
    const auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return false;
    const auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return false;
    request_.method = line.substr(0, sp1);
    request_.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (!isToken(request_.method) || request_.target.empty()) return false;
    for (char c : request_.target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return false;
    return parseVersion(line.substr(sp2 + 1), request_.versionMajor, request_.versionMinor);
}

bool HeadParser::parseStatusLine(std::string_view line) {
    // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4);
    // a missing final SP is tolerated, as browsers do.
    if (line.size() < 12 || line[8] != ' ') return false;
    if (!parseVersion(line.substr(0, 8), response_.versionMajor, response_.versionMinor)) return false;
    const auto code = line.substr(9, 3);
    for (char c : code)
        if (c < '0' || c > '9') return false;
    response_.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    if (line.size() > 12) {
        if (line[12] != ' ') return false;
        response_.reason = line.substr(13);
        if (!isFieldValue(response_.reason)) return false;
    }
    return true;
}

bool HeadParser::checkFieldLine(std::string_view line, std::string_view& name, std::string_view& value) {
    // RFC 9112 §5.2: obs-fold is rejected; §5.1: no whitespace before the colon.
    if (line.front() == ' ' || line.front() == '\t') return false;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return false;
    name = line.substr(0, colon);
    value = trimOws(line.substr(colon + 1));
    return isToken(name) && isFieldValue(value);
}

bool HeadParser::parseFields(std::string_view fields, HeaderList& out) {
    while (!fields.empty()) {
        auto eol = fields.find('\n');
        auto line = fields.substr(0, eol);
        fields.remove_prefix(eol + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break; // the empty line that ends the head
        std::string_view name, value;
        if (!checkFieldLine(line, name, value)) return false;
        if (out.size() == limits_.maxHeaders) {
            error_ = tongdao::error::tooManyHeaders;
            return false;
        }
        out.add(name, value);
    }
    return true;
}

namespace {
// Splits off the start line; a CR anywhere but before LF is a bare CR (RFC 9112 §2.2).
bool splitStartLine(std::string_view head, std::string_view& line, std::string_view& rest) {
    const auto eol = head.find('\n');
    line = head.substr(0, eol);
    rest = head.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (std::size_t i = 0; i + 1 < head.size(); ++i)
        if (head[i] == '\r' && head[i + 1] != '\n') return false;
    return true;
}
} // namespace

ParseStatus HeadParser::feedRequest(Bytes in, std::size_t& consumed) {
    requestMode_ = true;
    if (collect(in, consumed) != ParseStatus::done || status_ != ParseStatus::needMore) return status_;
    std::string_view line, rest;
    if (!splitStartLine(head_, line, rest) || !parseRequestLine(line) ||
        !parseFields(rest, request_.headers))
        return fail(error_ ? static_cast<tongdao::error>(error_.value()) : tongdao::error::httpMalformed);
    return status_ = ParseStatus::done;
}

ParseStatus HeadParser::feedResponse(Bytes in, std::size_t& consumed) {
    requestMode_ = false;
    if (collect(in, consumed) != ParseStatus::done || status_ != ParseStatus::needMore) return status_;
    std::string_view line, rest;
    if (!splitStartLine(head_, line, rest) || !parseStatusLine(line) ||
        !parseFields(rest, response_.headers))
        return fail(error_ ? static_cast<tongdao::error>(error_.value()) : tongdao::error::httpMalformed);
    return status_ = ParseStatus::done;
}

// --- formatting ---------------------------------------------------------------------

std::string_view reasonPhrase(int status) noexcept {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

std::string formatResponse(int status, const HeaderFields& fields, std::string_view body, bool headOnly) {
    std::string out;
    out.reserve(128 + body.size());
    char num[16];
    out += "HTTP/1.1 ";
    out.append(num, std::to_chars(num, num + sizeof num, status).ptr);
    out += ' ';
    out += reasonPhrase(status);
    out += "\r\n";
    for (const auto& [name, value] : fields) {
        out += name;
        out += ": ";
        out += value;
        out += "\r\n";
    }
    out += "Content-Length: ";
    out.append(num, std::to_chars(num, num + sizeof num, body.size()).ptr);
    out += "\r\n\r\n";
    if (!headOnly) out += body;
    return out;
}

std::string_view queryParam(std::string_view q, std::string_view name) noexcept {
    while (!q.empty()) {
        const auto amp = q.find('&');
        const auto pair = q.substr(0, amp);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
        if (amp == std::string_view::npos) break;
        q.remove_prefix(amp + 1);
    }
    return {};
}

} // namespace tongdao::protocol::http
