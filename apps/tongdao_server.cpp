// tongdao-server: the chat server of docs/PROTOCOL.md on /chat (rooms, durable history,
// exactly-once sends, resume, presence, receipts; SQLite), its HTTP API on /api/, WebSocket
// echo on /echo, /health, Prometheus metrics on /metrics, and static files on /.

#include "tongdao/chat/service.hpp"
#include "tongdao/log.hpp"
#include "tongdao/server/server.hpp"

#include "server_config.hpp"

#include <CLI/CLI.hpp>
#include <asio/signal_set.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

/** A secret from a file: its contents without surrounding whitespace. */
std::string readSecret(const std::string& path, const char* what) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(std::string("cannot read the ") + what + " file " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    const auto b = s.find_first_not_of(" \t\r\n");
    const auto e = s.find_last_not_of(" \t\r\n");
    if (b == std::string::npos) throw std::runtime_error(std::string("the ") + what + " file " + path + " is empty");
    return s.substr(b, e - b + 1);
}

/** Where the web page is installed beside the binary, if anywhere. */
std::string defaultWebRoot() {
    char buf[4096];
    const auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return {};
    const std::filesystem::path exe(std::string(buf, static_cast<std::size_t>(n)));
    for (const auto& candidate : {exe.parent_path() / "../share/tongdao/web", exe.parent_path() / "web"}) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(candidate / "index.html", ec)) return candidate.lexically_normal().string();
    }
    return {};
}

/** A --trusted-proxy item: spaces around it are allowed ("10.0.0.0/8, ::1"). */
std::optional<tongdao::net::IpRange> trustedProxy(std::string_view item, std::string& why) {
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    auto r = tongdao::net::IpRange::parse(item, &why);
    if (!r) why = "'" + std::string(item) + "': " + why;
    return r;
}

/** "127.0.0.1/32, ::1/128" for the log. */
std::string rangesText(const tongdao::net::IpRanges& ranges) {
    std::string out;
    for (const auto& r : ranges) out += (out.empty() ? "" : ", ") + r.toString();
    return out;
}

/** Everything the command line, the environment and the config file set. */
struct Settings {
    tongdao::ServerOptions options;
    tongdao::chat::ChatOptions chat;
    std::size_t maxPayload = 16 * 1024 * 1024;
    std::uint32_t idleTimeout = 60;
    std::uint32_t writeDelay = 0; ///< ms
    std::string deflate = "shared", durability = "full", logLevel = "info";
    std::string authSecretFile, apiKeyFile, webRoot, configFile;
    std::vector<std::string> certs, keys, trustedProxies;
    bool noPlain = false;
    tongdao::Compression compression = tongdao::Compression::shared;
};

