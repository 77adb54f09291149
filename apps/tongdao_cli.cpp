// tongdao: the command-line client (in the spirit of wscat and websocat), the terminal chat
// client and the load generator.
//
//   tongdao connect URL [options]
//   tongdao chat URL --room R [--name N] [options]   (cli_chat.cpp)
//   tongdao bench URL… [options]                    (cli_bench.cpp)
//
// Opens a WebSocket with tongdao::connectSocket on a runtime of its own (its loop thread
// runs every callback) while the main thread reads standard input, waits and closes.
// Received messages go to standard output, one per line; status lines go to standard error.

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"
#include "tongdao/log.hpp"

#include "cli_bench.hpp"
#include "cli_chat.hpp"

#include <CLI/CLI.hpp>

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
    tongdao::ConnectSocketOptions connect;
    std::vector<std::string> execute;
    double waitSeconds = 1.0;
    bool echo = false;
    bool binary = false;
};

/** What the loop thread tells the main thread. */
struct State {
    std::mutex mutex;
    std::condition_variable changed;
    bool opened = false;
    bool closed = false;   ///< onClose, or connectSocket's fail
    bool failed = false;   ///< onError or connectSocket's fail
    bool weClosed = false; ///< the close was ours
    int code = 0;
};

/** A failed send: its errMsg ("sendSocketMessage:fail ...") to standard error. */
void printErrMsg(const tongdao::GeneralCallbackResult& r) { std::fprintf(stderr, "%s\n", r.errMsg.c_str()); }

volatile std::sig_atomic_t interrupted = 0;

extern "C" void onSignal(int) { interrupted = 1; }

/** Builds the command line: `tongdao connect URL [options]`. */
void addConnect(CLI::App& app, Args& args, std::vector<std::string>& headers, bool& insecure) {
    auto* c = app.add_subcommand("connect",
                                 "Opens a WebSocket to URL (ws:// or wss://). Without -x or --echo, each line read from\n"
                                 "standard input is sent as a text message and each message received is printed on a\n"
                                 "line of its own; the end of input closes the connection.");
    c->add_option("url", args.connect.url, "ws:// or wss:// URL")->required();
    // Each repeatable option takes one value an occurrence, so that `-x a URL` keeps its URL.
    auto one = [](CLI::Option* o) { return o->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll); };
    one(c->add_option("-H,--header", headers, "add a request header field \"Name: value\" (repeatable)"))
        ->check([](const std::string& v) -> std::string {
            const auto colon = v.find(':');
            return colon == std::string::npos || colon == 0 ? "a header is \"Name: value\", not \"" + v + "\"" : "";
        });
    one(c->add_option("-s,--subprotocol", args.connect.protocols, "offer a sub-protocol (repeatable)"));
    c->add_option("--appid", args.connect.appid, "mini-program appid: sends the Referer");
    c->add_option("--version", args.connect.version, "with --appid: https://servicewechat.com/ID/V/page-frame.html");
    one(c->add_option("-x,--execute", args.execute, "send MESSAGE once open (repeatable, in order), wait, close"));
    c->add_option("-w,--wait", args.waitSeconds, "with -x: seconds to wait for replies")
        ->check(CLI::Range(0.0, 86400.0))
        ->capture_default_str();
    c->add_flag("--echo", args.echo, "send every message received back, until the server closes");
    c->add_flag("--binary", args.binary, "print binary messages as hex (else \"<binary N bytes>\")");
    c->add_flag("--insecure", insecure, "do not verify the server's certificate (wss://)");
    c->add_option("--ca", args.connect.tlsCaFile, "trust the CAs in FILE (PEM) instead of the system's");
    c->add_flag("--deflate", args.connect.perMessageDeflate, "offer permessage-deflate (RFC 7692)");
    c->add_option("--timeout", args.connect.timeout, "connect timeout in milliseconds")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    c->footer("Exit status: 0 after a normal close (1000, 1001, 1005, or our own), 1 on failure,\n"
              "2 on a usage error.");
}

