// The HTTP/1.1 head parser (RFC 9112 §2-§5, RFC 9110 §5) for requests and responses,
// header lookups, and response formatting. Every head is fed whole, one byte at a time
// and split in two at every point.
#include "support/http.hpp"

#include <limits>
#include <string>
#include <vector>

namespace tongdao::test {
namespace {

using tongdao::error;

std::error_code ec(error e) { return make_error_code(e); }

/** A request head: the start line, the given field lines, the empty line; CRLF endings. */
std::string requestHead(std::string_view startLine, const std::vector<std::string>& fields) {
    std::string s(startLine);
    s += "\r\n";
    for (const auto& f : fields) s += f + "\r\n";
    return s + "\r\n";
}

/** A valid request line and Host, then one extra field line. */
std::string withField(const std::string& line) { return requestHead("GET / HTTP/1.1", {"Host: a", line}); }

const std::string simpleRequest = "GET /chat?room=1 HTTP/1.1\r\n"
                                  "Host: example.com\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "\r\n";

// --- requests -----------------------------------------------------------------------

TEST(HttpRequest, ParsesAValidHead) {
    auto r = parseRequest(simpleRequest);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.consumed, simpleRequest.size());
    EXPECT_EQ(r.summary, "GET /chat?room=1 HTTP/1.1\n"
                         "Host: example.com\n"
                         "Upgrade: websocket\n"
                         "Connection: Upgrade\n");

    auto p = parsedRequest(simpleRequest);
    const auto& req = p->request();
    EXPECT_EQ(req.method, "GET");
    EXPECT_EQ(req.target, "/chat?room=1");
    EXPECT_EQ(req.versionMajor, 1);
    EXPECT_EQ(req.versionMinor, 1);
    EXPECT_EQ(req.headers.size(), 3u);
    EXPECT_EQ(p->status(), ParseStatus::done);
}

TEST(HttpRequest, OtherValidStartLines) {
    struct Case {
        std::string line, expected;
    };
    const std::vector<Case> cases = {
        {"GET / HTTP/1.0", "GET / HTTP/1.0\n"},
        {"GET / HTTP/1.2", "GET / HTTP/1.2\n"}, // RFC 9110 §2.5: a higher minor version is still 1.x
        {"OPTIONS * HTTP/1.1", "OPTIONS * HTTP/1.1\n"},
        {"GET http://example.com/a?b HTTP/1.1", "GET http://example.com/a?b HTTP/1.1\n"},
        {"M-SEARCH /x HTTP/1.1", "M-SEARCH /x HTTP/1.1\n"},
        {"get / HTTP/1.1", "get / HTTP/1.1\n"}, // a valid token; the method check is the handshake's
    };
    for (const auto& c : cases) {
        auto r = parseRequest(c.line + "\r\n\r\n");
        EXPECT_EQ(r.status, ParseStatus::done) << c.line;
        EXPECT_EQ(r.summary, c.expected) << c.line;
    }
}

TEST(HttpRequest, NeedsMoreUntilTheEmptyLine) {
    for (std::size_t n = 0; n < simpleRequest.size(); ++n) {
        auto r = parseRequest(simpleRequest.substr(0, n));
        EXPECT_EQ(r.status, ParseStatus::needMore) << n;
        EXPECT_EQ(r.consumed, n);
        EXPECT_FALSE(r.error);
    }
}

TEST(HttpRequest, BytesAfterTheHeadAreNotConsumed) {
    const std::string after = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58GET / HTTP/1.1\r\n\r\n";
    auto r = parseRequest(simpleRequest + after);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, simpleRequest.size());
    EXPECT_EQ(r.summary, parseRequest(simpleRequest).summary);

    // Once done, the parser takes nothing more.
    http::HeadParser p;
    std::size_t consumed = 0;
    ASSERT_EQ(p.feedRequest(asBytes(simpleRequest + after), consumed), ParseStatus::done);
    EXPECT_EQ(consumed, simpleRequest.size());
    EXPECT_EQ(p.feedRequest(asBytes(after), consumed), ParseStatus::done);
    EXPECT_EQ(consumed, 0u);
    EXPECT_EQ(p.request().target, "/chat?room=1");
}

