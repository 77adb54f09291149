// tongdao chat URL --room R --name N: a terminal chat client on the chat protocol of
// docs/PROTOCOL.md. The room's recent history on join, then its live messages and presence;
// each line of standard input is sent as a message. Sends wait in an outbox until stored
// and go again, same cid, after a reconnect (exactly once, with the server's dedupe); a
// dropped connection reconnects with backoff and resumes from the last seq seen.
//
// The runtime's loop thread runs the socket's callbacks and answers the protocol; the main
// thread reads standard input, reconnects and decides when to stop. They share `Chat`.

#include "cli_chat.hpp"

#include "tongdao/client/runtime.hpp"
#include "tongdao/client/socket_task.hpp"

#include <boost/json.hpp>

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <random>

namespace tongdao::app {

namespace json = boost::json;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int helloId = 1, joinId = 2, historyId = 3, firstSendId = 100;

std::string timeOf(std::int64_t ms) {
    const std::time_t t = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    return buf;
}

/** A message body as a person reads it: a string as is, {"text": ...} by its text, else JSON. */
std::string bodyText(const json::value& body) {
    if (body.is_string()) return std::string(body.get_string());
    if (body.is_object())
        if (const auto* t = body.get_object().if_contains("text"); t && t->is_string()) return std::string(t->get_string());
    return json::serialize(body);
}

std::string str(const json::object& o, const char* key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::uint64_t num(const json::object& o, const char* key) {
    const auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64() && v->get_int64() > 0) return static_cast<std::uint64_t>(v->get_int64());
    return 0;
}

struct Pending {
    std::string cid;
    std::string body; ///< JSON
};

/** What both threads share, under `mu`. */
struct Chat {
    explicit Chat(ChatArgs a) : args(std::move(a)) {}
    ChatArgs args;
    std::mutex mu;
    std::shared_ptr<SocketTask> task;
    bool open = false, joined = false, everJoined = false;
    bool fatal = false;        ///< the server refused us for good (a bad token, a forbidden room)
    std::atomic<bool> refusedCall{false}; ///< connectSocket's fail (it may run inside the call)
    bool closing = false;                 ///< we end it: no reconnect, nothing to say
    std::uint64_t lastSeq = 0; ///< the last seq printed: where a resume starts
    std::string epoch;
    std::map<int, Pending> outbox; ///< by request id, in the order sent
    int nextId = firstSendId;
    Clock::time_point retryAt{}; ///< sends refused for now (rate_limited, unavailable) go again then

