// IP addresses and CIDR ranges (net/address.hpp): the forms --trusted-proxy takes, the ones
// it refuses and why, IPv4-mapped IPv6 addresses, and membership at the prefix's edges.

#include "tongdao/net/address.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdexcept>
#include <string>

namespace tongdao::net {
namespace {

IpAddress ip(std::string_view text) {
    const auto a = IpAddress::parse(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(IpAddress{});
}

IpRange range(std::string_view text) {
    std::string why;
    const auto r = IpRange::parse(text, &why);
    EXPECT_TRUE(r) << text << ": " << why;
    return r.value_or(IpRange{});
}

/** Why `text` is refused (it must be). */
std::string refusal(std::string_view text) {
    std::string why;
    EXPECT_FALSE(IpRange::parse(text, &why)) << text;
    return why;
}

TEST(IpAddress, ParsesBothFamilies) {
    EXPECT_EQ(ip("203.0.113.7").toString(), "203.0.113.7");
    EXPECT_FALSE(ip("203.0.113.7").isV6());
    EXPECT_EQ(ip("2001:db8::1").toString(), "2001:db8::1");
    EXPECT_TRUE(ip("2001:DB8::1").isV6());
    EXPECT_EQ(ip("2001:DB8::1").toString(), "2001:db8::1"); // one spelling in the log
    EXPECT_EQ(ip("::1").size(), 16u);
    EXPECT_EQ(ip("127.0.0.1").size(), 4u);
}

TEST(IpAddress, RefusesWhatIsNotAnAddress) {
    for (std::string_view bad : {"", " 1.2.3.4", "1.2.3.4 ", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4",
                                 "1.2.3.4:80", "[::1]", "::1%eth0", "2001:db8::g", "localhost", "unknown",
                                 "1.2.3.4/32"})
        EXPECT_FALSE(IpAddress::parse(bad)) << bad;
    // A NUL inside must not end the text early for inet_pton.
    EXPECT_FALSE(IpAddress::parse(std::string_view("1.2.3.4\0junk", 12)));
    EXPECT_FALSE(IpAddress::parse(std::string(100, '1'))); // longer than any address
}

TEST(IpAddress, MappedIpv4IsIpv4) {
    const auto a = ip("::ffff:192.0.2.1");
    EXPECT_FALSE(a.isV6());
    EXPECT_EQ(a, ip("192.0.2.1"));
    EXPECT_EQ(a.toString(), "192.0.2.1");
    EXPECT_TRUE(ip("::192.0.2.1").isV6()); // the deprecated IPv4-compatible form is not mapped
}

TEST(IpAddress, FromSocketAddresses) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    ::inet_pton(AF_INET, "198.51.100.9", &in.sin_addr);
    EXPECT_EQ(IpAddress::of(reinterpret_cast<const sockaddr*>(&in)), ip("198.51.100.9"));
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    ::inet_pton(AF_INET6, "2001:db8::5", &in6.sin6_addr);
    EXPECT_EQ(IpAddress::of(reinterpret_cast<const sockaddr*>(&in6)), ip("2001:db8::5"));
    // A dual-stack socket's IPv4 peer.
    ::inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
    EXPECT_EQ(IpAddress::of(reinterpret_cast<const sockaddr*>(&in6)), ip("127.0.0.1"));
    sockaddr other{};
    other.sa_family = AF_UNIX;
    EXPECT_FALSE(IpAddress::of(&other));
    EXPECT_FALSE(IpAddress::of(nullptr));
    EXPECT_FALSE(peerIpAddress(-1));
}

TEST(IpRange, CidrAndBareAddresses) {
    EXPECT_EQ(range("10.0.0.0/8").toString(), "10.0.0.0/8");
    EXPECT_EQ(range("127.0.0.1").toString(), "127.0.0.1/32");
    EXPECT_EQ(range("127.0.0.1/32").toString(), "127.0.0.1/32");
    EXPECT_EQ(range("::1").toString(), "::1/128");
    EXPECT_EQ(range("::1/128").toString(), "::1/128");
    EXPECT_EQ(range("2001:db8::/32").toString(), "2001:db8::/32");
    EXPECT_EQ(range("0.0.0.0/0").toString(), "0.0.0.0/0");
    EXPECT_EQ(range("::/0").toString(), "::/0");
    EXPECT_EQ(range("10.0.0.0/8"), range("10.0.0.0/08")); // digits, as written
    // The IPv4-mapped form of a range is that IPv4 range.
    EXPECT_EQ(range("::ffff:10.0.0.0/104"), range("10.0.0.0/8"));
    EXPECT_EQ(range("::ffff:127.0.0.1"), range("127.0.0.1/32"));
}

TEST(IpRange, RefusalsSayWhy) {
    EXPECT_NE(refusal("").find("not an IP address or CIDR range"), std::string::npos);
    EXPECT_NE(refusal("chat.example.com").find("not an IP address or CIDR range"), std::string::npos);
    EXPECT_NE(refusal("10.0.0/8").find("not an IP address before the '/'"), std::string::npos);
    EXPECT_NE(refusal("/8").find("not an IP address before the '/'"), std::string::npos);
    EXPECT_EQ(refusal("10.0.0.0/33"), "the prefix length of an IPv4 range is at most 32");
    EXPECT_EQ(refusal("::/129"), "the prefix length of an IPv6 range is at most 128");
    for (std::string_view bad : {"10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8",
                                 "10.0.0.0/8 ", "10.0.0.0/1000", "10.0.0.0/8/8"})
        EXPECT_NE(refusal(bad).find("the prefix length after the '/' is a number of bits"), std::string::npos) << bad;
    EXPECT_EQ(refusal("10.0.0.1/8"), "bits are set past the /8 prefix (the range would be 10.0.0.0/8)");
    EXPECT_EQ(refusal("2001:db8::1/32"), "bits are set past the /32 prefix (the range would be 2001:db8::/32)");
    EXPECT_EQ(refusal("192.168.1.128/24"), "bits are set past the /24 prefix (the range would be 192.168.1.0/24)");
    EXPECT_FALSE(IpRange::parse("bogus")); // without `why` too
}

TEST(IpRange, ContainsAtThePrefixEdges) {
    const auto r = range("192.168.0.0/23");
    EXPECT_TRUE(r.contains(ip("192.168.0.0")));
    EXPECT_TRUE(r.contains(ip("192.168.1.255")));
    EXPECT_FALSE(r.contains(ip("192.168.2.0")));
    EXPECT_FALSE(r.contains(ip("192.167.255.255")));
    const auto host = range("127.0.0.1");
    EXPECT_TRUE(host.contains(ip("127.0.0.1")));
    EXPECT_FALSE(host.contains(ip("127.0.0.2")));
    EXPECT_TRUE(host.contains(ip("::ffff:127.0.0.1")));
    const auto v6 = range("2001:db8:abcd:12::/63");
    EXPECT_TRUE(v6.contains(ip("2001:db8:abcd:13:ffff::1")));
    EXPECT_FALSE(v6.contains(ip("2001:db8:abcd:14::")));
    // Families never mix: ::/0 is every IPv6 address, no IPv4 one, and the other way.
    EXPECT_TRUE(range("::/0").contains(ip("2001:db8::1")));
    EXPECT_FALSE(range("::/0").contains(ip("10.0.0.1")));
    EXPECT_TRUE(range("0.0.0.0/0").contains(ip("10.0.0.1")));
    EXPECT_FALSE(range("0.0.0.0/0").contains(ip("::1")));
    EXPECT_FALSE(range("::1").contains(ip("127.0.0.1")));
}

TEST(IpRanges, ListsOfRanges) {
    const auto set = parseIpRanges("127.0.0.1, ::1,10.0.0.0/8");
    ASSERT_EQ(set.size(), 3u);
    EXPECT_EQ(set[1].toString(), "::1/128");
    EXPECT_TRUE(contains(set, ip("10.9.8.7")));
    EXPECT_TRUE(contains(set, ip("::1")));
    EXPECT_FALSE(contains(set, ip("127.0.0.2")));
    EXPECT_TRUE(parseIpRanges("").empty());
    EXPECT_TRUE(parseIpRanges("  ").empty());
    EXPECT_FALSE(contains(IpRanges{}, ip("127.0.0.1"))); // none trusted
    try {
        parseIpRanges("127.0.0.1, 10.0.0.0/33");
        ADD_FAILURE() << "a bad item is refused";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "'10.0.0.0/33': the prefix length of an IPv4 range is at most 32");
    }
    EXPECT_THROW(parseIpRanges("127.0.0.1,,::1"), std::invalid_argument);
    EXPECT_THROW(parseIpRanges("127.0.0.1,"), std::invalid_argument);
}

} // namespace
} // namespace tongdao::net
