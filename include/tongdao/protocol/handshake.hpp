#pragma once
/**
 * @file
 * The opening handshake, RFC 6455 §4, in both roles: building and checking the HTTP
 * Upgrade request and the 101 response. Sans-I/O like the rest of protocol/: bytes in,
 * bytes out; bytes after the head are left for the frame engine.
 */

#include "tongdao/protocol/extension.hpp"
#include "tongdao/protocol/http.hpp"

#include <memory>
#include <string>
#include <vector>

namespace tongdao::protocol {

/** RFC 6455 §1.3: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). */
std::string computeAcceptKey(std::string_view key);

/** A fresh Sec-WebSocket-Key: 16 bytes from libcrypto's CSPRNG, in base64 (RFC 6455 §4.1). */
std::string generateKey();

// --- client -------------------------------------------------------------------------

/** What a client puts in its opening handshake. */
struct ClientRequest {
    std::string host;                   ///< Host value, with ":port" unless it is the default
    std::string target = "/";           ///< path and query
    std::string origin;                 ///< Origin, if not empty
    std::vector<std::string> protocols; ///< Sec-WebSocket-Protocol offers, in preference order
    http::HeaderFields headers;         ///< further fields (the caller keeps them free of CR/LF)
    std::vector<std::shared_ptr<const ClientExtensionFactory>> extensions; ///< offers, in order
};

/**
 * The client side: the request to send and the check of the response (RFC 6455 §4.1):
 * status 101, `Upgrade: websocket`, a `Connection` with the upgrade token, the right
 * `Sec-WebSocket-Accept`, a sub-protocol only from those offered, an extension only
 * from those offered.
 */
class ClientHandshake {
public:
    /** `key` is for tests; by default a fresh random key is generated. */
    explicit ClientHandshake(ClientRequest request, http::Limits limits = {}, std::string key = {});

    /** The request head, ready to send. */
    const std::string& request() const noexcept { return requestText_; }
    const std::string& key() const noexcept { return key_; }

    /**
     * Feeds response bytes; `consumed` tells how many were part of the head. On `done` the
     * handshake succeeded and the rest of `in` is frames; on `failed`, `error()` says why.
     */
    http::ParseStatus receive(Bytes in, std::size_t& consumed);

    std::error_code error() const noexcept { return error_; }
    const http::Response& response() const noexcept { return parser_.response(); }
    /** The sub-protocol the server chose, empty if none. */
    std::string_view protocol() const noexcept { return protocol_; }
    /** The negotiated extension, if any; ownership passes to the caller. */
    std::unique_ptr<Extension> takeExtension() noexcept { return std::move(extension_); }

private:
    std::error_code check();

    ClientRequest options_;
    std::string key_;
    std::string requestText_;
    http::HeadParser parser_;
    std::error_code error_;
    std::string_view protocol_;
    std::unique_ptr<Extension> extension_;
};

// --- server -------------------------------------------------------------------------

/** The WebSocket part of a valid upgrade request; views into the request. */
struct UpgradeRequest {
    std::string_view key;
    std::vector<std::string_view> protocols; ///< Sec-WebSocket-Protocol, in the client's order
    std::vector<ExtensionItem> extensions;   ///< Sec-WebSocket-Extensions offers, in order
    std::string_view origin;                 ///< empty if none was sent
};

/**
 * RFC 6455 §4.2.1: checks a parsed request (GET, HTTP/1.1 or later, one Host, Upgrade
 * websocket, Connection upgrade, one 16-byte base64 key, version 13) and fills `out`.
 * The error maps to a status with `httpStatusFor()`.
 */
std::error_code checkUpgradeRequest(const http::Request& request, UpgradeRequest& out);

/** True if the request asks for a WebSocket: its Upgrade names websocket (h2c and others are ignored). */
bool isUpgradeRequest(const http::Request& request) noexcept;

/** The result of choosing among extension offers. */
struct NegotiatedExtension {
    std::string header;                   ///< the Sec-WebSocket-Extensions value; empty if none
    std::unique_ptr<Extension> extension;
};

/**
 * Offers each factory the offers of its name; the first factory that agrees wins (one
 * extension owns RSV1 at a time).
 */
NegotiatedExtension negotiateExtensions(const std::vector<ExtensionItem>& offers,
                                        const std::vector<std::shared_ptr<const ServerExtensionFactory>>& factories);

/**
 * The 101 response (RFC 6455 §4.2.2). `protocol` must be one of those offered, or empty;
 * `extensions` is a Sec-WebSocket-Extensions value, or empty.
 */
std::string acceptResponse(std::string_view key, std::string_view protocol = {}, std::string_view extensions = {},
                           const http::HeaderFields& extra = {});

/**
 * A refusal: the status, a `text/plain` body of one line (`reason` and a newline) and
 * `Connection: close` (`Upgrade, close` when `extra` carries an Upgrade field).
 */
std::string rejectResponse(int status, std::string_view reason, const http::HeaderFields& extra = {});

/**
 * The refusal for a handshake error: its status and reason; every 426 names
 * `Upgrade: websocket` (RFC 9110 §15.5.22), a version refusal adds
 * `Sec-WebSocket-Version: 13` (RFC 6455 §4.4), a 405 adds `Allow: GET`.
 */
std::string rejectResponse(std::error_code ec);

/** Parses a request head from bytes in any pieces and checks it as an upgrade. */
class ServerHandshake {
public:
    explicit ServerHandshake(http::Limits limits = {}) : parser_(limits) {}

    /**
     * Feeds request bytes; `consumed` tells how many were part of the head. On `failed`,
     * `error()` says why and `rejectResponse(error())` is the answer to send.
     */
    http::ParseStatus receive(Bytes in, std::size_t& consumed);

    std::error_code error() const noexcept { return error_; }
    const http::Request& request() const noexcept { return parser_.request(); }
    const UpgradeRequest& upgrade() const noexcept { return upgrade_; }

private:
    http::HeadParser parser_;
    UpgradeRequest upgrade_;
    std::error_code error_;
};

} // namespace tongdao::protocol
