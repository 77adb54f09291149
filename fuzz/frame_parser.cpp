// libFuzzer target: the frame engine, `Connection::receive`, in both roles.
//
// The input decides everything, so a crash replays from its file alone
// (uWebSockets' fuzzing/WebSocket.cpp takes its chunk sizes from the input the same way):
//
//   byte 0       options: bit 0 client role (else server); bit 1 small limits (512-byte
//                frames, 1 KiB messages: reaches 1009); bit 2 no auto-pong; bit 3 an
//                identity extension that owns RSV1; bit 4 a buffer pool; bit 5 the
//                handler answers events (send, fragments, pre-made frames, ping, pong,
//                close, drain)
//   then pieces  one byte h; if h & 0x80, one byte d; then (h & 0x7F) bytes, which are
//                fed as one transport read (fewer at the end of the input). After the
//                read, if h & 0x80, output is drained: all of it if d == 255, else
//                min(d * 3, pending) bytes.
//   at the end   receiveEof(), then everything left is drained.
//
// Each read is a fresh heap copy, overwritten after receive(), so ASan reports a view
// that outlives it. What the engine writes is fed to a second engine in the other role,
// which must find only well-formed frames.
//
// Invariants checked (a failure aborts, and libFuzzer keeps the input):
//   - no event after an error or a close event; an error leaves the connection failed
//     and closed, with the close code of its reason;
//   - messages are at most maxMessageSize bytes; text is UTF-8; control payloads are at
//     most 125 bytes; close codes are 1005 or sendable;
//   - bufferedAmount() equals the sum of pendingOutput()'s parts, always;
//   - nothing is queued after our close frame; sends after it return notOpen;
//   - after receiveEof() the connection is closed and the transport done.

#include "tongdao/protocol/connection.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace {

using namespace tongdao::protocol;
using tongdao::error;

volatile unsigned payloadSink = 0; // payload sums land here, so reading them is not optimised away

void check(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "frame_parser: invariant broken: %s\n", what);
    std::abort();
}

/** Reads the fuzzer's input front to back; past the end, bytes read as 0. */
class Input {
public:
    Input(const std::uint8_t* data, std::size_t size) noexcept : p_(data), n_(size) {}
    bool empty() const noexcept { return n_ == 0; }
    std::uint8_t byte() noexcept {
        if (n_ == 0) return 0;
        --n_;
        return *p_++;
    }
    std::span<const std::uint8_t> take(std::size_t k) noexcept {
        k = std::min(k, n_);
        std::span<const std::uint8_t> s{p_, k};
        p_ += k;
        n_ -= k;
        return s;
    }

private:
    const std::uint8_t* p_;
    std::size_t n_;
};

/** A transport read: a heap copy of exactly its size, so reads past it are caught. */
std::vector<std::byte> copyOf(std::span<const std::uint8_t> s) {
    std::vector<std::byte> v(s.size());
    if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
    return v;
}

/** Deterministic mask keys, so a crash replays (the engine takes any source). */
class CountingMask final : public MaskSource {
public:
    std::uint32_t nextMask() noexcept override {
        key_ = key_ * 1664525u + 1013904223u;
        return key_;
    }

private:
    std::uint32_t key_ = 0x3d21fa37;
};

/**
 * An extension that transforms nothing: it owns RSV1, so the engine's path for
 * transformed messages (assembly, the limit passed to decode, RSV1 on send) is reached.
 */
class IdentityExtension final : public Extension {
public:
    std::string_view name() const noexcept override { return "x-identity"; }
    std::error_code decode(Bytes in, bool, ByteBuffer& out, std::size_t limit) override {
        if (out.size() > limit || in.size() > limit - out.size()) return error::messageTooBig;
        out.append(in);
        return {};
    }
    std::optional<Bytes> encode(Bytes in, MessageKind) override {
        if (in.size() % 2 == 0) return std::nullopt; // even sizes go out untransformed
        return in;
    }
};

std::unique_ptr<Extension> extensionIf(bool on) {
    if (!on) return nullptr;
    return std::make_unique<IdentityExtension>();
}

