// client_script_probe: a small tongdao client driven by a script on the command line, for the
// client interop tests (tests/interop/client_interop_test.py). It connects, runs the steps
// in order and prints one JSON object per line: each event the task reports and each
// step's outcome. Exit status 0 if every step passed, 1 otherwise, 2 on bad usage.
//
//   client_script_probe URL [--protocol P]... [--timeout MS] STEP...
//
// Steps (one argument each; ':' separates the parameters):
//   send-text:S            send text S
//   send-binary:HEX        send binary bytes given in hex
//   send-large-text:N      send N bytes of text (a fixed ASCII pattern)
//   send-large-binary:N    send N bytes of binary (a fixed pattern over all byte values)
//   expect-echo            the next message is the last one sent, same kind, byte for byte
//   expect-text:S          the next message is text S
//   expect-binary:HEX      the next message is binary with these bytes
//   expect-protocol:P      the sub-protocol chosen is P (empty: none)
//   close:CODE[:REASON]    close with this code and reason
//   expect-close:CODE[:REASON]  onClose reports this code (and reason, if given)
//   sleep:MS               wait
//
// The probe waits for onOpen first; if the connection fails it prints what happened and
// exits 1. Every wait is bounded by --timeout (default 20000 ms).

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace {

using namespace tongdao;
using Ms = std::chrono::milliseconds;

std::string jsonString(std::string_view s) {
    std::string out = "\"";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20 || c >= 0x7f) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    return out + "\"";
}

