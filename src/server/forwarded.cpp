#include "forwarded.hpp"

#include <iterator>

namespace tongdao::detail {

namespace {

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool isPort(std::string_view s) noexcept {
    return !s.empty() && s.size() <= 5 && s.find_first_not_of("0123456789") == std::string_view::npos;
}

} // namespace

std::optional<net::IpAddress> parseForwardedEntry(std::string_view entry) noexcept {
    if (entry.starts_with('[')) {
        // "[v6]" or "[v6]:port": the brackets hold an IPv6 address, nothing else.
        const auto close = entry.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        const auto rest = entry.substr(close + 1);
        if (!rest.empty() && !(rest.front() == ':' && isPort(rest.substr(1)))) return std::nullopt;
        const auto a = net::IpAddress::parse(entry.substr(1, close - 1));
        if (!a || entry.substr(1, close - 1).find(':') == std::string_view::npos) return std::nullopt;
        return a;
    }
    if (auto a = net::IpAddress::parse(entry)) return a;
    // "a.b.c.d:port": one colon only (more would make it IPv6, which takes brackets with a port).
    const auto colon = entry.find(':');
    if (colon == std::string_view::npos || entry.find(':', colon + 1) != std::string_view::npos) return std::nullopt;
    if (!isPort(entry.substr(colon + 1))) return std::nullopt;
    const auto host = entry.substr(0, colon);
    auto a = net::IpAddress::parse(host);
    if (!a || a->isV6()) return std::nullopt;
    return a;
}

std::optional<net::IpAddress> forwardedClient(const net::IpAddress& peer, const net::IpRanges& trusted,
                                              const protocol::http::HeaderList& headers) {
    if (!net::contains(trusted, peer)) return std::nullopt; // never the header of an untrusted peer
    std::optional<net::IpAddress> found; // the leftmost trusted address so far
    std::size_t seen = 0;
    bool stopped = false;
    // The fields from the last: "a, b" then "c" is the list "a, b, c" (RFC 9110 §5.3).
    for (auto f = std::make_reverse_iterator(headers.end()); f != std::make_reverse_iterator(headers.begin()) && !stopped;
         ++f) {
        if (!protocol::http::iequals(f->name, "X-Forwarded-For")) continue;
        std::string_view rest = f->value;
        while (!stopped) {
            const auto comma = rest.rfind(',');
            const auto entry = trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
            if (!entry.empty()) {
                const auto a = ++seen > maxForwardedEntries ? std::nullopt : parseForwardedEntry(entry);
                if (!a) {
                    stopped = true; // malformed, or past the bound: what we have is the answer
                    break;
                }
                if (!net::contains(trusted, *a)) return a;
                found = a;
            }
            if (comma == std::string_view::npos) break;
            rest = rest.substr(0, comma);
        }
    }
    if (found) return found;
    // No usable X-Forwarded-For: X-Real-IP, one address set by the proxy (nginx's $remote_addr).
    for (auto f = std::make_reverse_iterator(headers.end()); f != std::make_reverse_iterator(headers.begin()); ++f)
        if (protocol::http::iequals(f->name, "X-Real-IP")) return parseForwardedEntry(trim(f->value));
    return std::nullopt;
}

} // namespace tongdao::detail
