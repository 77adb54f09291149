#include "tongdao/protocol/permessage_deflate.hpp"

#include "tongdao/error.hpp"
#include "tongdao/protocol/http.hpp"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace tongdao::protocol {

namespace {

// RFC 7692 §7.2.1: a message's compressed data ends with the tail of an empty stored
// block, 00 00 FF FF, which the sender removes and the receiver puts back.
constexpr std::byte emptyBlockTail[] = {std::byte{0x00}, std::byte{0x00}, std::byte{0xFF}, std::byte{0xFF}};

// How much room to give zlib at a time.
constexpr std::size_t chunkSize = 16 * 1024;

// One direction of zlib, created on first use: a connection that never sends a
// compressed message never pays for a compressor.
struct Deflater {
    z_stream s{};
    bool ready = false;
    ~Deflater() {
        if (ready) deflateEnd(&s);
    }
    bool init(const DeflateOptions& o, int windowBits) {
        if (ready) return true;
        // Negative window bits: raw deflate, no zlib header (RFC 7692 §7.2.1).
        ready = deflateInit2(&s, o.level, Z_DEFLATED, -windowBits, o.memLevel, Z_DEFAULT_STRATEGY) == Z_OK;
        return ready;
    }
};

struct Inflater {
    z_stream s{};
    bool ready = false;
    ~Inflater() {
        if (ready) inflateEnd(&s);
    }
    bool init() {
        if (ready) return true;
        // A 15-bit window decodes whatever window the peer used (8 to 15).
        ready = inflateInit2(&s, -15) == Z_OK;
        return ready;
    }
};

// Compresses a whole message into `out` and returns it without the empty-block tail.
Bytes deflateMessage(Deflater& d, const DeflateOptions& o, int windowBits, Bytes in, ByteBuffer& out, bool reset) {
    out.clear();
    if (!d.init(o, windowBits)) return {};
    d.s.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
    d.s.avail_in = static_cast<uInt>(in.size());
    for (;;) {
        const std::size_t room = std::max(chunkSize, in.size() / 2 + 64);
        std::byte* p = out.extend(room);
        d.s.next_out = reinterpret_cast<Bytef*>(p);
        d.s.avail_out = static_cast<uInt>(room);
        deflate(&d.s, Z_SYNC_FLUSH);
        out.resize(out.size() - d.s.avail_out);
        // Z_SYNC_FLUSH is complete once zlib left output room unused.
        if (d.s.avail_in == 0 && d.s.avail_out != 0) break;
    }
    if (reset) deflateReset(&d.s); // no context takeover (RFC 7692 §7.1.1)
    std::size_t n = out.size();
    if (n >= 4 && std::memcmp(out.data() + n - 4, emptyBlockTail, 4) == 0) n -= 4;
    return {out.data(), n};
}

// Inflates `in` into `out`, never past `limit` bytes: a zip bomb stops at the limit.
std::error_code inflateInto(Inflater& f, Bytes in, ByteBuffer& out, std::size_t limit) {
    f.s.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
    f.s.avail_in = static_cast<uInt>(in.size());
    while (f.s.avail_in != 0) {
        if (out.size() > limit) return error::messageTooBig;
        // One byte more than the limit allows, so going over is seen.
        const std::size_t room = std::min(chunkSize, limit - out.size() + 1);
        std::byte* p = out.extend(room);
        f.s.next_out = reinterpret_cast<Bytef*>(p);
        f.s.avail_out = static_cast<uInt>(room);
        const int rc = inflate(&f.s, Z_SYNC_FLUSH);
        out.resize(out.size() - f.s.avail_out);
        if (rc == Z_STREAM_END) {
            // A final block (BFINAL) ends this deflate stream; what follows starts afresh.
            inflateReset(&f.s);
            continue;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) return error::badCompressedData;
        if (rc == Z_BUF_ERROR && f.s.avail_out != 0) return error::badCompressedData; // no progress
    }
    // Output zlib still holds (it stopped for want of room).
    while (f.s.avail_out == 0) {
        if (out.size() > limit) return error::messageTooBig;
        const std::size_t room = std::min(chunkSize, limit - out.size() + 1);
        std::byte* p = out.extend(room);
        f.s.next_out = reinterpret_cast<Bytef*>(p);
        f.s.avail_out = static_cast<uInt>(room);
        const int rc = inflate(&f.s, Z_SYNC_FLUSH);
        out.resize(out.size() - f.s.avail_out);
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) return error::badCompressedData;
        if (rc == Z_BUF_ERROR) break;
    }
    if (out.size() > limit) return error::messageTooBig;
    return {};
}

