#pragma once
/**
 * @file
 * The WebSocket engine after the handshake, RFC 6455 §5-§7: bytes in, events and bytes out.
 *
 * No sockets, clocks, threads or exceptions. A driver feeds what it reads to
 * `receive()`, which calls the handler for each event; it writes what
 * `pendingOutput()` shows and reports the count to `consumeOutput()`; it arms a timer
 * while `closeExpected()` and closes the transport once `transportDone()`.
 *
 * @code
 *   struct Echo : tongdao::protocol::EventHandler {
 *       Connection* ws;
 *       void onMessage(MessageKind k, Bytes data) { ws->send(k, data); }
 *   };
 *   conn.receive(readBytes, echo);     // events, then:
 *   auto out = conn.pendingOutput();   // write out.parts..., then
 *   conn.consumeOutput(written);
 * @endcode
 *
 * @par Thread Safety
 * None: a connection belongs to one thread (DESIGN.md "Threading").
 */

#include "tongdao/error.hpp"
#include "tongdao/protocol/extension.hpp"
#include "tongdao/protocol/frame.hpp"
#include "tongdao/protocol/buffer.hpp"
#include "tongdao/protocol/utf8.hpp"

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace tongdao::protocol {

/** Where mask keys come from (RFC 6455 §5.3: unpredictable, from a strong source). */
class MaskSource {
public:
    virtual ~MaskSource() = default;
    virtual std::uint32_t nextMask() noexcept = 0;
};

/** libcrypto's CSPRNG, drawn in blocks per thread so a key costs a few nanoseconds. */
MaskSource& secureMaskSource() noexcept;

/**
 * Limits and behaviour. Connections refer to it (one copy serves thousands), so it must
 * outlive them; a temporary does not compile.
 */
struct ConnectionOptions {
    Role role = Role::server;
    std::size_t maxFrameSize = 16 * 1024 * 1024;   ///< larger frames fail with 1009
    std::size_t maxMessageSize = 16 * 1024 * 1024; ///< larger messages fail with 1009
    bool autoPong = true;             ///< RFC 6455 §5.5.2: answer each ping with its payload
    bool validateOutgoingText = true; ///< refuse to send text that is not UTF-8 (§8.1)
    MaskSource* maskSource = nullptr; ///< client masks; null means `secureMaskSource()`
    BufferPool* pool = nullptr;       ///< storage for the output queue; null means the heap
};

/** Where the close handshake stands (RFC 6455 §7). */
enum class CloseState : std::uint8_t {
    open,          ///< neither side has sent a close frame
    closingLocal,  ///< we sent a close frame and wait for the peer's
    closed,        ///< both close frames exchanged, or the connection failed or ended
};

/** The outcome of a connection, for the application's close callback. */
struct CloseStatus {
    std::uint16_t code = CloseCode::abnormal; ///< 1005: close frame without code; 1006: no close frame
    std::string reason;
    bool remote = false; ///< the code came from the peer's close frame
    std::error_code error; ///< set when we failed the connection
};

/**
 * The events a connection reports. Derive from it and hide the ones you want; calls
 * are resolved at compile time, nothing is virtual. Views are valid during the call.
 */
struct EventHandler {
    void onMessage(MessageKind, Bytes) {}
    void onPing(Bytes) {}
    void onPong(Bytes) {}
    /** The peer's close frame arrived (code 1005 if it carried none). */
    void onClose(std::uint16_t, std::string_view) {}
    /** We failed the connection (RFC 6455 §7.1.7) for this reason; a close frame is queued. */
    void onError(std::error_code) {}
};

/** One event, as the non-template core hands it to `receive()`. */
struct Event {
    enum class Type : std::uint8_t { message, ping, pong, close, error } type{};
    MessageKind kind{};
    std::uint16_t code = 0;
    Bytes payload;
    std::error_code ec;
};

class Connection {
public:
    explicit Connection(const ConnectionOptions& options, std::unique_ptr<Extension> extension = nullptr);
    Connection(const ConnectionOptions&&, std::unique_ptr<Extension> = nullptr) = delete; // would dangle
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // --- input ----------------------------------------------------------------------

    /**
     * Feeds bytes read from the transport and reports events to `h`. The bytes may be
     * modified in place (unmasking). A message that arrived whole in `data` is reported
     * as a view into it; parts of frames left over are kept. After a failure, further
     * input is discarded. Not re-entrant: do not call from a handler.
     */
    template <class Handler>
    void receive(MutableBytes data, Handler& h) {
        begin(data);
        Event ev;
        while (next(ev)) {
            switch (ev.type) {
            case Event::Type::message: h.onMessage(ev.kind, ev.payload); break;
            case Event::Type::ping: h.onPing(ev.payload); break;
            case Event::Type::pong: h.onPong(ev.payload); break;
            case Event::Type::close: h.onClose(ev.code, asString(ev.payload)); break;
            case Event::Type::error: h.onError(ev.ec); break;
            }
        }
    }

    /** The transport reached end of input. Without a close frame first, that is 1006. */
    void receiveEof() noexcept;

    /** The lower-level form of `receive()`: set the input, then call `next()` until false. */
    void begin(MutableBytes data) noexcept;
    bool next(Event& ev);

    // --- output ---------------------------------------------------------------------

    /** Queues a whole message in one frame (transformed by the extension if it chooses). */
    std::error_code send(MessageKind kind, Bytes payload);
    std::error_code sendText(std::string_view text) { return send(MessageKind::text, asBytes(text)); }

    /**
     * Queues one fragment of a message (RFC 6455 §5.4): the first call starts it with
     * `kind`, the one with `fin` ends it. Fragmented messages are never transformed.
     */
    std::error_code sendFragment(MessageKind kind, Bytes payload, bool fin);

    /**
     * Queues one whole frame made elsewhere, unmasked (server role only): how a message
     * published to many connections is framed once and queued for each.
     */
    std::error_code sendFramed(Bytes frame);

    std::error_code ping(Bytes payload = {});
    std::error_code pong(Bytes payload = {});

    /**
     * Starts the closing handshake (RFC 6455 §7.1.2). `code` 0 sends a close frame with
     * no code; otherwise it must be sendable (1000-1003, 1007-1014, 3000-4999) and the
     * reason UTF-8 of at most 123 bytes. Nothing is sent after it.
     */
    std::error_code close(std::uint16_t code = CloseCode::normal, std::string_view reason = {});

    /** The bytes to write next, in order (control frames go ahead at frame boundaries). */
    OutputView pendingOutput() const noexcept { return out_.pending(); }
    /** Reports that `n` bytes of `pendingOutput()` were written. */
    void consumeOutput(std::size_t n) noexcept { out_.consume(n, opts_->pool); }
    /** Bytes queued and not yet written: the connection's backpressure. */
    std::size_t bufferedAmount() const noexcept { return out_.size(); }

    // --- state ----------------------------------------------------------------------

    CloseState closeState() const noexcept { return closeState_; }
    bool isOpen() const noexcept { return closeState_ == CloseState::open; }
    bool failed() const noexcept { return failure_ != 0; }
    /** We wait for the peer: its close frame, or (client) the server's TCP close. Arm a timer. */
    bool closeExpected() const noexcept;
    /** Nothing more will be sent or read: close the transport once output is written. */
    bool transportDone() const noexcept;
    /** The close code and reason to report; final once `closeState()` is `closed`. */
    CloseStatus closeStatus() const;

    Role role() const noexcept { return opts_->role; }
    const Extension* extension() const noexcept { return ext_.get(); }
    /** Installs the extension the handshake agreed on; before the first frame only. */
    void setExtension(std::unique_ptr<Extension> ext) noexcept { ext_ = std::move(ext); }

private:
    enum class Step : std::uint8_t { more, event, next };

    Step fail(std::error_code ec, Event& ev);
    Step wholeFrame(Event& ev);
    Step header(Event& ev);
    Step checkHeader(const FrameHeader& h, Event& ev);
    Step payload(Event& ev);
    Step dataChunk(Bytes chunk, bool frameDone, Event& ev);
    Step controlDone(Bytes data, Event& ev);
    void releaseMessage() noexcept;
    ByteBuffer& messageBuffer();
    void queueFrame(Opcode op, bool fin, std::uint8_t rsv, Bytes payload, bool priority);
    void queueClose(std::uint16_t code, std::string_view reason);
    std::error_code sendControl(Opcode op, Bytes payload);

    void setClose(std::uint16_t code, std::string_view reason, bool remote);

    const ConnectionOptions* opts_;
    std::unique_ptr<Extension> ext_;
    OutputQueue out_;                  ///< one pointer while idle
    std::unique_ptr<std::string> closeReason_; ///< allocated only for a close with a reason

    // Input, current frame (rd = read side).
    MutableBytes rdIn_;
    std::uint64_t rdRemaining_ = 0;  ///< payload bytes of the current frame not yet seen
    std::uint64_t rdMessageSize_ = 0;
    /// An assembled message (split, fragmented or inflated): only while there is one, so an
    /// idle connection holds 8 bytes for it, not 24.
    std::unique_ptr<ByteBuffer> rdMessage_;
    std::unique_ptr<std::byte[]> rdControl_; ///< a control frame split across reads (rare)
    std::uint32_t rdMaskKey_ = 0;    ///< rotated as payload is unmasked; here, so no padding is wasted
    std::uint16_t closeCode_ = CloseCode::abnormal;
    std::uint8_t failure_ = 0;       ///< the tongdao::error we failed with, 0 if none
    std::uint8_t rdControlSize_ = 0;
    Utf8Validator rdUtf8_;
    std::array<std::byte, maxFrameHeaderSize> rdSpill_{}; ///< a header split across reads
    std::uint8_t rdSpillSize_ = 0;
    std::uint8_t rdOpcode_ = 0;      ///< the current frame's
    std::uint8_t rdMessageOpcode_ = 0; ///< text or binary while a message is in progress, else 0
    bool rdInPayload_ = false;
    bool rdFin_ = false;
    bool rdMasked_ = false;
    bool rdCompressed_ = false;      ///< the message in progress is transformed by the extension
    bool rdDiscard_ = false;         ///< failed, or the peer's close arrived: ignore input
    bool rdReleaseMessage_ = false;  ///< rdMessage_ was handed out; clear it before reuse

    // Output (wr = write side).
    Utf8Validator wrUtf8_;           ///< a fragmented text message being sent
    bool wrFragmenting_ = false;
    bool wrFragmentText_ = false;
    bool wrCloseSent_ = false;
    bool rdCloseReceived_ = false;
    bool eof_ = false;
    bool closeRemote_ = false;
    CloseState closeState_ = CloseState::open;
};

} // namespace tongdao::protocol
