// The opening handshake, RFC 6455 §4, in both roles. Every head is fed whole, one byte
// at a time and split in two at every point.
#include "support/http.hpp"

#include "protocol/crypto.hpp"

#include <set>
#include <string>
#include <vector>

namespace tongdao::test {
namespace {

using tongdao::error;

std::error_code ec(error e) { return make_error_code(e); }

// RFC 6455 §1.3's example key and its accept value.
constexpr std::string_view rfcKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// --- keys ---------------------------------------------------------------------------

TEST(HandshakeKeys, AcceptKeyOfTheRfcExample) {
    EXPECT_EQ(computeAcceptKey(rfcKey), rfcAccept);
    EXPECT_NE(computeAcceptKey("dGhlIHNhbXBsZSBub25jZR=="), rfcAccept);
    EXPECT_EQ(computeAcceptKey("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

TEST(HandshakeKeys, GeneratedKeysAreSixteenRandomBytes) {
    std::set<std::string> keys;
    for (int i = 0; i < 32; ++i) {
        const auto key = generateKey();
        EXPECT_EQ(key.size(), 24u) << key;
        EXPECT_EQ(detail::base64DecodedSize(key), 16) << key;
        EXPECT_EQ(key.substr(22), "==") << key;
        keys.insert(key);
    }
    EXPECT_EQ(keys.size(), 32u) << "keys repeat";
}

// --- client: the request ------------------------------------------------------------

ClientRequest basicRequest() {
    ClientRequest r;
    r.host = "example.com:8080";
    r.target = "/chat?room=1";
    return r;
}

TEST(ClientHandshake, RequestHasEveryRequiredField) {
    ClientHandshake hs(basicRequest(), {}, std::string(rfcKey));
    EXPECT_EQ(hs.key(), rfcKey);
    const auto& text = hs.request();
    EXPECT_TRUE(text.starts_with("GET /chat?room=1 HTTP/1.1\r\n")) << text;
    EXPECT_TRUE(text.ends_with("\r\n\r\n")) << text;

    auto p = parsedRequest(text);
    const auto& req = p->request();
    EXPECT_EQ(req.method, "GET");
    EXPECT_EQ(req.target, "/chat?room=1");
    EXPECT_EQ(req.versionMajor, 1);
    EXPECT_EQ(req.versionMinor, 1);
    const auto& h = req.headers;
    EXPECT_EQ(h.find("Host"), "example.com:8080");
    EXPECT_EQ(h.find("Upgrade"), "websocket");
    EXPECT_TRUE(h.hasToken("Connection", "upgrade"));
    EXPECT_EQ(h.find("Sec-WebSocket-Key"), rfcKey);
    EXPECT_EQ(h.find("Sec-WebSocket-Version"), "13");
    EXPECT_EQ(h.count("Origin"), 0u);
    EXPECT_EQ(h.count("Sec-WebSocket-Protocol"), 0u);
    EXPECT_EQ(h.count("Sec-WebSocket-Extensions"), 0u);
    for (auto name : {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"})
        EXPECT_EQ(h.count(name), 1u) << name;

    // A server accepts it.
    UpgradeRequest up;
    EXPECT_FALSE(checkUpgradeRequest(req, up));
    EXPECT_EQ(up.key, rfcKey);
}

TEST(ClientHandshake, EmptyTargetBecomesSlash) {
    auto r = basicRequest();
    r.target.clear();
    ClientHandshake hs(r);
    EXPECT_EQ(parsedRequest(hs.request())->request().target, "/");
}

TEST(ClientHandshake, DefaultKeyIsFreshAndValid) {
    ClientHandshake a(basicRequest()), b(basicRequest());
    EXPECT_EQ(detail::base64DecodedSize(a.key()), 16);
    EXPECT_NE(a.key(), b.key());
    EXPECT_EQ(parsedRequest(a.request())->request().headers.find("Sec-WebSocket-Key"), a.key());
}

TEST(ClientHandshake, RequestHasTheOptionalFields) {
    auto r = basicRequest();
    r.origin = "https://example.com";
    r.protocols = {"chat.v2", "chat"};
    r.extensions = {clientFactory("x-test", "x-test; level=1"), clientFactory("x-other", "x-other, x-other; a=\"1\"")};
    r.headers = {{"Authorization", "Bearer abc"}, {"X-Trace", "1"}};
    ClientHandshake hs(r, {}, std::string(rfcKey));
    auto p = parsedRequest(hs.request());
    const auto& h = p->request().headers;
    EXPECT_EQ(h.find("Origin"), "https://example.com");
    EXPECT_EQ(h.find("Sec-WebSocket-Protocol"), "chat.v2, chat");
    EXPECT_EQ(h.count("Sec-WebSocket-Extensions"), 1u);
    EXPECT_EQ(h.find("Sec-WebSocket-Extensions"), "x-test; level=1, x-other, x-other; a=\"1\"");
    EXPECT_EQ(h.find("Authorization"), "Bearer abc");
    EXPECT_EQ(h.find("X-Trace"), "1");

    UpgradeRequest up;
    ASSERT_FALSE(checkUpgradeRequest(p->request(), up));
    EXPECT_EQ(up.origin, "https://example.com");
    EXPECT_EQ(up.protocols, (std::vector<std::string_view>{"chat.v2", "chat"}));
    ASSERT_EQ(up.extensions.size(), 3u);
    EXPECT_EQ(up.extensions[0].name, "x-test");
    EXPECT_EQ(up.extensions[1].name, "x-other");
    EXPECT_EQ(up.extensions[2].find("a")->value, "1");
}

// --- client: the response -----------------------------------------------------------

/** A 101 for `rfcKey` with the given fields after Upgrade, Connection and Accept. */
std::string response101(const std::vector<std::string>& more = {}) {
    std::string s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: " +
                    std::string(rfcAccept) + "\r\n";
    for (const auto& f : more) s += f + "\r\n";
    return s + "\r\n";
}

/** A response head from its lines. */
std::string responseHead(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += l + "\r\n";
    return s + "\r\n";
}

/** The client's side of a handshake fed `response` every way; the summary names what it chose. */
FeedResult clientReceives(const ClientRequest& request, std::string_view response) {
    return feedAllWays<ClientHandshake>(
        [&] { return ClientHandshake(request, {}, std::string(rfcKey)); }, response, [](ClientHandshake& hs) {
            std::string s = "protocol=" + std::string(hs.protocol());
            if (auto ext = hs.takeExtension()) s += " extension=" + static_cast<TestExtension&>(*ext).agreed;
            return s;
        });
}

ClientRequest offering() {
    auto r = basicRequest();
    r.protocols = {"chat", "superchat"};
    r.extensions = {clientFactory("x-test", "x-test; level=1")};
    return r;
}

TEST(ClientHandshake, AcceptsAPlain101) {
    auto r = clientReceives(basicRequest(), response101());
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.consumed, response101().size());
    EXPECT_EQ(r.summary, "protocol=");

    // Offers the server ignores are fine.
    r = clientReceives(offering(), response101());
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.summary, "protocol=");
}

TEST(ClientHandshake, SucceedsWithTheChosenProtocolAndExtension) {
    auto r = clientReceives(offering(), response101({"Sec-WebSocket-Protocol: superchat"}));
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.summary, "protocol=superchat");

    r = clientReceives(offering(), response101({"Sec-WebSocket-Protocol: chat",
                                                "Sec-WebSocket-Extensions: X-Test; level=\"2\""}));
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.summary, "protocol=chat extension=X-Test; level=2");
}

TEST(ClientHandshake, UpgradeAndConnectionTokensIgnoreCase) {
    for (auto [upgrade, connection] : std::vector<std::pair<std::string, std::string>>{
             {"WebSocket", "upgrade"},
             {"WEBSOCKET", "UPGRADE"},
             {"websocket", "keep-alive, Upgrade"},
             {"websocket", "Upgrade, close"},
         }) {
        auto text = responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: " + upgrade, "Connection: " + connection,
                                  "Sec-WebSocket-Accept: " + std::string(rfcAccept)});
        auto r = clientReceives(basicRequest(), text);
        EXPECT_EQ(r.status, ParseStatus::done) << upgrade << " / " << connection;
        EXPECT_FALSE(r.error) << upgrade << " / " << connection;
    }
}

TEST(ClientHandshake, FramesAfterThe101AreLeftUnconsumed) {
    const auto head = response101({"Sec-WebSocket-Protocol: chat"});
    const std::string frames = "\x81\x05Hello\x88\x02\x03\xe8";
    auto r = clientReceives(offering(), head + frames);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, head.size());
    EXPECT_EQ(r.summary, "protocol=chat");