void define(CLI::App& app, Settings& st) {
    auto& options = st.options;
    auto& chat = st.chat;
    app.get_formatter()->column_width(44);
    auto opt = [&](const std::string& name, auto& var, const std::string& help) {
        std::string env = "TONGDAO_" + name.substr(2);
        for (char& c : env) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return app.add_option(name, var, help)->envname(env)->capture_default_str();
    };
    opt("--config", st.configFile, "TOML file of settings: a key per option, named without its dashes");
    opt("--host", options.host, "address to listen on");
    opt("--port", options.port, "port for ws:// and http://");
    opt("--threads", options.threads, "event loops (0: one per core)");
    opt("--idle-timeout", st.idleTimeout, "seconds of silence before a WebSocket is closed");
    opt("--max-payload", st.maxPayload, "largest message on /echo, in bytes");
    opt("--deflate", st.deflate, "permessage-deflate: off, shared or dedicated")->check(CLI::IsMember({"off", "shared", "dedicated"}));
    opt("--log-level", st.logLevel, "error, warn, info or debug")->check(CLI::IsMember({"error", "warn", "info", "debug"}));
    opt("--tls-cert", st.certs, "PEM certificate chain for wss:// (repeat with --tls-key for SNI)");
    opt("--tls-key", st.keys, "PEM private key for the --tls-cert of the same position");
    opt("--tls-port", options.tlsPort, "port for wss:// and https:// (with --tls-cert)");
    opt("--plain-host", options.plainHost, "address of the plain port instead of --host (e.g. 127.0.0.1 beside TLS)");
    app.add_flag("--no-plain", st.noPlain, "no plain ws:// and http:// port at all (TLS only)")->envname("TONGDAO_NO_PLAIN");
    opt("--data-dir", chat.dataDir, "directory of the chat database (one node)");
    opt("--redis", chat.redis,
        "redis://[user:password@]host:port[/db], or redis-sentinel://[user:password@]host:port[,...][/db]#master: "
        "share rooms with the other nodes on it");
    opt("--redis-cluster", chat.redisCluster, "Redis Cluster masters host:port,... (instead of --redis)")->delimiter(',');
    opt("--redis-wait-replicas", chat.redisWaitReplicas,
        "ack and deliver an event once this many replicas have it (Redis WAIT; 0: on the master's word)")
        ->check(CLI::Range(0, 16));
    opt("--node-id", chat.nodeId, "this node's name among several (default: random)");
    opt("--durability", st.durability, "full: an ack survives power loss; normal: a killed process")
        ->check(CLI::IsMember({"full", "normal"}));
    opt("--commit-delay", chat.commitDelay, "ms writes gather before each commit, into fewer syncs (SQLite; 0: at once)")
        ->check(CLI::Range(0, 1000));
    app.add_flag("--anonymous", chat.anonymous, "accept hello {name} without a token")->envname("TONGDAO_ANONYMOUS");
    opt("--auth-secret-file", st.authSecretFile, "file holding the HS256 secret that signs tokens");
    // Origins and appids hold no comma: a TONGDAO_ variable (or one option) may list several.
    opt("--allowed-origin", chat.allowedOrigins, "browser Origin admitted (repeatable, or A,B; none: any)")->delimiter(',');
    opt("--allowed-appid", chat.allowedAppids, "mini-program appid admitted by its Referer (repeatable, or A,B)")->delimiter(',');
    opt("--api-key-file", st.apiKeyFile, "file holding the bearer key of the HTTP API (none: API off)");
    opt("--trusted-proxy", st.trustedProxies, "proxy whose X-Forwarded-For names the client: address or CIDR (repeatable)")
        ->type_name("CIDR")
        ->delimiter(',')
        ->check(CLI::Validator(
            [](std::string& item) {
                std::string why;
                return trustedProxy(item, why) ? std::string() : why;
            },
            ""));
    opt("--max-body", chat.maxBody, "largest message body, in bytes of JSON");
    opt("--max-rooms-per-connection", chat.maxRoomsPerConnection, "rooms one connection may join");
    opt("--max-room-members", chat.maxRoomMembers, "member connections per room");
    opt("--rate-limit", chat.rateLimit, "sends per second per user");
    opt("--rate-burst", chat.rateBurst, "sends a user may make at once");
    opt("--retention-messages", chat.retentionMessages, "stored events kept per room (0: all)");
    opt("--retention-days", chat.retentionDays, "days stored events are kept (0: forever)");
    opt("--presence-grace", chat.presenceGrace, "seconds before a user's leave is announced");
    opt("--max-presence-events", chat.maxPresenceEvents, "presence events only in rooms with at most this many online");
    opt("--room-idle-seconds", chat.roomIdleSeconds, "seconds a room without members here stays loaded (and subscribed)");
    opt("--write-delay", st.writeDelay,
        "ms a room's event may wait to leave with others to the same connection in one write (0: at once)")
        ->check(CLI::Range(0, 1000));
    opt("--web-root", st.webRoot, "directory served on / (default: the page installed beside the binary)");
}

/**
 * Reads the settings as tongdao-server starts (and again on SIGHUP): the command line, the
 * environment, the --config file, the secret files. `exitStatus` 0 when they can be used;
 * otherwise the reason is returned — or `printed` is set: the command line asked for help,
 * or was wrong, and CLI11 said so (the program ends with `exitStatus`).
 */
