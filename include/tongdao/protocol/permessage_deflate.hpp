#pragma once
/**
 * @file
 * permessage-deflate, RFC 7692: the negotiation in both roles and the per-message
 * transform, on zlib.
 *
 * Two ways to hold the zlib streams:
 * - dedicated: each connection has its own compressor and decompressor, so both sides may
 *   keep their LZ77 window across messages (context takeover): the best ratio, and about
 *   300 KiB per busy connection at the default window;
 * - shared: one decompressor and one compressor per window size in use (9 to 15 bits,
 *   each made on first need) per thread serve every connection; the server negotiates no
 *   context takeover in both directions (RFC 7692 §7.1.1) so each message stands alone,
 *   and an idle connection carries only a few bytes for it.
 */

#include "tongdao/protocol/extension.hpp"

#include <memory>

namespace tongdao::protocol {

/** How messages are compressed. */
struct DeflateOptions {
    int level = 6;                 ///< zlib level, 1 (fast) to 9 (small)
    int memLevel = 8;              ///< zlib memLevel, 1 to 9: memory against speed
    std::size_t threshold = 64;    ///< messages shorter than this go uncompressed
    int maxWindowBits = 15;        ///< our compressor's window, 9 to 15 (zlib cannot do 8)
    bool noContextTakeover = false; ///< ask that both sides reset their window after each message
};

/**
 * One thread's zlib streams for shared mode, and the scratch buffer an encoded message
 * is returned in: one decompressor (a 15-bit window reads any peer's), and a compressor
 * per window size asked for (RFC 7692 §7.1.2.1), each made on its first message.
 * Not thread-safe: one per loop.
 */
class SharedDeflate {
public:
    explicit SharedDeflate(DeflateOptions options = {});
    ~SharedDeflate();
    SharedDeflate(const SharedDeflate&) = delete;
    SharedDeflate& operator=(const SharedDeflate&) = delete;

    /**
     * Compresses a whole message on its own (no context), into the scratch buffer (valid
     * until the next call), with a window of `windowBits` (9 to 15; 0 or anything above
     * `options().maxWindowBits` means that maximum). Empty if zlib could not start.
     */
    Bytes compress(Bytes in, int windowBits = 0);
    /** Inflates one frame's payload of a message compressed without context. */
    std::error_code decompress(Bytes in, bool last, ByteBuffer& out, std::size_t limit);
    const DeflateOptions& options() const noexcept { return options_; }

private:
    struct Streams;
    DeflateOptions options_;
    std::unique_ptr<Streams> z_;
};

/** The client's side: offers permessage-deflate and accepts the server's parameters. */
class ClientDeflateFactory final : public ClientExtensionFactory {
public:
    explicit ClientDeflateFactory(DeflateOptions options = {}) : options_(options) {}
    std::string_view name() const noexcept override { return "permessage-deflate"; }
    /** "permessage-deflate; client_max_window_bits" (plus no-context-takeover if asked). */
    std::string offer() const override;
    std::unique_ptr<Extension> accept(const ExtensionItem& response, std::error_code& ec) const override;

private:
    DeflateOptions options_;
};

/**
 * The server's side. With `shared` set, it agrees only to no context takeover in both
 * directions and every connection uses the shared streams; otherwise each connection
 * gets its own. Either way it honours a `server_max_window_bits` of 9 to 15 and declines
 * an offer of 8 (zlib has no 256-byte window for raw deflate), moving on to the next.
 */
class ServerDeflateFactory final : public ServerExtensionFactory {
public:
    explicit ServerDeflateFactory(DeflateOptions options = {}, SharedDeflate* shared = nullptr)
        : options_(options), shared_(shared) {}
    std::string_view name() const noexcept override { return "permessage-deflate"; }
    std::optional<Agreement> negotiate(const std::vector<const ExtensionItem*>& offers) const override;

private:
    DeflateOptions options_;
    SharedDeflate* shared_;
};

/** True if `ext` is permessage-deflate on shared streams (what pub/sub can compress once for). */
bool usesSharedDeflate(const Extension* ext, const SharedDeflate* shared) noexcept;

/**
 * The window (9 to 15 bits) `ext` compresses with if it is permessage-deflate on `shared`,
 * else 0: pub/sub compresses a message once per shared compressor and window.
 */
int sharedDeflateWindow(const Extension* ext, const SharedDeflate* shared) noexcept;

} // namespace tongdao::protocol