TEST(HttpRequest, LeadingEmptyLinesAreIgnored) {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    for (std::string prefix : {"\r\n", "\n", "\r\n\r\n\r\n", "\n\r\n\n"}) {
        auto r = parseRequest(prefix + simpleRequest);
        EXPECT_EQ(r.status, ParseStatus::done) << prefix.size();
        EXPECT_EQ(r.consumed, prefix.size() + simpleRequest.size());
        EXPECT_EQ(r.summary, parseRequest(simpleRequest).summary);
    }
}

TEST(HttpRequest, BareLfLineEndingsAreAccepted) {
    // RFC 9112 §2.2: a recipient MAY recognise a single LF as a line terminator.
    const std::string lf = "GET /chat?room=1 HTTP/1.1\nHost: example.com\nUpgrade: websocket\nConnection: Upgrade\n\n";
    auto r = parseRequest(lf);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, lf.size());
    EXPECT_EQ(r.summary, parseRequest(simpleRequest).summary);

    const std::string mixed = "GET /chat?room=1 HTTP/1.1\nHost: example.com\r\nUpgrade: websocket\n"
                              "Connection: Upgrade\r\n\n";
    EXPECT_EQ(parseRequest(mixed).summary, parseRequest(simpleRequest).summary);
    EXPECT_EQ(parseRequest(mixed + "tail").consumed, mixed.size());
}

TEST(HttpRequest, BareCrIsRejected) {
    // RFC 9112 §2.2: a bare CR must be rejected or replaced; tongdao rejects.
    for (std::string head : {
             std::string("GET / HTTP/1.1\rHost: a\r\n\r\n"),
             std::string("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
             std::string("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"),
             std::string("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"),
             std::string("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n"),
         }) {
        auto r = parseRequest(head);
        EXPECT_EQ(r.status, ParseStatus::failed) << head;
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << head;
    }
}

TEST(HttpRequest, ObsFoldIsRejected) {
    // RFC 9112 §5.2: obs-fold outside message/http is rejected (or replaced); tongdao rejects.
    for (std::string head : {
             requestHead("GET / HTTP/1.1", {"Host: a", "X-Long: one", " two"}),
             requestHead("GET / HTTP/1.1", {"Host: a", "X-Long: one", "\ttwo"}),
             requestHead("GET / HTTP/1.1", {" Host: a"}), // RFC 9112 §2.2: whitespace before the first field
             requestHead("GET / HTTP/1.1", {"Host: a", "   "}),
         }) {
        auto r = parseRequest(head);
        EXPECT_EQ(r.status, ParseStatus::failed) << head;
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << head;
    }
}

TEST(HttpRequest, WhitespaceBeforeTheColonIsRejected) {
    // RFC 9112 §5.1: a server MUST reject whitespace between field name and colon with 400.
    for (std::string line : {"X-A : b", "X-A\t: b", "X-A  :b"}) {
        auto r = parseRequest(withField(line));
        EXPECT_EQ(r.status, ParseStatus::failed) << line;
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << line;
    }
    EXPECT_EQ(httpStatusFor(error::httpMalformed), 400);
}

TEST(HttpRequest, FieldNamesMustBeTokens) {
    // RFC 9110 §5.1: field-name = token. Every delimiter and control is refused.
    std::string bad = "\"(),/;<=>?@[\\]{}";
    bad += '\x01';
    bad += '\x7f';
    bad += '\x80';
    bad += '\xff';
    for (char c : bad) {
        std::string line = "X-A";
        line += c;
        line += "b: v";
        auto r = parseRequest(withField(line));
        EXPECT_EQ(r.status, ParseStatus::failed) << "byte " << int(static_cast<unsigned char>(c));
        EXPECT_EQ(r.error, ec(error::httpMalformed));
    }
    for (std::string line : {": v", "No-Colon-Here", "X A: v"}) {
        auto r = parseRequest(withField(line));
        EXPECT_EQ(r.status, ParseStatus::failed) << line;
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << line;
    }
    // Every tchar is allowed.
    auto r = parseRequest(withField("!#$%&'*+-.^_`|~09azAZ: v"));
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.summary, "GET / HTTP/1.1\nHost: a\n!#$%&'*+-.^_`|~09azAZ: v\n");
}