    ClientHandshake hs(offering(), {}, std::string(rfcKey));
    const auto all = head + frames;
    std::size_t consumed = 0;
    ASSERT_EQ(hs.receive(asBytes(all), consumed), ParseStatus::done);
    EXPECT_EQ(all.substr(consumed), frames);
    EXPECT_EQ(hs.response().status, 101);
}

TEST(ClientHandshake, RefusesWhatRfc6455Section41Forbids) {
    struct Case {
        const char* what;
        std::string response;
        error expected;
    };
    const std::string accept = "Sec-WebSocket-Accept: " + std::string(rfcAccept);
    const std::vector<Case> cases = {
        {"200", responseHead({"HTTP/1.1 200 OK", "Upgrade: websocket", "Connection: Upgrade", accept}),
         error::badStatus},
        {"426", responseHead({"HTTP/1.1 426 Upgrade Required", "Upgrade: websocket", "Connection: Upgrade", accept}),
         error::badStatus},
        {"302", responseHead({"HTTP/1.1 302 Found", "Location: /elsewhere"}), error::badStatus},
        {"no Upgrade", responseHead({"HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", accept}),
         error::badUpgradeResponse},
        {"Upgrade h2c",
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: h2c", "Connection: Upgrade", accept}),
         error::badUpgradeResponse},
        {"Upgrade websockets",
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websockets", "Connection: Upgrade", accept}),
         error::badUpgradeResponse},
        {"two Upgrade fields",
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Upgrade: websocket",
                       "Connection: Upgrade", accept}),
         error::badUpgradeResponse},
        {"no Connection", responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", accept}),
         error::badConnectionResponse},
        {"Connection without upgrade",
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: keep-alive", accept}),
         error::badConnectionResponse},
        {"Connection upgraded",
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: upgraded", accept}),
         error::badConnectionResponse},
        {"no Accept", responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"}),
         error::noAccept},
        {"two Accepts", response101({accept}), error::noAccept},
        {"wrong Accept",
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                       "Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk="}),
         error::badAccept},
        {"Accept of the key itself",
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                       "Sec-WebSocket-Accept: " + std::string(rfcKey)}),
         error::badAccept},
        {"Accept in other case", // base64 is case-sensitive
         responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                       "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO="}),
         error::badAccept},
        {"unoffered protocol", response101({"Sec-WebSocket-Protocol: v9"}), error::unofferedProtocol},
        {"two protocols in one field", response101({"Sec-WebSocket-Protocol: chat, superchat"}),
         error::unofferedProtocol},
        {"two protocol fields", response101({"Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: chat"}),
         error::unofferedProtocol},
        {"unoffered extension", response101({"Sec-WebSocket-Extensions: permessage-deflate"}),
         error::unofferedExtension},
        {"bad extension syntax", response101({"Sec-WebSocket-Extensions: x-test; level="}),
         error::badExtensionResponse},
        {"bad extension syntax 2", response101({"Sec-WebSocket-Extensions: x-test level"}),
         error::badExtensionResponse},
        {"extension twice", response101({"Sec-WebSocket-Extensions: x-test, x-test"}), error::badExtensionResponse},
        {"extension params refused", response101({"Sec-WebSocket-Extensions: x-test; bad"}),
         error::badExtensionResponse},
        {"malformed head", responseHead({"HTTP/1.1 101 Switching Protocols", "Upgrade : websocket"}),
         error::httpMalformed},
    };
    for (const auto& c : cases) {
        auto r = clientReceives(offering(), c.response);
        EXPECT_EQ(r.status, ParseStatus::failed) << c.what;
        EXPECT_EQ(r.error, ec(c.expected)) << c.what << ": " << r.error.message();
        EXPECT_EQ(r.error, condition::handshakeFailed) << c.what;
        EXPECT_EQ(r.summary, "protocol=") << c.what; // nothing chosen, no extension handed out
    }
}