std::string load(int argc, char** argv, Settings& st, int& exitStatus, bool& printed) {
    CLI::App app{"tongdao-server: the chat server of docs/PROTOCOL.md (on /chat), with WebSocket echo on /echo,\n"
                 "/health, Prometheus metrics on /metrics and the web page on /. Every option can also be set\n"
                 "in the environment variable named beside it, or in the --config file."};
    define(app, st);
    try {
        app.parse(argc, argv);
        if (!st.configFile.empty()) tongdao::app::applyConfigFile(app, st.configFile);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) { // --help, --version: CLI11 prints them
            exitStatus = app.exit(e);
            printed = true;
            return {};
        }
        exitStatus = e.get_exit_code();
        return std::string(e.what()) + " (tongdao-server --help lists the options)";
    } catch (const tongdao::app::ConfigError& e) {
        exitStatus = 2;
        return e.what();
    }
    exitStatus = 2;
    if (st.certs.size() != st.keys.size()) return "give one --tls-key for each --tls-cert";
    if (st.noPlain && st.certs.empty()) return "--no-plain needs --tls-cert and --tls-key: no port would be left";
    st.options.plain = !st.noPlain;
    st.options.writeDelay = std::chrono::milliseconds(st.writeDelay);
    for (std::size_t i = 0; i < st.certs.size(); ++i) st.options.tls.certificates.push_back({st.certs[i], st.keys[i]});
    for (const auto& item : st.trustedProxies) {
        std::string why;
        const auto range = trustedProxy(item, why); // checked by the option already
        if (!range) return "--trusted-proxy: " + why;
        st.options.trustedProxies.push_back(*range);
    }
    st.compression = st.deflate == "off"      ? tongdao::Compression::off
                     : st.deflate == "shared" ? tongdao::Compression::shared
                                              : tongdao::Compression::dedicated;
    auto& chat = st.chat;
    chat.fullSync = st.durability == "full";
    chat.idleTimeout = st.idleTimeout;
    chat.compression = st.compression;
    exitStatus = 1;
    try {
        if (!st.authSecretFile.empty()) chat.authSecret = readSecret(st.authSecretFile, "auth secret");
        if (!st.apiKeyFile.empty()) chat.apiKey = readSecret(st.apiKeyFile, "API key");
    } catch (const std::exception& e) {
        return e.what();
    }
    if (!chat.anonymous && chat.authSecret.empty())
        return "give --anonymous, --auth-secret-file, or both: otherwise no one can say hello";
    exitStatus = 0;
    return {};
}

/** The settings of `next` that differ from `now` and only a restart applies. */
std::vector<std::string> needRestart(const Settings& now, const Settings& next) {
    std::vector<std::string> out;
    auto diff = [&](const char* name, bool differs) {
        if (differs) out.emplace_back(name);
    };
    const auto& a = now.options;
    const auto& b = next.options;
    diff("host", a.host != b.host);
    diff("port", a.port != b.port);
    diff("threads", a.threads != b.threads);
    diff("tls-port", a.tlsPort != b.tlsPort);
    diff("plain-host/no-plain", a.plainHost != b.plainHost || a.plain != b.plain);
    diff("tls-cert/tls-key", now.certs != next.certs || now.keys != next.keys);
    diff("idle-timeout", now.idleTimeout != next.idleTimeout);
    diff("write-delay", now.writeDelay != next.writeDelay);
    diff("max-payload", now.maxPayload != next.maxPayload);
    diff("deflate", now.deflate != next.deflate);
    diff("web-root", now.webRoot != next.webRoot);
    return out;
}

/** Why the server does not start, on standard error (an error in the journal). */
void startError(const char* why) {
    std::fprintf(stderr, "%stongdao-server: %s\n", tongdao::journalPriority(tongdao::LogLevel::error), why);
}

} // namespace