std::error_code inflateMessagePart(Inflater& f, Bytes in, bool last, ByteBuffer& out, std::size_t limit, bool reset) {
    if (!f.init()) return error::badCompressedData;
    if (auto ec = inflateInto(f, in, out, limit)) {
        inflateReset(&f.s); // a failed message leaves no state behind
        return ec;
    }
    if (!last) return {};
    auto ec = inflateInto(f, {emptyBlockTail, 4}, out, limit);
    if (reset || ec) inflateReset(&f.s);
    return ec;
}

// --- parameters (RFC 7692 §7.1) -------------------------------------------------------

struct Params {
    bool serverNoContext = false;
    bool clientNoContext = false;
    int serverMaxBits = 0; ///< 0: absent
    bool clientMaxBits = false;
    int clientMaxBitsValue = 0; ///< 0: present without a value
};

bool parseBits(const std::optional<std::string>& v, int& out) {
    // "a decimal integer value in the range 8 to 15 without leading zeros"
    if (!v || v->empty() || (*v)[0] == '0') return false;
    int n = 0;
    const auto r = std::from_chars(v->data(), v->data() + v->size(), n);
    if (r.ec != std::errc{} || r.ptr != v->data() + v->size() || n < 8 || n > 15) return false;
    out = n;
    return true;
}

// False for an unknown or repeated parameter, or a bad value (§7.1: decline the offer,
// or fail the connection on a bad response).
bool parseParams(const ExtensionItem& item, Params& p, bool response) {
    bool seen[4] = {};
    for (const auto& param : item.params) {
        const auto& n = param.name;
        if (n == "server_no_context_takeover") {
            if (seen[0] || param.value) return false;
            seen[0] = p.serverNoContext = true;
        } else if (n == "client_no_context_takeover") {
            if (seen[1] || param.value) return false;
            seen[1] = p.clientNoContext = true;
        } else if (n == "server_max_window_bits") {
            if (seen[2] || !parseBits(param.value, p.serverMaxBits)) return false;
            seen[2] = true;
        } else if (n == "client_max_window_bits") {
            if (seen[3]) return false;
            seen[3] = p.clientMaxBits = true;
            // In an offer the value may be left out ("any"); a response must give one.
            if (param.value ? !parseBits(param.value, p.clientMaxBitsValue) : response) return false;
        } else {
            return false;
        }
    }
    return true;
}

} // namespace

// --- shared streams -------------------------------------------------------------------

namespace {
constexpr int minWindowBits = 9; // zlib's smallest raw-deflate window (it has no 8)
constexpr int maxWindowBits = 15;
} // namespace

struct SharedDeflate::Streams {
    // One compressor per window size (RFC 7692 §7.1.2.1: each client may ask for its own),
    // indexed by bits - 9. Each is a bare z_stream until its first message: only the sizes
    // in use cost zlib's window and hash tables.
    Deflater deflaters[maxWindowBits - minWindowBits + 1];
    Inflater inflater; // a 15-bit window reads any window size
    ByteBuffer out;
};

SharedDeflate::SharedDeflate(DeflateOptions options) : options_(options), z_(std::make_unique<Streams>()) {}
SharedDeflate::~SharedDeflate() = default;

Bytes SharedDeflate::compress(Bytes in, int windowBits) {
    const int top = std::clamp(options_.maxWindowBits, minWindowBits, maxWindowBits);
    const int bits = windowBits <= 0 || windowBits > top ? top : std::max(windowBits, minWindowBits);
    return deflateMessage(z_->deflaters[bits - minWindowBits], options_, bits, in, z_->out, true);
}

std::error_code SharedDeflate::decompress(Bytes in, bool last, ByteBuffer& out, std::size_t limit) {
    return inflateMessagePart(z_->inflater, in, last, out, limit, true);
}

// --- the per-connection extension -------------------------------------------------------

namespace {

class PerMessageDeflate final : public Extension {
public:
    PerMessageDeflate(const DeflateOptions& o, int ownBits, bool ownNoContext, bool peerNoContext,
                      SharedDeflate* shared)
        : options_(o), ownBits_(ownBits), ownNoContext_(ownNoContext), peerNoContext_(peerNoContext),
          shared_(shared) {}

    std::string_view name() const noexcept override { return "permessage-deflate"; }

    std::error_code decode(Bytes in, bool last, ByteBuffer& out, std::size_t limit) override {
        if (!shared_) return inflateMessagePart(own().inflater, in, last, out, limit, peerNoContext_);
        // Shared streams serve whole messages only: another connection's message may come
        // between two parts of this one, so the parts wait here first (bounded by limit).
        if (!last || !pending_.empty()) {
            if (pending_.size() + in.size() > limit) return error::messageTooBig;
            pending_.append(in);
            if (!last) return {};
            auto ec = shared_->decompress(pending_.view(), true, out, limit);
            pending_.release();
            return ec;
        }
        return shared_->decompress(in, true, out, limit);
    }