TEST(HttpRequest, ControlCharactersInValuesAreRejected) {
    // RFC 9110 §5.5: field-content is VCHAR, obs-text, SP and HTAB.
    for (int c : {0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f}) {
        std::string line = "X-A: b";
        line += static_cast<char>(c);
        line += "c";
        auto r = parseRequest(withField(line));
        EXPECT_EQ(r.status, ParseStatus::failed) << "byte " << c;
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << "byte " << c;
    }
    // HTAB, SP and obs-text inside a value are fine; OWS around it is not part of it.
    auto r = parseRequest(withField("X-A: \t b\tc \xe4\xb8\xad \t "));
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.summary, "GET / HTTP/1.1\nHost: a\nX-A: b\tc \xe4\xb8\xad\n");
    // An empty value is a value.
    r = parseRequest(withField("X-Empty:"));
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.summary, "GET / HTTP/1.1\nHost: a\nX-Empty: \n");
}

/** A request head of exactly `size` bytes, padded in one field value. */
std::string headOfSize(std::size_t size) {
    const std::string start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const std::string end = "\r\n\r\n";
    return start + std::string(size - start.size() - end.size(), 'p') + end;
}

TEST(HttpRequest, HeadSizeLimitIsEightKibInclusive) {
    const auto atLimit = headOfSize(8 * 1024);
    ASSERT_EQ(atLimit.size(), 8192u);
    auto r = parseRequest(atLimit + "after");
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, 8192u);

    auto over = parseRequest(headOfSize(8 * 1024 + 1));
    EXPECT_EQ(over.status, ParseStatus::failed);
    EXPECT_EQ(over.error, ec(error::headersTooLarge));
    EXPECT_EQ(httpStatusFor(error::headersTooLarge), 431);

    // A line that never ends fails once it passes the limit, without waiting for more.
    auto endless = parseRequest("GET /" + std::string(9000, 'a'));
    EXPECT_EQ(endless.status, ParseStatus::failed);
    EXPECT_EQ(endless.error, ec(error::headersTooLarge));
}

TEST(HttpRequest, HeadSizeLimitIsConfigurable) {
    http::Limits small;
    small.maxHeadBytes = 100;
    EXPECT_EQ(parseRequest(headOfSize(100), small).status, ParseStatus::done);
    auto r = parseRequest(headOfSize(101), small);
    EXPECT_EQ(r.status, ParseStatus::failed);
    EXPECT_EQ(r.error, ec(error::headersTooLarge));
    // Empty lines before the request line are skipped, not part of the head.
    EXPECT_EQ(parseRequest("\r\n\r\n" + headOfSize(100), small).status, ParseStatus::done);
}

std::string headWithFields(std::size_t n) {
    std::vector<std::string> fields;
    for (std::size_t i = 0; i < n; ++i) fields.push_back("X-F" + std::to_string(i) + ": " + std::to_string(i));
    return requestHead("GET / HTTP/1.1", fields);
}

TEST(HttpRequest, SixtyFourFieldsAtMost) {
    auto ok = parseRequest(headWithFields(64));
    EXPECT_EQ(ok.status, ParseStatus::done);
    EXPECT_EQ(parsedRequest(headWithFields(64))->request().headers.size(), 64u);

    auto r = parseRequest(headWithFields(65));
    EXPECT_EQ(r.status, ParseStatus::failed);
    EXPECT_EQ(r.error, ec(error::tooManyHeaders));
    EXPECT_EQ(httpStatusFor(error::tooManyHeaders), 431);

    http::Limits two;
    two.maxHeaders = 2;
    EXPECT_EQ(parseRequest(headWithFields(2), two).status, ParseStatus::done);
    EXPECT_EQ(parseRequest(headWithFields(3), two).error, ec(error::tooManyHeaders));
}