unsigned touch(Bytes b) {
    unsigned sum = 0;
    for (auto x : b) sum += static_cast<unsigned>(x);
    return sum;
}

void checkOutputAccounting(const Connection& c) {
    check(c.bufferedAmount() == c.pendingOutput().size(), "bufferedAmount() != sum of pendingOutput() parts");
}

/** The other end: parses everything our engine writes and must never fail. */
class Peer {
public:
    Peer(Role ourRole, bool extension) : conn_(makeOptions(ourRole), extensionIf(extension)) {}

    /** Writes `n` bytes of `c`'s output "to the wire", that is, to the peer. */
    void drain(Connection& c, std::size_t n) {
        checkOutputAccounting(c);
        const std::size_t before = c.bufferedAmount();
        check(n <= before, "drain beyond pending output");
        std::vector<std::byte> wire;
        wire.reserve(n);
        for (auto part : c.pendingOutput()) {
            const std::size_t k = std::min(part.size(), n - wire.size());
            wire.insert(wire.end(), part.begin(), part.begin() + static_cast<std::ptrdiff_t>(k));
            if (wire.size() == n) break;
        }
        check(wire.size() == n, "pendingOutput() shorter than bufferedAmount()");
        c.consumeOutput(n);
        check(c.bufferedAmount() == before - n, "consumeOutput(n) did not remove n bytes");
        checkOutputAccounting(c);
        written_ += n;
        conn_.receive(wire, handler_);
        // The peer's own output (the echo of our close) goes nowhere.
        conn_.consumeOutput(conn_.bufferedAmount());
    }

    void drainAll(Connection& c) { drain(c, c.bufferedAmount()); }

    /** Bytes written so far. */
    std::size_t written() const noexcept { return written_; }
    unsigned sink() const noexcept { return handler_.sink; }

private:
    struct Handler : EventHandler {
        unsigned sink = 0;
        void onMessage(MessageKind, Bytes b) { sink += touch(b); }
        void onError(std::error_code ec) {
            std::fprintf(stderr, "frame_parser: the peer rejects our output: %s\n", ec.message().c_str());
            check(false, "our output is not well-formed");
        }
    };

    ConnectionOptions& makeOptions(Role ourRole) {
        opts_.role = ourRole == Role::server ? Role::client : Role::server;
        opts_.autoPong = false;
        opts_.maskSource = &mask_;
        return opts_;
    }

    CountingMask mask_;
    ConnectionOptions opts_;
    Connection conn_;
    Handler handler_;
    std::size_t written_ = 0;
};

/** The handler under test: checks each event and sometimes answers it. */
class Handler : public EventHandler {
public:
    Handler(Connection& c, const ConnectionOptions& o, Peer& peer, bool act) noexcept
        : conn_(c), opts_(o), peer_(peer), act_(act) {}

    void onMessage(MessageKind k, Bytes b) {
        ++events_;
        check(!ended_, "a message after an error or close event");
        check(k == MessageKind::text || k == MessageKind::binary, "message of unknown kind");
        check(b.size() <= opts_.maxMessageSize, "message larger than maxMessageSize");
        if (k == MessageKind::text) check(isValidUtf8(b), "text message that is not UTF-8");
        sink_ += touch(b);
        react(k, b);
    }
    void onPing(Bytes b) {
        ++events_;
        check(!ended_, "a ping after an error or close event");
        check(b.size() <= maxControlPayload, "ping payload over 125 bytes");
        sink_ += touch(b);
        react(MessageKind::binary, b);
    }
    void onPong(Bytes b) {
        ++events_;
        check(!ended_, "a pong after an error or close event");
        check(b.size() <= maxControlPayload, "pong payload over 125 bytes");
        sink_ += touch(b);
        react(MessageKind::binary, b);
    }
    void onClose(std::uint16_t code, std::string_view reason) {
        ++events_;
        check(!ended_, "a close after an error or close event");
        ended_ = true;
        check(code == CloseCode::noStatus || isValidWireCloseCode(code), "close code not allowed on the wire");
        check(code != CloseCode::noStatus || reason.empty(), "a reason without a close code");
        check(reason.size() <= maxCloseReason, "close reason over 123 bytes");
        check(isValidUtf8(reason), "close reason that is not UTF-8");
        sink_ += touch(asBytes(reason));
        check(conn_.closeState() == CloseState::closed, "close event but not closed");
        check(conn_.closeStatus().remote && conn_.closeStatus().code == code, "closeStatus() disagrees");
        closeQueued(); // ours, sent before, or the echo queued now
        check(conn_.sendText("late") == error::notOpen, "send after the peer's close did not fail");
        checkOutputAccounting(conn_);
    }
    void onError(std::error_code ec) {
        ++events_;
        check(!ended_, "an error after an error or close event");
        ended_ = true;
        check(ec == tongdao::condition::protocolViolation, "error event that is not a protocol violation");
        check(conn_.failed() && conn_.closeState() == CloseState::closed, "error event but not failed and closed");
        check(conn_.closeStatus().error == ec, "closeStatus().error disagrees");
        check(conn_.closeStatus().code == tongdao::closeCodeFor(static_cast<error>(ec.value())),
              "close code does not match the error");
        closeQueued();
        check(conn_.ping() == error::notOpen, "ping after failing did not fail");
        checkOutputAccounting(conn_);
    }

