#pragma once
/**
 * @file
 * The extension point of RFC 6455 §9: negotiation in the handshake and a per-message
 * transform that owns the RSV1 bit. permessage-deflate (RFC 7692) is built on it.
 */

#include "tongdao/protocol/buffer.hpp"
#include "tongdao/protocol/types.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace tongdao::protocol {

/** One `name[=value]` parameter of an extension offer or response. */
struct ExtensionParam {
    std::string name;
    std::optional<std::string> value; ///< unquoted; absent for a bare parameter
};

/** One element of a `Sec-WebSocket-Extensions` list. */
struct ExtensionItem {
    std::string name;
    std::vector<ExtensionParam> params;

    const ExtensionParam* find(std::string_view param) const noexcept;
};

/**
 * Parses a Sec-WebSocket-Extensions value (RFC 6455 §9.1):
 *   extension-list = 1#extension; extension = token *( ";" param );
 *   param = token [ "=" ( token / quoted-string ) ]
 * Appends to `out`; returns false if the value does not follow the grammar.
 */
bool parseExtensions(std::string_view value, std::vector<ExtensionItem>& out);

/** Formats one element, quoting values that are not tokens. */
std::string formatExtension(const ExtensionItem& item);

/**
 * A negotiated extension, one per connection. It transforms whole messages and owns
 * RSV1: the engine sets RSV1 on the first frame of a message `encode` transformed and
 * hands every frame of a message that arrived with RSV1 to `decode`.
 */
class Extension {
public:
    virtual ~Extension() = default;

    /** The extension's token, as negotiated. */
    virtual std::string_view name() const noexcept = 0;

    /**
     * Decodes the payload of one frame of a transformed message, appending to `out`.
     * `last` marks the message's final frame. Must fail with `messageTooBig` before
     * `out` would grow past `limit` bytes, and with `badCompressedData` on bad input.
     */
    virtual std::error_code decode(Bytes in, bool last, ByteBuffer& out, std::size_t limit) = 0;

    /**
     * Encodes a whole outgoing message. Returns the encoded bytes, valid until the next
     * call on this extension (or on one sharing its compressor), or nothing to send the
     * message untransformed (for example below a size threshold).
     */
    virtual std::optional<Bytes> encode(Bytes in, MessageKind kind) = 0;
};

/** A client's side of an extension: what it offers and how it takes the answer. */
class ClientExtensionFactory {
public:
    virtual ~ClientExtensionFactory() = default;
    virtual std::string_view name() const noexcept = 0;
    /** The offer, one or more list elements, as they go in the request header. */
    virtual std::string offer() const = 0;
    /** Accepts the server's answer or fails with `badExtensionResponse`. */
    virtual std::unique_ptr<Extension> accept(const ExtensionItem& response, std::error_code& ec) const = 0;
};

/** A server's side of an extension: choosing among the client's offers. */
class ServerExtensionFactory {
public:
    virtual ~ServerExtensionFactory() = default;
    virtual std::string_view name() const noexcept = 0;

    struct Agreement {
        std::string response;                 ///< the element for the 101's header
        std::unique_ptr<Extension> extension; ///< the negotiated instance
    };

    /**
     * Considers the offers of this extension, in the client's order of preference, and
     * accepts the first it can. Returns nothing to decline (the connection goes on without it).
     */
    virtual std::optional<Agreement> negotiate(const std::vector<const ExtensionItem*>& offers) const = 0;
};

} // namespace tongdao::protocol