TEST(HttpRequest, MalformedRequestLinesAreRejected) {
    for (std::string line : {
             "GET /",                   // no version
             "GET",                     // method only
             "GET HTTP/1.1",            // no target
             "/ HTTP/1.1",              // no method
             "GET / HTTP/1",            // RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT
             "GET / HTTP/11",
             "GET / HTTP/1.10",
             "GET / HTTP/1.x",
             "GET / http/1.1",          // the HTTP-name is case-sensitive
             "GET / Http/1.1",
             "GET / HTTPS/1.1",
             "GET / HTTP/1.1 ",         // trailing SP
             "GET  / HTTP/1.1",         // two SPs
             "GET /  HTTP/1.1",
             " GET / HTTP/1.1",
             "GET /a b HTTP/1.1",       // SP in the target
             "GET /a\tb HTTP/1.1",
             "GET /a\x7f HTTP/1.1",
             "G(T / HTTP/1.1",          // method is a token
             "GET\t/\tHTTP/1.1",
             "HTTP/1.1 200 OK",         // a status line is not a request line
         }) {
        auto r = parseRequest(line + "\r\nHost: a\r\n\r\n");
        EXPECT_EQ(r.status, ParseStatus::failed) << '"' << line << '"';
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << '"' << line << '"';
    }
}

TEST(HttpRequest, AFailedParserStaysFailed) {
    http::HeadParser p;
    std::size_t consumed = 0;
    ASSERT_EQ(p.feedRequest(asBytes("GET / HTTP/1\r\n\r\n"), consumed), ParseStatus::failed);
    EXPECT_EQ(p.status(), ParseStatus::failed);
    EXPECT_EQ(p.feedRequest(asBytes(simpleRequest), consumed), ParseStatus::failed);
    EXPECT_EQ(consumed, 0u);
    EXPECT_EQ(p.error(), ec(error::httpMalformed));
    EXPECT_EQ(p.error(), condition::handshakeFailed);
}

TEST(HttpRequest, PathAndQuery) {
    struct Case {
        std::string target, path, query;
    };
    for (const auto& c : std::vector<Case>{
             {"/", "/", ""},
             {"/chat", "/chat", ""},
             {"/chat?room=1&user=a", "/chat", "room=1&user=a"},
             {"/a?", "/a", ""},
             {"/a?b?c", "/a", "b?c"},
             {"/?x", "/", "x"},
         }) {
        auto p = parsedRequest("GET " + c.target + " HTTP/1.1\r\n\r\n");
        EXPECT_EQ(p->request().path(), c.path) << c.target;
        EXPECT_EQ(p->request().query(), c.query) << c.target;
    }
}

// --- responses ----------------------------------------------------------------------

const std::string switching = "HTTP/1.1 101 Switching Protocols\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                              "\r\n";

TEST(HttpResponse, ParsesAValidHead) {
    auto r = parseResponse(switching);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, switching.size());
    EXPECT_EQ(r.summary, "HTTP/1.1 101 [Switching Protocols]\n"
                         "Upgrade: websocket\n"
                         "Connection: Upgrade\n"
                         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n");
    auto p = parsedResponse(switching);
    EXPECT_EQ(p->response().status, 101);
    EXPECT_EQ(p->response().reason, "Switching Protocols");
}

TEST(HttpResponse, FramesAfterThe101AreNotConsumed) {
    // A server may send its first frames in the same segment as the 101.
    const std::string frames = "\x81\x05Hello\x89\x00";
    auto r = parseResponse(switching + frames);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, switching.size());
    EXPECT_EQ(r.summary, parseResponse(switching).summary);
}

