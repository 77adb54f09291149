#pragma once
// WebSocket URIs, RFC 6455 §3: ws://host[:port]/path?query and wss://...

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tongdao::detail {

struct Url {
    bool secure = false;       ///< wss
    std::string host;          ///< without brackets for IPv6
    std::uint16_t port = 0;
    std::string target = "/";  ///< path and query, as sent in the request line
    std::string hostHeader;    ///< Host value: host, [v6], with ":port" unless the default
};

/** Parses a ws:// or wss:// URL; nothing if it is not one (fragments are refused, §3). */
std::optional<Url> parseUrl(std::string_view s);

} // namespace tongdao::detail
