// libFuzzer target: the client's address behind trusted proxies (src/server/forwarded.cpp)
// and the address and range parsers under it (src/net/address.cpp). Whatever the bytes,
// nothing crashes, and what comes out holds:
//   - a range that parses prints as text that parses to the same range, and contains its address;
//   - an address that parses prints as text that parses to the same address;
//   - the forwarded client is never taken from an untrusted peer;
//   - it is an address some X-Forwarded-For or X-Real-IP field named.
//
// Input: lines. The first is a comma-separated range list (the trusted proxies), the second
// the TCP peer's address, the rest header fields: "F value" is an X-Forwarded-For field,
// "R value" an X-Real-IP one.

#include "server/forwarded.hpp"

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using tongdao::net::IpAddress;
using tongdao::net::IpRange;

void check(bool ok) {
    if (!ok) std::abort();
}

std::vector<std::string_view> lines(std::string_view text) {
    std::vector<std::string_view> out;
    while (!text.empty() && out.size() < 64) {
        const auto nl = text.find('\n');
        out.push_back(text.substr(0, nl));
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto ls = lines(text);
    if (ls.empty()) return 0;

    // The parsers on their own: what prints parses back to itself.
    for (const auto line : ls) {
        if (const auto a = IpAddress::parse(line)) {
            const auto again = IpAddress::parse(a->toString());
            check(again && *again == *a);
        }
        std::string why;
        if (const auto r = IpRange::parse(line, &why)) {
            const auto again = IpRange::parse(r->toString());
            check(again && *again == *r);
            check(r->contains(r->address()));
        } else {
            check(!why.empty());
        }
    }

    tongdao::net::IpRanges trusted;
    try {
        trusted = tongdao::net::parseIpRanges(ls[0]);
    } catch (const std::invalid_argument&) {
        return 0; // refused with a reason: what a bad --trusted-proxy gets
    }
    if (ls.size() < 2) return 0;
    const auto peer = IpAddress::parse(ls[1]);
    if (!peer) return 0;

    tongdao::protocol::http::HeaderList headers;
    std::vector<std::string_view> named; // every value a field carried
    for (std::size_t i = 2; i < ls.size(); ++i) {
        const auto l = ls[i];
        if (l.size() < 2 || l[1] != ' ') continue;
        if (l[0] == 'F') headers.add("X-Forwarded-For", l.substr(2));
        else if (l[0] == 'R') headers.add("X-Real-IP", l.substr(2));
        else continue;
        named.push_back(l.substr(2));
    }
    const auto client = tongdao::detail::forwardedClient(*peer, trusted, headers);
    if (!tongdao::net::contains(trusted, *peer)) {
        check(!client); // an untrusted peer's headers are never read
        return 0;
    }
    if (!client) return 0;
    // It was written in some field (an entry may carry a port or brackets: each is parsed).
    bool found = false;
    for (const auto v : named) {
        for (std::size_t start = 0; start <= v.size() && !found;) {
            const auto comma = std::min(v.find(',', start), v.size());
            auto entry = v.substr(start, comma - start);
            while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
            while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
            if (const auto e = tongdao::detail::parseForwardedEntry(entry)) found = *e == *client;
            start = comma + 1;
        }
        if (found) break;
    }
    check(found);
    return 0;
}
