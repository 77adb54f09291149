#include "tongdao/protocol/connection.hpp"

#include "crypto.hpp"
#include "mask.hpp"

#include <algorithm>

namespace tongdao::protocol {

// --- mask keys ----------------------------------------------------------------------

namespace {

// RFC 6455 §10.3: masks must not be predictable. One RAND_bytes call fills a block of
// keys for this thread, so a key costs a load rather than a trip into libcrypto.
class SecureMaskSource final : public MaskSource {
public:
    std::uint32_t nextMask() noexcept override {
        if (next_ == keys_.size()) {
            detail::randomBytes({reinterpret_cast<unsigned char*>(keys_.data()), sizeof keys_});
            next_ = 0;
        }
        return keys_[next_++];
    }

private:
    std::array<std::uint32_t, 256> keys_{};
    std::size_t next_ = keys_.size();
};

constexpr std::size_t keptMessageWithoutPool = 64 * 1024;

} // namespace

MaskSource& secureMaskSource() noexcept {
    thread_local SecureMaskSource source;
    return source;
}

// --- construction and state ---------------------------------------------------------

Connection::Connection(const ConnectionOptions& options, std::unique_ptr<Extension> extension)
    : opts_(&options), ext_(std::move(extension)) {}

bool Connection::closeExpected() const noexcept {
    if (closeState_ == CloseState::closingLocal) return true; // waiting for the peer's close frame
    // RFC 6455 §7.1.1: the server closes TCP first, so a client that has completed the
    // closing handshake waits for it.
    return opts_->role == Role::client && closeState_ == CloseState::closed && !eof_ && !failed();
}

bool Connection::transportDone() const noexcept {
    if (eof_) return true;
    if (!out_.empty()) return false;
    return failed() || (closeState_ == CloseState::closed && opts_->role == Role::server);
}

void Connection::receiveEof() noexcept {
    eof_ = true;
    rdDiscard_ = true;
    if (closeState_ != CloseState::closed) {
        // RFC 6455 §7.1.5: closed without a close frame is 1006.
        setClose(CloseCode::abnormal, {}, false);
        closeState_ = CloseState::closed;
    }
}

void Connection::setClose(std::uint16_t code, std::string_view reason, bool remote) {
    closeCode_ = code;
    closeRemote_ = remote;
    if (reason.empty()) closeReason_.reset();
    else closeReason_ = std::make_unique<std::string>(reason);
}

CloseStatus Connection::closeStatus() const {
    CloseStatus st;
    st.code = closeCode_;
    st.remote = closeRemote_;
    if (closeReason_) st.reason = *closeReason_;
    if (failure_) st.error = static_cast<error>(failure_);
    return st;
}

// --- input --------------------------------------------------------------------------

void Connection::begin(MutableBytes data) noexcept { rdIn_ = data; }

void Connection::releaseMessage() noexcept {
    rdReleaseMessage_ = false;
    if (!rdMessage_) return;
    if (opts_->pool) {
        opts_->pool->release(std::move(*rdMessage_));
        rdMessage_.reset();
    } else if (rdMessage_->capacity() > keptMessageWithoutPool) {
        rdMessage_.reset();
    } else {
        rdMessage_->clear();
    }
}

ByteBuffer& Connection::messageBuffer() {
    if (!rdMessage_) rdMessage_ = std::make_unique<ByteBuffer>();
    if (rdMessage_->capacity() == 0 && opts_->pool) *rdMessage_ = opts_->pool->acquire();
    return *rdMessage_;
}

bool Connection::next(Event& ev) {
    if (rdReleaseMessage_) releaseMessage();
    for (;;) {
        if (rdDiscard_) {
            // RFC 6455 §7.1.7 (after failing) and §5.5.1 (after the peer's close): ignore the rest.
            rdIn_ = {};
            return false;
        }
        Step s = rdInPayload_ ? payload(ev) : wholeFrame(ev);
        if (s == Step::next && !rdInPayload_) s = header(ev);
        if (s == Step::more) return false;
        if (s == Step::event) return true;
    }
}

// The common case in one step: a whole, unfragmented, uncompressed data frame of modest
// size sits in the input, header and payload. It is checked, unmasked and handed out as a
// view without going through the per-frame state (uWebSockets' consume does the same).
// Anything else, including anything invalid, takes the general path, which reports it.
Connection::Step Connection::wholeFrame(Event& ev) {
    if (rdSpillSize_ != 0 || rdMessageOpcode_ != 0 || rdIn_.size() < 2) return Step::next;
    const auto b0 = static_cast<std::uint8_t>(rdIn_[0]);
    const auto b1 = static_cast<std::uint8_t>(rdIn_[1]);
    const std::uint8_t op = b0 & 0x0F;
    const bool masked = (b1 & 0x80) != 0;
    // FIN set, RSV clear, text or binary, masked exactly when the peer is a client.
    if ((b0 & 0xF0) != 0x80 || (op != 0x1 && op != 0x2) || masked != (opts_->role == Role::server)) return Step::next;
    std::size_t hs = masked ? 6 : 2;
    std::size_t len = b1 & 0x7F;
    if (len == 126) {
        hs += 2;
        if (rdIn_.size() < hs) return Step::next;
        len = (std::size_t{static_cast<std::uint8_t>(rdIn_[2])} << 8) | static_cast<std::uint8_t>(rdIn_[3]);
        if (len < 126) return Step::next; // not minimal: the general path fails it
    } else if (len == 127) {
        return Step::next;
    }
    if (rdIn_.size() < hs || rdIn_.size() - hs < len || len > opts_->maxFrameSize || len > opts_->maxMessageSize)
        return Step::next;
    std::byte* data = rdIn_.data() + hs;
    if (masked) {
        std::uint32_t key;
        std::memcpy(&key, data - 4, 4);
        detail::mask(data, data, len, key);
    }
    rdIn_ = rdIn_.subspan(hs + len);
    // RFC 6455 §8.1: a text message must be UTF-8.
    if (op == 0x1 && !isValidUtf8(Bytes{data, len})) return fail(error::invalidUtf8, ev);
    ev.type = Event::Type::message;
    ev.kind = static_cast<MessageKind>(op);
    ev.payload = {data, len};
    return Step::event;
}

Connection::Step Connection::fail(std::error_code ec, Event& ev) {
    // RFC 6455 §7.1.7: Fail the WebSocket Connection: send a close frame with the
    // matching code if we have not sent one, then discard everything that follows.
    // Errors from elsewhere (an extension's) are reported as a failed extension.
    const auto e = ec.category() == errorCategory() ? static_cast<error>(ec.value()) : error::extensionFailed;
    failure_ = static_cast<std::uint8_t>(e);
    setClose(closeCodeFor(e) ? closeCodeFor(e) : CloseCode::protocolError, describe(e), false);
    if (!wrCloseSent_) queueClose(closeCode_, describe(e));
    rdDiscard_ = true;
    rdIn_ = {};
    closeState_ = CloseState::closed;
    ev.type = Event::Type::error;
    ev.ec = ec;
    return Step::event;
}

Connection::Step Connection::header(Event& ev) {
    FrameHeader h;
    std::error_code ec;
    if (rdSpillSize_ == 0) {
        const std::size_t used = parseFrameHeader(rdIn_.data(), rdIn_.size(), h, ec);
        if (used == 0) {
            // A header split across reads: keep its start (at most 13 bytes).
            if (!rdIn_.empty()) std::memcpy(rdSpill_.data(), rdIn_.data(), rdIn_.size());
            rdSpillSize_ = static_cast<std::uint8_t>(rdIn_.size());
            rdIn_ = {};
            return Step::more;
        }
        rdIn_ = rdIn_.subspan(used);
    } else {
        const std::size_t take = std::min(rdIn_.size(), maxFrameHeaderSize - rdSpillSize_);
        if (take != 0) std::memcpy(rdSpill_.data() + rdSpillSize_, rdIn_.data(), take);
        const std::size_t used = parseFrameHeader(rdSpill_.data(), rdSpillSize_ + take, h, ec);
        if (used == 0) {
            rdSpillSize_ = static_cast<std::uint8_t>(rdSpillSize_ + take);
            rdIn_ = {};
            return Step::more;
        }
        rdIn_ = rdIn_.subspan(used - rdSpillSize_);
        rdSpillSize_ = 0;
    }
    if (ec) return fail(ec, ev);
    return checkHeader(h, ev);
}

Connection::Step Connection::checkHeader(const FrameHeader& h, Event& ev) {
    const bool control = (h.opcode & 0x8) != 0;
    // RFC 6455 §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved.
    if (!isKnownOpcode(h.opcode)) return fail(error::reservedOpcode, ev);
    // RFC 6455 §5.2: RSV bits must be 0 unless an extension defines them; RFC 7692 §6:
    // permessage-deflate's RSV1 only on the first frame of a data message.
    if (h.rsv != 0) {
        const bool firstDataFrame = !control && h.opcode != 0;
        if (h.rsv != Rsv::rsv1 || !ext_ || !firstDataFrame) return fail(error::reservedBits, ev);
    }
    // RFC 6455 §5.1: a server must fail on an unmasked frame, a client on a masked one.
    if (opts_->role == Role::server && !h.masked) return fail(error::unmaskedFrame, ev);
    if (opts_->role == Role::client && h.masked) return fail(error::maskedFrame, ev);
    if (control) {
        // RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented.
        if (h.payloadLength > maxControlPayload) return fail(error::controlTooLong, ev);
        if (!h.fin) return fail(error::fragmentedControl, ev);
        rdControlSize_ = 0;
    } else {
        // RFC 6455 §5.4: continuation only inside a message, a new message only outside one.
        if (h.opcode == 0 && rdMessageOpcode_ == 0) return fail(error::unexpectedContinuation, ev);
        if (h.opcode != 0 && rdMessageOpcode_ != 0) return fail(error::expectedContinuation, ev);
        if (h.payloadLength > opts_->maxFrameSize) return fail(error::frameTooBig, ev);
        if (h.opcode != 0) {
            rdMessageOpcode_ = h.opcode;
            rdCompressed_ = h.rsv != 0;
            rdMessageSize_ = 0;
            rdUtf8_.reset();
        }
        // The inflated size of a compressed message is checked as it inflates.
        if (!rdCompressed_ && h.payloadLength > opts_->maxMessageSize - rdMessageSize_)
            return fail(error::messageTooBig, ev);
    }
    rdOpcode_ = h.opcode;
    rdFin_ = h.fin;
    rdMasked_ = h.masked;
    rdMaskKey_ = h.maskKey;
    rdRemaining_ = h.payloadLength;
    rdInPayload_ = true;
    return Step::next;
}

Connection::Step Connection::payload(Event& ev) {
    const std::size_t avail = static_cast<std::size_t>(std::min<std::uint64_t>(rdRemaining_, rdIn_.size()));
    if (avail == 0 && rdRemaining_ != 0) return Step::more;
    const MutableBytes chunk = rdIn_.first(avail);
    rdIn_ = rdIn_.subspan(avail);
    // RFC 6455 §5.3: unmask in place; the key rotates if the frame continues in a later read.
    if (rdMasked_ && avail != 0) rdMaskKey_ = detail::mask(chunk.data(), chunk.data(), avail, rdMaskKey_);
    rdRemaining_ -= avail;
    const bool done = rdRemaining_ == 0;
    if (done) rdInPayload_ = false;

    if ((rdOpcode_ & 0x8) == 0) return dataChunk(chunk, done, ev);
    if (done && rdControlSize_ == 0) return controlDone(chunk, ev); // whole in this read: no copy
    // Split across reads (rare): collect it, at most 125 bytes (checked at the header).
    if (!rdControl_) rdControl_ = std::make_unique<std::byte[]>(maxControlPayload);
    if (!chunk.empty()) std::memcpy(rdControl_.get() + rdControlSize_, chunk.data(), chunk.size());
    rdControlSize_ = static_cast<std::uint8_t>(rdControlSize_ + chunk.size());
    return done ? controlDone({rdControl_.get(), rdControlSize_}, ev) : Step::more;
}

Connection::Step Connection::dataChunk(Bytes chunk, bool frameDone, Event& ev) {
    const bool last = frameDone && rdFin_;
    const bool text = rdMessageOpcode_ == static_cast<std::uint8_t>(Opcode::text);
    Bytes whole = chunk;
    if (rdCompressed_) {
        ByteBuffer& m = messageBuffer();
        const std::size_t before = m.size();
        if (auto ec = ext_->decode(chunk, last, m, opts_->maxMessageSize)) return fail(ec, ev);
        // RFC 6455 §8.1 applies to the inflated text, validated as it inflates.
        if (text && !rdUtf8_.feed(m.data() + before, m.size() - before)) return fail(error::invalidUtf8, ev);
        whole = m.view();
    } else {
        rdMessageSize_ += chunk.size();
        // RFC 6455 §8.1: fail as soon as the text cannot become valid UTF-8.
        if (text && !rdUtf8_.feed(chunk)) return fail(error::invalidUtf8, ev);
        if (!last || (rdMessage_ && !rdMessage_->empty())) {
            // Split across reads or fragmented: assemble (bounded by maxMessageSize above).
            ByteBuffer& m = messageBuffer();
            m.append(chunk);
            whole = m.view();
        }
    }
    if (!last) return frameDone ? Step::next : Step::more;
    if (text && !rdUtf8_.complete()) return fail(error::invalidUtf8, ev);
    rdReleaseMessage_ = rdMessage_ != nullptr; // its storage goes back to the pool after the event
    ev.type = Event::Type::message;
    ev.kind = static_cast<MessageKind>(rdMessageOpcode_);
    ev.payload = whole;
    rdMessageOpcode_ = 0;
    return Step::event;
}

Connection::Step Connection::controlDone(Bytes data, Event& ev) {
    ev.payload = data;
    switch (static_cast<Opcode>(rdOpcode_)) {
    case Opcode::ping:
        // RFC 6455 §5.5.2: answer with a pong carrying the same payload, unless we closed.
        if (opts_->autoPong && !wrCloseSent_) queueFrame(Opcode::pong, true, 0, data, true);
        ev.type = Event::Type::ping;
        return Step::event;
    case Opcode::pong:
        // RFC 6455 §5.5.3: an unsolicited pong is allowed and needs no answer.
        ev.type = Event::Type::pong;
        return Step::event;
    default: break;
    }
    // RFC 6455 §5.5.1: a close payload is empty, or a two-byte code and a UTF-8 reason.
    std::uint16_t code = CloseCode::noStatus;
    Bytes reason;
    if (data.size() == 1) return fail(error::badClosePayload, ev);
    if (data.size() >= 2) {
        code = static_cast<std::uint16_t>((static_cast<unsigned>(data[0]) << 8) | static_cast<unsigned>(data[1]));
        if (!isValidWireCloseCode(code)) return fail(error::badCloseCode, ev);
        reason = data.subspan(2);
        if (!isValidUtf8(reason)) return fail(error::invalidCloseReason, ev);
    }
    rdCloseReceived_ = true;
    rdDiscard_ = true; // RFC 6455 §5.5.1: nothing follows a close frame
    setClose(code, asString(reason), true);
    // RFC 6455 §5.5.1: echo the close (its code and reason) unless we already sent ours.
    if (!wrCloseSent_) queueClose(code == CloseCode::noStatus ? 0 : code, asString(reason));
    closeState_ = CloseState::closed;
    ev.type = Event::Type::close;
    ev.code = code;
    ev.payload = reason;
    return Step::event;
}

// --- output -------------------------------------------------------------------------

void Connection::queueFrame(Opcode op, bool fin, std::uint8_t rsv, Bytes payload, bool priority) {
    // RFC 6455 §5.3: a client masks every frame with a fresh key; a server never masks.
    const bool masked = opts_->role == Role::client;
    const std::uint32_t key = masked ? (opts_->maskSource ? *opts_->maskSource : secureMaskSource()).nextMask() : 0;
    const std::size_t hs = frameHeaderSize(payload.size(), masked);
    std::byte* p = priority ? out_.appendControl(hs + payload.size(), opts_->pool)
                           : out_.appendData(hs + payload.size(), opts_->pool);
    writeFrameHeader(p, fin, rsv, op, payload.size(), masked, key);
    if (payload.empty()) return;
    if (masked) detail::mask(p + hs, payload.data(), payload.size(), key);
    else std::memcpy(p + hs, payload.data(), payload.size());
}

void Connection::queueClose(std::uint16_t code, std::string_view reason) {
    std::array<std::byte, maxControlPayload> body;
    std::size_t n = 0;
    if (code != 0) {
        body[0] = static_cast<std::byte>(code >> 8);
        body[1] = static_cast<std::byte>(code);
        n = std::min(reason.size(), maxCloseReason);
        if (n != 0) std::memcpy(body.data() + 2, reason.data(), n);
        n += 2;
    }
    // In the data queue, behind data already queued: nothing we queued is dropped, and
    // nothing is queued after it.
    queueFrame(Opcode::close, true, 0, {body.data(), n}, false);
    wrCloseSent_ = true;
}

std::error_code Connection::send(MessageKind kind, Bytes payload) {
    if (wrCloseSent_) return error::notOpen;
    if (wrFragmenting_) return error::messageInProgress;
    if (kind == MessageKind::text && opts_->validateOutgoingText && !isValidUtf8(payload))
        return error::invalidUtf8ToSend;
    if (ext_) {
        if (auto encoded = ext_->encode(payload, kind)) {
            queueFrame(toOpcode(kind), true, Rsv::rsv1, *encoded, false);
            return {};
        }
    }
    queueFrame(toOpcode(kind), true, 0, payload, false);
    return {};
}

std::error_code Connection::sendFragment(MessageKind kind, Bytes payload, bool fin) {
    if (wrCloseSent_) return error::notOpen;
    const bool first = !wrFragmenting_;
    if (first) {
        wrUtf8_.reset();
        wrFragmentText_ = kind == MessageKind::text;
    }
    if (opts_->validateOutgoingText && wrFragmentText_) {
        // Checked whole across fragments: a character may span two of them.
        Utf8Validator v = wrUtf8_;
        if (!v.feed(payload) || (fin && !v.complete())) return error::invalidUtf8ToSend;
        wrUtf8_ = v;
    }
    queueFrame(first ? toOpcode(kind) : Opcode::continuation, fin, 0, payload, false);
    wrFragmenting_ = !fin;
    return {};
}

std::error_code Connection::sendFramed(Bytes frame) {
    if (opts_->role != Role::server) return error::wrongRole; // a client masks each frame afresh
    if (wrCloseSent_) return error::notOpen;
    if (wrFragmenting_) return error::messageInProgress;
    if (!frame.empty()) std::memcpy(out_.appendData(frame.size(), opts_->pool), frame.data(), frame.size());
    return {};
}

std::error_code Connection::sendControl(Opcode op, Bytes payload) {
    if (wrCloseSent_) return error::notOpen;
    if (payload.size() > maxControlPayload) return error::controlPayloadTooLong;
    queueFrame(op, true, 0, payload, true);
    return {};
}

std::error_code Connection::ping(Bytes payload) { return sendControl(Opcode::ping, payload); }
std::error_code Connection::pong(Bytes payload) { return sendControl(Opcode::pong, payload); }

std::error_code Connection::close(std::uint16_t code, std::string_view reason) {
    if (wrCloseSent_) return error::notOpen;
    if (code == 0 ? !reason.empty() : !isValidWireCloseCode(code)) return error::closeCodeNotSendable;
    if (reason.size() > maxCloseReason) return error::closeReasonTooLong;
    if (!isValidUtf8(reason)) return error::invalidUtf8ToSend;
    queueClose(code, reason);
    // RFC 6455 §7.1.2: after our close frame, wait for the peer's.
    if (closeState_ == CloseState::open) closeState_ = CloseState::closingLocal;
    return {};
}

} // namespace tongdao::protocol