TEST(ClientHandshake, ProtocolWhenNoneWasOffered) {
    auto r = clientReceives(basicRequest(), response101({"Sec-WebSocket-Protocol: chat"}));
    EXPECT_EQ(r.status, ParseStatus::failed);
    EXPECT_EQ(r.error, ec(error::unofferedProtocol));
    r = clientReceives(basicRequest(), response101({"Sec-WebSocket-Extensions: x-test"}));
    EXPECT_EQ(r.error, ec(error::unofferedExtension));
}

TEST(ClientHandshake, StaysFailed) {
    ClientHandshake hs(basicRequest(), {}, std::string(rfcKey));
    std::size_t consumed = 0;
    const auto bad = responseHead({"HTTP/1.1 403 Forbidden"});
    ASSERT_EQ(hs.receive(asBytes(bad), consumed), ParseStatus::failed);
    EXPECT_EQ(hs.response().status, 403);
    EXPECT_EQ(hs.receive(asBytes(response101()), consumed), ParseStatus::failed);
    EXPECT_EQ(consumed, 0u);
    EXPECT_EQ(hs.error(), ec(error::badStatus));
}

// --- server: checking the request ---------------------------------------------------

// A request as Chromium sends it.
const std::string chromium = "GET /chat HTTP/1.1\r\n"
                             "Host: localhost:8080\r\n"
                             "Connection: Upgrade\r\n"
                             "Pragma: no-cache\r\n"
                             "Cache-Control: no-cache\r\n"
                             "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                             "Chrome/120.0.0.0 Safari/537.36\r\n"
                             "Upgrade: websocket\r\n"
                             "Origin: http://localhost:8080\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "Accept-Encoding: gzip, deflate, br\r\n"
                             "Accept-Language: en-US,en;q=0.9\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                             "\r\n";

