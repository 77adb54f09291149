#pragma once
// The client's address behind trusted proxies: X-Forwarded-For read from the right, or
// X-Real-IP, and only when the TCP peer is one of the proxies (ServerOptions::trustedProxies).

#include "tongdao/net/address.hpp"
#include "tongdao/protocol/http.hpp"

#include <cstddef>
#include <optional>
#include <string_view>

namespace tongdao::detail {

/** X-Forwarded-For entries looked at, from the right; the header itself is bounded by the head's size. */
inline constexpr std::size_t maxForwardedEntries = 32;

/**
 * One X-Forwarded-For or X-Real-IP entry: an address, optionally with a port as some
 * proxies write it ("203.0.113.7:4711", "[2001:db8::1]:4711", "[2001:db8::1]"). Empty for
 * anything else ("unknown", an obfuscated name, garbage).
 */
std::optional<net::IpAddress> parseForwardedEntry(std::string_view entry) noexcept;

/**
 * The client's address as the proxies in front of us saw it, or empty: the peer is the
 * client (it is not in `trusted`, or it passed no usable address).
 *
 * From a trusted `peer` only: the X-Forwarded-For fields (several are one list, in order)
 * are walked from the right, passing over the addresses that are themselves in `trusted`
 * (proxies in a chain); the first that is not is the client. If all are trusted, the
 * leftmost is. A malformed entry ends the walk there, as if the list began after it: what
 * lies to its left was not written by a proxy we trust to write well-formed entries. Empty
 * entries are passed over, and at most `maxForwardedEntries` are looked at (the last of
 * them is taken if all are trusted). Without any usable X-Forwarded-For entry, X-Real-IP
 * (its last field) is the client, if it is an address.
 */
std::optional<net::IpAddress> forwardedClient(const net::IpAddress& peer, const net::IpRanges& trusted,
                                              const protocol::http::HeaderList& headers);

} // namespace tongdao::detail
