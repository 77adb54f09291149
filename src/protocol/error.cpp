#include "tongdao/error.hpp"

#include <string>

namespace tongdao {
namespace {

struct Entry {
    std::string_view text;
    std::uint16_t closeCode; // 0: not a wire error
    int httpStatus;          // 0: not a server-side handshake error
    condition cond;
};

// One table: the text, the close code and the HTTP status of every error.
// RFC 6455 §7.4.1: 1002 protocol error, 1007 invalid payload data, 1009 message too big.
constexpr Entry entryFor(error e) noexcept {
    using c = condition;
    switch (e) {
    case error::httpMalformed: return {"malformed HTTP request", 0, 400, c::handshakeFailed};
    case error::headersTooLarge: return {"header section too large", 0, 431, c::handshakeFailed};
    case error::tooManyHeaders: return {"too many header fields", 0, 431, c::handshakeFailed};
    case error::methodNotGet: return {"method must be GET", 0, 405, c::handshakeFailed};
    case error::httpVersionTooOld: return {"HTTP/1.1 or later required", 0, 400, c::handshakeFailed};
    case error::noHost: return {"missing or repeated Host header", 0, 400, c::handshakeFailed};
    case error::noUpgrade: return {"WebSocket upgrade required", 0, 426, c::handshakeFailed};
    case error::upgradeNotWebSocket: return {"Upgrade header must be websocket", 0, 400, c::handshakeFailed};
    case error::noConnectionUpgrade: return {"Connection header must contain upgrade", 0, 400, c::handshakeFailed};
    case error::noSecKey: return {"missing or repeated Sec-WebSocket-Key", 0, 400, c::handshakeFailed};
    case error::badSecKey: return {"Sec-WebSocket-Key must be 16 bytes in base64", 0, 400, c::handshakeFailed};
    case error::noSecVersion: return {"missing Sec-WebSocket-Version", 0, 426, c::handshakeFailed};
    case error::badSecVersion: return {"unsupported Sec-WebSocket-Version", 0, 426, c::handshakeFailed};
    case error::badExtensionsHeader: return {"malformed Sec-WebSocket-Extensions", 0, 400, c::handshakeFailed};
    case error::badProtocolsHeader: return {"malformed Sec-WebSocket-Protocol", 0, 400, c::handshakeFailed};

    case error::badStatus: return {"server did not answer 101", 0, 0, c::handshakeFailed};
    case error::badUpgradeResponse: return {"response Upgrade is not websocket", 0, 0, c::handshakeFailed};
    case error::badConnectionResponse: return {"response Connection is not upgrade", 0, 0, c::handshakeFailed};
    case error::noAccept: return {"missing Sec-WebSocket-Accept", 0, 0, c::handshakeFailed};
    case error::badAccept: return {"wrong Sec-WebSocket-Accept", 0, 0, c::handshakeFailed};
    case error::unofferedProtocol: return {"server chose a sub-protocol not offered", 0, 0, c::handshakeFailed};
    case error::unofferedExtension: return {"server chose an extension not offered", 0, 0, c::handshakeFailed};
    case error::badExtensionResponse: return {"unacceptable extension parameters", 0, 0, c::handshakeFailed};

    case error::reservedOpcode: return {"reserved opcode", 1002, 0, c::protocolViolation};
    case error::reservedBits: return {"reserved bits set", 1002, 0, c::protocolViolation};
    case error::unmaskedFrame: return {"client frame not masked", 1002, 0, c::protocolViolation};
    case error::maskedFrame: return {"server frame masked", 1002, 0, c::protocolViolation};
    case error::controlTooLong: return {"control frame too long", 1002, 0, c::protocolViolation};
    case error::fragmentedControl: return {"fragmented control frame", 1002, 0, c::protocolViolation};
    case error::unexpectedContinuation: return {"unexpected continuation frame", 1002, 0, c::protocolViolation};
    case error::expectedContinuation: return {"expected continuation frame", 1002, 0, c::protocolViolation};
    case error::nonMinimalLength: return {"payload length not minimal", 1002, 0, c::protocolViolation};
    case error::badLength: return {"payload length too large", 1002, 0, c::protocolViolation};
    case error::badClosePayload: return {"close payload of one byte", 1002, 0, c::protocolViolation};
    case error::badCloseCode: return {"invalid close code", 1002, 0, c::protocolViolation};
    case error::invalidUtf8: return {"invalid UTF-8 in text", 1007, 0, c::protocolViolation};
    case error::invalidCloseReason: return {"invalid UTF-8 in close reason", 1007, 0, c::protocolViolation};
    case error::frameTooBig: return {"frame too big", 1009, 0, c::protocolViolation};
    case error::messageTooBig: return {"message too big", 1009, 0, c::protocolViolation};
    case error::badCompressedData: return {"invalid compressed data", 1007, 0, c::protocolViolation};
    case error::extensionFailed: return {"extension failed", 1002, 0, c::protocolViolation};

    case error::notOpen: return {"connection not open", 0, 0, c::closed};
    case error::closeCodeNotSendable: return {"close code may not be sent", 0, 0, c::misuse};
    case error::closeReasonTooLong: return {"close reason longer than 123 bytes", 0, 0, c::misuse};
    case error::controlPayloadTooLong: return {"control payload longer than 125 bytes", 0, 0, c::misuse};
    case error::invalidUtf8ToSend: return {"text is not valid UTF-8", 0, 0, c::misuse};
    case error::messageInProgress: return {"a fragmented message is being sent", 0, 0, c::misuse};
    case error::noMessageInProgress: return {"no fragmented message is being sent", 0, 0, c::misuse};
    case error::wrongRole: return {"operation not allowed in this role", 0, 0, c::misuse};
    }
    return {"unknown error", 0, 0, c::misuse};
}

class ErrorCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "tongdao"; }
    std::string message(int ev) const override { return std::string(entryFor(static_cast<error>(ev)).text); }
    std::error_condition default_error_condition(int ev) const noexcept override {
        return make_error_condition(entryFor(static_cast<error>(ev)).cond);
    }
};

class ConditionCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "tongdao.condition"; }
    std::string message(int ev) const override {
        switch (static_cast<condition>(ev)) {
        case condition::handshakeFailed: return "WebSocket handshake failed";
        case condition::protocolViolation: return "WebSocket protocol violation";
        case condition::closed: return "WebSocket connection closed";
        case condition::misuse: return "WebSocket API misuse";
        }
        return "unknown condition";
    }
};

} // namespace

const std::error_category& errorCategory() noexcept {
    static const ErrorCategory category;
    return category;
}

const std::error_category& conditionCategory() noexcept {
    static const ConditionCategory category;
    return category;
}

std::uint16_t closeCodeFor(error e) noexcept { return entryFor(e).closeCode; }
int httpStatusFor(error e) noexcept { return entryFor(e).httpStatus; }
std::string_view describe(error e) noexcept { return entryFor(e).text; }

} // namespace tongdao