int main(int argc, char** argv) {
    Settings st;
    int status = 0;
    bool printed = false;
    if (const auto error = load(argc, argv, st, status, printed); printed || status != 0 || !error.empty()) {
        if (!error.empty()) startError(error.c_str());
        return status;
    }
    auto& options = st.options;
    auto& chat = st.chat;
    const auto compression = st.compression;
    const auto maxPayload = st.maxPayload;
    const auto idleTimeout = st.idleTimeout;
    // The default page's directory is found here, not written back: a reload compares with
    // the settings as given.
    const std::string webRoot = st.webRoot.empty() ? defaultWebRoot() : st.webRoot;
    const auto& durability = st.durability;
    tongdao::setLogLevel(*tongdao::parseLogLevel(st.logLevel));

    tongdao::Server server(options);
    std::unique_ptr<tongdao::chat::Service> service;
    try {
        service = std::make_unique<tongdao::chat::Service>(server, chat);
    } catch (const std::exception& e) {
        startError(e.what());
        return 1;
    }
    server.ws("/echo", {
        .maxPayloadLength = maxPayload,
        .idleTimeout = idleTimeout,
        // Echoed text was checked on the way in; checking it again would only cost time.
        .validateOutgoingText = false,
        .compression = compression,
        // Conformance suites offer sub-protocols; agree to the first one offered.
        .upgrade = [](tongdao::UpgradeRequest& req, tongdao::UpgradeResponse& res) {
            res.accept(req.protocols().empty() ? std::string_view{} : req.protocols().front());
        },
        .message = [](tongdao::WebSocket& ws, std::string_view msg, tongdao::MessageKind kind) { ws.send(msg, kind); },
    });
    server.get("/metrics", [&server, &service](const tongdao::HttpRequest&, tongdao::HttpResponse& res) {
        res.body = server.prometheusMetrics() + service->prometheusMetrics();
        res.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    });
    if (!webRoot.empty()) server.serveStatic("/", webRoot);
    try {
        server.listen(); // also loads the certificates
    } catch (const std::exception& e) {
        startError(e.what());
        return 1;
    }
    server.handleSignals();
    service->start();
    // SIGHUP: the settings read again (the server reloads its certificates itself); what can
    // change while connections stay is applied, what cannot is named.
    asio::signal_set hup(server.loop(0).context(), SIGHUP);
    std::function<void()> waitHup = [&] {
        hup.async_wait([&](const asio::error_code& ec, int) {
            if (ec) return;
            Settings next;
            int bad = 0;
            bool said = false;
            const auto error = load(argc, argv, next, bad, said);
            if (bad != 0 || said) {
                tongdao::log(tongdao::LogLevel::error, "SIGHUP: settings not reloaded, the old ones stay: %s",
                             error.empty() ? "see above" : error.c_str());
            } else {
                tongdao::setLogLevel(*tongdao::parseLogLevel(next.logLevel));
                if (next.options.trustedProxies != st.options.trustedProxies) {
                    const auto text = rangesText(next.options.trustedProxies);
                    tongdao::log(tongdao::LogLevel::info, "SIGHUP: trusted proxies now %s",
                                 text.empty() ? "none" : text.c_str());
                }
                server.setTrustedProxies(next.options.trustedProxies);
                st.options.trustedProxies = next.options.trustedProxies;
                auto later = needRestart(st, next);
                for (auto& name : service->reload(next.chat)) later.push_back(std::move(name));
                std::string names;
                for (const auto& n : later) names += (names.empty() ? "" : ", ") + n;
                if (names.empty()) tongdao::log(tongdao::LogLevel::info, "SIGHUP: settings reloaded");
                else tongdao::log(tongdao::LogLevel::warn, "SIGHUP: settings reloaded, but a restart is needed to change %s", names.c_str());
            }
            waitHup();
        });
    };
    waitHup();
    const auto& h = options.host;
    const auto& ph = options.plainHost.empty() ? h : options.plainHost;
    if (server.port())
        tongdao::log(tongdao::LogLevel::info, "tongdao-server listening on %s:%u with %u threads: chat ws://%s:%u/chat, echo /echo",
                     ph.c_str(), server.port(), server.threads(), ph.c_str(), server.port());
    else
        tongdao::log(tongdao::LogLevel::info, "tongdao-server with %u threads, no plain port (--no-plain)", server.threads());
    const char* hello = chat.anonymous ? "anonymous hello allowed" : "tokens required";
    if (!chat.redis.empty() || !chat.redisCluster.empty()) {
        // Credentials stay out of the log.
        const auto at = chat.redis.rfind('@');
        const auto scheme = chat.redis.find("://");
        const auto where = chat.redis.empty() ? "Cluster at " + chat.redisCluster.front()
                           : at == std::string::npos || scheme == std::string::npos
                               ? chat.redis
                               : chat.redis.substr(0, scheme + 3) + "***@" + chat.redis.substr(at + 1);
        tongdao::log(tongdao::LogLevel::info, "chat data in Redis %s (%s)", where.c_str(), hello);
    }
    else
        tongdao::log(tongdao::LogLevel::info, "chat data in %s (durability %s, %s)",
                     std::filesystem::absolute(chat.dataDir).c_str(), durability.c_str(), hello);
    if (!webRoot.empty())
        tongdao::log(tongdao::LogLevel::info, "web page from %s on %s://%s:%u/", webRoot.c_str(), server.port() ? "http" : "https",
                     server.port() ? ph.c_str() : h.c_str(), server.port() ? server.port() : server.tlsPort());
    if (!options.trustedProxies.empty())
        tongdao::log(tongdao::LogLevel::info, "client addresses from X-Forwarded-For or X-Real-IP of %s",
                     rangesText(options.trustedProxies).c_str());
    if (server.tlsPort())
        tongdao::log(tongdao::LogLevel::info, "and on %s:%u with TLS (wss://%s:%u/chat)", h.c_str(), server.tlsPort(),
                     h.c_str(), server.tlsPort());
    server.run();
    service->close();
    return 0;
}
