// `tongdao bench URL…`: the load generator. The command line is read here; the load comes from
// two engines of their own (apps/bench/echo_load.cpp, chat_load.cpp, sharing common.*),
// which link no tongdao library, so that what they measure cannot be skewed by it.

#include "cli_bench.hpp"

#include "bench/chat_load.hpp"
#include "bench/echo_load.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>

namespace tongdao::app {

namespace {

std::vector<in_addr> sourceAddresses(const std::string& list) {
    std::vector<in_addr> out;
    for (std::size_t start = 0; !list.empty() && start <= list.size() && out.size() < 256;) {
        const std::size_t comma = std::min(list.find(',', start), list.size());
        const std::string one = list.substr(start, comma - start);
        in_addr addr{};
        if (inet_pton(AF_INET, one.c_str(), &addr) != 1)
            throw bench::Fatal("--source-ips: \"" + one + "\" is not an IPv4 address");
        out.push_back(addr);
        start = comma + 1;
    }
    return out;
}

/** The URLs, parsed and resolved; `defaultPath` where a URL has none. */
std::vector<bench::Target> targets(const BenchArgs& a, const std::string& defaultPath) {
    std::vector<bench::Target> out;
    for (const auto& url : a.urls) out.push_back(bench::parseTarget(url, defaultPath));
    for (const auto& t : out) {
        if (t.tls != out.front().tls) throw bench::Fatal("the URLs are all ws:// or all wss://");
        if (t.v6() && !a.sourceIps.empty()) throw bench::Fatal(t.url + ": --source-ips are IPv4 addresses, the host is IPv6");
    }
    return out;
}

/** What the two engines take alike (the targets are parsed by each, with its default path). */
void common(const BenchArgs& a, bench::LoadOptions& o) {
    o.connections = a.connections;
    o.window = a.pipeline;
    o.rate = a.rate;
    o.duration = a.duration;
    o.warmup = a.warmup;
    o.rampUp = a.rampUp;
    o.holdMax = a.holdMax;
    o.connectTimeout = a.connectTimeout;
    o.connectBatch = a.connectBatch;
    o.sourceIps = sourceAddresses(a.sourceIps);
    o.verify = !a.insecure;
    o.caFile = a.ca;
    o.headers = a.headers;
    o.report.json = a.json;
    o.report.phases = a.phases;
    o.report.progress = !a.noProgress && isatty(STDERR_FILENO) == 1;
}

int runEchoBench(const BenchArgs& a) {
    bench::EchoOptions o;
    o.targets = targets(a, "/");
    common(a, o);
    o.size = a.size ? a.size : 20;
    o.binary = !a.text && !a.jsonMessages; // JSON is text
    o.raw = a.raw;
    o.idle = a.idle;
    o.deflate = a.deflate;
    o.noContextTakeover = a.noContextTakeover;
    o.jsonMessages = a.jsonMessages;
    o.seed = a.seed;
    if (o.window > 1024) throw bench::Fatal("--pipeline: at most 1024 messages in flight per connection");
    if (o.size > (std::size_t{1} << 24)) throw bench::Fatal("--size is capped at 16 MiB");
    if (o.jsonMessages && o.size < 12) throw bench::Fatal("--json-messages needs --size 12 or more");
    if (o.raw && (o.targets.front().tls || o.deflate || o.jsonMessages))
        throw bench::Fatal("--raw takes no wss://, --deflate or --json-messages");
    if (o.noContextTakeover && !o.deflate) throw bench::Fatal("--no-context-takeover goes with --deflate");
    return bench::runEcho(std::move(o));
}

int runChatBench(const BenchArgs& a) {
    bench::ChatOptions o;
    if (a.proto == "socketio") o.proto = bench::ChatProto::socketio;
    const char* path = o.proto == bench::ChatProto::tongdao ? "/chat" : "/socket.io/?EIO=4&transport=websocket";
    o.targets = targets(a, path);
    o.mode = a.idle ? bench::ChatMode::idle
             : a.storm > 0 ? bench::ChatMode::storm
             : a.rate > 0  ? bench::ChatMode::fanout
                           : bench::ChatMode::closed;
    common(a, o);
    o.rooms = a.chatRooms;
    o.members = a.members;
    if (a.members > 0) o.connections = 0; // --members: rooms × members
    o.bodySize = a.size ? a.size : 100;
    o.behind = a.storm;
    o.fillersPerRoom = a.fillersPerRoom;
    o.goOnStdin = a.goOnStdin;
    o.stormTimeout = a.stormTimeout;
    o.drain = a.drain;
    o.namePrefix = a.namePrefix;
    o.roomPrefix = a.roomPrefix;
    if (!a.tokenSecretFile.empty()) {
        if (o.proto != bench::ChatProto::tongdao) throw bench::Fatal("--token-secret-file goes with the tongdao protocol");
        std::ifstream in(a.tokenSecretFile, std::ios::binary);
        std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        // As the server reads its --auth-secret-file: the surrounding whitespace is not the secret's.
        const auto first = secret.find_first_not_of(" \t\r\n");
        secret = first == std::string::npos ? "" : secret.substr(first, secret.find_last_not_of(" \t\r\n") - first + 1);
        if (!in.good() && !in.eof()) throw bench::Fatal("cannot read --token-secret-file " + a.tokenSecretFile);
        if (secret.empty()) throw bench::Fatal("--token-secret-file " + a.tokenSecretFile + " is empty or cannot be read");
        o.tokenSecret = std::move(secret);
    }
    if (a.deflate || a.jsonMessages || a.raw || a.text)
        throw bench::Fatal("--deflate, --json-messages, --raw and --text are echo options, not --chat ones");
    if (a.drain > 0 && o.mode != bench::ChatMode::fanout) throw bench::Fatal("--drain goes with --rate (fan-out)");
    return bench::runChat(std::move(o));
}

} // namespace

void addBench(CLI::App& app, BenchArgs& args, const std::function<void()>& selected) {
    auto* c = app.add_subcommand(
        "bench",
        "Loads WebSocket servers and measures them. Every connection sends messages and times each\n"
        "answer: echoes, compared byte for byte with what was sent, or with --chat ROOMS the chat\n"
        "protocol of docs/PROTOCOL.md, where every member of a room times every delivery. Closed\n"
        "loop by default (each answer releases the next send, --pipeline of them in flight); --rate\n"
        "sends on a schedule instead, timed from the moment each send was due. After --warmup,\n"
        "--duration seconds are measured: messages/s and latency p50/p90/p99/p99.9/max from a\n"
        "log-linear histogram (under 1.6 % error), readable or with --json as one JSON object.\n"
        "A live progress line goes to standard error on a terminal.");
    c->add_option("url", args.urls,
                  "ws:// or wss:// URL (an echo endpoint, or with --chat the chat one); several URLs\n"
                  "spread the connections over them")
        ->required()
        ->expected(1, CLI::detail::expected_max_vector_size)
        ->type_name("URL…");
    c->add_option("-c,--connections", args.connections, "connections (with --chat: members, spread over the rooms)")
        ->check(CLI::Range(1, 1'000'000))
        ->capture_default_str();
    c->add_option("-r,--rate", args.rate, "messages/s per connection on a schedule (open loop); 0: closed loop")
        ->check(CLI::Range(0.0, 1e6))
        ->capture_default_str();
    c->add_option("-p,--pipeline", args.pipeline,
                  "messages in flight per connection: kept full in a closed loop, at most this many with --rate\n"
                  "(echo; a chat fan-out with --rate never waits for acks)")
        ->check(CLI::Range(1, 1024))
        ->capture_default_str();
    c->add_option("-s,--size", args.size, "message size in bytes (with --chat: the body's; default 20, --chat 100)");
    c->add_option("-d,--duration", args.duration, "measured seconds")->check(CLI::Range(0.0, 86400.0))->capture_default_str();
    c->add_option("--warmup", args.warmup, "seconds of load before the measured ones")
        ->check(CLI::Range(0.0, 3600.0))
        ->capture_default_str();
    c->add_option("--ramp-up", args.rampUp, "open the connections evenly over this many seconds, each sending once open")
        ->check(CLI::Range(0.0, 3600.0))
        ->capture_default_str();
    c->add_flag("--json", args.json, "print the result as one JSON object (latencies in microseconds)");
    c->add_flag("--no-progress", args.noProgress, "no live progress line, even on a terminal");

    const std::string echo = "Echo";
    c->add_flag("--text", args.text, "text messages (default binary)")->group(echo);
    c->add_flag("--json-messages", args.jsonMessages,
                "chat-like JSON text messages of exactly --size bytes, all different (for --deflate)")
        ->group(echo);
    c->add_flag("--deflate", args.deflate, "offer permessage-deflate (RFC 7692); the messages go compressed if agreed")
        ->group(echo);
    c->add_flag("--no-context-takeover", args.noContextTakeover, "with --deflate: offer no context takeover either way")
        ->group(echo);
    c->add_flag("--raw", args.raw, "no WebSocket: count the server's echo of our frames as bytes (a raw TCP echo)")
        ->group(echo);
    c->add_option("--seed", args.seed, "seed of the --json-messages text")->group(echo)->capture_default_str();

    const std::string chat = "Chat";
    c->add_option("--chat", args.chatRooms, "speak the chat protocol: join this many rooms and send in them")
        ->check(CLI::Range(1, 100000))
        ->group(chat);
    c->add_option("--members", args.members, "members per room (instead of --connections)")
        ->check(CLI::Range(1, 1'000'000))
        ->group(chat);
    c->add_option("--proto", args.proto, "tongdao, or socketio (Socket.IO 5 on Engine.IO 4) for a peer to compare with")
        ->check(CLI::IsMember({"tongdao", "socketio"}))
        ->group(chat)
        ->capture_default_str();
    c->add_option("--drain", args.drain,
                  "with --rate: seconds more of traffic after the window, counting the window's deliveries late")
        ->check(CLI::Range(0.0, 600.0))
        ->group(chat);
    c->add_option("--storm", args.storm,
                  "catch-up storm: fill each room with this many messages, then every client joins from "
                  "before them at once; measures until each has them all, in order")
        ->group(chat);
    c->add_option("--fillers-per-room", args.fillersPerRoom, "--storm: senders filling each room (default 1 per 500)")
        ->group(chat);
    c->add_option("--storm-timeout", args.stormTimeout, "--storm: give up after this many seconds")
        ->group(chat)
        ->capture_default_str();
    c->add_flag("--go-on-stdin", args.goOnStdin, "--storm: print \"# ready\" and wait for a line on standard input")
        ->group(chat);
    c->add_option("--name-prefix", args.namePrefix, "user names start with this")->group(chat)->capture_default_str();
    c->add_option("--token-secret-file", args.tokenSecretFile,
                  "sign each member's hello token (HS256, its user name as sub) with the secret in FILE: the\n"
                  "server's --auth-secret-file, for a server without --anonymous")
        ->group(chat);
    c->add_option("--room-prefix", args.roomPrefix, "room names start with this (default: --name-prefix)")->group(chat);

    const std::string conn = "Connections";
    c->add_flag("--idle", args.idle, "open the connections and hold them, sending nothing, until standard input closes")
        ->group(conn);
    c->add_option("--hold-max", args.holdMax, "--idle: hold at most this many seconds")->group(conn)->capture_default_str();
    c->add_flag("--insecure", args.insecure, "wss://: do not verify the server's certificate")->group(conn);
    c->add_option("--ca", args.ca, "wss://: trust the CAs in FILE (PEM) instead of the system's")->group(conn);
    c->add_option("-H,--header", args.headers,
                  "add \"Name: value\" to every opening handshake (repeatable), e.g. an Origin, a Referer or a cookie")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->check([](const std::string& v) -> std::string {
            const auto colon = v.find(':');
            if (colon == std::string::npos || colon == 0) return "a header is \"Name: value\", not \"" + v + "\"";
            if (v.find_first_of("\r\n") != std::string::npos) return "a header is one line";
            return "";
        })
        ->group(conn);
    c->add_option("--source-ips", args.sourceIps, "local IPv4 addresses to connect from, round-robin (A,B,…)")->group(conn);
    c->add_option("--connect-batch", args.connectBatch, "connection handshakes in progress at once")
        ->check(CLI::Range(1, 100000))
        ->group(conn)
        ->capture_default_str();
    c->add_option("--connect-timeout", args.connectTimeout, "seconds to open every connection (after --ramp-up)")
        ->check(CLI::Range(0.1, 86400.0))
        ->group(conn)
        ->capture_default_str();
    c->add_flag("--phases", args.phases,
                "print \"# open N errors E\", \"# measuring\", \"# window end\" on standard output as the run reaches "
                "them (for scripts that sample the server there)")
        ->group(conn);
    c->footer("Exit status: 0 when the run was made, 1 when no connection opened, 2 on a usage error.\n"
              "Examples:\n"
              "  tongdao bench ws://127.0.0.1:8080/echo -c 100 -p 16 -d 10\n"
              "  tongdao bench ws://127.0.0.1:8080/chat --chat 10 --members 100 --rate 1 --json");
    c->callback(selected);
}

int runBench(const BenchArgs& args) {
    try {
        if (args.urls.size() > 255) throw bench::Fatal("at most 255 URLs");
        return args.chatRooms > 0 ? runChatBench(args) : runEchoBench(args);
    } catch (const bench::Fatal& e) {
        std::fprintf(stderr, "tongdao bench: %s\n", e.what());
        return 2;
    }
}

} // namespace tongdao::app
