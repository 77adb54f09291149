// tongdao-server: the ready server. For now: /echo (every message back with its type),
// /health and /metrics (Prometheus text).

#include "tongdao/log.hpp"
#include "tongdao/server/server.hpp"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

void usage(FILE* out) {
    std::fputs("usage: tongdao-server [--host 127.0.0.1] [--port 8080] [--threads N] [--max-payload BYTES]\n"
               "                      [--idle-timeout S] [--deflate off|shared|dedicated] [--log-level error|warn|info|debug]\n"
               "                      [--tls-cert PEM --tls-key PEM]... [--tls-port 8443]\n"
               "\n"
               "Serves WebSocket echo at /echo, 200 ok at /health and Prometheus metrics at /metrics.\n",
               out);
}

template <class T>
bool parseNumber(std::string_view s, T& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

} // namespace

int main(int argc, char** argv) {
    tongdao::ServerOptions options;
    std::size_t maxPayload = 16 * 1024 * 1024;
    std::uint32_t idleTimeout = 120;
    tongdao::Compression deflate = tongdao::Compression::shared;
    std::vector<std::string> certs, keys;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "tongdao-server: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return argv[++i];
        };
        bool ok = true;
        if (arg == "--host") options.host = std::string(value());
        else if (arg == "--port") ok = parseNumber(value(), options.port);
        else if (arg == "--threads") ok = parseNumber(value(), options.threads);
        else if (arg == "--max-payload") ok = parseNumber(value(), maxPayload);
        else if (arg == "--idle-timeout") ok = parseNumber(value(), idleTimeout);
        else if (arg == "--tls-cert") certs.emplace_back(value());
        else if (arg == "--tls-key") keys.emplace_back(value());
        else if (arg == "--tls-port") ok = parseNumber(value(), options.tlsPort);
        else if (arg == "--deflate") {
            const auto v = value();
            if (v == "off") deflate = tongdao::Compression::off;
            else if (v == "shared") deflate = tongdao::Compression::shared;
            else if (v == "dedicated") deflate = tongdao::Compression::dedicated;
            else ok = false;
        } else if (arg == "--log-level") {
            const auto level = tongdao::parseLogLevel(value());
            ok = level.has_value();
            if (ok) tongdao::setLogLevel(*level);
        } else if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "tongdao-server: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            std::fprintf(stderr, "tongdao-server: bad value for %s\n", argv[i - 1]);
            return 2;
        }
    }

    if (certs.size() != keys.size()) {
        std::fprintf(stderr, "tongdao-server: give one --tls-key for each --tls-cert\n");
        return 2;
    }
    for (std::size_t i = 0; i < certs.size(); ++i) options.tls.certificates.push_back({certs[i], keys[i]});

    tongdao::Server server(options);
    server.ws("/echo", {
        .maxPayloadLength = maxPayload,
        .idleTimeout = idleTimeout,
        // Echoed text was checked on the way in; checking it again would only cost time.
        .validateOutgoingText = false,
        .compression = deflate,
        // Conformance suites offer sub-protocols; agree to the first one offered.
        .upgrade = [](tongdao::UpgradeRequest& req, tongdao::UpgradeResponse& res) {
            res.accept(req.protocols().empty() ? std::string_view{} : req.protocols().front());
        },
        .message = [](tongdao::WebSocket& ws, std::string_view msg, tongdao::MessageKind kind) { ws.send(msg, kind); },
    });
    server.get("/metrics", [&server](const tongdao::HttpRequest&, tongdao::HttpResponse& res) {
        res.body = server.prometheusMetrics();
        res.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    });
    try {
        server.listen(); // also loads the certificates
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tongdao-server: %s\n", e.what());
        return 1;
    }
    server.handleSignals();
    tongdao::log(tongdao::LogLevel::info, "tongdao-server listening on %s:%u with %u threads (ws://%s:%u/echo)",
                 options.host.c_str(), server.port(), server.threads(), options.host.c_str(), server.port());
    if (server.tlsPort())
        tongdao::log(tongdao::LogLevel::info, "and on %s:%u with TLS (wss://%s:%u/echo)", options.host.c_str(),
                     server.tlsPort(), options.host.c_str(), server.tlsPort());
    server.run();
    return 0;
}