    std::optional<Bytes> encode(Bytes in, MessageKind) override {
        if (in.size() < options_.threshold || in.empty()) return std::nullopt;
        if (shared_) {
            const Bytes c = shared_->compress(in, ownBits_);
            // Each message stands alone here, so a message compression would grow goes as is
            // (and so does one zlib failed to start for).
            if (c.empty() || c.size() >= in.size()) return std::nullopt;
            return c;
        }
        auto& z = own();
        const Bytes c = deflateMessage(z.deflater, options_, ownBits_, in, z.out, ownNoContext_);
        // With context takeover the compressor's window already holds this message and
        // the peer's must too, so it goes compressed even when that is no smaller.
        if (ownNoContext_ && c.size() >= in.size()) return std::nullopt;
        if (c.empty() && !in.empty()) return std::nullopt; // zlib failed to start: send plain
        return c;
    }

    bool isShared(const SharedDeflate* s) const noexcept { return shared_ && shared_ == s; }
    int ownBits() const noexcept { return ownBits_; }

private:
    struct Own {
        Deflater deflater;
        Inflater inflater;
        ByteBuffer out;
    };
    Own& own() {
        if (!own_) own_ = std::make_unique<Own>();
        return *own_;
    }

    DeflateOptions options_;
    int ownBits_;
    bool ownNoContext_;
    bool peerNoContext_;
    SharedDeflate* shared_;
    std::unique_ptr<Own> own_; ///< dedicated streams, made on first use
    ByteBuffer pending_;       ///< shared mode: the parts of a message split across reads
};

} // namespace

bool usesSharedDeflate(const Extension* ext, const SharedDeflate* shared) noexcept {
    return sharedDeflateWindow(ext, shared) != 0;
}

int sharedDeflateWindow(const Extension* ext, const SharedDeflate* shared) noexcept {
    const auto* p = dynamic_cast<const PerMessageDeflate*>(ext);
    return p && p->isShared(shared) ? p->ownBits() : 0;
}

// --- negotiation ----------------------------------------------------------------------

std::string ClientDeflateFactory::offer() const {
    // client_max_window_bits without a value: "I can use whatever window you ask for".
    std::string s = "permessage-deflate; client_max_window_bits";
    if (options_.noContextTakeover) s += "; server_no_context_takeover; client_no_context_takeover";
    return s;
}

std::unique_ptr<Extension> ClientDeflateFactory::accept(const ExtensionItem& response, std::error_code& ec) const {
    Params p;
    if (!parseParams(response, p, true)) {
        ec = error::badExtensionResponse;
        return nullptr;
    }
    // §7.1.1.1: an offered server_no_context_takeover must be in an accepting response.
    if (options_.noContextTakeover && !p.serverNoContext) {
        ec = error::badExtensionResponse;
        return nullptr;
    }
    int ownBits = options_.maxWindowBits;
    if (p.clientMaxBits) ownBits = std::min(ownBits, p.clientMaxBitsValue);
    if (ownBits < minWindowBits) { // zlib cannot compress with a 256-byte window
        ec = error::badExtensionResponse;
        return nullptr;
    }
    const bool ownNoContext = p.clientNoContext || options_.noContextTakeover;
    return std::make_unique<PerMessageDeflate>(options_, ownBits, ownNoContext, p.serverNoContext, nullptr);
}

std::optional<ServerExtensionFactory::Agreement>
ServerDeflateFactory::negotiate(const std::vector<const ExtensionItem*>& offers) const {
    for (const ExtensionItem* offer : offers) {
        Params p;
        if (!parseParams(*offer, p, false)) continue; // §7.1: decline an offer we cannot parse
        int ownBits = std::clamp(options_.maxWindowBits, minWindowBits, maxWindowBits);
        if (p.serverMaxBits) {
            // §7.1.2.1: we compress with at most the window the client asks for, and say so
            // with no larger a value. zlib has no 8-bit raw-deflate window, so an offer of 8
            // cannot be honoured: decline it and try the next. Shared streams keep one
            // compressor per window size, so every size from 9 up is served in both modes.
            if (p.serverMaxBits < minWindowBits) continue;
            ownBits = std::min(ownBits, p.serverMaxBits);
        }
        // Shared streams need every message to stand alone, in both directions.
        const bool ownNoContext = shared_ || options_.noContextTakeover || p.serverNoContext;
        const bool peerNoContext = shared_ || options_.noContextTakeover || p.clientNoContext;
        std::string response = "permessage-deflate";
        if (ownNoContext) response += "; server_no_context_takeover";
        if (shared_ || options_.noContextTakeover) response += "; client_no_context_takeover";
        if (p.serverMaxBits || ownBits < 15) response += "; server_max_window_bits=" + std::to_string(ownBits);
        Agreement a;
        a.response = std::move(response);
        a.extension = std::make_unique<PerMessageDeflate>(options_, ownBits, ownNoContext, peerNoContext, shared_);
        return a;
    }
    return std::nullopt;
}

} // namespace tongdao::protocol