/** The server's side fed `request` every way; the summary is the upgrade it found. */
FeedResult serverReceives(std::string_view request, http::Limits limits = {}) {
    return feedAllWays<ServerHandshake>([limits] { return ServerHandshake(limits); }, request,
                                        [](ServerHandshake& hs) {
                                            const auto& u = hs.upgrade();
                                            std::string s = "key=" + std::string(u.key) +
                                                            " origin=" + std::string(u.origin) + " protocols=";
                                            for (auto p : u.protocols) s += std::string(p) + "|";
                                            s += " extensions=";
                                            for (const auto& e : u.extensions) s += formatExtension(e) + "|";
                                            return s;
                                        });
}

TEST(ServerHandshake, AcceptsChromiumsRequest) {
    auto r = serverReceives(chromium);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.consumed, chromium.size());
    EXPECT_EQ(r.summary, "key=dGhlIHNhbXBsZSBub25jZQ== origin=http://localhost:8080 protocols= "
                         "extensions=permessage-deflate; client_max_window_bits|");

    UpgradeRequest up;
    auto p = parsedRequest(chromium);
    ASSERT_FALSE(checkUpgradeRequest(p->request(), up));
    ASSERT_EQ(up.extensions.size(), 1u);
    EXPECT_EQ(up.extensions[0].name, "permessage-deflate");
    ASSERT_EQ(up.extensions[0].params.size(), 1u);
    EXPECT_EQ(up.extensions[0].params[0].name, "client_max_window_bits");
    EXPECT_FALSE(up.extensions[0].params[0].value.has_value());
    EXPECT_TRUE(isUpgradeRequest(p->request()));
}