TEST(HttpResponse, StatusLinesWithAndWithoutReason) {
    struct Case {
        std::string line;
        int status;
        std::string reason;
    };
    for (const auto& c : std::vector<Case>{
             {"HTTP/1.1 101 Switching Protocols", 101, "Switching Protocols"},
             {"HTTP/1.1 404 Not Found", 404, "Not Found"},
             {"HTTP/1.1 200 ", 200, ""},     // RFC 9112 §4: the SP stays, the reason may be empty
             {"HTTP/1.1 200", 200, ""},      // no SP at all: tolerated
             {"HTTP/1.0 426 Upgrade  Required\t!", 426, "Upgrade  Required\t!"},
             {"HTTP/1.1 599 \xc3\xa9t\xc3\xa9", 599, "\xc3\xa9t\xc3\xa9"}, // obs-text
             {"HTTP/1.1 000 x", 0, "x"},
         }) {
        auto r = parseResponse(c.line + "\r\nX: y\r\n\r\n");
        EXPECT_EQ(r.status, ParseStatus::done) << c.line;
        auto p = parsedResponse(c.line + "\r\nX: y\r\n\r\n");
        EXPECT_EQ(p->response().status, c.status) << c.line;
        EXPECT_EQ(p->response().reason, c.reason) << c.line;
        EXPECT_EQ(p->response().headers.find("x"), "y");
    }
    auto p = parsedResponse("HTTP/1.0 200 OK\r\n\r\n");
    EXPECT_EQ(p->response().versionMajor, 1);
    EXPECT_EQ(p->response().versionMinor, 0);
}

TEST(HttpResponse, MalformedStatusLinesAreRejected) {
    for (std::string line : {
             "HTTP/1.1 10 Short",
             "HTTP/1.1 1011 Long",
             "HTTP/1.1 1a1 Letters",
             "HTTP/1.1  101 Two spaces",
             "HTTP/1.1 101x",
             "HTTP/1.1101 Glued",
             "http/1.1 101 Lower",
             "HTTP/1 101 Short version",
             "HTTP/1.1 101 Bad\x01reason",
             "HTTP/1.1 101 Bad\x7freason",
             "HTTP/1.1",
             "",
             "GET / HTTP/1.1",
         }) {
        auto r = parseResponse(line + "\r\nX: y\r\n\r\n");
        EXPECT_EQ(r.status, ParseStatus::failed) << '"' << line << '"';
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << '"' << line << '"';
    }
}

TEST(HttpResponse, SameFieldRulesAsRequests) {
    auto base = [](const std::string& field) { return "HTTP/1.1 101 OK\r\n" + field + "\r\n\r\n"; };
    for (std::string field : {"X : y", "X: a\rb", "X: a\x01", " X: y", "X(: y", "X"}) {
        auto r = parseResponse(base(field));
        EXPECT_EQ(r.status, ParseStatus::failed) << field;
        EXPECT_EQ(r.error, ec(error::httpMalformed)) << field;
    }
    auto r = parseResponse("\r\n\nHTTP/1.1 101 OK\nUpgrade: websocket\n\n\x81");
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, 3 + 16 + 19 + 1u);
    EXPECT_EQ(r.summary, "HTTP/1.1 101 [OK]\nUpgrade: websocket\n");
}

// --- HeaderList ---------------------------------------------------------------------

TEST(HttpHeaderList, FindAndCountIgnoreCase) {
    auto p = parsedRequest("GET / HTTP/1.1\r\n"
                           "Host: a\r\n"
                           "X-Dup: first\r\n"
                           "x-dup: second\r\n"
                           "X-DUP: third\r\n"
                           "\r\n");
    const auto& h = p->request().headers;
    EXPECT_EQ(h.find("host"), "a");
    EXPECT_EQ(h.find("HOST"), "a");
    EXPECT_EQ(h.find("x-Dup"), "first");
    EXPECT_EQ(h.find("Missing"), std::nullopt);
    EXPECT_EQ(h.find("Hos"), std::nullopt);
    EXPECT_EQ(h.find("Host "), std::nullopt);
    EXPECT_EQ(h.count("x-dup"), 3u);
    EXPECT_EQ(h.count("Host"), 1u);
    EXPECT_EQ(h.count("Nope"), 0u);
    EXPECT_EQ(h.size(), 4u);
}

