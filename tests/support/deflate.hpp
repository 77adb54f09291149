#pragma once
// permessage-deflate checks from outside the library: a strict raw inflater with a given
// window (zlib refuses a match farther back than 2^bits, so it proves the sender kept to
// the window it agreed on, RFC 7692 §7.1.2), a frame splitter, and a client extension that
// offers `server_max_window_bits` and inflates with exactly that window.

#include "tongdao/error.hpp"
#include "tongdao/protocol/extension.hpp"

#include <zlib.h>

#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace tongdao::test {

using WireBytes = std::vector<std::byte>;

/**
 * Inflates one message's compressed payload (without its 00 00 FF FF tail, RFC 7692 §7.2.2)
 * through a raw inflater of `bits` (8 to 15). Nothing if zlib fails: a match beyond the
 * window ("invalid distance too far back") or bad data.
 */
inline std::optional<std::string> inflateStrict(protocol::Bytes payload, int bits) {
    z_stream z{};
    if (inflateInit2(&z, -bits) != Z_OK) return std::nullopt;
    std::string in(protocol::asString(payload));
    in += std::string("\x00\x00\xff\xff", 4);
    z.next_in = reinterpret_cast<Bytef*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    std::string out;
    int rc = Z_OK;
    while (rc == Z_OK && z.avail_in != 0) {
        char buf[16384];
        z.next_out = reinterpret_cast<Bytef*>(buf);
        z.avail_out = sizeof buf;
        rc = inflate(&z, Z_SYNC_FLUSH);
        out.append(buf, sizeof buf - z.avail_out);
        if (rc == Z_BUF_ERROR && z.avail_out != 0) break;
    }
    inflateEnd(&z);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return std::nullopt;
    if (z.avail_in != 0) return std::nullopt;
    return out;
}

/** One frame from the wire: RSV1 and the payload, unmasked. */
struct WireFrame {
    bool rsv1 = false;
    int opcode = 0;
    std::string payload;
};

/** Splits whole frames (masked or not); stops at the first incomplete one. */
inline std::vector<WireFrame> splitFrames(const WireBytes& wire) {
    std::vector<WireFrame> out;
    std::size_t i = 0;
    auto at = [&](std::size_t k) { return static_cast<unsigned>(wire[k]); };
    while (i + 2 <= wire.size()) {
        WireFrame f;
        f.rsv1 = (at(i) & 0x40) != 0;
        f.opcode = static_cast<int>(at(i) & 0x0f);
        const bool masked = (at(i + 1) & 0x80) != 0;
        std::uint64_t n = at(i + 1) & 0x7f;
        std::size_t p = i + 2;
        const std::size_t ext = n == 126 ? 2 : n == 127 ? 8 : 0;
        if (p + ext > wire.size()) break;
        if (ext) {
            n = 0;
            for (std::size_t k = 0; k < ext; ++k) n = (n << 8) | at(p + k);
            p += ext;
        }
        unsigned char key[4] = {};
        if (masked) {
            if (p + 4 > wire.size()) break;
            for (int k = 0; k < 4; ++k) key[k] = static_cast<unsigned char>(at(p + static_cast<std::size_t>(k)));
            p += 4;
        }
        if (p + n > wire.size()) break;
        f.payload.resize(n);
        for (std::size_t k = 0; k < n; ++k)
            f.payload[k] = static_cast<char>(at(p + k) ^ (masked ? key[k % 4] : 0u));
        out.push_back(std::move(f));
        i = p + n;
    }
    return out;
}

/**
 * About `n` bytes of text that only a wide window compresses well: random 1.5 KiB blocks
 * of letters, each repeated four times. A sender that ignores a small window is caught by
 * inflateStrict; one that keeps to it still shrinks the text (letters code in 5 bits).
 */
inline std::string farRepeats(std::size_t n, unsigned seed = 7692) {
    std::mt19937 rng(seed);
    std::string s;
    while (s.size() < n) {
        std::string block(1536, 'a');
        for (auto& c : block) c = static_cast<char>('a' + rng() % 26);
        for (int r = 0; r < 4; ++r) s += block;
    }
    s.resize(n);
    return s;
}

/**
 * A client's permessage-deflate that offers `server_max_window_bits=bits` (0: leaves it
 * out) and inflates every message with a raw window of exactly `bits` (15 when left out),
 * resetting after each one if the server said server_no_context_takeover. It sends plain.
 * `agreed` has the server's response.
 */
class WindowCheckingFactory final : public protocol::ClientExtensionFactory {
public:
    explicit WindowCheckingFactory(int bits) : bits_(bits) {}
    std::string_view name() const noexcept override { return "permessage-deflate"; }
    std::string offer() const override {
        std::string s = "permessage-deflate; client_max_window_bits";
        if (bits_) s += "; server_max_window_bits=" + std::to_string(bits_);
        return s;
    }
    std::unique_ptr<protocol::Extension> accept(const protocol::ExtensionItem& response,
                                                std::error_code&) const override {
        return std::make_unique<Ext>(bits_ ? bits_ : 15, response.find("server_no_context_takeover") != nullptr);
    }

private:
    class Ext final : public protocol::Extension {
    public:
        Ext(int bits, bool reset) : reset_(reset) { ready_ = inflateInit2(&z_, -bits) == Z_OK; }
        ~Ext() override {
            if (ready_) inflateEnd(&z_);
        }
        std::string_view name() const noexcept override { return "permessage-deflate"; }
        std::error_code decode(protocol::Bytes in, bool last, protocol::ByteBuffer& out, std::size_t limit) override {
            pending_ += protocol::asString(in);
            if (!last) return {};
            pending_ += std::string("\x00\x00\xff\xff", 4);
            z_.next_in = reinterpret_cast<Bytef*>(pending_.data());
            z_.avail_in = static_cast<uInt>(pending_.size());
            while (z_.avail_in != 0) {
                char buf[16384];
                z_.next_out = reinterpret_cast<Bytef*>(buf);
                z_.avail_out = sizeof buf;
                const int rc = inflate(&z_, Z_SYNC_FLUSH);
                out.append({reinterpret_cast<const std::byte*>(buf), sizeof buf - z_.avail_out});
                if (out.size() > limit) return error::messageTooBig;
                if (rc != Z_OK && !(rc == Z_BUF_ERROR && z_.avail_out != 0)) {
                    pending_.clear();
                    return error::badCompressedData; // beyond the window, or bad data
                }
                if (rc == Z_BUF_ERROR) break;
            }
            pending_.clear();
            if (reset_) inflateReset(&z_);
            return {};
        }
        std::optional<protocol::Bytes> encode(protocol::Bytes, protocol::MessageKind) override { return std::nullopt; }

    private:
        z_stream z_{};
        bool ready_ = false;
        bool reset_;
        std::string pending_;
    };
    int bits_;
};

} // namespace tongdao::test
