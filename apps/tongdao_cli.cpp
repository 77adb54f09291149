// tongdao: the command-line client, in the spirit of wscat and websocat.
//
//   tongdao connect URL [options]
//
// Opens a WebSocket with tongdao::connectSocket on a runtime of its own (its loop thread
// runs every callback) while the main thread reads standard input, waits and closes.
// Received messages go to standard output, one per line; status lines go to standard error.

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"
#include "tongdao/log.hpp"

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

void usage(FILE* out) {
    std::fputs(
        "usage: tongdao connect URL [options]\n"
        "\n"
        "Opens a WebSocket to URL (ws:// or wss://). Without -x or --echo, each line read from\n"
        "standard input is sent as a text message and each message received is printed on a\n"
        "line of its own; the end of input closes the connection.\n"
        "\n"
        "  -H, --header \"Name: value\"  add a request header field (repeatable)\n"
        "  -s, --subprotocol NAME      offer a sub-protocol (repeatable)\n"
        "  --appid ID                  mini-program appid: sends the Referer\n"
        "  --version V                 with --appid: https://servicewechat.com/ID/V/page-frame.html\n"
        "  -x, --execute MESSAGE       send MESSAGE once open (repeatable, in order), wait, close\n"
        "  -w, --wait SECONDS          with -x: how long to wait for replies (default 1)\n"
        "  --echo                      send every message received back, until the server closes\n"
        "  --binary                    print binary messages as hex (else \"<binary N bytes>\")\n"
        "  --insecure                  do not verify the server's certificate (wss://)\n"
        "  --ca FILE                   trust the CAs in FILE (PEM) instead of the system's\n"
        "  --deflate                   offer permessage-deflate (RFC 7692)\n"
        "  --timeout MS                connect timeout in milliseconds, at most 60000 (default)\n"
        "  -h, --help                  show this help\n"
        "\n"
        "Exit status: 0 after a normal close (1000, 1001, 1005, or our own), 1 on failure,\n"
        "2 on a usage error.\n",
        out);
}

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

bool usageError(const char* fmt, const char* what) {
    std::fputs("tongdao: ", stderr);
    std::fprintf(stderr, fmt, what);
    std::fputs("\n\n", stderr);
    usage(stderr);
    return false;
}

/** Parses `connect URL [options]`; false on a usage error (already reported). */
bool parseArgs(int argc, char** argv, Args& args, bool& help) {
    if (argc < 2) return usageError("%s", "a command is needed");
    const std::string_view command = argv[1];
    if (command == "-h" || command == "--help") {
        help = true;
        return true;
    }
    if (command != "connect") return usageError("unknown command %s", argv[1]);
    bool haveUrl = false;
    for (int i = 2; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const char* name = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (arg == "-h" || arg == "--help") {
            help = true;
            return true;
        } else if (arg == "-H" || arg == "--header") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            const std::string_view field = v;
            const auto colon = field.find(':');
            if (colon == std::string_view::npos || colon == 0)
                return usageError("a header is \"Name: value\", not \"%s\"", v);
            std::string_view fieldValue = field.substr(colon + 1);
            while (!fieldValue.empty() && (fieldValue.front() == ' ' || fieldValue.front() == '\t'))
                fieldValue.remove_prefix(1);
            args.connect.header[std::string(field.substr(0, colon))] = std::string(fieldValue);
        } else if (arg == "-s" || arg == "--subprotocol") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            args.connect.protocols.emplace_back(v);
        } else if (arg == "--appid") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            args.connect.appid = v;
        } else if (arg == "--version") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            args.connect.version = v;
        } else if (arg == "-x" || arg == "--execute") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            args.execute.emplace_back(v);
        } else if (arg == "-w" || arg == "--wait") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            char* end = nullptr;
            errno = 0;
            const double seconds = std::strtod(v, &end);
            if (errno != 0 || end == v || *end != '\0' || !(seconds >= 0) || seconds > 86400)
                return usageError("bad number of seconds for --wait: %s", v);
            args.waitSeconds = seconds;
        } else if (arg == "--timeout") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            const std::string_view text = v;
            int ms = 0;
            const auto r = std::from_chars(text.data(), text.data() + text.size(), ms);
            if (r.ec != std::errc{} || r.ptr != text.data() + text.size() || ms <= 0)
                return usageError("bad number of milliseconds for --timeout: %s", v);
            args.connect.timeout = ms;
        } else if (arg == "--echo") {
            args.echo = true;
        } else if (arg == "--binary") {
            args.binary = true;
        } else if (arg == "--insecure") {
            args.connect.tlsVerify = false;
        } else if (arg == "--deflate") {
            args.connect.perMessageDeflate = true;
        } else if (arg == "--ca") {
            const char* v = value();
            if (!v) return usageError("%s needs a value", name);
            args.connect.tlsCaFile = v;
        } else if (!arg.empty() && arg.front() == '-') {
            return usageError("unknown option %s", name);
        } else if (!haveUrl) {
            args.connect.url = std::string(arg);
            haveUrl = true;
        } else {
            return usageError("one URL only; also got %s", name);
        }
    }
    if (!haveUrl) return usageError("%s", "connect needs a URL");
    return true;
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
    bool help = false;
    if (!parseArgs(argc, argv, args, help)) return 2;
    if (help) {
        usage(stdout);
        return 0;
    }
    tongdao::setLogLevel(tongdao::LogLevel::warn);
    struct sigaction action {};
    action.sa_handler = onSignal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    return run(args);
}
