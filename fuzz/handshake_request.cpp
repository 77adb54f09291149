// libFuzzer target: the server's side of the opening handshake, `ServerHandshake::receive`.
//
//   byte 0       bit 0: small limits (512-byte head, 8 header fields: reaches 431)
//   then pieces  one byte n, then n bytes, fed as one transport read (fewer at the end)
//
// Invariants checked (a failure aborts, and libFuzzer keeps the input):
//   - `consumed` never exceeds the read; while more is needed, the whole read is consumed;
//   - on done: the request is an upgrade request; every extension offer formats and
//     parses back to itself; the 101 built from the request's key, its first
//     sub-protocol and the extension a stub factory ("x-test") negotiates is accepted
//     by a ClientHandshake that sent that key and offer (RFC 6455 §4.2.2 and §4.1 agree);
//   - on failed: the error is a handshake failure, and `rejectResponse(error())` is a
//     well-formed HTTP response: "HTTP/1.1 4xx ...", a head that parses back, a
//     Content-Length equal to its body; later input is refused without being consumed.

#include "tongdao/protocol/handshake.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace {

using namespace tongdao::protocol;

volatile std::size_t fieldSink = 0; // lengths of what was parsed land here

void check(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "handshake_request: invariant broken: %s\n", what);
    std::abort();
}

bool isDigit(char c) noexcept { return c >= '0' && c <= '9'; }

/** Negotiated and never run: the connection is not exercised here. */
class StubExtension final : public Extension {
public:
    std::string_view name() const noexcept override { return "x-test"; }
    std::error_code decode(Bytes in, bool, ByteBuffer& out, std::size_t) override {
        out.append(in);
        return {};
    }
    std::optional<Bytes> encode(Bytes, MessageKind) override { return std::nullopt; }
};

/** Accepts the first "x-test" offer without a "reject" parameter, echoing its parameters. */
class StubServerFactory final : public ServerExtensionFactory {
public:
    std::string_view name() const noexcept override { return "x-test"; }
    std::optional<Agreement> negotiate(const std::vector<const ExtensionItem*>& offers) const override {
        for (const ExtensionItem* offer : offers) {
            if (offer->find("reject")) continue;
            ExtensionItem response = *offer;
            response.name = "x-test";
            return Agreement{formatExtension(response), std::make_unique<StubExtension>()};
        }
        return std::nullopt;
    }
};

/** The client's side of the same stub: offers "x-test", accepts any answer without "reject". */
class StubClientFactory final : public ClientExtensionFactory {
public:
    std::string_view name() const noexcept override { return "x-test"; }
    std::string offer() const override { return "x-test"; }
    std::unique_ptr<Extension> accept(const ExtensionItem& response, std::error_code& ec) const override {
        if (response.find("reject")) {
            ec = tongdao::error::badExtensionResponse;
            return nullptr;
        }
        return std::make_unique<StubExtension>();
    }
};

bool sameItem(const ExtensionItem& a, const ExtensionItem& b) {
    if (a.name != b.name || a.params.size() != b.params.size()) return false;
    for (std::size_t i = 0; i < a.params.size(); ++i)
        if (a.params[i].name != b.params[i].name || a.params[i].value != b.params[i].value) return false;
    return true;
}

void touchRequest(const http::Request& r) {
    std::size_t n = r.method.size() + r.target.size() + r.path().size() + r.query().size();
    for (const auto& f : r.headers) n += f.name.size() + f.value.size();
    fieldSink = n;
}

