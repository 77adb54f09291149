#pragma once
/**
 * @file
 * IP addresses and CIDR ranges, from text and from socket addresses: enough to tell a
 * trusted proxy from anyone else (`ServerOptions::trustedProxies`).
 */

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sockaddr;

namespace tongdao::net {

/**
 * An IPv4 or IPv6 address, without a port. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
 * what a dual-stack socket reports for an IPv4 peer) is kept as its IPv4 address, so that
 * IPv4 ranges match it.
 */
class IpAddress {
public:
    /** 0.0.0.0. */
    IpAddress() = default;
    /**
     * "203.0.113.7" or "2001:db8::1": no port, brackets or zone, no leading zeros in IPv4
     * (inet_pton's forms). Empty if `text` is not one.
     */
    static std::optional<IpAddress> parse(std::string_view text) noexcept;
    /** The address of an AF_INET or AF_INET6 socket address; empty for any other family. */
    static std::optional<IpAddress> of(const sockaddr* sa) noexcept;

    bool isV6() const noexcept { return v6_; }
    /** 4 bytes for IPv4, 16 for IPv6, in network order. */
    const std::uint8_t* bytes() const noexcept { return bytes_.data(); }
    std::size_t size() const noexcept { return v6_ ? 16 : 4; }
    /** The address in its usual text form (inet_ntop). */
    std::string toString() const;

    friend bool operator==(const IpAddress&, const IpAddress&) = default;

private:
    friend class IpRange;
    /** An IPv4-mapped IPv6 address becomes its IPv4 address. */
    void unmap() noexcept;
    std::array<std::uint8_t, 16> bytes_{}; ///< IPv4 in the first 4
    bool v6_ = false;
};

/** A CIDR range: an address and how many of its leading bits must match. */
class IpRange {
public:
    /**
     * "10.0.0.0/8", "2001:db8::/32", or an address alone (a /32 or /128 of that address).
     * Refused: a prefix length over 32 (IPv4) or 128 (IPv6), a prefix that is not decimal
     * digits, and an address with bits set past its prefix ("10.0.0.1/8": a typo for /32 or
     * 10.0.0.0/8). `::ffff:a.b.c.d/N` with N of 96 or more is the IPv4 range a.b.c.d/(N-96).
     * On failure `why`, if given, says what is wrong, to follow the quoted text and a colon
     * ("'10.0.0.0/33': the prefix length of an IPv4 range is at most 32").
     */
    static std::optional<IpRange> parse(std::string_view text, std::string* why = nullptr);

    /** True if `a` is of the same family and its first `prefixLength()` bits match. */
    bool contains(const IpAddress& a) const noexcept;
    const IpAddress& address() const noexcept { return base_; }
    unsigned prefixLength() const noexcept { return prefix_; }
    /** "10.0.0.0/8", "::1/128". */
    std::string toString() const;

    friend bool operator==(const IpRange&, const IpRange&) = default;

private:
    IpAddress base_;
    unsigned prefix_ = 0;
};

/** A set of ranges; empty contains nothing. */
using IpRanges = std::vector<IpRange>;

/** True if one of `ranges` contains `a`. */
bool contains(const IpRanges& ranges, const IpAddress& a) noexcept;

/**
 * Ranges from a comma-separated list ("127.0.0.1, ::1, 10.0.0.0/8"; spaces around items are
 * ignored, an empty list is no range). Throws std::invalid_argument naming the first item
 * that is not a range, and why.
 */
IpRanges parseIpRanges(std::string_view list);

/** The IP address of the peer of a connected socket; empty if unknown (gone, not IP). */
std::optional<IpAddress> peerIpAddress(int fd) noexcept;

} // namespace tongdao::net