    /** Checks what holds between reads. */
    void checkState() const {
        checkOutputAccounting(conn_);
        if (conn_.failed()) check(conn_.closeState() == CloseState::closed, "failed but not closed");
        if (closeSent_)
            check(conn_.bufferedAmount() + peer_.written() == queuedAtClose_, "output queued after our close frame");
        static_cast<void>(conn_.closeExpected());
        static_cast<void>(conn_.transportDone());
    }

    bool ended() const noexcept { return ended_; }
    std::size_t events() const noexcept { return events_; }
    unsigned sink() const noexcept { return sink_; }

private:
    void closeQueued() {
        if (closeSent_) return;
        closeSent_ = true;
        queuedAtClose_ = conn_.bufferedAmount() + peer_.written();
    }

    // The expected result of a send, given what the handler knows of the state.
    std::error_code expectSend() const {
        if (closeSent_) return error::notOpen;
        if (fragmenting_) return error::messageInProgress;
        return {};
    }

    void react(MessageKind kind, Bytes b) {
        if (!act_) return;
        const unsigned pick = b.empty() ? counter_++ : static_cast<unsigned>(b[0]) + static_cast<unsigned>(b.size());
        const Bytes control = b.first(std::min(b.size(), maxControlPayload));
        std::error_code ec;
        switch (pick % 13) {
        case 0:
            ec = conn_.send(kind, b);
            check(ec == expectSend(), "send() result");
            break;
        case 1:
            ec = conn_.ping(control);
            check(ec == (closeSent_ ? make_error_code(error::notOpen) : std::error_code{}), "ping() result");
            break;
        case 2:
            ec = conn_.pong(control);
            check(ec == (closeSent_ ? make_error_code(error::notOpen) : std::error_code{}), "pong() result");
            break;
        case 3:
        case 4: {
            const bool withCode = pick % 13 == 3;
            ec = withCode ? conn_.close(CloseCode::normal, "bye") : conn_.close(0);
            check(ec == (closeSent_ ? make_error_code(error::notOpen) : std::error_code{}), "close() result");
            if (!ec) closeQueued();
            break;
        }
        case 5:
        case 6:
            fragment(kind, b, pick % 13 == 6);
            break;
        case 7:
            ec = conn_.close(CloseCode::noStatus);
            check(ec == (closeSent_ ? error::notOpen : error::closeCodeNotSendable), "close(1005) result");
            break;
        case 8: {
            const std::array<std::byte, maxControlPayload + 1> big{};
            ec = conn_.ping(big);
            check(ec == (closeSent_ ? error::notOpen : error::controlPayloadTooLong), "oversized ping result");
            break;
        }
        case 9:
            // Writing from inside a handler, as a driver that writes eagerly would.
            peer_.drain(conn_, std::min<std::size_t>(conn_.bufferedAmount(), b.size() * 7));
            break;
        case 10:
            sendFramed(b);
            break;
        default: break;
        }
        checkOutputAccounting(conn_);
    }