void checkAccepted(const ServerHandshake& hs) {
    check(!hs.error(), "done with an error set");
    touchRequest(hs.request());
    check(isUpgradeRequest(hs.request()), "an accepted request is not an upgrade request");
    const UpgradeRequest& up = hs.upgrade();
    check(!up.key.empty(), "done without a key");
    for (auto p : up.protocols) check(http::isToken(p), "a sub-protocol that is not a token");

    // RFC 6455 §9.1: what formatExtension() writes, parseExtensions() reads back the same.
    for (const auto& offer : up.extensions) {
        std::vector<ExtensionItem> again;
        check(parseExtensions(formatExtension(offer), again), "a formatted offer does not parse");
        check(again.size() == 1 && sameItem(again.front(), offer), "a formatted offer parses differently");
    }
    const std::vector<std::shared_ptr<const ServerExtensionFactory>> factories{std::make_shared<StubServerFactory>()};
    const NegotiatedExtension negotiated = negotiateExtensions(up.extensions, factories);
    check(negotiated.header.empty() == !negotiated.extension, "an extension header without an extension");

    const std::string_view protocol = up.protocols.empty() ? std::string_view{} : up.protocols.front();
    const std::string res = acceptResponse(up.key, protocol, negotiated.header);
    check(res.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "101 status line");
    check(res.ends_with("\r\n\r\n"), "101 head not terminated");

    // The client that sent this key and these offers must accept the answer.
    ClientRequest req;
    req.host = "example.com";
    if (!protocol.empty()) req.protocols.emplace_back(protocol);
    req.extensions.push_back(std::make_shared<StubClientFactory>());
    // Roomy limits: a response may be a little longer than the request it answers.
    ClientHandshake client(std::move(req), http::Limits{1 << 20, 1024}, std::string(up.key));
    std::size_t used = 0;
    const auto status = client.receive(asBytes(res), used);
    if (status != http::ParseStatus::done)
        std::fprintf(stderr, "handshake_request: client refuses: %s\n", client.error().message().c_str());
    check(status == http::ParseStatus::done, "our own 101 is refused by our client");
    check(used == res.size(), "the 101 head is not consumed whole");
    check(client.protocol() == protocol, "the client sees another sub-protocol");
    check(static_cast<bool>(client.takeExtension()) == static_cast<bool>(negotiated.extension),
          "the client and the server disagree on the extension");
}

void checkRejected(ServerHandshake& hs) {
    const std::error_code ec = hs.error();
    check(static_cast<bool>(ec), "failed without an error");
    check(ec == tongdao::condition::handshakeFailed, "a failure that is not a handshake failure");
    const std::string res = rejectResponse(ec);

    // "HTTP/1.1 4xx " then a reason phrase.
    check(res.size() > 13 && res.starts_with("HTTP/1.1 "), "refusal does not start with HTTP/1.1");
    check(res[9] == '4' && isDigit(res[10]) && isDigit(res[11]) && res[12] == ' ', "refusal status is not 4xx");

    http::HeadParser parser;
    std::size_t used = 0;
    check(parser.feedResponse(asBytes(res), used) == http::ParseStatus::done, "refusal head does not parse");
    const http::Response& r = parser.response();
    check(r.status >= 400 && r.status <= 499, "refusal status out of 4xx");
    const int expected = tongdao::httpStatusFor(static_cast<tongdao::error>(ec.value()));
    check(r.status == (expected != 0 ? expected : 400), "refusal status is not the error's");
    const auto length = r.headers.find("Content-Length");
    check(length.has_value() && r.headers.count("Content-Length") == 1, "refusal without one Content-Length");
    std::size_t bodySize = 0;
    const auto [end, err] = std::from_chars(length->data(), length->data() + length->size(), bodySize);
    check(err == std::errc{} && end == length->data() + length->size(), "Content-Length is not a number");
    check(bodySize == res.size() - used, "Content-Length does not match the body");
    check(r.headers.hasToken("Connection", "close"), "refusal without Connection: close");
    if (r.status == 426) {
        // RFC 6455 §4.4 and RFC 9110 §15.5.22: tell the client what to upgrade to.
        check(r.headers.find("Sec-WebSocket-Version").has_value() || r.headers.find("Upgrade").has_value(),
              "426 without Sec-WebSocket-Version or Upgrade");
    }

    // A failed handshake stays failed and takes nothing more.
    std::size_t more = 1;
    check(hs.receive(asBytes("GET / HTTP/1.1\r\n"), more) == http::ParseStatus::failed, "failed handshake revived");
    check(more == 0, "failed handshake consumed input");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    http::Limits limits;
    if (data[0] & 0x01) {
        limits.maxHeadBytes = 512;
        limits.maxHeaders = 8;
    }
    ServerHandshake hs(limits);
    std::size_t pos = 1;
    auto status = http::ParseStatus::needMore;
    while (pos < size && status == http::ParseStatus::needMore) {
        const std::size_t want = data[pos++];
        const std::size_t n = std::min(want, size - pos);
        // A heap copy of exactly the read, so reads past it are caught.
        std::vector<std::byte> read(n);
        if (n != 0) std::memcpy(read.data(), data + pos, n);
        pos += n;
        std::size_t consumed = n + 1;
        status = hs.receive(read, consumed);
        check(consumed <= n, "consumed more than the read");
        if (status == http::ParseStatus::needMore) check(consumed == n, "needs more but left bytes unconsumed");
    }
    if (status == http::ParseStatus::done) checkAccepted(hs);
    if (status == http::ParseStatus::failed) checkRejected(hs);
    return 0;
}
