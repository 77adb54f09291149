// libFuzzer target: the client's side of the opening handshake, `ClientHandshake::receive`.
//
// The request is fixed: key "dGhlIHNhbXBsZSBub25jZQ==" (RFC 6455 §1.3's, whose accept
// value is "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), sub-protocols "chat" and "superchat".
//
//   byte 0       bit 0: small limits (512-byte head, 8 header fields);
//                bit 1: also offer the extension "x-test" (a stub that refuses a
//                "reject" parameter), so the Sec-WebSocket-Extensions checks are reached
//   then pieces  one byte n, then n bytes, fed as one transport read (fewer at the end)
//
// Invariants checked (a failure aborts, and libFuzzer keeps the input):
//   - `consumed` never exceeds the read; while more is needed, the whole read is consumed;
//   - on done: status 101, the sub-protocol is empty or one offered, an extension only
//     if one was offered;
//   - on failed: the error is a handshake failure; later input is refused unconsumed.

#include "tongdao/protocol/handshake.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace tongdao::protocol;

constexpr std::string_view fixedKey = "dGhlIHNhbXBsZSBub25jZQ==";

volatile std::size_t fieldSink = 0; // lengths of what was parsed land here

void check(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "handshake_response: invariant broken: %s\n", what);
    std::abort();
}

/** Negotiated and never used: the connection is not run here. */
class StubExtension final : public Extension {
public:
    std::string_view name() const noexcept override { return "x-test"; }
    std::error_code decode(Bytes in, bool, ByteBuffer& out, std::size_t) override {
        out.append(in);
        return {};
    }
    std::optional<Bytes> encode(Bytes, MessageKind) override { return std::nullopt; }
};

class StubFactory final : public ClientExtensionFactory {
public:
    std::string_view name() const noexcept override { return "x-test"; }
    std::string offer() const override { return "x-test; level=1"; }
    std::unique_ptr<Extension> accept(const ExtensionItem& response, std::error_code& ec) const override {
        if (response.find("reject")) {
            ec = tongdao::error::badExtensionResponse;
            return nullptr;
        }
        return std::make_unique<StubExtension>();
    }
};

ClientRequest makeRequest(bool offerExtension) {
    ClientRequest req;
    req.host = "server.example.com";
    req.target = "/chat";
    req.origin = "http://example.com";
    req.protocols = {"chat", "superchat"};
    if (offerExtension) req.extensions.push_back(std::make_shared<StubFactory>());
    return req;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    http::Limits limits;
    if (data[0] & 0x01) {
        limits.maxHeadBytes = 512;
        limits.maxHeaders = 8;
    }
    const bool offerExtension = (data[0] & 0x02) != 0;
    ClientHandshake hs(makeRequest(offerExtension), limits, std::string(fixedKey));
    check(hs.key() == fixedKey, "the given key is not used");
    check(hs.request().find("\r\nSec-WebSocket-Protocol: chat, superchat\r\n") != std::string::npos,
          "the request does not offer the sub-protocols");

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

    if (status == http::ParseStatus::done) {
        check(!hs.error(), "done with an error set");
        const http::Response& r = hs.response();
        check(r.status == 101, "done without status 101");
        std::size_t n = r.reason.size();
        for (const auto& f : r.headers) n += f.name.size() + f.value.size();
        fieldSink = n;
        const auto p = hs.protocol();
        check(p.empty() || p == "chat" || p == "superchat", "a sub-protocol that was not offered");
        const auto ext = hs.takeExtension();
        check(!ext || (offerExtension && ext->name() == "x-test"), "an extension that was not offered");
    } else if (status == http::ParseStatus::failed) {
        check(static_cast<bool>(hs.error()), "failed without an error");
        check(hs.error() == tongdao::condition::handshakeFailed, "a failure that is not a handshake failure");
        std::size_t more = 1;
        check(hs.receive(asBytes("HTTP/1.1 101 OK\r\n\r\n"), more) == http::ParseStatus::failed,
              "failed handshake revived");
        check(more == 0, "failed handshake consumed input");
    }
    return 0;
}