void emit(const std::string& line) {
    std::fputs(line.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

/** What the task reported, queued for the script. */
struct Event {
    enum Kind { open, message, error, close } kind{};
    SocketData data;
    std::string text; ///< errMsg, or close reason
    int code = 0;
};

class Inbox {
public:
    void push(Event e) {
        {
            std::lock_guard l(m_);
            q_.push_back(std::move(e));
        }
        cv_.notify_all();
    }
    /** The next event, or nothing after `timeout`. */
    std::optional<Event> pop(Ms timeout) {
        std::unique_lock l(m_);
        if (!cv_.wait_for(l, timeout, [&] { return !q_.empty(); })) return std::nullopt;
        Event e = std::move(q_.front());
        q_.pop_front();
        return e;
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Event> q_;
};

std::string describe(const SocketData& d) {
    const bool text = std::holds_alternative<std::string>(d);
    const std::size_t n = text ? std::get<std::string>(d).size() : std::get<ArrayBuffer>(d).size();
    std::string s = "\"kind\":\"" + std::string(text ? "text" : "binary") + "\",\"size\":" + std::to_string(n);
    if (text && n <= 256) s += ",\"data\":" + jsonString(std::get<std::string>(d));
    if (!text && n <= 256) {
        std::string hex;
        char buf[3];
        for (auto b : std::get<ArrayBuffer>(d)) {
            std::snprintf(buf, sizeof buf, "%02x", b);
            hex += buf;
        }
        s += ",\"hex\":\"" + hex + "\"";
    }
    return s;
}

std::optional<ArrayBuffer> fromHex(std::string_view h) {
    if (h.size() % 2) return std::nullopt;
    ArrayBuffer out;
    for (std::size_t i = 0; i < h.size(); i += 2) {
        const std::string byte(h.substr(i, 2));
        char* end = nullptr;
        const long v = std::strtol(byte.c_str(), &end, 16);
        if (end != byte.c_str() + 2) return std::nullopt;
        out.push_back(static_cast<std::uint8_t>(v));
    }
    return out;
}

std::size_t toSize(std::string_view s) { return static_cast<std::size_t>(std::strtoull(std::string(s).c_str(), nullptr, 10)); }

int usage() {
    std::fputs("usage: client_script_probe URL [--protocol P]... [--timeout MS] STEP...\n", stderr);
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    ConnectSocketOptions options;
    options.url = argv[1];
    Ms timeout{20000};
    std::vector<std::string> steps;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--protocol" && i + 1 < argc) options.protocols.push_back(argv[++i]);
        else if (a == "--timeout" && i + 1 < argc) timeout = Ms(std::atoi(argv[++i]));
        else steps.push_back(a);
    }

    Runtime runtime;
    Inbox inbox;
    options.fail = [](const GeneralCallbackResult& r) {
        emit("{\"event\":\"fail\",\"errMsg\":" + jsonString(r.errMsg) + "}");
    };
    auto task = connectSocket(runtime, options);
    task->onOpen([&inbox](const OnOpenResult&) { inbox.push({Event::open, {}, {}, 0}); });
    task->onMessage([&inbox](const OnMessageResult& r) { inbox.push({Event::message, r.data, {}, 0}); });
    task->onError([&inbox](const OnErrorResult& r) { inbox.push({Event::error, {}, r.errMsg, 0}); });
    task->onClose([&inbox](const OnCloseResult& r) { inbox.push({Event::close, {}, r.reason, r.code}); });
    runtime.start();

    bool ok = true;
    bool closed = false;
    std::optional<SocketData> lastSent;

    // Prints an event as it is taken from the inbox.
    auto show = [&](const Event& e) {
        switch (e.kind) {
        case Event::open:
            emit("{\"event\":\"open\",\"protocol\":" + jsonString(task->protocol()) + "}");
            break;
        case Event::message: emit("{\"event\":\"message\"," + describe(e.data) + "}"); break;
        case Event::error: emit("{\"event\":\"error\",\"errMsg\":" + jsonString(e.text) + "}"); break;
        case Event::close:
            closed = true;
            emit("{\"event\":\"close\",\"code\":" + std::to_string(e.code) + ",\"reason\":" + jsonString(e.text) + "}");
            break;
        }
    };
    auto result = [&](const std::string& step, bool passed, const std::string& detail = {}) {
        ok = ok && passed;
        emit("{\"step\":" + jsonString(step) + ",\"ok\":" + (passed ? "true" : "false") +
             (detail.empty() ? "" : ",\"detail\":" + jsonString(detail)) + "}");
    };

    // Open first.
    {
        auto e = inbox.pop(timeout);
        if (!e) {
            result("open", false, "no event within the timeout");
        } else {
            show(*e);
            if (e->kind != Event::open) {
                result("open", false, "the connection did not open");
                // Drain what follows (error, close) for the log.
                while (auto more = inbox.pop(Ms(500))) show(*more);
            } else {
                result("open", true);
            }
        }
    }

    for (const auto& step : steps) {
        if (!ok) break;
        const auto colon = step.find(':');
        const std::string name = step.substr(0, colon);
        const std::string arg = colon == std::string::npos ? "" : step.substr(colon + 1);
        if (name == "send-text" || name == "send-binary" || name == "send-large-text" || name == "send-large-binary") {
            SendOptions o;
            if (name == "send-text") {
                o.data = arg;
            } else if (name == "send-binary") {
                auto bytes = fromHex(arg);
                if (!bytes) {
                    result(step, false, "bad hex");
                    continue;
                }
                o.data = *bytes;
            } else if (name == "send-large-text") {
                std::string s(toSize(arg), ' ');
                for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('!' + (i * 31 + i / 977) % 90);
                o.data = std::move(s);
            } else {
                ArrayBuffer b(toSize(arg));
                for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * 131 + i / 65536);
                o.data = std::move(b);
            }
            lastSent = o.data;
            auto answered = std::make_shared<std::pair<std::mutex, std::optional<std::string>>>();
            auto cv = std::make_shared<std::condition_variable>();
            o.complete = [answered, cv](const GeneralCallbackResult& r) {
                {
                    std::lock_guard l(answered->first);
                    answered->second = r.errMsg;
                }
                cv->notify_all();
            };
            task->send(std::move(o));
            std::unique_lock l(answered->first);
            cv->wait_for(l, timeout, [&] { return answered->second.has_value(); });
            const std::string msg = answered->second.value_or("no answer");
            result(step, msg == "sendSocketMessage:ok", msg);
        } else if (name == "expect-echo" || name == "expect-text" || name == "expect-binary") {
            auto e = inbox.pop(timeout);
            if (!e) {
                result(step, false, "no message within the timeout");
                continue;
            }
            show(*e);
            if (e->kind != Event::message) {
                result(step, false, "not a message");
                continue;
            }
            if (name == "expect-echo") {
                const bool same = lastSent && *lastSent == e->data;
                result(step, same, same ? "" : "the echo differs from what was sent");
            } else if (name == "expect-text") {
                const auto* s = std::get_if<std::string>(&e->data);
                result(step, s && *s == arg);
            } else {
                const auto* b = std::get_if<ArrayBuffer>(&e->data);
                const auto want = fromHex(arg);
                result(step, b && want && *b == *want);
            }
        } else if (name == "expect-protocol") {
            result(step, task->protocol() == arg, task->protocol());
        } else if (name == "close") {
            CloseOptions c;
            const auto c2 = arg.find(':');
            c.code = std::atoi(arg.substr(0, c2).c_str());
            if (c2 != std::string::npos) c.reason = arg.substr(c2 + 1);
            task->close(c);
            result(step, true);
        } else if (name == "expect-close") {
            std::optional<Event> e;
            while ((e = inbox.pop(timeout))) {
                show(*e);
                if (e->kind == Event::close) break;
            }
            if (!e) {
                result(step, false, "no close within the timeout");
                continue;
            }
            const auto c2 = arg.find(':');
            const int code = std::atoi(arg.substr(0, c2).c_str());
            const bool reasonOk = c2 == std::string::npos || e->text == arg.substr(c2 + 1);
            result(step, e->code == code && reasonOk, std::to_string(e->code) + ":" + e->text);
        } else if (name == "sleep") {
            std::this_thread::sleep_for(Ms(std::atoi(arg.c_str())));
            result(step, true);
        } else {
            result(step, false, "unknown step");
        }
    }

    if (!closed) {
        // Leave politely if the script did not close.
        if (task->readyState() == SocketTask::OPEN) task->close({});
        while (auto e = inbox.pop(Ms(3000))) {
            show(*e);
            if (e->kind == Event::close) break;
        }
    }
    runtime.stop();
    emit(std::string("{\"done\":true,\"ok\":") + (ok ? "true" : "false") + "}");
    return ok ? 0 : 1;
}
