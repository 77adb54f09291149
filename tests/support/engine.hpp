#pragma once
// Test support for the protocol engine: a handler that records events, feeding bytes
// whole, one byte at a time and at every split point, fixed mask keys, and a few
// frame builders. Bytes only, no sockets (python-websockets' tests/protocol.py style).

#include "tongdao/protocol/connection.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace tongdao::test {

using namespace tongdao::protocol;
using ByteVec = std::vector<std::byte>;

inline ByteVec bytes(std::initializer_list<int> list) {
    ByteVec v;
    for (int b : list) v.push_back(static_cast<std::byte>(b));
    return v;
}
inline ByteVec bytes(std::string_view s) {
    return ByteVec(reinterpret_cast<const std::byte*>(s.data()), reinterpret_cast<const std::byte*>(s.data()) + s.size());
}
inline ByteVec concat(std::initializer_list<ByteVec> parts) {
    // Sized once and copied in (vector::insert here trips GCC 12's -Wstringop-overflow at -O3).
    std::size_t total = 0;
    for (const auto& p : parts) total += p.size();
    ByteVec out(total);
    std::size_t at = 0;
    for (const auto& p : parts) {
        if (!p.empty()) std::memcpy(out.data() + at, p.data(), p.size());
        at += p.size();
    }
    return out;
}
inline std::string str(Bytes b) { return std::string(asString(b)); }

/** A recorded event, comparable and printable. */
struct Rec {
    std::string type; // "text", "binary", "ping", "pong", "close", "error"
    std::string data; // payload, or close reason
    int code = 0;     // close code, or the error enumerator
    bool operator==(const Rec&) const = default;
};
inline std::ostream& operator<<(std::ostream& os, const Rec& r) {
    os << r.type << "(";
    if (r.code) os << r.code << ", ";
    if (r.data.size() <= 64) os << '"' << r.data << '"';
    else os << r.data.size() << " bytes";
    return os << ")";
}
inline Rec text(std::string s) { return {"text", std::move(s)}; }
inline Rec binary(std::string s) { return {"binary", std::move(s)}; }
inline Rec pingEv(std::string s = {}) { return {"ping", std::move(s)}; }
inline Rec pongEv(std::string s = {}) { return {"pong", std::move(s)}; }
inline Rec closeEv(int code, std::string reason = {}) { return {"close", std::move(reason), code}; }
inline Rec errorEv(tongdao::error e) { return {"error", {}, static_cast<int>(e)}; }

/** Records every event. `onEach` (optional) runs after each, e.g. to send from a handler. */
struct Recorder : EventHandler {
    std::vector<Rec> events;
    std::function<void(const Rec&)> onEach;

    void add(Rec r) {
        events.push_back(std::move(r));
        if (onEach) onEach(events.back());
    }
    void onMessage(MessageKind k, Bytes b) { add({k == MessageKind::text ? "text" : "binary", str(b)}); }
    void onPing(Bytes b) { add(pingEv(str(b))); }
    void onPong(Bytes b) { add(pongEv(str(b))); }
    void onClose(std::uint16_t code, std::string_view reason) { add(closeEv(code, std::string(reason))); }
    void onError(std::error_code ec) { add({"error", {}, ec.value()}); }
};

/** A mask key from its four bytes in wire order. */
inline std::uint32_t maskKey(int a, int b, int c, int d) {
    const unsigned char k[4] = {static_cast<unsigned char>(a), static_cast<unsigned char>(b),
                                static_cast<unsigned char>(c), static_cast<unsigned char>(d)};
    std::uint32_t key;
    std::memcpy(&key, k, 4);
    return key;
}
/** The key of RFC 6455 §5.7's masked examples: 37 fa 21 3d. */
inline const std::uint32_t rfcKey = maskKey(0x37, 0xfa, 0x21, 0x3d);

/** Mask keys from a fixed list, repeating the last. */
struct FixedMask : MaskSource {
    std::vector<std::uint32_t> keys{rfcKey};
    std::size_t next = 0;
    std::uint32_t nextMask() noexcept override { return keys[std::min(next++, keys.size() - 1)]; }
};

/** Everything the engine queued, concatenated, and consumed. */
inline ByteVec drain(Connection& c) {
    ByteVec out;
    for (auto part : c.pendingOutput()) out.insert(out.end(), part.begin(), part.end());
    c.consumeOutput(out.size());
    return out;
}

/** The result of feeding a byte vector to a fresh engine. */
struct Run {
    std::vector<Rec> events;
    ByteVec output;
    CloseState state{};
    CloseStatus status;
};