TEST(HttpHeaderList, HasTokenAcrossFieldsWithOws) {
    auto p = parsedRequest("GET / HTTP/1.1\r\n"
                           "Connection: keep-alive\r\n"
                           "Upgrade: h2c ,\t WebSocket  \r\n"
                           "Connection: , ,Upgrade ,\r\n"
                           "X-List: upgrades, xupgrade, up grade\r\n"
                           "\r\n");
    const auto& h = p->request().headers;
    EXPECT_TRUE(h.hasToken("Connection", "upgrade"));
    EXPECT_TRUE(h.hasToken("connection", "KEEP-ALIVE"));
    EXPECT_TRUE(h.hasToken("Upgrade", "websocket"));
    EXPECT_TRUE(h.hasToken("Upgrade", "H2C"));
    EXPECT_FALSE(h.hasToken("Connection", "close"));
    EXPECT_FALSE(h.hasToken("X-List", "upgrade")); // whole elements only, no substrings
    EXPECT_TRUE(h.hasToken("X-List", "up grade"));
    EXPECT_FALSE(h.hasToken("Missing", "upgrade"));
    EXPECT_FALSE(h.hasToken("Connection", ""));

    using V = std::vector<std::string_view>;
    EXPECT_EQ(h.list("connection"), (V{"keep-alive", "Upgrade"}));
    EXPECT_EQ(h.list("Upgrade"), (V{"h2c", "WebSocket"}));
    EXPECT_EQ(h.list("X-List"), (V{"upgrades", "xupgrade", "up grade"}));
    EXPECT_TRUE(h.list("Missing").empty());
}

TEST(HttpHeaderList, BuiltByHand) {
    http::HeaderList h;
    h.add("Sec-WebSocket-Protocol", "chat");
    h.add("sec-websocket-protocol", "superchat, ,  v2.chat");
    h.add("Other", "x");
    using V = std::vector<std::string_view>;
    EXPECT_EQ(h.list("SEC-WEBSOCKET-PROTOCOL"), (V{"chat", "superchat", "v2.chat"}));
    EXPECT_TRUE(h.hasToken("Sec-WebSocket-Protocol", "V2.CHAT"));
    EXPECT_EQ(h.count("sec-websocket-protocol"), 2u);
    h.clear();
    EXPECT_EQ(h.size(), 0u);
    EXPECT_EQ(h.find("Other"), std::nullopt);
}

// --- small helpers ------------------------------------------------------------------

TEST(HttpHelpers, TokensAndCaseInsensitiveEquality) {
    EXPECT_TRUE(http::isToken("websocket"));
    EXPECT_TRUE(http::isToken("permessage-deflate"));
    EXPECT_FALSE(http::isToken(""));
    EXPECT_FALSE(http::isToken("a b"));
    EXPECT_FALSE(http::isToken("a=b"));
    EXPECT_FALSE(http::isToken("\"a\""));
    EXPECT_TRUE(http::iequals("Upgrade", "uPGRADE"));
    EXPECT_FALSE(http::iequals("Upgrade", "Upgrad"));
    EXPECT_FALSE(http::iequals("[", "{")); // 0x5B and 0x7B differ only in bit 0x20 but are not letters
    EXPECT_FALSE(http::iequals("@", "`"));
    EXPECT_EQ(http::reasonPhrase(101), "Switching Protocols");
    EXPECT_EQ(http::reasonPhrase(426), "Upgrade Required");
    EXPECT_EQ(http::reasonPhrase(431), "Request Header Fields Too Large");
    EXPECT_EQ(http::reasonPhrase(411), "Length Required");
    EXPECT_EQ(http::reasonPhrase(299), "Unknown");
}

