#include "tongdao/protocol/handshake.hpp"

#include "crypto.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstdlib>

namespace tongdao::protocol {
namespace {

constexpr std::string_view acceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void appendField(std::string& out, std::string_view name, std::string_view value) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
}

} // namespace

std::string computeAcceptKey(std::string_view key) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
                    EVP_DigestUpdate(ctx, acceptGuid.data(), acceptGuid.size()) == 1 &&
                    EVP_DigestFinal_ex(ctx, digest.data(), &size) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) std::abort(); // SHA-1 is always in libcrypto's default provider
    return detail::base64Encode({digest.data(), size});
}

std::string generateKey() {
    std::array<unsigned char, 16> nonce{};
    detail::randomBytes(nonce);
    return detail::base64Encode(nonce);
}

// --- client -------------------------------------------------------------------------

ClientHandshake::ClientHandshake(ClientRequest request, http::Limits limits, std::string key)
    : options_(std::move(request)), key_(key.empty() ? generateKey() : std::move(key)), parser_(limits) {
    // RFC 6455 §4.1: the request's required fields, then the optional ones.
    auto& r = requestText_;
    r.reserve(256);
    r += "GET ";
    r += options_.target.empty() ? "/" : options_.target;
    r += " HTTP/1.1\r\n";
    appendField(r, "Host", options_.host);
    appendField(r, "Upgrade", "websocket");
    appendField(r, "Connection", "Upgrade");
    appendField(r, "Sec-WebSocket-Key", key_);
    appendField(r, "Sec-WebSocket-Version", "13");
    if (!options_.origin.empty()) appendField(r, "Origin", options_.origin);
    if (!options_.protocols.empty()) {
        std::string list;
        for (const auto& p : options_.protocols) {
            if (!list.empty()) list += ", ";
            list += p;
        }
        appendField(r, "Sec-WebSocket-Protocol", list);
    }
    if (!options_.extensions.empty()) {
        std::string list;
        for (const auto& e : options_.extensions) {
            if (!list.empty()) list += ", ";
            list += e->offer();
        }
        appendField(r, "Sec-WebSocket-Extensions", list);
    }
    for (const auto& [name, value] : options_.headers) appendField(r, name, value);
    r += "\r\n";
}

http::ParseStatus ClientHandshake::receive(Bytes in, std::size_t& consumed) {
    if (error_) {
        consumed = 0;
        return http::ParseStatus::failed;
    }
    const auto status = parser_.feedResponse(in, consumed);
    if (status == http::ParseStatus::failed) error_ = parser_.error();
    if (status != http::ParseStatus::done) return status;
    error_ = check();
    return error_ ? http::ParseStatus::failed : http::ParseStatus::done;
}

std::error_code ClientHandshake::check() {
    const auto& res = parser_.response();
    const auto& h = res.headers;
    // RFC 6455 §4.1, the client's checks of the server's handshake, in order.
    if (res.status != 101) return error::badStatus;
    if (h.count("Upgrade") != 1 || !h.hasToken("Upgrade", "websocket")) return error::badUpgradeResponse;
    if (!h.hasToken("Connection", "upgrade")) return error::badConnectionResponse;
    const auto accept = h.find("Sec-WebSocket-Accept");
    if (!accept || h.count("Sec-WebSocket-Accept") != 1) return error::noAccept;
    if (*accept != computeAcceptKey(key_)) return error::badAccept;

    // A sub-protocol only from those offered, and at most one.
    const auto protocols = h.list("Sec-WebSocket-Protocol");
    if (protocols.size() > 1) return error::unofferedProtocol;
    if (protocols.size() == 1) {
        bool offered = false;
        for (const auto& p : options_.protocols) offered = offered || p == protocols[0];
        if (!offered) return error::unofferedProtocol;
        protocol_ = protocols[0];
    }

    // An extension only from those offered, each at most once; one extension owns RSV1.
    std::vector<ExtensionItem> items;
    for (const auto& f : h)
        if (http::iequals(f.name, "Sec-WebSocket-Extensions") && !parseExtensions(f.value, items))
            return error::badExtensionResponse;
    if (items.size() > 1) return error::badExtensionResponse;
    for (const auto& item : items) {
        const ClientExtensionFactory* factory = nullptr;
        for (const auto& f : options_.extensions)
            if (http::iequals(f->name(), item.name)) factory = f.get();
        if (!factory) return error::unofferedExtension;
        std::error_code ec;
        extension_ = factory->accept(item, ec);
        if (ec || !extension_) return ec ? ec : make_error_code(error::badExtensionResponse);
    }
    return {};
}

// --- server -------------------------------------------------------------------------

bool isUpgradeRequest(const http::Request& request) noexcept {
    // RFC 9110 §7.8: a server MAY ignore an Upgrade it does not take (h2c, for one).
    return request.headers.hasToken("Upgrade", "websocket");
}

