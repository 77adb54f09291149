// client_probe: tongdao's client against a peer's echo server (python_deflate_tls_test.py).
// Connects, sends a fixed set of messages, checks that each comes back byte for byte,
// closes with 1000 and reports one line per step.
//
//   client_probe URL [--deflate] [--ca FILE] [--no-verify] [--expect-fail TEXT]
//
//   --deflate       offer permessage-deflate
//   --ca FILE       trust these CAs (wss://) instead of the system's
//   --no-verify     do not verify the server's certificate
//   --expect-fail   the connection must fail with an errMsg containing TEXT (exit 0 if so)
//
// Output: "OPEN <the 101's Sec-WebSocket-Extensions, or ->", "ECHO <kind> <bytes> ok" per
// message, "CLOSE <code> <reason>", or "FAIL <errMsg>". Exit 0 when everything matched.
// The messages: "hello" (5 bytes), the 256 byte values, 1 MiB of JSON text, the same 1 MiB
// as binary, and 64 KiB of repetitive text; all but the 256 bytes compress well.

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace {

using namespace tongdao;
using Ms = std::chrono::milliseconds;
constexpr Ms kTimeout{50000};

struct Event {
    enum Kind { open, message, error, close } kind{};
    SocketData data;
    std::string text;
    int code = 0;
    std::string extensions;
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

std::string jsonText(std::size_t n) {
    std::string s = "[";
    for (std::size_t i = 0; s.size() < n; ++i)
        s += "{\"id\":" + std::to_string(i % 1000) + ",\"room\":\"lobby\",\"user\":\"u" + std::to_string(i % 7) +
             "\",\"text\":\"hello, channel\"},";
    s.resize(n - 1);
    s += "]";
    return s;
}

void say(const std::string& line) {
    std::fputs(line.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs("usage: client_probe URL [--deflate] [--ca FILE] [--no-verify] [--expect-fail TEXT]\n", stderr);
        return 2;
    }
    ConnectSocketOptions options;
    options.url = argv[1];
    options.timeout = 50000;
    std::optional<std::string> expectFail;
    for (int i = 2; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--deflate")) options.perMessageDeflate = true;
        else if (!std::strcmp(argv[i], "--no-verify")) options.tlsVerify = false;
        else if (!std::strcmp(argv[i], "--ca") && i + 1 < argc) options.tlsCaFile = argv[++i];
        else if (!std::strcmp(argv[i], "--expect-fail") && i + 1 < argc) expectFail = argv[++i];
        else {
            std::fprintf(stderr, "client_probe: unknown argument %s\n", argv[i]);
            return 2;
        }
    }

    Runtime runtime;
    Inbox inbox;
    options.fail = [&inbox](const GeneralCallbackResult& r) { inbox.push({Event::error, {}, r.errMsg, 0, {}}); };
    auto task = connectSocket(runtime, options);
    task->onOpen([&inbox](const OnOpenResult& r) {
        const auto ext = r.header.find("Sec-WebSocket-Extensions");
        inbox.push({Event::open, {}, {}, 0, ext == r.header.end() ? std::string("-") : ext->second});
    });
    task->onMessage([&inbox](const OnMessageResult& r) { inbox.push({Event::message, r.data, {}, 0, {}}); });
    task->onError([&inbox](const OnErrorResult& r) { inbox.push({Event::error, {}, r.errMsg, 0, {}}); });
    task->onClose([&inbox](const OnCloseResult& r) { inbox.push({Event::close, {}, r.reason, r.code, {}}); });
    runtime.start();

    bool ok = true;
    auto finish = [&](bool passed) {
        if (task->readyState() != SocketTask::CLOSED) task->close({});
        runtime.stop();
        return passed ? 0 : 1;
    };

    auto first = inbox.pop(kTimeout);
    if (!first || first->kind != Event::open) {
        const std::string why = !first ? "no answer in time" : first->text;
        say("FAIL " + why);
        if (expectFail) return finish(why.find(*expectFail) != std::string::npos);
        return finish(false);
    }
    say("OPEN " + first->extensions);
    if (expectFail) {
        say("FAIL expected \"" + *expectFail + "\" but the connection opened");
        return finish(false);
    }

    std::vector<SocketData> messages;
    messages.emplace_back(std::string("hello"));
    ArrayBuffer all(256);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
    messages.emplace_back(all);
    const std::string json = jsonText(1u << 20);
    messages.emplace_back(json);
    messages.emplace_back(ArrayBuffer(json.begin(), json.end()));
    std::string repeated;
    while (repeated.size() < 65536) repeated += "channel 通道 ";
    // Keep it valid UTF-8: cut at a character boundary, then pad with ASCII.
    while (!repeated.empty() && (static_cast<unsigned char>(repeated.back()) & 0xC0) == 0x80) repeated.pop_back();
    if (!repeated.empty() && static_cast<unsigned char>(repeated.back()) >= 0xC0) repeated.pop_back();
    repeated.resize(65536, '.');
    messages.emplace_back(repeated);

    for (const auto& m : messages) {
        SendOptions s;
        s.data = m;
        task->send(s);
        auto e = inbox.pop(kTimeout);
        const bool text = std::holds_alternative<std::string>(m);
        const std::size_t size = text ? std::get<std::string>(m).size() : std::get<ArrayBuffer>(m).size();
        const bool same = e && e->kind == Event::message && e->data == m;
        say(std::string("ECHO ") + (text ? "text " : "binary ") + std::to_string(size) + (same ? " ok" : " differs"));
        if (!same) {
            if (e && e->kind != Event::message) say("EVENT " + e->text);
            ok = false;
            break;
        }
    }

    CloseOptions c;
    task->close(c);
    std::optional<Event> e;
    while ((e = inbox.pop(kTimeout)) && e->kind != Event::close) {
        if (e->kind == Event::error) say("ERROR " + e->text);
    }
    if (!e) {
        say("CLOSE none");
        ok = false;
    } else {
        say("CLOSE " + std::to_string(e->code) + " " + e->text);
        ok = ok && e->code == 1000;
    }
    runtime.stop();
    return ok ? 0 : 1;
}
