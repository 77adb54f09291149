// interop_server: the endpoints the interop and abuse tests drive with real peers
// (Python websockets, Node ws, Chromium, raw sockets). Listens on 127.0.0.1, port 0,
// prints "PORT <n>" on stdout once listening (then "TLSPORT <n>" when TLS is on), and exits
// cleanly on SIGTERM; SIGHUP reloads the certificates.
//
//   interop_server [--threads N] [--handshake-timeout S] [--log-level L]
//                  [--deflate off|shared|dedicated] [--tls-cert PEM --tls-key PEM]...
//                  [--tls-port N] [N]
//
//   --deflate   permessage-deflate on /echo, /small, /headers and /pubsub (default off)
//   --tls-cert, --tls-key   a certificate and its key, repeatable (the first is the default,
//               the others are picked by SNI); with them a second listener serves wss://
//               on --tls-port (default 0: a free port)
//
//   /echo    every message back with its type; sub-protocol "superchat" if offered, else
//            the first offered, else none; messages up to 16 MiB
//   /small   echo with messages up to 1024 bytes (bigger ones close with 1009)
//   /headers first sends one text message with the upgrade request's header fields, one
//            "name: value" per line, as received; then echoes like /echo
//   /pubsub  subscribed to the topic "all" when open; each message is published to "all"
//            (every other subscriber, on every loop) and answered with "published"
//   /close   the first message "CODE REASON" makes the server end(CODE, REASON)
//   /reject  the upgrade is refused with 403 "forbidden"
//   /abort   the first message makes the server drop the TCP connection (no close frame)
//   /flood   the first message "N SIZE" makes the server send N binary messages of SIZE
//            bytes as fast as send() takes them: it stops at the first dropped send and
//            goes on when the backlog drains (maxBackpressure 1 MiB); each further
//            "N SIZE" adds N more (a client that asks again and again and never reads)
//   /health  built in; /metrics  Prometheus text

#include "tongdao/log.hpp"
#include "tongdao/server/server.hpp"

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

template <class T>
bool parseNumber(std::string_view s, T& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size() && !s.empty();
}

void echo(tongdao::WebSocket& ws, std::string_view msg, tongdao::MessageKind kind) { ws.send(msg, kind); }

/** /flood: what is left to send on one connection. */
struct Flood {
    std::size_t remaining = 0;
    std::string payload;
};

void pump(tongdao::WebSocket& ws) {
    auto* f = ws.getUserData<Flood>();
    while (f->remaining > 0) {
        if (ws.send(f->payload, tongdao::MessageKind::binary) == tongdao::SendStatus::dropped) break;
        --f->remaining;
    }
}

/** /headers: the upgrade request's header fields, sent once open. */
struct RequestHeaders {
    std::string text;
};

/** /close and /abort act on the first message only. */
struct Once {
    bool done = false;
};

void usage(FILE* out) {
    std::fputs("usage: interop_server [--threads N] [--handshake-timeout S] [--log-level L]\n"
               "                      [--deflate off|shared|dedicated] [--tls-cert PEM --tls-key PEM]...\n"
               "                      [--tls-port N] [N]\n",
               out);
}

} // namespace

