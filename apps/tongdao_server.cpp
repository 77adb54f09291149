// tongdao-server: the chat server of docs/PROTOCOL.md on /chat (rooms, durable history,
// exactly-once sends, resume, presence, receipts; SQLite), its HTTP API on /api/, WebSocket
// echo on /echo, /health, Prometheus metrics on /metrics, and static files on /.

#include "tongdao/chat/service.hpp"
#include "tongdao/log.hpp"
#include "tongdao/server/server.hpp"

#include "server_config.hpp"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
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

} // namespace

int main(int argc, char** argv) {
    tongdao::ServerOptions options;
    tongdao::chat::ChatOptions chat;
    std::size_t maxPayload = 16 * 1024 * 1024;
    std::uint32_t idleTimeout = 60;
    std::string deflate = "shared", durability = "full", logLevel = "info";
    std::string authSecretFile, apiKeyFile, webRoot;
    std::vector<std::string> certs, keys;

    CLI::App app{"tongdao-server: the chat server of docs/PROTOCOL.md (on /chat), with WebSocket echo on /echo,\n"
                 "/health, Prometheus metrics on /metrics and the web page on /. Every option can also be set\n"
                 "in the environment variable named beside it."};
    app.get_formatter()->column_width(44);
    auto opt = [&](const std::string& name, auto& var, const std::string& help) {
        std::string env = "TONGDAO_" + name.substr(2);
        for (char& c : env) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return app.add_option(name, var, help)->envname(env)->capture_default_str();
    };
    std::string configFile;
    opt("--config", configFile, "TOML file of settings: a key per option, named without its dashes");
    opt("--host", options.host, "address to listen on");
    opt("--port", options.port, "port for ws:// and http://");
    opt("--threads", options.threads, "event loops (0: one per core)");
    opt("--idle-timeout", idleTimeout, "seconds of silence before a WebSocket is closed");
    opt("--max-payload", maxPayload, "largest message on /echo, in bytes");
    opt("--deflate", deflate, "permessage-deflate: off, shared or dedicated")->check(CLI::IsMember({"off", "shared", "dedicated"}));
    opt("--log-level", logLevel, "error, warn, info or debug")->check(CLI::IsMember({"error", "warn", "info", "debug"}));
    opt("--tls-cert", certs, "PEM certificate chain for wss:// (repeat with --tls-key for SNI)");
    opt("--tls-key", keys, "PEM private key for the --tls-cert of the same position");
    opt("--tls-port", options.tlsPort, "port for wss:// and https:// (with --tls-cert)");
    opt("--data-dir", chat.dataDir, "directory of the chat database (one node)");
    opt("--redis", chat.redis, "redis://[user:password@]host:port[/db]: share rooms with the other nodes on it");
    opt("--redis-cluster", chat.redisCluster, "Redis Cluster masters host:port,... (instead of --redis)")->delimiter(',');
    opt("--node-id", chat.nodeId, "this node's name among several (default: random)");
    opt("--durability", durability, "full: an ack survives power loss; normal: a killed process")
        ->check(CLI::IsMember({"full", "normal"}));
    app.add_flag("--anonymous", chat.anonymous, "accept hello {name} without a token")->envname("TONGDAO_ANONYMOUS");
    opt("--auth-secret-file", authSecretFile, "file holding the HS256 secret that signs tokens");
    opt("--allowed-origin", chat.allowedOrigins, "browser Origin admitted (repeatable; none: any)");
    opt("--allowed-appid", chat.allowedAppids, "mini-program appid admitted by its Referer (repeatable)");
    opt("--api-key-file", apiKeyFile, "file holding the bearer key of the HTTP API (none: API off)");
    opt("--max-body", chat.maxBody, "largest message body, in bytes of JSON");
    opt("--max-rooms-per-connection", chat.maxRoomsPerConnection, "rooms one connection may join");
    opt("--max-room-members", chat.maxRoomMembers, "member connections per room");
    opt("--rate-limit", chat.rateLimit, "sends per second per user");
    opt("--rate-burst", chat.rateBurst, "sends a user may make at once");
    opt("--retention-messages", chat.retentionMessages, "stored events kept per room (0: all)");
    opt("--retention-days", chat.retentionDays, "days stored events are kept (0: forever)");
    opt("--presence-grace", chat.presenceGrace, "seconds before a user's leave is announced");
    opt("--max-presence-events", chat.maxPresenceEvents, "presence events only in rooms with at most this many online");
    opt("--web-root", webRoot, "directory served on / (default: the page installed beside the binary)");
    try {
        app.parse(argc, argv);
        if (!configFile.empty()) tongdao::app::applyConfigFile(app, configFile);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const tongdao::app::ConfigError& e) {
        std::fprintf(stderr, "tongdao-server: %s\n", e.what());
        return 2;
    }
    if (certs.size() != keys.size()) {
        std::fprintf(stderr, "tongdao-server: give one --tls-key for each --tls-cert\n");
        return 2;
    }
    tongdao::setLogLevel(*tongdao::parseLogLevel(logLevel));
    for (std::size_t i = 0; i < certs.size(); ++i) options.tls.certificates.push_back({certs[i], keys[i]});
    const auto compression = deflate == "off"      ? tongdao::Compression::off
                             : deflate == "shared" ? tongdao::Compression::shared
                                                   : tongdao::Compression::dedicated;
    chat.fullSync = durability == "full";
    chat.idleTimeout = idleTimeout;
    chat.compression = compression;

    tongdao::Server server(options);
    std::unique_ptr<tongdao::chat::Service> service;
    try {
        if (!authSecretFile.empty()) chat.authSecret = readSecret(authSecretFile, "auth secret");
        if (!apiKeyFile.empty()) chat.apiKey = readSecret(apiKeyFile, "API key");
        if (!chat.anonymous && chat.authSecret.empty())
            throw std::runtime_error("give --anonymous, --auth-secret-file, or both: otherwise no one can say hello");
        service = std::make_unique<tongdao::chat::Service>(server, chat);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tongdao-server: %s\n", e.what());
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
    if (webRoot.empty()) webRoot = defaultWebRoot();
    if (!webRoot.empty()) server.serveStatic("/", webRoot);
    try {
        server.listen(); // also loads the certificates
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tongdao-server: %s\n", e.what());
        return 1;
    }
    server.handleSignals();
    service->start();
    const auto& h = options.host;
    tongdao::log(tongdao::LogLevel::info, "tongdao-server listening on %s:%u with %u threads: chat ws://%s:%u/chat, echo /echo",
                 h.c_str(), server.port(), server.threads(), h.c_str(), server.port());
    const char* hello = chat.anonymous ? "anonymous hello allowed" : "tokens required";
    if (!chat.redis.empty() || !chat.redisCluster.empty()) {
        // Credentials stay out of the log.
        const auto at = chat.redis.rfind('@');
        const auto where = chat.redis.empty() ? "Cluster at " + chat.redisCluster.front()
                           : at == std::string::npos ? chat.redis
                                                     : "redis://***@" + chat.redis.substr(at + 1);
        tongdao::log(tongdao::LogLevel::info, "chat data in Redis %s (%s)", where.c_str(), hello);
    }
    else
        tongdao::log(tongdao::LogLevel::info, "chat data in %s (durability %s, %s)",
                     std::filesystem::absolute(chat.dataDir).c_str(), durability.c_str(), hello);
    if (!webRoot.empty()) tongdao::log(tongdao::LogLevel::info, "web page from %s on http://%s:%u/", webRoot.c_str(), h.c_str(), server.port());
    if (server.tlsPort())
        tongdao::log(tongdao::LogLevel::info, "and on %s:%u with TLS (wss://%s:%u/chat)", h.c_str(), server.tlsPort(),
                     h.c_str(), server.tlsPort());
    server.run();
    service->close();
    return 0;
}
