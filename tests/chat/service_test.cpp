// The room logic over real sockets: a chat::Service on a two-loop server, driven by the
// tests' blocking WebSocket client. What is checked here is what needs several loops and
// exact timing: the resume boundary under load, catch-up slots and backpressure, presence
// grace, restarts. The protocol request by request is tests/chat/chat_protocol_test.py.

#include "support/server_harness.hpp"

#include "tongdao/chat/service.hpp"

#include <boost/json.hpp>

#include <atomic>
#include <filesystem>
#include <random>
#include <set>

namespace tongdao::test {
namespace {

namespace json = boost::json;

std::filesystem::path tempDir() {
    static std::atomic<int> n{0};
    auto p = std::filesystem::temp_directory_path() /
             ("tongdao-chat-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::remove_all(p);
    return p;
}

/** A chat server on two loops over a data directory it removes at the end (unless kept). */
class ChatServer {
public:
    explicit ChatServer(chat::ChatOptions o, std::filesystem::path dir = tempDir()) : dir_(std::move(dir)) {
        o.dataDir = dir_;
        o.anonymous = true;
        o.fullSync = false; // survives a killed process; the tests do not cut power
        server_ = std::make_unique<TestServer>(testOptions(2));
        service_ = std::make_unique<chat::Service>(server_->server, o);
        port = server_->start();
    }
    ~ChatServer() {
        stop();
        if (!keep) std::filesystem::remove_all(dir_);
    }
    void stop() {
        if (!server_) return;
        server_->stop();
        service_->close();
        service_.reset();
        server_.reset();
    }
    const std::filesystem::path& dir() const { return dir_; }
    /** A gauge or counter of the service's Prometheus text (-1 when absent). */
    double metric(std::string_view name) const {
        const auto text = service_->prometheusMetrics();
        const auto line = "\n" + std::string(name) + " ";
        const auto at = text.find(line);
        return at == std::string::npos ? -1 : std::stod(text.substr(at + line.size()));
    }

    std::uint16_t port = 0;
    bool keep = false;

private:
    std::filesystem::path dir_;
    std::unique_ptr<TestServer> server_;
    std::unique_ptr<chat::Service> service_;
};

chat::ChatOptions options() {
    chat::ChatOptions o;
    o.rateLimit = 100000;
    o.rateBurst = 100000;
    o.presenceGrace = 1;
    return o;
}

/** One chat connection: requests wait for their reply; events are queued meanwhile. */
class Chat {
public:
    explicit Chat(std::uint16_t port, ClientOptions co = {}) : ws_(port, co) {}

    bool open(const std::string& name, json::array rooms = {}) {
        if (!ws_.handshake("/chat", {"tongdao.chat.v1"})) return false;
        json::object hello{{"op", "hello"}, {"v", 1}, {"name", name}};
        if (!rooms.empty()) hello["rooms"] = std::move(rooms);
        helloReply = request(std::move(hello));
        return helloReply.contains("ok") && helloReply.at("ok").as_bool();
    }
    /** Sends a request and returns its reply (empty if none within the wait). */
    json::object request(json::object req, Millis wait = 5000ms) {
        const auto id = nextId_++;
        req["id"] = id;
        if (!ws_.sendText(json::serialize(req))) return {};
        const auto deadline = Clock::now() + wait;
        for (;;) {
            auto m = read(std::chrono::duration_cast<Millis>(deadline - Clock::now()));
            if (!m) return {};
            if (m->at("op") == "reply" && m->at("id") == id) return *m;
            events_.push_back(std::move(*m));
        }
    }
    /** Sends a request without waiting for its reply. */
    void post(json::object req) {
        req["id"] = nextId_++;
        ws_.sendText(json::serialize(req));
    }
    /** The next event (not a reply), or empty. */
    std::optional<json::object> event(Millis wait = 5000ms) {
        const auto deadline = Clock::now() + wait;
        while (events_.empty()) {
            auto m = read(std::chrono::duration_cast<Millis>(deadline - Clock::now()));
            if (!m) return std::nullopt;
            if (m->at("op") != "reply") events_.push_back(std::move(*m));
        }
        auto e = std::move(events_.front());
        events_.pop_front();
        return e;
    }
    /** The next event of `op`, skipping others; empty if none came in time. */
    std::optional<json::object> eventOf(std::string_view op, Millis wait = 5000ms) {
        const auto deadline = Clock::now() + wait;
        for (;;) {
            auto e = event(std::max(std::chrono::duration_cast<Millis>(deadline - Clock::now()), 0ms));
            if (!e || e->at("op").as_string() == op) return e;
        }
    }
    WsClient& socket() { return ws_; }
    json::object helloReply;

private:
    std::optional<json::object> read(Millis wait) {
        auto m = ws_.nextMessage(std::max(wait, 0ms));
        if (!m) return std::nullopt;
        return json::parse(*m).as_object();
    }
    WsClient ws_;
    std::int64_t nextId_ = 1;
    std::deque<json::object> events_;
};

std::uint64_t seqOf(const json::object& o) { return o.at("seq").to_number<std::uint64_t>(); }

/** Sends `n` messages to `room` and waits for every reply. */
void fill(Chat& c, const std::string& room, int n, const std::string& prefix, std::size_t bodySize = 16) {
    for (int i = 0; i < n; ++i)
        c.post({{"op", "send"}, {"room", room}, {"cid", prefix + std::to_string(i)}, {"body", std::string(bodySize, 'x')}});
    auto r = c.request({{"op", "ping"}}, 20000ms); // replies come in order; the ping's after every send's
    ASSERT_TRUE(r.at("ok").as_bool());
}

TEST(ChatService, EveryMemberOnEveryLoopGetsEveryMessageOnceInOrder) {
    ChatServer srv(options());
    std::vector<std::unique_ptr<Chat>> members;
    for (int i = 0; i < 6; ++i) {
        members.push_back(std::make_unique<Chat>(srv.port));
        ASSERT_TRUE(members.back()->open("u" + std::to_string(i)));
        for (const char* room : {"alpha", "beta", "gamma"})
            ASSERT_TRUE(members.back()->request({{"op", "join"}, {"room", room}}).at("ok").as_bool());
    }
    for (int round = 0; round < 10; ++round)
        for (auto& m : members)
            for (const char* room : {"alpha", "beta", "gamma"})
                m->post({{"op", "send"}, {"room", room}, {"cid", std::string(room) + std::to_string(round)}, {"body", round}});
    // 6 senders x 10 rounds per room: every member sees 1..60 in each room.
    for (auto& m : members) {
        std::map<std::string, std::uint64_t> last;
        while (last.size() < 3 || std::any_of(last.begin(), last.end(), [](auto& p) { return p.second < 60; })) {
            auto e = m->eventOf("message");
            ASSERT_TRUE(e) << "missing messages";
            auto& l = last[std::string(e->at("room").as_string())];
            ASSERT_EQ(seqOf(*e), l + 1);
            l = seqOf(*e);
        }
    }
}

TEST(ChatService, ResumeHasNoGapAndNoDuplicateAtTheBoundaryWhileOthersSend) {
    ChatServer srv(options());
    Chat sender(srv.port);
    ASSERT_TRUE(sender.open("sender"));
    ASSERT_TRUE(sender.request({{"op", "join"}, {"room", "busy"}}).at("ok").as_bool());
    std::atomic<bool> stop{false};
    std::thread pump([&] {
        for (int i = 0; !stop && i < 5000; ++i) {
            sender.post({{"op", "send"}, {"room", "busy"}, {"cid", "s" + std::to_string(i)}, {"body", i}});
            std::this_thread::sleep_for(1ms);
        }
    });
    std::uint64_t last = 0;
    std::mt19937 rng(42);
    for (int round = 0; round < 12; ++round) {
        Chat reader(srv.port);
        json::array rooms{json::object{{"room", "busy"}, {"since", last}}};
        ASSERT_TRUE(reader.open("reader", rooms));
        const auto until = Clock::now() + Millis(50 + rng() % 150);
        while (Clock::now() < until) {
            auto e = reader.event(20ms);
            if (!e || e->at("op") != "message") continue;
            ASSERT_EQ(seqOf(*e), last + 1) << "round " << round;
            last = seqOf(*e);
        }
        if (round % 2) reader.socket().abort();
    }
    stop = true;
    pump.join();
    EXPECT_GT(last, 50u);
}

TEST(ChatService, ManyCatchUpsAtOnceShareTheLoopsSlotsAndAllFinish) {
    ChatServer srv(options());
    Chat filler(srv.port);
    ASSERT_TRUE(filler.open("filler"));
    ASSERT_TRUE(filler.request({{"op", "join"}, {"room", "backlog"}}).at("ok").as_bool());
    fill(filler, "backlog", 600, "f");
    std::vector<std::unique_ptr<Chat>> readers;
    for (int i = 0; i < 40; ++i) {
        readers.push_back(std::make_unique<Chat>(srv.port));
        ASSERT_TRUE(readers.back()->socket().handshake("/chat"));
        readers.back()->post({{"op", "hello"}, {"v", 1}, {"name", "r" + std::to_string(i)},
                              {"rooms", json::array{json::object{{"room", "backlog"}, {"since", 0}}}}});
    }
    for (auto& r : readers) {
        std::uint64_t last = 0;
        while (last < 600) {
            auto e = r->eventOf("message", 20000ms);
            ASSERT_TRUE(e) << "stuck at " << last;
            ASSERT_EQ(seqOf(*e), last + 1);
            last = seqOf(*e);
        }
    }
}

TEST(ChatService, AReaderThatStopsReadingIsPacedNotDroppedNorClosed) {
    ChatServer srv(options());
    Chat filler(srv.port);
    ASSERT_TRUE(filler.open("filler"));
    ASSERT_TRUE(filler.request({{"op", "join"}, {"room", "big"}}).at("ok").as_bool());
    fill(filler, "big", 3000, "b", 1000); // about 3.3 MB of events
    ClientOptions co;
    co.receiveBuffer = 4096;
    Chat slow(srv.port, co);
    ASSERT_TRUE(slow.open("slow", json::array{json::object{{"room", "big"}, {"since", 0}}}));
    std::this_thread::sleep_for(1500ms); // the server's catch-up meets a full socket and waits
    std::uint64_t last = 0;
    while (last < 3000) {
        auto e = slow.eventOf("message", 20000ms);
        ASSERT_TRUE(e) << "stuck at " << last;
        ASSERT_EQ(seqOf(*e), last + 1);
        last = seqOf(*e);
    }
}

TEST(ChatService, AQuickReconnectCausesNoPresenceFlappingALongAbsenceALeave) {
    auto o = options();
    o.presenceGrace = 2;
    ChatServer srv(o);
    Chat watcher(srv.port);
    ASSERT_TRUE(watcher.open("watcher"));
    ASSERT_TRUE(watcher.request({{"op", "join"}, {"room", "p"}}).at("ok").as_bool());
    {
        Chat bob(srv.port);
        ASSERT_TRUE(bob.open("bob"));
        ASSERT_TRUE(bob.request({{"op", "join"}, {"room", "p"}}).at("ok").as_bool());
        auto join = watcher.eventOf("presence");
        ASSERT_TRUE(join);
        EXPECT_EQ(join->at("state"), "join");
        EXPECT_EQ(join->at("user"), "bob");
        bob.socket().abort();
    }
    Chat again(srv.port);
    ASSERT_TRUE(again.open("bob"));
    ASSERT_TRUE(again.request({{"op", "join"}, {"room", "p"}}).at("ok").as_bool());
    EXPECT_FALSE(watcher.eventOf("presence", 3500ms)) << "a reconnect within the grace was announced";
    auto list = watcher.request({{"op", "presence"}, {"room", "p"}});
    EXPECT_EQ(list.at("count"), 2);
    again.socket().abort();
    auto leave = watcher.eventOf("presence", 5000ms);
    ASSERT_TRUE(leave);
    EXPECT_EQ(leave->at("state"), "leave");
    EXPECT_EQ(leave->at("count"), 1);
}

TEST(ChatService, ARestartKeepsSeqsEpochAndTheDedupeKeys) {
    auto dir = tempDir();
    std::string epoch;
    {
        ChatServer srv(options(), dir);
        srv.keep = true;
        Chat a(srv.port);
        ASSERT_TRUE(a.open("a"));
        auto j = a.request({{"op", "join"}, {"room", "r"}});
        epoch = std::string(j.at("epoch").as_string());
        fill(a, "r", 5, "k");
    }
    ChatServer srv(options(), dir);
    Chat a(srv.port);
    ASSERT_TRUE(a.open("a", json::array{json::object{{"room", "r"}, {"since", 3}, {"epoch", epoch}}}));
    const auto& rooms = a.helloReply.at("rooms").as_array();
    ASSERT_EQ(rooms.size(), 1u);
    EXPECT_EQ(rooms[0].at("seq"), 5);
    EXPECT_EQ(rooms[0].at("epoch").as_string(), epoch);
    EXPECT_EQ(rooms[0].at("recovered"), true);
    EXPECT_EQ(seqOf(*a.eventOf("message")), 4u);
    EXPECT_EQ(seqOf(*a.eventOf("message")), 5u);
    auto dup = a.request({{"op", "send"}, {"room", "r"}, {"cid", "k2"}, {"body", "again"}});
    EXPECT_EQ(dup.at("duplicate"), true);
    EXPECT_EQ(dup.at("seq"), 3);
    auto next = a.request({{"op", "send"}, {"room", "r"}, {"cid", "new"}, {"body", "x"}});
    EXPECT_EQ(next.at("seq"), 6);
}

TEST(ChatService, ARoomWithNoMemberIsLetGoAndOpensAgainWithItsHistory) {
    auto o = options();
    o.presenceGrace = 0;
    o.roomIdleSeconds = 1;
    ChatServer srv(o);
    Chat a(srv.port), b(srv.port);
    ASSERT_TRUE(a.open("a"));
    ASSERT_TRUE(b.open("b"));
    auto j = a.request({{"op", "join"}, {"room", "quiet"}});
    ASSERT_TRUE(j.at("ok").as_bool());
    const std::string epoch(j.at("epoch").as_string());
    fill(a, "quiet", 3, "q");
    ASSERT_TRUE(b.request({{"op", "join"}, {"room", "busy"}}).at("ok").as_bool());
    EXPECT_EQ(srv.metric("tongdao_chat_rooms"), 2);
    ASSERT_TRUE(a.request({{"op", "leave"}, {"room", "quiet"}}).at("ok").as_bool());
    // Let go within the idle second and the sweep after it; the room still in use stays.
    const auto deadline = Clock::now() + 8s;
    while (srv.metric("tongdao_chat_rooms") != 1 && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
    EXPECT_EQ(srv.metric("tongdao_chat_rooms"), 1);
    // Opened again from the store (a new connection of the same user: no event queued from
    // before): its epoch, its seq and its history are there.
    Chat c(srv.port);
    ASSERT_TRUE(c.open("a"));
    auto again = c.request({{"op", "join"}, {"room", "quiet"}, {"since", 1}, {"epoch", epoch}});
    ASSERT_TRUE(again.at("ok").as_bool());
    EXPECT_EQ(again.at("seq"), 3);
    EXPECT_EQ(again.at("epoch").as_string(), epoch);
    EXPECT_EQ(again.at("recovered"), true);
    EXPECT_EQ(seqOf(*c.eventOf("message")), 2u);
    EXPECT_EQ(seqOf(*c.eventOf("message")), 3u);
    EXPECT_EQ(c.request({{"op", "send"}, {"room", "quiet"}, {"cid", "after"}, {"body", "x"}}).at("seq"), 4);
    EXPECT_EQ(srv.metric("tongdao_chat_rooms"), 2);
    // The dedupe keys outlive the room in memory.
    EXPECT_EQ(c.request({{"op", "send"}, {"room", "quiet"}, {"cid", "q1"}, {"body", "again"}}).at("duplicate"), true);
    // The room kept in use was never let go: b still gets its messages.
    ASSERT_TRUE(c.request({{"op", "join"}, {"room", "busy"}}).at("ok").as_bool());
    EXPECT_EQ(c.request({{"op", "send"}, {"room", "busy"}, {"cid", "b1"}, {"body", "x"}}).at("seq"), 1);
    auto got = b.eventOf("message");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->at("room"), "busy");
}

TEST(ChatService, AnotherEpochIsAGapNotASilentRestart) {
    ChatServer srv(options());
    Chat a(srv.port);
    ASSERT_TRUE(a.open("a"));
    ASSERT_TRUE(a.request({{"op", "join"}, {"room", "e"}}).at("ok").as_bool());
    fill(a, "e", 3, "x");
    Chat b(srv.port);
    ASSERT_TRUE(b.open("b"));
    auto j = b.request({{"op", "join"}, {"room", "e"}, {"since", 2}, {"epoch", "0000000000000000"}});
    EXPECT_EQ(j.at("recovered"), false);
    auto gap = b.event();
    ASSERT_TRUE(gap);
    EXPECT_EQ(gap->at("op"), "gap");
    EXPECT_EQ(gap->at("reason"), "epoch");
    for (std::uint64_t s = 1; s <= 3; ++s) EXPECT_EQ(seqOf(*b.eventOf("message")), s);
}

} // namespace
} // namespace tongdao::test