int main(int argc, char** argv) {
    tongdao::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.threads = 2;
    options.handshakeTimeout = 10;
    options.tlsPort = 0;
    tongdao::Compression deflate = tongdao::Compression::off;
    std::vector<std::string> certs, keys;
    tongdao::setLogLevel(tongdao::LogLevel::warn);
    // A test script that is killed (a ctest timeout) takes its server along: SIGTERM when the
    // parent goes away, and nothing to do if it already has.
    const pid_t parent = ::getppid();
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) return 1;

    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "interop_server: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return argv[++i];
        };
        bool ok = true;
        if (arg == "--threads") ok = parseNumber(value(), options.threads);
        else if (arg == "--handshake-timeout") ok = parseNumber(value(), options.handshakeTimeout);
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
        } else if (!arg.empty() && arg[0] != '-') {
            ok = parseNumber(arg, options.threads);
        } else {
            std::fprintf(stderr, "interop_server: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            std::fprintf(stderr, "interop_server: bad value for %s\n", argv[i]);
            return 2;
        }
    }
    if (options.threads == 0) options.threads = 2;
    if (certs.size() != keys.size()) {
        std::fprintf(stderr, "interop_server: give one --tls-key for each --tls-cert\n");
        return 2;
    }
    for (std::size_t i = 0; i < certs.size(); ++i) options.tls.certificates.push_back({certs[i], keys[i]});

    tongdao::Server server(options);

    server.ws("/echo", {
        .maxPayloadLength = 16 * 1024 * 1024,
        .compression = deflate,
        .upgrade = [](tongdao::UpgradeRequest& req, tongdao::UpgradeResponse& res) {
            const auto& offered = req.protocols();
            std::string_view chosen;
            for (const auto p : offered)
                if (p == "superchat") chosen = p;
            if (chosen.empty() && !offered.empty()) chosen = offered.front();
            res.accept(chosen);
        },
        .message = echo,
    });

    server.ws("/small", {
        .maxPayloadLength = 1024,
        .compression = deflate,
        .message = echo,
    });

    server.ws<RequestHeaders>("/headers", {
        .maxPayloadLength = 16 * 1024 * 1024,
        .compression = deflate,
        .upgrade = [](tongdao::UpgradeRequest& req, tongdao::UpgradeResponse& res) {
            RequestHeaders h;
            for (const auto& field : req.headers())
                h.text.append(field.name).append(": ").append(field.value).append("\n");
            res.accept(std::move(h));
        },
        .open = [](tongdao::WebSocket& ws) {
            ws.send(ws.getUserData<RequestHeaders>()->text, tongdao::MessageKind::text);
        },
        .message = echo,
    });

    server.ws("/pubsub", {
        .maxPayloadLength = 16 * 1024 * 1024,
        .compression = deflate,
        .open = [](tongdao::WebSocket& ws) { ws.subscribe("all"); },
        .message = [](tongdao::WebSocket& ws, std::string_view msg, tongdao::MessageKind kind) {
            ws.publish("all", msg, kind);
            ws.send("published", tongdao::MessageKind::text);
        },
    });

    server.ws<Once>("/close", {
        .message = [](tongdao::WebSocket& ws, std::string_view msg, tongdao::MessageKind) {
            auto* once = ws.getUserData<Once>();
            if (once->done) return;
            once->done = true;
            const auto space = msg.find(' ');
            const auto codeText = msg.substr(0, space);
            const auto reason = space == std::string_view::npos ? std::string_view{} : msg.substr(space + 1);
            int code = 0;
            if (!parseNumber(codeText, code)) {
                ws.end(1003, "expected \"CODE REASON\"");
                return;
            }
            if (const auto ec = ws.end(code, reason)) {
                tongdao::log(tongdao::LogLevel::warn, "/close: end(%d) failed: %s", code, ec.message().c_str());
                ws.end(1011, "end failed");
            }
        },
    });

    server.ws("/reject", {
        .upgrade = [](tongdao::UpgradeRequest&, tongdao::UpgradeResponse& res) { res.reject(403, "forbidden"); },
    });

    server.ws<Once>("/abort", {
        .message = [](tongdao::WebSocket& ws, std::string_view, tongdao::MessageKind) {
            auto* once = ws.getUserData<Once>();
            if (once->done) return;
            once->done = true;
            ws.close();
        },
    });

    server.ws<Flood>("/flood", {
        .maxBackpressure = 1024 * 1024,
        .message = [](tongdao::WebSocket& ws, std::string_view msg, tongdao::MessageKind) {
            auto* f = ws.getUserData<Flood>();
            const auto space = msg.find(' ');
            std::size_t count = 0, size = 0;
            if (space == std::string_view::npos || !parseNumber(msg.substr(0, space), count) ||
                !parseNumber(msg.substr(space + 1), size) || count > 1'000'000 || size > 16 * 1024 * 1024) {
                ws.end(1003, "expected \"N SIZE\"");
                return;
            }
            f->remaining = std::min<std::size_t>(f->remaining + count, 1'000'000);
            f->payload.assign(size, '\x5a');
            pump(ws);
        },
        .drain = pump,
    });

    server.get("/metrics", [&server](const tongdao::HttpRequest&, tongdao::HttpResponse& res) {
        res.body = server.prometheusMetrics();
        res.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    });

    try {
        server.listen(); // also loads the certificates
    } catch (const std::exception& e) {
        std::fprintf(stderr, "interop_server: %s\n", e.what());
        return 1;
    }
    server.handleSignals();
    std::printf("PORT %u\n", static_cast<unsigned>(server.port()));
    if (server.tlsPort()) std::printf("TLSPORT %u\n", static_cast<unsigned>(server.tlsPort()));
    std::fflush(stdout);
    server.run();
    return 0;
}