    void sendLocked(const json::object& o) {
        if (task) task->send({.data = json::serialize(o)});
    }
    void sendOutboxLocked() {
        for (const auto& [id, p] : outbox) {
            json::object o{{"op", "send"}, {"id", id}, {"room", args.room}, {"cid", p.cid}};
            o["body"] = json::parse(p.body);
            sendLocked(o);
        }
    }
    void printEvent(const json::object& m) {
        const auto op = str(m, "op");
        if (op == "message") {
            const auto seq = num(m, "seq");
            if (seq <= lastSeq) return; // already shown
            lastSeq = seq;
            const auto* body = m.if_contains("body");
            const auto* ts = m.if_contains("ts");
            std::printf("[%s] %s: %s\n", timeOf(ts && ts->is_int64() ? ts->get_int64() : 0).c_str(), str(m, "name").c_str(),
                        body ? bodyText(*body).c_str() : "");
        } else if (op == "edit" || op == "delete") {
            lastSeq = std::max(lastSeq, num(m, "seq"));
            std::printf("* %s %s message %llu\n", str(m, "name").c_str(), op == "edit" ? "edited" : "deleted",
                        static_cast<unsigned long long>(num(m, "target")));
        } else if (op == "presence") {
            std::printf("* %s %s (%llu online)\n", str(m, "name").c_str(), str(m, "state") == "join" ? "joined" : "left",
                        static_cast<unsigned long long>(num(m, "count")));
        } else if (op == "gap") {
            if (str(m, "reason") == "epoch") {
                lastSeq = 0;
                epoch = str(m, "epoch");
                std::printf("* the room's history was reset; earlier messages are gone\n");
            } else {
                lastSeq = std::max(lastSeq, num(m, "to"));
                std::printf("* messages %llu-%llu are no longer kept\n", static_cast<unsigned long long>(num(m, "from")),
                            static_cast<unsigned long long>(num(m, "to")));
            }
        }
        std::fflush(stdout);
    }
    void onReply(const json::object& m) {
        const auto id = m.if_contains("id") && m.at("id").is_int64() ? m.at("id").get_int64() : -1;
        const bool ok = m.if_contains("ok") && m.at("ok").is_bool() && m.at("ok").get_bool();
        const auto code = str(m, "code");
        if (id == helloId) {
            if (!ok) return refuse("hello", m);
            json::object j{{"op", "join"}, {"id", joinId}, {"room", args.room}};
            if (everJoined) {
                j["since"] = lastSeq;
                if (!epoch.empty()) j["epoch"] = epoch;
            }
            return sendLocked(j);
        }
        if (id == joinId) {
            if (!ok) {
                if (code == "unavailable") return; // the server is not ready: the next connection tries again
                return refuse("join", m);
            }
            epoch = str(m, "epoch");
            const auto seq = num(m, "seq");
            if (!everJoined) {
                everJoined = true;
                lastSeq = 0;
                if (args.history > 0 && seq > 0) {
                    json::object h{{"op", "history"}, {"id", historyId}, {"room", args.room}, {"before", seq + 1},
                                   {"limit", std::min(args.history, 100)}};
                    sendLocked(h);
                } else {
                    lastSeq = seq;
                }
            } else if (!(m.if_contains("recovered") && m.at("recovered").is_bool() && m.at("recovered").get_bool())) {
                std::printf("* reconnected; some messages could not be recovered\n");
            }
            joined = true;
            sendOutboxLocked();
            std::fflush(stdout);
            return;
        }
        if (id == historyId) {
            if (const auto* ev = m.if_contains("events"); ok && ev && ev->is_array())
                for (const auto& e : ev->get_array())
                    if (e.is_object()) printEvent(e.get_object());
            return;
        }
        const auto it = outbox.find(static_cast<int>(id));
        if (it == outbox.end()) return;
        if (ok) {
            outbox.erase(it);
            return;
        }
        if (code == "rate_limited" || code == "unavailable") {
            retryAt = Clock::now() + std::chrono::milliseconds(std::max<std::uint64_t>(num(m, "retryAfterMs"), 500));
            return; // stays in the outbox, sent again then
        }
        std::fprintf(stderr, "tongdao: not sent (%s): %s\n", code.c_str(), str(m, "message").c_str());
        outbox.erase(it);
    }
    void refuse(const char* what, const json::object& m) {
        std::fprintf(stderr, "tongdao: %s refused (%s): %s\n", what, str(m, "code").c_str(), str(m, "message").c_str());
        fatal = true;
        if (task) task->close();
    }
};

void connect(const std::shared_ptr<Chat>& chat, Runtime& runtime) {
    ConnectSocketOptions o;
    o.url = chat->args.url;
    o.protocols = {"tongdao.chat.v1"};
    o.tlsVerify = !chat->args.insecure;
    o.tlsCaFile = chat->args.ca;
    const std::weak_ptr<Chat> weak = chat;
    o.fail = [weak](const GeneralCallbackResult& r) {
        // Refused before it started (an invalid URL, too many sockets): no close follows.
        std::fprintf(stderr, "tongdao: %s\n", r.errMsg.c_str());
        if (const auto c = weak.lock()) c->refusedCall = true;
    };
    // Held while the listeners are set: none of them may see the chat without its task.
    std::lock_guard hold(chat->mu);
    auto task = connectSocket(runtime, std::move(o));
    task->onOpen([weak](const OnOpenResult&) {
        const auto c = weak.lock();
        if (!c) return;
        std::lock_guard lk(c->mu);
        c->open = true;
        json::object hello{{"op", "hello"}, {"id", helloId}, {"v", 1}};
        if (!c->args.token.empty()) hello["token"] = c->args.token;
        else hello["name"] = c->args.name;
        c->sendLocked(hello);
    });
    task->onMessage([weak](const OnMessageResult& r) {
        const auto c = weak.lock();
        const auto* text = std::get_if<std::string>(&r.data);
        if (!c || !text) return;
        boost::system::error_code ec;
        auto v = json::parse(*text, ec);
        if (ec || !v.is_object()) return;
        std::lock_guard lk(c->mu);
        const auto& m = v.get_object();
        if (str(m, "op") == "reply") c->onReply(m);
        else c->printEvent(m);
    });
    task->onClose([weak](const OnCloseResult& r) {
        const auto c = weak.lock();
        if (!c) return;
        std::lock_guard lk(c->mu);
        if (c->joined && !c->fatal && !c->closing) std::fprintf(stderr, "* disconnected (%d); reconnecting\n", r.code);
        c->open = c->joined = false;
        c->task.reset();
    });
    chat->task = std::move(task);
}

std::string newCidPrefix() {
    std::random_device rd;
    char buf[32];
    std::snprintf(buf, sizeof buf, "cli-%08x%08x-", rd(), rd());
    return buf;
}

} // namespace

