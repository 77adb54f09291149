#include "url.hpp"

#include "tongdao/protocol/http.hpp"

#include <cctype>
#include <charconv>

namespace tongdao::detail {

std::optional<Url> parseUrl(std::string_view s) {
    Url u;
    const auto colon = s.find("://");
    if (colon == std::string_view::npos) return std::nullopt;
    const auto scheme = s.substr(0, colon);
    if (protocol::http::iequals(scheme, "wss")) u.secure = true;
    else if (!protocol::http::iequals(scheme, "ws")) return std::nullopt;
    s.remove_prefix(colon + 3);
    for (char c : s)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return std::nullopt; // spaces and controls
    // RFC 6455 §3: "Fragment identifiers are meaningless ... and MUST NOT be used".
    if (s.find('#') != std::string_view::npos) return std::nullopt;

    const auto pathStart = s.find_first_of("/?");
    auto authority = s.substr(0, pathStart);
    if (pathStart != std::string_view::npos) {
        u.target = std::string(s.substr(pathStart));
        if (u.target.front() == '?') u.target.insert(u.target.begin(), '/');
    }
    if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt; // no userinfo

    std::string_view portText;
    if (authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        u.host = std::string(authority.substr(1, close - 1));
        if (u.host.empty() || u.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
            return std::nullopt;
        const auto rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            portText = rest.substr(1);
        }
    } else {
        const auto c = authority.rfind(':');
        u.host = std::string(authority.substr(0, c));
        if (c != std::string_view::npos) portText = authority.substr(c + 1);
        if (u.host.empty()) return std::nullopt;
        for (char ch : u.host)
            if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == '_')) return std::nullopt;
    }
    const std::uint16_t defaultPort = u.secure ? 443 : 80;
    u.port = defaultPort;
    if (!portText.empty()) {
        unsigned p = 0;
        const auto r = std::from_chars(portText.data(), portText.data() + portText.size(), p);
        if (r.ec != std::errc{} || r.ptr != portText.data() + portText.size() || p == 0 || p > 65535)
            return std::nullopt;
        u.port = static_cast<std::uint16_t>(p);
    }
    const bool v6 = u.host.find(':') != std::string::npos;
    u.hostHeader = v6 ? "[" + u.host + "]" : u.host;
    if (u.port != defaultPort) u.hostHeader += ":" + std::to_string(u.port);
    return u;
}

} // namespace tongdao::detail
