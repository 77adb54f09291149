#include "tongdao/net/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

namespace tongdao::net {

namespace {

/** `text` as inet_pton reads it into `bytes`, an IPv4-mapped IPv6 address left as IPv6. */
bool parseRaw(std::string_view text, std::array<std::uint8_t, 16>& bytes, bool& v6) noexcept {
    char buf[INET6_ADDRSTRLEN];
    // inet_pton reads up to a NUL: one inside the text would hide what follows it.
    if (text.empty() || text.size() >= sizeof buf || text.find('\0') != std::string_view::npos) return false;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    bytes.fill(0);
    v6 = text.find(':') != std::string_view::npos;
    return ::inet_pton(v6 ? AF_INET6 : AF_INET, buf, bytes.data()) == 1;
}

bool isV4Mapped(const std::array<std::uint8_t, 16>& b) noexcept {
    static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(b.data(), prefix, sizeof prefix) == 0;
}

/** True if the first `bits` bits of `a` and `b` are equal. */
bool samePrefix(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) noexcept {
    const unsigned whole = bits / 8;
    if (std::memcmp(a, b, whole) != 0) return false;
    const unsigned rest = bits % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

} // namespace

// --- IpAddress ----------------------------------------------------------------------------

void IpAddress::unmap() noexcept {
    if (!v6_ || !isV4Mapped(bytes_)) return;
    std::memmove(bytes_.data(), bytes_.data() + 12, 4);
    std::memset(bytes_.data() + 4, 0, 12);
    v6_ = false;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) noexcept {
    IpAddress a;
    if (!parseRaw(text, a.bytes_, a.v6_)) return std::nullopt;
    a.unmap();
    return a;
}

std::optional<IpAddress> IpAddress::of(const sockaddr* sa) noexcept {
    if (!sa) return std::nullopt;
    IpAddress a;
    if (sa->sa_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        std::memcpy(a.bytes_.data(), &in->sin_addr, 4);
        return a;
    }
    if (sa->sa_family != AF_INET6) return std::nullopt;
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(a.bytes_.data(), &in6->sin6_addr, 16);
    a.v6_ = true;
    a.unmap();
    return a;
}

std::string IpAddress::toString() const {
    char buf[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(v6_ ? AF_INET6 : AF_INET, bytes_.data(), buf, sizeof buf);
    return buf;
}

// --- IpRange ------------------------------------------------------------------------------

std::optional<IpRange> IpRange::parse(std::string_view text, std::string* why) {
    auto fail = [why](std::string reason) -> std::optional<IpRange> {
        if (why) *why = std::move(reason);
        return std::nullopt;
    };
    const auto slash = text.find('/');
    const auto addressText = text.substr(0, slash);
    IpRange r;
    if (slash == std::string_view::npos) {
        const auto a = IpAddress::parse(addressText);
        if (!a) return fail("not an IP address or CIDR range (as 127.0.0.1, 10.0.0.0/8 or ::1/128)");
        r.base_ = *a;
        r.prefix_ = a->isV6() ? 128 : 32;
        return r;
    }
    if (!parseRaw(addressText, r.base_.bytes_, r.base_.v6_))
        return fail("not an IP address before the '/' (as 10.0.0.0/8 or ::1/128)");
    const auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string_view::npos)
        return fail("the prefix length after the '/' is a number of bits (as /8 or /128)");
    unsigned bits = 0;
    for (char c : digits) bits = bits * 10 + static_cast<unsigned>(c - '0');
    const unsigned max = r.base_.v6_ ? 128 : 32;
    if (bits > max)
        return fail(std::string("the prefix length of an ") + (r.base_.v6_ ? "IPv6" : "IPv4") + " range is at most " +
                    std::to_string(max));
    if (r.base_.v6_ && bits >= 96 && isV4Mapped(r.base_.bytes_)) {
        // ::ffff:10.0.0.0/104 is 10.0.0.0/8: the form IPv4 peers of a dual-stack socket take.
        r.base_.unmap();
        bits -= 96;
    }
    r.prefix_ = bits;
    IpRange masked = r;
    for (unsigned i = 0; i < 16; ++i) {
        const unsigned from = i * 8;
        if (from >= bits) masked.base_.bytes_[i] = 0;
        else if (bits - from < 8) masked.base_.bytes_[i] &= static_cast<std::uint8_t>(0xff << (8 - (bits - from)));
    }
    if (!(masked.base_ == r.base_))
        return fail("bits are set past the /" + std::string(digits) + " prefix (the range would be " +
                    masked.toString() + ")");
    return r;
}

bool IpRange::contains(const IpAddress& a) const noexcept {
    return a.v6_ == base_.v6_ && samePrefix(a.bytes_.data(), base_.bytes_.data(), prefix_);
}

std::string IpRange::toString() const { return base_.toString() + "/" + std::to_string(prefix_); }

// --- sets -----------------------------------------------------------------------------------

bool contains(const IpRanges& ranges, const IpAddress& a) noexcept {
    for (const auto& r : ranges)
        if (r.contains(a)) return true;
    return false;
}

IpRanges parseIpRanges(std::string_view list) {
    IpRanges out;
    if (trim(list).empty()) return out;
    while (true) {
        const auto comma = list.find(',');
        const auto item = trim(list.substr(0, comma));
        std::string why;
        if (item.empty()) throw std::invalid_argument("an empty item in the list '" + std::string(list) + "'");
        const auto r = IpRange::parse(item, &why);
        if (!r) throw std::invalid_argument("'" + std::string(item) + "': " + why);
        out.push_back(*r);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return out;
}

std::optional<IpAddress> peerIpAddress(int fd) noexcept {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
    return IpAddress::of(reinterpret_cast<const sockaddr*>(&ss));
}

} // namespace tongdao::net