void addChat(CLI::App& app, ChatArgs& args, const std::function<void()>& selected) {
    auto* c = app.add_subcommand("chat", "A terminal chat client on tongdao-server's chat protocol (docs/PROTOCOL.md): the\n"
                                         "room's recent history, then live messages and presence; each line of standard\n"
                                         "input is sent as a message, exactly once, across reconnects.");
    c->add_option("url", args.url, "ws:// or wss:// URL of the chat endpoint, e.g. ws://127.0.0.1:8080/chat")->required();
    c->add_option("--room", args.room, "the room to join")->required();
    c->add_option("--name", args.name, "your name (anonymous servers)")->capture_default_str();
    c->add_option("--token", args.token, "a token (HS256 JWT) instead of a name");
    c->add_option("--token-file", args.tokenFile, "a file holding the token");
    c->add_option("--history", args.history, "messages of history shown on join (0-100)")
        ->check(CLI::Range(0, 100))
        ->capture_default_str();
    c->add_flag("--insecure", args.insecure, "do not verify the server's certificate (wss://)");
    c->add_option("--ca", args.ca, "trust the CAs in FILE (PEM) instead of the system's");
    c->footer("The end of input sends what is still waiting (at most 10 s), then closes.\n"
              "Exit status: 0 when everything typed was stored, 1 otherwise, 2 on a usage error.");
    c->callback(selected);
}

int runChat(ChatArgs args, const volatile std::sig_atomic_t& interrupted) {
    if (!args.tokenFile.empty()) {
        std::ifstream in(args.tokenFile);
        if (!std::getline(in, args.token) || args.token.empty()) {
            std::fprintf(stderr, "tongdao: no token in %s\n", args.tokenFile.c_str());
            return 2;
        }
    }
    auto chat = std::make_shared<Chat>(std::move(args));
    Runtime runtime;
    runtime.start();
    const auto prefix = newCidPrefix();
    std::uint64_t counter = 0;
    int backoffMs = 0;
    auto nextConnect = Clock::now();
    bool inputDone = false;
    Clock::time_point giveUpAt{};
    std::string pending;
    char buffer[4096];
    for (;;) {
        if (interrupted) break;
        {
            std::lock_guard lk(chat->mu);
            if (chat->refusedCall) chat->fatal = true; // its fail may come after connectSocket returned
            if (chat->fatal) break;
            if (inputDone && chat->outbox.empty() && chat->everJoined) break;
            if (inputDone && Clock::now() >= giveUpAt) break;
            if (chat->joined) backoffMs = 0;
            if (chat->joined && chat->retryAt != Clock::time_point{} && Clock::now() >= chat->retryAt) {
                chat->retryAt = {};
                chat->sendOutboxLocked();
            }
        }
        bool needConnect = false;
        {
            std::lock_guard lk(chat->mu);
            needConnect = !chat->task && Clock::now() >= nextConnect;
        }
        if (needConnect) {
            backoffMs = backoffMs == 0 ? 500 : std::min(backoffMs * 2, 8000);
            nextConnect = Clock::now() + std::chrono::milliseconds(backoffMs);
            connect(chat, runtime);
        }
        if (inputDone) {
            ::usleep(100 * 1000);
            continue;
        }
        pollfd in{.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
        const int ready = ::poll(&in, 1, 100);
        if (ready <= 0) continue;
        const auto n = ::read(STDIN_FILENO, buffer, sizeof buffer);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
            if (!pending.empty()) pending += '\n'; // the last line, unterminated
            inputDone = true;
            giveUpAt = Clock::now() + std::chrono::seconds(10);
        } else {
            pending.append(buffer, static_cast<std::size_t>(n));
        }
        for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
            std::string line = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.empty()) continue;
            std::lock_guard lk(chat->mu);
            const int id = chat->nextId++;
            auto& p = chat->outbox[id];
            p.cid = prefix + std::to_string(++counter);
            p.body = json::serialize(json::value(line));
            if (chat->joined) {
                json::object o{{"op", "send"}, {"id", id}, {"room", chat->args.room}, {"cid", p.cid}};
                o["body"] = json::parse(p.body);
                chat->sendLocked(o);
            }
        }
    }
    std::shared_ptr<SocketTask> task;
    bool lost = false, fatal = false;
    {
        std::lock_guard lk(chat->mu);
        task = chat->task;
        chat->closing = true;
        lost = !chat->outbox.empty();
        fatal = chat->fatal || !chat->everJoined;
        if (!chat->everJoined && !chat->fatal) std::fprintf(stderr, "tongdao: could not join %s\n", chat->args.room.c_str());
        if (lost)
            std::fprintf(stderr, "tongdao: %zu message(s) not stored (still waiting when input ended)\n", chat->outbox.size());
    }
    if (task) task->close();
    ::usleep(200 * 1000); // the close leaves; the runtime then aborts what is left
    runtime.stop();
    return lost || fatal ? 1 : 0;
}

} // namespace tongdao::app