    // A frame made once for many connections (server role only).
    void sendFramed(Bytes b) {
        std::vector<std::byte> frame(maxFrameHeaderSize + b.size());
        const std::size_t hs = writeFrameHeader(frame.data(), true, 0, Opcode::binary, b.size(), false, 0);
        if (!b.empty()) std::memcpy(frame.data() + hs, b.data(), b.size());
        frame.resize(hs + b.size());
        const auto ec = conn_.sendFramed(frame);
        if (opts_.role == Role::client) check(ec == error::wrongRole, "sendFramed() from a client did not fail");
        else check(ec == expectSend(), "sendFramed() result");
    }

    void fragment(MessageKind kind, Bytes b, bool fin) {
        if (!fragmenting_) {
            fragmentKind_ = kind;
            fragmentUtf8_.reset();
        }
        // RFC 6455 §8.1: the fragments of a text message are UTF-8 as a whole.
        bool valid = true;
        Utf8Validator v = fragmentUtf8_;
        if (fragmentKind_ == MessageKind::text) valid = v.feed(b) && (!fin || v.complete());
        const auto ec = conn_.sendFragment(fragmentKind_, b, fin);
        if (closeSent_) {
            check(ec == error::notOpen, "sendFragment() after close did not fail");
            return;
        }
        check(ec == (valid ? std::error_code{} : make_error_code(error::invalidUtf8ToSend)), "sendFragment() result");
        if (ec) return;
        fragmentUtf8_ = v;
        fragmenting_ = !fin;
    }

    Connection& conn_;
    const ConnectionOptions& opts_;
    Peer& peer_;
    bool act_;
    bool ended_ = false;
    std::size_t events_ = 0;
    bool closeSent_ = false;
    std::size_t queuedAtClose_ = 0; ///< output queued and written when our close frame was queued
    bool fragmenting_ = false;
    MessageKind fragmentKind_ = MessageKind::binary;
    Utf8Validator fragmentUtf8_;
    unsigned counter_ = 0;
    unsigned sink_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Input in(data, size);
    const std::uint8_t config = in.byte();
    const bool extension = (config & 0x08) != 0;

    BufferPool pool; // declared before the connection, which returns its buffers to it
    CountingMask mask;
    ConnectionOptions opts;
    opts.role = (config & 0x01) ? Role::client : Role::server;
    if (config & 0x02) {
        opts.maxFrameSize = 512;
        opts.maxMessageSize = 1024;
    }
    opts.autoPong = (config & 0x04) == 0;
    opts.maskSource = &mask;
    if (config & 0x10) opts.pool = &pool;

    Connection conn(opts, extensionIf(extension));
    Peer peer(opts.role, extension);
    Handler handler(conn, opts, peer, (config & 0x20) != 0);

    while (!in.empty()) {
        const std::uint8_t head = in.byte();
        std::optional<std::uint8_t> drain;
        if (head & 0x80) drain = in.byte();
        auto read = copyOf(in.take(head & 0x7F));
        conn.receive(read, handler);
        std::fill(read.begin(), read.end(), std::byte{0xEE}); // views must not outlive receive()
        handler.checkState();
        if (drain) {
            const std::size_t pending = conn.bufferedAmount();
            peer.drain(conn, *drain == 255 ? pending : std::min<std::size_t>(pending, *drain * 3u));
            handler.checkState();
        }
    }

    conn.receiveEof();
    check(conn.closeState() == CloseState::closed, "not closed after end of input");
    if (!handler.ended()) check(conn.closeStatus().code == CloseCode::abnormal, "end of input without close is not 1006");
    // Input after the end is ignored.
    std::vector<std::byte> late{std::byte{0x89}, std::byte{0x80}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}};
    const std::size_t eventsBefore = handler.events();
    conn.receive(late, handler);
    check(handler.events() == eventsBefore, "an event after receiveEof()");
    handler.checkState();
    peer.drainAll(conn);
    check(conn.bufferedAmount() == 0 && conn.pendingOutput().empty(), "output left after draining it all");
    check(conn.transportDone(), "transport not done after end of input");
    handler.checkState();
    payloadSink = handler.sink() + peer.sink();
    return 0;
}