/** Feeds `input` in pieces of the given sizes (the rest in one piece). Each piece is a fresh copy. */
inline Run feedPieces(const ConnectionOptions& opts, const ByteVec& input, const std::vector<std::size_t>& sizes,
                      std::function<std::unique_ptr<Extension>()> ext = nullptr) {
    // Outputs are compared between runs, so client masks come from a fixed key.
    FixedMask mask;
    ConnectionOptions o = opts;
    if (!o.maskSource) o.maskSource = &mask;
    Connection c(o, ext ? ext() : nullptr);
    Recorder r;
    std::size_t pos = 0;
    auto feed = [&](std::size_t n) {
        ByteVec piece(input.begin() + static_cast<std::ptrdiff_t>(pos), input.begin() + static_cast<std::ptrdiff_t>(pos + n));
        c.receive(piece, r);
        std::fill(piece.begin(), piece.end(), std::byte{0xEE}); // views must not outlive receive()
        pos += n;
    };
    for (auto n : sizes) {
        if (pos + n > input.size()) break;
        feed(n);
    }
    if (pos < input.size()) feed(input.size() - pos);
    return {r.events, drain(c), c.closeState(), c.closeStatus()};
}

/**
 * Feeds `input` whole, one byte at a time, and split in two at every point, and checks
 * that every way gives the same events and output. Returns the result of the whole feed.
 */
inline Run feedAllWays(const ConnectionOptions& opts, const ByteVec& input,
                       std::function<std::unique_ptr<Extension>()> ext = nullptr) {
    Run whole = feedPieces(opts, input, {}, ext);
    Run bytewise = feedPieces(opts, input, std::vector<std::size_t>(input.size(), 1), ext);
    EXPECT_EQ(whole.events, bytewise.events) << "one byte at a time";
    EXPECT_EQ(whole.output, bytewise.output) << "one byte at a time";
    for (std::size_t split = 1; split < input.size(); ++split) {
        Run two = feedPieces(opts, input, {split}, ext);
        EXPECT_EQ(whole.events, two.events) << "split at " << split;
        EXPECT_EQ(whole.output, two.output) << "split at " << split;
        if (whole.events != two.events) break; // one report is enough
    }
    return whole;
}

/** Options for a role, with the defaults otherwise. */
inline ConnectionOptions roleOpts(Role r) {
    ConnectionOptions o;
    o.role = r;
    return o;
}
/** A name for parameterised tests over the two roles. */
inline std::string roleName(const ::testing::TestParamInfo<Role>& info) {
    return info.param == Role::client ? "client" : "server";
}

/** Builds a frame by hand, for inputs the engine itself would never produce. */
inline ByteVec frame(int opcode, std::string_view payload, bool fin = true, bool masked = false,
                     std::uint32_t key = rfcKey, int rsv = 0) {
    ByteVec out(maxFrameHeaderSize + payload.size());
    const auto hs = writeFrameHeader(out.data(), fin, static_cast<std::uint8_t>(rsv), static_cast<Opcode>(opcode),
                                     payload.size(), masked, key);
    const auto* kb = reinterpret_cast<const std::byte*>(&key);
    for (std::size_t i = 0; i < payload.size(); ++i)
        out[hs + i] = static_cast<std::byte>(payload[i]) ^ (masked ? kb[i % 4] : std::byte{0});
    out.resize(hs + payload.size());
    return out;
}
/** The same frame, masked, as a client sends it. */
inline ByteVec cframe(int opcode, std::string_view payload, bool fin = true, int rsv = 0) {
    return frame(opcode, payload, fin, true, rfcKey, rsv);
}
/** A close payload: a big-endian code and a reason. */
/** A frame as the peer of `role` sends it: masked towards a server, plain towards a client. */
inline ByteVec peerFrame(Role role, int opcode, std::string_view payload, bool fin = true, int rsv = 0) {
    return frame(opcode, payload, fin, role == Role::server, rfcKey, rsv);
}

/** Tests run in both roles, with frames as the peer would send them. */
class BothRoles : public ::testing::TestWithParam<Role> {
protected:
    /** The role's options; a client masks with the RFC's key, as `f()` does for the peer. */
    ConnectionOptions opts() const {
        auto o = roleOpts(GetParam());
        o.maskSource = &mask_;
        return o;
    }
    /** A frame as this engine sends it (the mirror of `f()`). */
    ByteVec own(int opcode, std::string_view payload, bool fin = true) const {
        return peerFrame(GetParam() == Role::client ? Role::server : Role::client, opcode, payload, fin);
    }
    mutable FixedMask mask_;
    ByteVec f(int opcode, std::string_view payload, bool fin = true, int rsv = 0) const {
        return peerFrame(GetParam(), opcode, payload, fin, rsv);
    }
};

inline std::string closePayload(int code, std::string_view reason = {}) {
    std::string s;
    s += static_cast<char>(code >> 8);
    s += static_cast<char>(code & 0xFF);
    s += reason;
    return s;
}

} // namespace tongdao::test