void addHeaders(Args& args, const std::vector<std::string>& headers) {
    for (const std::string_view field : headers) {
        const auto colon = field.find(':');
        std::string_view value = field.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        args.connect.header[std::string(field.substr(0, colon))] = std::string(value);
    }
}

std::string hex(const tongdao::ArrayBuffer& bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const auto b : bytes) {
        out += digits[b >> 4];
        out += digits[b & 0x0F];
    }
    return out;
}

void printMessage(const tongdao::SocketData& data, bool binaryAsHex) {
    if (const auto* text = std::get_if<std::string>(&data)) {
        std::fwrite(text->data(), 1, text->size(), stdout);
    } else {
        const auto& bytes = std::get<tongdao::ArrayBuffer>(data);
        if (binaryAsHex) {
            const std::string h = hex(bytes);
            std::fwrite(h.data(), 1, h.size(), stdout);
        } else {
            std::fprintf(stdout, "<binary %zu bytes>", bytes.size());
        }
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

/**
 * Waits until `done()` holds (true), `deadline` passes or an interrupt comes (false).
 * No deadline: waits as long as it takes, still waking for interrupts.
 */
template <class Done>
bool waitFor(State& state, Done done, std::optional<Clock::time_point> deadline = std::nullopt) {
    std::unique_lock lock(state.mutex);
    for (;;) {
        if (done()) return true;
        if (interrupted) return false;
        auto until = Clock::now() + std::chrono::milliseconds(100);
        if (deadline) {
            if (Clock::now() >= *deadline) return false;
            if (*deadline < until) until = *deadline;
        }
        state.changed.wait_until(lock, until);
    }
}

/** Closes with 1000 (once) and waits, bounded, for onClose. */
void closeAndWait(State& state, tongdao::SocketTask& task) {
    {
        std::lock_guard lock(state.mutex);
        if (state.closed) return;
        state.weClosed = true;
    }
    task.close(); // code 1000
    // The library gives the server 5 s to answer the close; this bound is beyond it.
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    interrupted = 0;
    waitFor(state, [&] { return state.closed; }, deadline);
}

/** Interactive mode: sends each line of standard input until its end or the close. */
void sendStdinLines(State& state, tongdao::SocketTask& task) {
    auto sendLine = [&task](std::string line) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        task.send({.data = std::move(line), .fail = printErrMsg});
    };
    constexpr std::size_t maxLine = 1u << 20;
    std::string pending;
    char buffer[4096];
    for (;;) {
        {
            std::lock_guard lock(state.mutex);
            if (state.closed) return;
        }
        if (interrupted) return;
        pollfd in{.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
        const int ready = ::poll(&in, 1, 100);
        if (ready < 0 && errno != EINTR) return;
        if (ready <= 0) continue;
        const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return;
        }
        if (n == 0) break; // end of input
        pending.append(buffer, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
            sendLine(pending.substr(start, nl - start));
            start = nl + 1;
        }
        pending.erase(0, start);
        // A line without end is not kept growing: past the cap it leaves as it is.
        if (pending.size() >= maxLine) sendLine(std::exchange(pending, std::string()));
    }
    if (!pending.empty()) sendLine(std::move(pending));
}

int run(Args& args) {
    State state;
    const std::string url = args.connect.url;
    const bool binaryAsHex = args.binary;
    const bool echo = args.echo;
    const int timeoutMs = args.connect.timeout;

    // A failure before the task starts (an invalid URL, ...) reaches `fail` only.
    args.connect.fail = [&state](const tongdao::GeneralCallbackResult& r) {
        std::fprintf(stderr, "%s\n", r.errMsg.c_str());
        std::lock_guard lock(state.mutex);
        state.failed = true;
        state.closed = true;
        state.changed.notify_all();
    };

    tongdao::Runtime runtime;
    runtime.start();
    const auto task = tongdao::connectSocket(runtime, std::move(args.connect));
    // The listeners hold the task weakly: it must not own itself.
    const std::weak_ptr<tongdao::SocketTask> weak = task;

    task->onOpen([&state, &url, weak](const tongdao::OnOpenResult&) {
        const auto t = weak.lock();
        const std::string protocol = t ? t->protocol() : std::string();
        if (protocol.empty()) std::fprintf(stderr, "connected to %s\n", url.c_str());
        else std::fprintf(stderr, "connected to %s (protocol: %s)\n", url.c_str(), protocol.c_str());
        std::lock_guard lock(state.mutex);
        state.opened = true;
        state.changed.notify_all();
    });
    task->onMessage([binaryAsHex, echo, weak](const tongdao::OnMessageResult& r) {
        printMessage(r.data, binaryAsHex);
        if (!echo) return;
        if (const auto t = weak.lock()) t->send({.data = r.data});
    });
    task->onError([&state](const tongdao::OnErrorResult& r) {
        std::fprintf(stderr, "error: %s\n", r.errMsg.c_str());
        std::lock_guard lock(state.mutex);
        state.failed = true;
    });
    task->onClose([&state](const tongdao::OnCloseResult& r) {
        if (r.reason.empty()) std::fprintf(stderr, "closed: %d\n", r.code);
        else std::fprintf(stderr, "closed: %d %s\n", r.code, r.reason.c_str());
        std::lock_guard lock(state.mutex);
        state.code = r.code;
        state.closed = true;
        state.changed.notify_all();
    });

    // The library fails the connect after `timeout`; this bound is beyond it.
    const auto connectDeadline = Clock::now() + std::chrono::milliseconds(timeoutMs) + std::chrono::seconds(5);
    if (!waitFor(state, [&] { return state.opened || state.closed; }, connectDeadline)) {
        if (!interrupted) std::fprintf(stderr, "tongdao: not open after %d ms\n", timeoutMs);
        closeAndWait(state, *task);
        runtime.stop();
        return 1;
    }

    bool isOpen = false;
    {
        std::lock_guard lock(state.mutex);
        isOpen = state.opened && !state.closed;
    }
    if (isOpen) {
        for (const auto& m : args.execute) task->send({.data = m, .fail = printErrMsg});
        if (echo) {
            waitFor(state, [&] { return state.closed; }); // the server ends it (or an interrupt)
        } else if (!args.execute.empty()) {
            const auto wait = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(args.waitSeconds));
            waitFor(state, [&] { return state.closed; }, Clock::now() + wait);
        } else {
            sendStdinLines(state, *task);
        }
        closeAndWait(state, *task);
    }
    runtime.stop();

    std::lock_guard lock(state.mutex);
    if (state.failed || !state.closed) return 1;
    if (state.code == 1000 || state.code == 1001 || state.code == 1005) return 0;
    return state.weClosed && state.code != 1006 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    Args args;
    std::vector<std::string> headers;
    bool insecure = false;
    CLI::App app{"tongdao: the command line of tongdao — connect (a WebSocket client in the spirit of wscat), chat (a\n"
                 "terminal chat client) and bench (the load generator)",
                 "tongdao"};
    app.require_subcommand(1);
    app.get_formatter()->column_width(34);
    addConnect(app, args, headers, insecure);
    tongdao::app::ChatArgs chatArgs;
    bool chatMode = false;
    tongdao::app::addChat(app, chatArgs, [&chatMode] { chatMode = true; });
    tongdao::app::BenchArgs benchArgs;
    bool benchMode = false;
    tongdao::app::addBench(app, benchArgs, [&benchMode] { benchMode = true; });
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        // `tongdao --help` lists the commands and their options; `tongdao connect --help` one.
        const auto subs = app.get_subcommands();
        std::fputs((subs.empty() ? app.help("", CLI::AppFormatMode::All) : subs.front()->help()).c_str(), stdout);
        return 0;
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "tongdao: %s\n\n%s", e.what(), app.help("", CLI::AppFormatMode::All).c_str());
        return 2;
    }
    if (benchMode) return tongdao::app::runBench(benchArgs); // its own signal handling (a signalfd)
    addHeaders(args, headers);
    if (insecure) args.connect.tlsVerify = false;
    tongdao::setLogLevel(tongdao::LogLevel::warn);
    struct sigaction action {};
    action.sa_handler = onSignal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    if (chatMode) return tongdao::app::runChat(std::move(chatArgs), interrupted);
    return run(args);
}