std::error_code checkUpgradeRequest(const http::Request& req, UpgradeRequest& out) {
    const auto& h = req.headers;
    // RFC 6455 §4.2.1, items 1-6, in the order a client most usefully learns of them.
    if (req.method != "GET") return error::methodNotGet;
    if (req.versionMajor < 1 || (req.versionMajor == 1 && req.versionMinor < 1)) return error::httpVersionTooOld;
    if (h.count("Host") != 1) return error::noHost;
    if (!h.find("Upgrade")) return error::noUpgrade;
    if (!h.hasToken("Upgrade", "websocket")) return error::upgradeNotWebSocket;
    if (!h.hasToken("Connection", "upgrade")) return error::noConnectionUpgrade;
    const auto key = h.find("Sec-WebSocket-Key");
    if (!key || h.count("Sec-WebSocket-Key") != 1) return error::noSecKey;
    if (detail::base64DecodedSize(*key) != 16) return error::badSecKey;
    const auto version = h.find("Sec-WebSocket-Version");
    if (!version) return error::noSecVersion;
    if (*version != "13" || h.count("Sec-WebSocket-Version") != 1) return error::badSecVersion;

    out.key = *key;
    out.protocols = h.list("Sec-WebSocket-Protocol");
    for (auto p : out.protocols)
        if (!http::isToken(p)) return error::badProtocolsHeader;
    out.extensions.clear();
    for (const auto& f : h)
        if (http::iequals(f.name, "Sec-WebSocket-Extensions") && !parseExtensions(f.value, out.extensions))
            return error::badExtensionsHeader;
    out.origin = h.find("Origin").value_or(std::string_view{});
    return {};
}

NegotiatedExtension negotiateExtensions(const std::vector<ExtensionItem>& offers,
                                        const std::vector<std::shared_ptr<const ServerExtensionFactory>>& factories) {
    NegotiatedExtension result;
    for (const auto& factory : factories) {
        std::vector<const ExtensionItem*> mine;
        for (const auto& offer : offers)
            if (http::iequals(offer.name, factory->name())) mine.push_back(&offer);
        if (mine.empty()) continue;
        if (auto agreed = factory->negotiate(mine)) {
            result.header = std::move(agreed->response);
            result.extension = std::move(agreed->extension);
            break;
        }
    }
    return result;
}

std::string acceptResponse(std::string_view key, std::string_view protocol, std::string_view extensions,
                           const http::HeaderFields& extra) {
    std::string r;
    r.reserve(160);
    r += "HTTP/1.1 101 Switching Protocols\r\n";
    appendField(r, "Upgrade", "websocket");
    appendField(r, "Connection", "Upgrade");
    appendField(r, "Sec-WebSocket-Accept", computeAcceptKey(key));
    if (!protocol.empty()) appendField(r, "Sec-WebSocket-Protocol", protocol);
    if (!extensions.empty()) appendField(r, "Sec-WebSocket-Extensions", extensions);
    for (const auto& [name, value] : extra) appendField(r, name, value);
    r += "\r\n";
    return r;
}

std::string rejectResponse(int status, std::string_view reason, const http::HeaderFields& extra) {
    http::HeaderFields fields = extra;
    fields.emplace_back("Content-Type", "text/plain; charset=utf-8");
    // RFC 9110 §7.8: whoever sends Upgrade also sends the upgrade connection option.
    bool upgrade = false;
    for (const auto& f : extra) upgrade = upgrade || http::iequals(f.first, "Upgrade");
    fields.emplace_back("Connection", upgrade ? "Upgrade, close" : "close");
    std::string body(reason);
    body += '\n';
    return http::formatResponse(status, fields, body);
}

std::string rejectResponse(std::error_code ec) {
    int status = 400;
    std::string reason = ec.message();
    http::HeaderFields extra;
    if (ec.category() == errorCategory()) {
        const auto e = static_cast<error>(ec.value());
        if (httpStatusFor(e) != 0) status = httpStatusFor(e);
        if (e == error::noSecVersion || e == error::badSecVersion) extra.emplace_back("Sec-WebSocket-Version", "13");
        // RFC 9110 §15.5.22: a 426 names the protocol required in Upgrade.
        if (httpStatusFor(e) == 426) extra.emplace_back("Upgrade", "websocket");
        if (e == error::methodNotGet) extra.emplace_back("Allow", "GET");
    }
    return rejectResponse(status, reason, extra);
}

http::ParseStatus ServerHandshake::receive(Bytes in, std::size_t& consumed) {
    if (error_) {
        consumed = 0;
        return http::ParseStatus::failed;
    }
    const auto status = parser_.feedRequest(in, consumed);
    if (status == http::ParseStatus::failed) error_ = parser_.error();
    if (status != http::ParseStatus::done) return status;
    error_ = checkUpgradeRequest(parser_.request(), upgrade_);
    return error_ ? http::ParseStatus::failed : http::ParseStatus::done;
}

} // namespace tongdao::protocol