TEST(ServerHandshake, LeavesLaterBytesUnconsumed) {
    auto r = serverReceives(chromium + "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.consumed, chromium.size());
}

/** A valid upgrade request with `replace` lines swapped in by name (an empty value drops the field). */
std::string upgradeRequest(std::string startLine, const std::vector<std::pair<std::string, std::string>>& replace = {},
                           const std::vector<std::string>& extra = {}) {
    std::vector<std::pair<std::string, std::string>> fields = {
        {"Host", "server.example.com"},
        {"Upgrade", "websocket"},
        {"Connection", "Upgrade"},
        {"Sec-WebSocket-Key", std::string(rfcKey)},
        {"Sec-WebSocket-Version", "13"},
    };
    for (const auto& [name, value] : replace)
        for (auto& f : fields)
            if (f.first == name) f.second = value;
    std::string s = startLine + "\r\n";
    for (const auto& [name, value] : fields)
        if (!value.empty()) s += name + ": " + value + "\r\n";
    for (const auto& l : extra) s += l + "\r\n";
    return s + "\r\n";
}

TEST(ServerHandshake, AcceptsVariants) {
    for (const auto& text : {
             upgradeRequest("GET / HTTP/1.1"),
             upgradeRequest("GET / HTTP/1.1", {{"Connection", "keep-alive, Upgrade"}}), // Firefox
             upgradeRequest("GET / HTTP/1.1", {{"Connection", "keep-alive"}}, {"Connection: upgrade"}),
             upgradeRequest("GET / HTTP/1.1", {{"Upgrade", "WebSocket"}, {"Connection", "UPGRADE"}}),
             upgradeRequest("GET / HTTP/1.1", {{"Upgrade", "h2c, websocket"}}),
             upgradeRequest("GET /x?y HTTP/1.2"),
             upgradeRequest("GET / HTTP/1.1", {}, {"Sec-WebSocket-Protocol: chat, superchat"}),
         }) {
        auto r = serverReceives(text);
        EXPECT_EQ(r.status, ParseStatus::done) << text;
        EXPECT_FALSE(r.error) << text << r.error.message();
    }
    auto r = serverReceives(upgradeRequest("GET / HTTP/1.1", {},
                                           {"Sec-WebSocket-Protocol: chat, superchat", "Sec-WebSocket-Protocol: v2",
                                            "Sec-WebSocket-Extensions: a; x=1, b", "Sec-WebSocket-Extensions: c"}));
    EXPECT_EQ(r.summary, "key=dGhlIHNhbXBsZSBub25jZQ== origin= protocols=chat|superchat|v2| extensions=a; x=1|b|c|");
}

TEST(ServerHandshake, RefusalsAndTheirStatus) {
    struct Case {
        const char* what;
        std::string request;
        error expected;
        int status;
    };
    const std::string get = "GET /chat HTTP/1.1";
    const std::vector<Case> cases = {
        {"POST", upgradeRequest("POST /chat HTTP/1.1"), error::methodNotGet, 405},
        {"lowercase get", upgradeRequest("get /chat HTTP/1.1"), error::methodNotGet, 405},
        {"HTTP/1.0", upgradeRequest("GET /chat HTTP/1.0"), error::httpVersionTooOld, 400},
        {"HTTP/0.9", upgradeRequest("GET /chat HTTP/0.9"), error::httpVersionTooOld, 400},
        {"no Host", upgradeRequest(get, {{"Host", ""}}), error::noHost, 400},
        {"two Hosts", upgradeRequest(get, {}, {"Host: other.example.com"}), error::noHost, 400},
        {"no Upgrade", upgradeRequest(get, {{"Upgrade", ""}}), error::noUpgrade, 426},
        {"Upgrade h2c", upgradeRequest(get, {{"Upgrade", "h2c"}}), error::upgradeNotWebSocket, 400},
        {"no Connection", upgradeRequest(get, {{"Connection", ""}}), error::noConnectionUpgrade, 400},
        {"Connection keep-alive", upgradeRequest(get, {{"Connection", "keep-alive"}}), error::noConnectionUpgrade,
         400},
        {"Connection upgrades", upgradeRequest(get, {{"Connection", "upgrades"}}), error::noConnectionUpgrade, 400},
        {"no key", upgradeRequest(get, {{"Sec-WebSocket-Key", ""}}), error::noSecKey, 400},
        {"two keys", upgradeRequest(get, {}, {"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw=="}), error::noSecKey, 400},
        {"15-byte key", upgradeRequest(get, {{"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"}}), error::badSecKey, 400},
        {"17-byte key", upgradeRequest(get, {{"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA="}}), error::badSecKey,
         400},
        {"unpadded key", upgradeRequest(get, {{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ"}}), error::badSecKey, 400},
        {"key with !", upgradeRequest(get, {{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ!=="}}), error::badSecKey,
         400},
        {"key with = inside", upgradeRequest(get, {{"Sec-WebSocket-Key", "dGhlIHNh=XBsZSBub25jZQ=="}}),
         error::badSecKey, 400},
        {"key of 16 raw bytes", upgradeRequest(get, {{"Sec-WebSocket-Key", "0123456789abcdef"}}), error::badSecKey,
         400},
        {"no version", upgradeRequest(get, {{"Sec-WebSocket-Version", ""}}), error::noSecVersion, 426},
        {"version 8", upgradeRequest(get, {{"Sec-WebSocket-Version", "8"}}), error::badSecVersion, 426},
        {"version list", upgradeRequest(get, {{"Sec-WebSocket-Version", "13, 8"}}), error::badSecVersion, 426},
        {"two versions", upgradeRequest(get, {}, {"Sec-WebSocket-Version: 13"}), error::badSecVersion, 426},
        {"protocol not a token", upgradeRequest(get, {}, {"Sec-WebSocket-Protocol: chat, my chat"}),
         error::badProtocolsHeader, 400},
        {"bad extensions", upgradeRequest(get, {}, {"Sec-WebSocket-Extensions: permessage-deflate;"}),
         error::badExtensionsHeader, 400},
        {"malformed head", upgradeRequest(get, {}, {"X-Bad : y"}), error::httpMalformed, 400},
        {"too many fields", upgradeRequest(get, {}, std::vector<std::string>(60, "X: y")), error::tooManyHeaders, 431},
    };
    for (const auto& c : cases) {
        auto r = serverReceives(c.request);
        EXPECT_EQ(r.status, ParseStatus::failed) << c.what;
        EXPECT_EQ(r.error, ec(c.expected)) << c.what << ": " << r.error.message();
        EXPECT_EQ(httpStatusFor(c.expected), c.status) << c.what;
        EXPECT_EQ(r.error, condition::handshakeFailed) << c.what;

        // The refusal the server sends carries that status.
        const auto answer = rejectResponse(r.error);
        auto p = parsedResponse(answer.substr(0, answer.find("\r\n\r\n") + 4));
        EXPECT_EQ(p->response().status, c.status) << c.what;
    }
}

TEST(ServerHandshake, HeadTooLargeIs431) {
    http::Limits limits;
    limits.maxHeadBytes = 256;
    auto r = serverReceives(upgradeRequest("GET / HTTP/1.1", {}, {"X-Pad: " + std::string(200, 'p')}), limits);
    EXPECT_EQ(r.status, ParseStatus::failed);
    EXPECT_EQ(r.error, ec(error::headersTooLarge));
    const auto answer = rejectResponse(r.error);
    EXPECT_EQ(parsedResponse(answer.substr(0, answer.find("\r\n\r\n") + 4))->response().status, 431);
}

TEST(ServerHandshake, StaysFailed) {
    ServerHandshake hs;
    std::size_t consumed = 0;
    const auto post = upgradeRequest("POST / HTTP/1.1");
    ASSERT_EQ(hs.receive(asBytes(post), consumed), ParseStatus::failed);
    EXPECT_EQ(consumed, post.size());
    EXPECT_EQ(hs.request().method, "POST");
    EXPECT_EQ(hs.receive(asBytes(chromium), consumed), ParseStatus::failed);
    EXPECT_EQ(consumed, 0u);
    EXPECT_EQ(hs.error(), ec(error::methodNotGet));
}

TEST(ServerHandshake, IsUpgradeRequest) {
    EXPECT_TRUE(isUpgradeRequest(parsedRequest(upgradeRequest("GET / HTTP/1.1"))->request()));
    EXPECT_TRUE(isUpgradeRequest(parsedRequest(upgradeRequest("GET / HTTP/1.1", {{"Upgrade", "WebSocket"}}))->request()));
    EXPECT_FALSE(isUpgradeRequest(parsedRequest("GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n")->request()));
    // The header's contract: an Upgrade header naming websocket. A client asking for h2c
    // (curl --http2 on http://) is a plain HTTP request the server may answer normally
    // (RFC 9110 §7.8: a server MAY ignore Upgrade).
    EXPECT_FALSE(isUpgradeRequest(
        parsedRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                      "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            ->request()));
}

// --- server: the answers ------------------------------------------------------------

/** A response's head parsed, and its body. */
struct Answer {
    std::unique_ptr<http::HeadParser> head;
    std::string body;
};
Answer splitAnswer(const std::string& text) {
    const auto end = text.find("\r\n\r\n");
    EXPECT_NE(end, std::string::npos);
    return {parsedResponse(text.substr(0, end + 4)), text.substr(end + 4)};
}

TEST(ServerHandshake, EveryRefusalIsWellFormed) {
    for (int e = static_cast<int>(error::httpMalformed); e <= static_cast<int>(error::badProtocolsHeader); ++e) {
        const auto err = static_cast<error>(e);
        const auto text = rejectResponse(ec(err));
        auto a = splitAnswer(text);
        const auto& res = a.head->response();
        const auto& h = res.headers;
        EXPECT_EQ(res.status, httpStatusFor(err)) << e;
        EXPECT_EQ(res.reason, http::reasonPhrase(httpStatusFor(err))) << e;
        EXPECT_EQ(h.count("Content-Length"), 1u) << e;
        EXPECT_EQ(h.find("Content-Length"), std::to_string(a.body.size())) << e;
        EXPECT_EQ(a.body, std::string(describe(err)) + "\n") << e;
        EXPECT_EQ(h.count("Connection"), 1u) << e;
        EXPECT_TRUE(h.hasToken("Connection", "close")) << e;
        EXPECT_EQ(h.find("Content-Type"), "text/plain; charset=utf-8") << e;
        if (res.status == 426) {
            // RFC 9110 §15.5.22: a 426 MUST carry Upgrade, naming the protocol required.
            EXPECT_TRUE(h.hasToken("Upgrade", "websocket")) << e;
        }
        if (h.count("Upgrade") != 0) {
            // RFC 9110 §7.8: whoever sends Upgrade MUST also send the upgrade connection option.
            EXPECT_TRUE(h.hasToken("Connection", "upgrade")) << e;
        }
    }
}

TEST(ServerHandshake, RefusalFieldsClientsNeed) {
    auto noUpgrade = splitAnswer(rejectResponse(ec(error::noUpgrade)));
    EXPECT_EQ(noUpgrade.head->response().status, 426);
    EXPECT_EQ(noUpgrade.head->response().headers.find("Upgrade"), "websocket");

    for (auto e : {error::noSecVersion, error::badSecVersion}) {
        auto a = splitAnswer(rejectResponse(ec(e)));
        EXPECT_EQ(a.head->response().status, 426);
        // RFC 6455 §4.2.2 item 4 and §4.4: tell the client which version to use.
        EXPECT_EQ(a.head->response().headers.find("Sec-WebSocket-Version"), "13");
    }
    auto post = splitAnswer(rejectResponse(ec(error::methodNotGet)));
    EXPECT_EQ(post.head->response().status, 405);
    EXPECT_EQ(post.head->response().headers.find("Allow"), "GET"); // RFC 9110 §15.5.6: a 405 MUST send Allow

    for (auto e : {error::httpMalformed, error::noHost, error::badSecKey})
        EXPECT_EQ(splitAnswer(rejectResponse(ec(e))).head->response().headers.count("Sec-WebSocket-Version"), 0u);

    // An error from another category is a 400 that still names the cause.
    auto other = splitAnswer(rejectResponse(std::make_error_code(std::errc::invalid_argument)));
    EXPECT_EQ(other.head->response().status, 400);
    EXPECT_EQ(other.body, std::make_error_code(std::errc::invalid_argument).message() + "\n");
}

TEST(ServerHandshake, RejectResponseWithCallerFields) {
    const auto text = rejectResponse(403, "origin not allowed", {{"X-Why", "origin"}});
    EXPECT_EQ(text, "HTTP/1.1 403 Forbidden\r\n"
                    "X-Why: origin\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n"
                    "Connection: close\r\n"
                    "Content-Length: 19\r\n"
                    "\r\n"
                    "origin not allowed\n");
}

TEST(ServerHandshake, AcceptResponse) {
    const auto plain = acceptResponse(rfcKey);
    EXPECT_EQ(plain, "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                     "\r\n");

    const auto full = acceptResponse(rfcKey, "chat", "x-test; level=1", {{"Set-Cookie", "a=b"}});
    auto p = parsedResponse(full);
    const auto& h = p->response().headers;
    EXPECT_EQ(p->response().status, 101);
    EXPECT_EQ(h.find("Sec-WebSocket-Accept"), rfcAccept);
    EXPECT_EQ(h.find("Sec-WebSocket-Protocol"), "chat");
    EXPECT_EQ(h.find("Sec-WebSocket-Extensions"), "x-test; level=1");
    EXPECT_EQ(h.find("Set-Cookie"), "a=b");
    EXPECT_EQ(h.count("Content-Length"), 0u); // RFC 9110 §8.6: not in a 1xx

    // Our own client takes our own server's answer, at every split.
    auto r = clientReceives(offering(), full);
    EXPECT_EQ(r.status, ParseStatus::done);
    EXPECT_EQ(r.summary, "protocol=chat extension=x-test; level=1");
}

TEST(ServerHandshake, RoundTripWithTheClient) {
    auto req = offering();
    req.origin = "https://example.com";
    ClientHandshake client(req);

    ServerHandshake server;
    std::size_t consumed = 0;
    ASSERT_EQ(server.receive(asBytes(client.request()), consumed), ParseStatus::done);
    const auto& up = server.upgrade();
    EXPECT_EQ(up.key, client.key());
    ASSERT_EQ(up.protocols.size(), 2u);

    auto negotiated = negotiateExtensions(up.extensions, {serverFactory("x-test", true)});
    EXPECT_EQ(negotiated.header, "x-test; level=1");
    auto answer = acceptResponse(up.key, up.protocols[1], negotiated.header);
    ASSERT_EQ(client.receive(asBytes(answer), consumed), ParseStatus::done) << client.error().message();
    EXPECT_EQ(client.protocol(), "superchat");
    auto ext = client.takeExtension();
    ASSERT_TRUE(ext);
    EXPECT_EQ(ext->name(), "x-test");
}

} // namespace
} // namespace tongdao::test