// RFC 9112 §6.3 and RFC 9110 §8.6: the body length of a request.
TEST(HttpContentLength, ValidAndInvalidValues) {
    auto length = [](std::string_view fields) {
        const auto p = parsedRequest("POST / HTTP/1.1\r\nHost: h\r\n" + std::string(fields) + "\r\n");
        return http::contentLength(p->request().headers);
    };
    EXPECT_EQ(length(""), 0u);
    EXPECT_EQ(length("Content-Length: 0\r\n"), 0u);
    EXPECT_EQ(length("content-length: 42\r\n"), 42u);
    EXPECT_EQ(length("Content-Length: 007\r\n"), 7u);
    EXPECT_EQ(length("Content-Length: 5, 5\r\nContent-Length: 5\r\n"), 5u); // one value, repeated
    EXPECT_EQ(length("Content-Length: 99999999999999999999999999\r\n"), std::numeric_limits<std::uint64_t>::max());
    for (const char* bad : {"Content-Length: 5, 6\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n",
                            "Content-Length: -1\r\n", "Content-Length: +1\r\n", "Content-Length: 1.0\r\n",
                            "Content-Length: abc\r\n", "Content-Length: \r\n", "Content-Length: 3,\r\n",
                            "Content-Length: ,3\r\n", "Content-Length: 0x10\r\n", "Content-Length: 1 2\r\n"})
        EXPECT_FALSE(length(bad)) << bad;
}

TEST(HttpFormat, FormatResponse) {
    EXPECT_EQ(http::formatResponse(404, {{"Content-Type", "text/plain"}, {"X-A", "b"}}, "nope\n"),
              "HTTP/1.1 404 Not Found\r\n"
              "Content-Type: text/plain\r\n"
              "X-A: b\r\n"
              "Content-Length: 5\r\n"
              "\r\n"
              "nope\n");
    EXPECT_EQ(http::formatResponse(204, {}, ""), "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(http::formatResponse(299, {}, "x"), "HTTP/1.1 299 Unknown\r\nContent-Length: 1\r\n\r\nx");

    // What it formats, the parser reads back, and the body follows the head.
    const std::string body(1234, 'b');
    const auto text = http::formatResponse(200, {{"Content-Type", "text/html"}}, body);
    auto p = parsedResponse(text.substr(0, text.size() - body.size()));
    EXPECT_EQ(p->response().status, 200);
    EXPECT_EQ(p->response().reason, "OK");
    EXPECT_EQ(p->response().headers.find("content-length"), "1234");
    EXPECT_EQ(text.substr(text.size() - body.size()), body);
    EXPECT_EQ(parseResponse(text).consumed, text.size() - body.size());
}

TEST(HttpFormat, IsSafeFieldValue) {
    EXPECT_TRUE(http::isSafeFieldValue(""));
    EXPECT_TRUE(http::isSafeFieldValue("text/plain; charset=utf-8"));
    EXPECT_TRUE(http::isSafeFieldValue("a\tb \xe4\xb8\xad"));
    EXPECT_FALSE(http::isSafeFieldValue("a\r\nSet-Cookie: x"));
    EXPECT_FALSE(http::isSafeFieldValue("a\rb"));
    EXPECT_FALSE(http::isSafeFieldValue("a\nb"));
    EXPECT_FALSE(http::isSafeFieldValue(std::string_view("a\0b", 3)));
}

TEST(HttpQuery, ParamsByName) {
    EXPECT_EQ(http::queryParam("a=1&b=22&c", "b"), "22");
    EXPECT_EQ(http::queryParam("a=1&b=22&c", "a"), "1");
    EXPECT_EQ(http::queryParam("a=1&b=22&c", "c"), "");
    EXPECT_EQ(http::queryParam("a=1&b=22&c", "d"), "");
    EXPECT_EQ(http::queryParam("ab=1&a=2", "a"), "2"); // a name is matched whole
    EXPECT_EQ(http::queryParam("a=x=y", "a"), "x=y");
    EXPECT_EQ(http::queryParam("", "a"), "");
    EXPECT_EQ(http::queryParam("&&a=1&", "a"), "1");
}

} // namespace
} // namespace tongdao::test
