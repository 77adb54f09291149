#pragma once
/**
 * @file
 * Every failure tongdao reports, in one enum, with conditions that group them.
 *
 * One enumerator per reason (Boost.Beast's habit), so a test can assert the exact
 * cause and a log names it; the conditions let callers ask the coarse question
 * ("was it the handshake?") with `ec == tongdao::condition::handshakeFailed`.
 * Each wire failure maps to the close code RFC 6455 prescribes in one table,
 * `closeCodeFor()`, and to a short reason suitable for a close frame.
 */

#include <cstdint>
#include <string_view>
#include <system_error>

namespace tongdao {

enum class error {
    // --- HTTP / opening handshake, server side (RFC 6455 §4.2.1) ---------------------
    httpMalformed = 1,     ///< request or status line or a header is not valid HTTP/1.1
    headersTooLarge,       ///< the header section exceeds the configured byte limit
    tooManyHeaders,        ///< more header fields than the configured count limit
    methodNotGet,          ///< the opening handshake must be a GET
    httpVersionTooOld,     ///< HTTP/1.1 or later is required
    noHost,                ///< no (or more than one) Host header
    noUpgrade,             ///< no Upgrade header: a plain HTTP request
    upgradeNotWebSocket,   ///< Upgrade does not name websocket
    noConnectionUpgrade,   ///< Connection has no upgrade token
    noSecKey,              ///< Sec-WebSocket-Key missing or repeated
    badSecKey,             ///< Sec-WebSocket-Key is not 16 bytes in base64
    noSecVersion,          ///< Sec-WebSocket-Version missing
    badSecVersion,         ///< Sec-WebSocket-Version is not 13
    badExtensionsHeader,   ///< Sec-WebSocket-Extensions does not parse
    badProtocolsHeader,    ///< Sec-WebSocket-Protocol does not parse

    // --- opening handshake, client side (RFC 6455 §4.1) --------------------------------
    badStatus,             ///< the server answered with a status other than 101
    badUpgradeResponse,    ///< the response's Upgrade is not websocket
    badConnectionResponse, ///< the response's Connection has no upgrade token
    noAccept,              ///< Sec-WebSocket-Accept missing
    badAccept,             ///< Sec-WebSocket-Accept does not match the key
    unofferedProtocol,     ///< the server chose a sub-protocol that was not offered
    unofferedExtension,    ///< the server chose an extension that was not offered
    badExtensionResponse,  ///< the server's extension parameters are not acceptable

    // --- framing, RFC 6455 §5 (close code 1002 unless noted) ---------------------------
    reservedOpcode,        ///< opcode 0x3-0x7 or 0xB-0xF
    reservedBits,          ///< RSV1/2/3 set without an extension that defines them
    unmaskedFrame,         ///< a client sent an unmasked frame
    maskedFrame,           ///< a server sent a masked frame
    controlTooLong,        ///< a control frame with more than 125 bytes of payload
    fragmentedControl,     ///< a control frame without FIN
    unexpectedContinuation,///< a continuation frame with no message in progress
    expectedContinuation,  ///< a new data frame inside a fragmented message
    nonMinimalLength,      ///< payload length not in its shortest encoding
    badLength,             ///< 64-bit payload length with the most significant bit set
    badClosePayload,       ///< a close frame with a one-byte payload
    badCloseCode,          ///< a close code RFC 6455 §7.4 does not allow on the wire
    invalidUtf8,           ///< text that is not UTF-8 (1007)
    invalidCloseReason,    ///< a close reason that is not UTF-8 (1007)
    frameTooBig,           ///< a frame larger than maxFrameSize (1009)
    messageTooBig,         ///< a message larger than maxMessageSize (1009)
    badCompressedData,     ///< a compressed message that does not inflate (1007)
    extensionFailed,       ///< an extension reported an error of its own (1002)

    // --- misuse of the API by the caller ---------------------------------------------
    notOpen,               ///< sending after our close frame, or before the connection is open
    closeCodeNotSendable,  ///< the code may not be sent (1005, 1006, 1015, out of range)
    closeReasonTooLong,    ///< a close reason longer than 123 bytes
    controlPayloadTooLong, ///< a ping or pong payload longer than 125 bytes
    invalidUtf8ToSend,     ///< a text message or close reason that is not UTF-8
    messageInProgress,     ///< a new message while a fragmented one is being sent
    noMessageInProgress,   ///< a continuation with no fragmented message being sent
    wrongRole,             ///< an operation that only the other role may perform
};

/** Coarse groups of errors, for comparison with `std::error_code`. */
enum class condition {
    handshakeFailed = 1, ///< the opening handshake was refused or malformed
    protocolViolation,   ///< the peer broke RFC 6455 or an extension's rules
    closed,              ///< the connection is closing or closed
    misuse,              ///< the caller asked for something the API does not allow
};

const std::error_category& errorCategory() noexcept;
const std::error_category& conditionCategory() noexcept;

inline std::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), errorCategory()};
}
inline std::error_condition make_error_condition(condition c) noexcept {
    return {static_cast<int>(c), conditionCategory()};
}

/** The close code for a wire error (1002, 1007, 1009), or 0 if the error is not one. */
std::uint16_t closeCodeFor(error e) noexcept;

/** The HTTP status a server answers a handshake error with (400, 405, 426, 431), or 0. */
int httpStatusFor(error e) noexcept;

/** A short, fixed, lower-case description; ≤ 123 bytes so it fits a close reason. */
std::string_view describe(error e) noexcept;

} // namespace tongdao

template <>
struct std::is_error_code_enum<tongdao::error> : std::true_type {};
template <>
struct std::is_error_condition_enum<tongdao::condition> : std::true_type {};
