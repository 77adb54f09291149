// The upgrade handler: sub-protocols, refusals, answers given later from another thread,
// typed user data and its lifetime, query parameters, extra response fields, routes.
#include "support/server_harness.hpp"

#include <atomic>

namespace tongdao::test {
namespace {

using Upgrade = std::function<void(tongdao::UpgradeRequest&, UpgradeResponse&)>;

/** /ws with the given upgrade handler; the open handler sends "protocol=<getProtocol()>". */
struct UpgradeServer {
    Probe probe;
    TestServer ts;
    std::uint16_t port = 0;

    explicit UpgradeServer(Upgrade upgrade) {
        WebSocketBehavior b;
        b.upgrade = std::move(upgrade);
        b.open = [this](WebSocket& ws) {
            probe.add("open");
            ws.sendText("protocol=" + std::string(ws.getProtocol()));
        };
        b.message = echoMessage;
        b.close = [this](WebSocket&, int code, std::string_view) { probe.add("close:" + std::to_string(code)); };
        ts.server.ws("/ws", std::move(b));
        port = ts.start();
    }
};

TEST(UpgradeProtocol, HandlerChoosesAmongTheOffers) {
    UpgradeServer s([](tongdao::UpgradeRequest& req, UpgradeResponse& res) {
        std::string offers;
        for (auto p : req.protocols()) offers += std::string(p) + ";";
        res.setHeader("X-Offers", offers);
        res.accept(req.protocols().at(1));
    });
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws", {"chat.v1", "chat.v2"}));
    EXPECT_EQ(c.reply().status, 101);
    EXPECT_EQ(c.reply().header("Sec-WebSocket-Protocol"), "chat.v2");
    EXPECT_EQ(c.reply().header("X-Offers"), "chat.v1;chat.v2;");
    EXPECT_EQ(c.protocol(), "chat.v2");
    EXPECT_EQ(c.next(), text("protocol=chat.v2"));
}

TEST(UpgradeProtocol, NoneChosenMeansNoHeader) {
    UpgradeServer s([](tongdao::UpgradeRequest&, UpgradeResponse& res) { res.accept(); });
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws", {"chat.v1"}));
    EXPECT_FALSE(c.reply().has("Sec-WebSocket-Protocol"));
    EXPECT_EQ(c.next(), text("protocol="));
}

TEST(UpgradeProtocol, ChoosingOneNotOfferedIs500) {
    UpgradeServer s([](tongdao::UpgradeRequest&, UpgradeResponse& res) { res.accept(std::string_view("chat.v3")); });
    WsClient c(s.port);
    EXPECT_FALSE(c.handshake("/ws", {"chat.v1", "chat.v2"}));
    EXPECT_EQ(c.reply().status, 500);
    EXPECT_TRUE(c.waitEof());
    EXPECT_EQ(s.probe.count("open"), 0u);
}

// accept("chat.v2") names a sub-protocol: the user-data overload accept(T, protocol) must
// not take a string literal as user data.
TEST(UpgradeProtocol, StringLiteralIsTakenAsTheProtocol) {
    UpgradeServer s([](tongdao::UpgradeRequest& req, UpgradeResponse& res) {
        if (req.queryParam("pick") == "offered") res.accept("chat.v2");
        else res.accept("chat.v3");
    });
    WsClient offered(s.port);
    ASSERT_TRUE(offered.handshake("/ws?pick=offered", {"chat.v1", "chat.v2"}));
    EXPECT_EQ(offered.reply().header("Sec-WebSocket-Protocol"), "chat.v2");
    EXPECT_EQ(offered.next(), text("protocol=chat.v2"));
    WsClient unoffered(s.port);
    EXPECT_FALSE(unoffered.handshake("/ws?pick=unoffered", {"chat.v1", "chat.v2"}));
    EXPECT_EQ(unoffered.reply().status, 500);
}

TEST(UpgradeAnswer, RejectSendsStatusAndOneLineReason) {
    UpgradeServer s([](tongdao::UpgradeRequest&, UpgradeResponse& res) {
        res.setHeader("WWW-Authenticate", "Bearer");
        res.reject(403, "no");
    });
    WsClient c(s.port);
    EXPECT_FALSE(c.handshake("/ws"));
    EXPECT_EQ(c.reply().status, 403);
    EXPECT_EQ(c.reply().body, "no\n");
    EXPECT_EQ(c.reply().header("WWW-Authenticate"), "Bearer");
    EXPECT_EQ(c.reply().header("Connection"), "close");
    EXPECT_TRUE(c.waitEof());
    EXPECT_EQ(s.probe.count("open"), 0u);
}

TEST(UpgradeAnswer, HandlerThatNeitherAnswersNorKeepsTheResponseIs503) {
    UpgradeServer s([](tongdao::UpgradeRequest&, UpgradeResponse&) {});
    WsClient c(s.port);
    EXPECT_FALSE(c.handshake("/ws"));
    EXPECT_EQ(c.reply().status, 503);
    EXPECT_TRUE(c.waitEof());
}

// A throwing upgrade handler is answered 500, not the 503 of a response dropped
// unanswered (the response must outlive the unwinding).
TEST(UpgradeAnswer, HandlerThatThrowsIs500) {
    UpgradeServer s([](tongdao::UpgradeRequest&, UpgradeResponse&) -> void { throw std::runtime_error("no database"); });
    WsClient c(s.port);
    EXPECT_FALSE(c.handshake("/ws"));
    EXPECT_EQ(c.reply().status, 500);
    EXPECT_TRUE(c.waitEof());
}

TEST(UpgradeAnswer, HandlerThatThrowsIsRefused) {
    UpgradeServer s([](tongdao::UpgradeRequest&, UpgradeResponse&) -> void { throw std::runtime_error("no database"); });
    WsClient c(s.port);
    EXPECT_FALSE(c.handshake("/ws"));
    EXPECT_GE(c.reply().status, 500) << "refused as a server error";
    EXPECT_TRUE(c.waitEof());
    EXPECT_EQ(s.probe.count("open"), 0u);
}

/** Upgrade responses kept by the handler, for answering later from the test. */
struct Parked {
    std::mutex m;
    std::vector<UpgradeResponse> responses;
    Probe probe;

    Upgrade handler() {
        return [this](tongdao::UpgradeRequest& req, UpgradeResponse& res) {
            std::lock_guard lock(m);
            responses.push_back(std::move(res));
            probe.add("parked " + std::string(req.queryParam("id")));
        };
    }
    /** Waits for a parked response and takes it out. */
    std::optional<UpgradeResponse> take() {
        if (!probe.waitForPrefix("parked")) return std::nullopt;
        std::lock_guard lock(m);
        if (responses.empty()) return std::nullopt;
        UpgradeResponse r = std::move(responses.back());
        responses.pop_back();
        return r;
    }
};

TEST(UpgradeAnswer, AcceptedLaterFromAnotherThread) {
    Parked parked;
    UpgradeServer s(parked.handler());
    std::thread answerer([&] {
        auto res = parked.take();
        ASSERT_TRUE(res);
        std::this_thread::sleep_for(300ms); // the client waits meanwhile
        net::Loop* loop = res->loop();
        ASSERT_NE(loop, nullptr);
        loop->post([&p = parked.probe, r = std::move(*res)]() mutable {
            p.add(r.answered() ? "answered early" : "unanswered");
            r.accept();
            p.add(r.answered() ? "answered" : "still unanswered");
        });
    });
    WsClient c(s.port);
    const auto begin = Clock::now();
    const bool ok = c.handshake("/ws?id=1");
    answerer.join();
    ASSERT_TRUE(ok) << c.reply().status;
    EXPECT_GE(Clock::now() - begin, 250ms) << "the 101 came before the answer";
    EXPECT_EQ(c.next(), text("protocol="));
    ASSERT_TRUE(c.sendText("echo after a late accept"));
    EXPECT_EQ(c.next(), text("echo after a late accept"));
    EXPECT_TRUE(parked.probe.waitFor("answered"));
    EXPECT_EQ(parked.probe.count("unanswered"), 1u);
}

TEST(UpgradeAnswer, RejectedLaterFromAnotherThread) {
    Parked parked;
    UpgradeServer s(parked.handler());
    std::thread answerer([&] {
        auto res = parked.take();
        ASSERT_TRUE(res);
        res->loop()->post([r = std::move(*res)]() mutable { r.reject(409, "taken"); });
    });
    WsClient c(s.port);
    EXPECT_FALSE(c.handshake("/ws?id=2"));
    answerer.join();
    EXPECT_EQ(c.reply().status, 409);
    EXPECT_EQ(c.reply().body, "taken\n");
}

TEST(UpgradeAnswer, KeptButNeverAnsweredTimesOutWith503) {
    Parked parked;
    auto options = testOptions();
    options.handshakeTimeout = 1;
    TestServer ts(options);
    WebSocketBehavior b;
    b.upgrade = parked.handler();
    ts.server.ws("/ws", std::move(b));
    const auto port = ts.start();
    WsClient c(port);
    EXPECT_FALSE(c.handshake("/ws"));
    EXPECT_EQ(c.reply().status, 503);
    // Answering now does nothing.
    auto res = parked.take();
    ASSERT_TRUE(res);
    res->loop()->post([&p = parked.probe, r = std::move(*res)]() mutable {
        p.add(r.answered() ? "answered" : "unanswered");
        r.accept();
    });
    EXPECT_TRUE(parked.probe.waitFor("answered"));
    EXPECT_TRUE(c.waitEof());
}

TEST(UpgradeAnswer, ClientThatLeftBeforeTheAnswerIsNotAccepted) {
    Parked parked;
    UpgradeServer s(parked.handler());
    {
        WsClient c(s.port);
        ASSERT_TRUE(c.sendRaw(upgradeText("/ws?id=3")));
        ASSERT_TRUE(parked.probe.waitForPrefix("parked"));
        c.abort(); // RST
    }
    std::this_thread::sleep_for(200ms);
    auto res = parked.take();
    ASSERT_TRUE(res);
    res->loop()->post([&p = parked.probe, r = std::move(*res)]() mutable {
        p.add(r.aborted() ? "aborted" : "not aborted");
        r.accept(); // does nothing
    });
    EXPECT_TRUE(parked.probe.waitFor("aborted"));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(s.probe.count("open"), 0u);
}

// UpgradeResponse promises that once the client has left, answering does nothing and
// aborted() is true: a client that leaves with a FIN (not only a reset) while the upgrade
// waits, with reading paused, must be noticed.
TEST(UpgradeAnswer, ClientThatSentFinBeforeTheAnswerIsNotAccepted) {
    Parked parked;
    UpgradeServer s(parked.handler());
    {
        WsClient c(s.port);
        ASSERT_TRUE(c.sendRaw(upgradeText("/ws?id=4")));
        ASSERT_TRUE(parked.probe.waitForPrefix("parked"));
        c.closeSocket(); // FIN
    }
    std::this_thread::sleep_for(200ms);
    auto res = parked.take();
    ASSERT_TRUE(res);
    res->loop()->post([&p = parked.probe, r = std::move(*res)]() mutable {
        p.add(r.aborted() ? "aborted" : "not aborted");
        r.accept();
    });
    EXPECT_TRUE(parked.probe.waitForPrefix("aborted", 1, 1000ms)) << "answered a client that had left";
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(s.probe.count("open"), 0u);
}

// --- user data ----------------------------------------------------------------------------

struct Profile {
    static inline std::atomic<int> alive{0};
    std::string name = "anonymous";
    int count = 0;
    Profile() { ++alive; }
    Profile(std::string n, int c) : name(std::move(n)), count(c) { ++alive; }
    Profile(const Profile& o) : name(o.name), count(o.count) { ++alive; }
    Profile(Profile&& o) noexcept : name(std::move(o.name)), count(o.count) { ++alive; }
    Profile& operator=(const Profile&) = default;
    Profile& operator=(Profile&&) = default;
    ~Profile() { --alive; }
};

/** Typed endpoints: /given takes user data from accept(), /default gets it default-made. */
struct TypedServer {
    Probe probe;
    TestServer ts;
    std::uint16_t port = 0;

    TypedServer() {
        Profile::alive = 0;
        WebSocketBehavior given;
        given.upgrade = [](tongdao::UpgradeRequest& req, UpgradeResponse& res) {
            res.accept(Profile{std::string(req.queryParam("name")), 10});
        };
        given.open = [](WebSocket& ws) { ws.sendText("hello " + ws.getUserData<Profile>()->name); };
        given.message = [](WebSocket& ws, std::string_view, MessageKind) {
            auto* s = ws.getUserData<Profile>();
            ws.sendText(s->name + " " + std::to_string(++s->count));
        };
        given.close = [this](WebSocket& ws, int, std::string_view) {
            probe.add("close " + ws.getUserData<Profile>()->name);
        };
        WebSocketBehavior byDefault = given;
        byDefault.upgrade = nullptr;
        ts.server.ws<Profile>("/given", std::move(given));
        ts.server.ws<Profile>("/default", std::move(byDefault));
        WebSocketBehavior none;
        none.open = [](WebSocket& ws) { ws.sendText(ws.getUserData<Profile>() ? "data" : "no data"); };
        ts.server.ws("/none", std::move(none));
        port = ts.start();
    }
};

TEST(UserData, GivenToAcceptAndKeptPerConnection) {
    TypedServer s;
    WsClient a(s.port), b(s.port);
    ASSERT_TRUE(a.handshake("/given?name=alice"));
    ASSERT_TRUE(b.handshake("/given?name=bob"));
    EXPECT_EQ(a.next(), text("hello alice"));
    EXPECT_EQ(b.next(), text("hello bob"));
    ASSERT_TRUE(a.sendText("."));
    EXPECT_EQ(a.next(), text("alice 11"));
    ASSERT_TRUE(a.sendText("."));
    EXPECT_EQ(a.next(), text("alice 12"));
    ASSERT_TRUE(b.sendText("."));
    EXPECT_EQ(b.next(), text("bob 11"));
    EXPECT_EQ(Profile::alive.load(), 2) << "one object per connection, temporaries gone";
}

TEST(UserData, DefaultConstructedWithoutAnUpgradeHandler) {
    TypedServer s;
    WsClient a(s.port);
    ASSERT_TRUE(a.handshake("/default"));
    EXPECT_EQ(a.next(), text("hello anonymous"));
    ASSERT_TRUE(a.sendText("."));
    EXPECT_EQ(a.next(), text("anonymous 1"));
    WsClient n(s.port);
    ASSERT_TRUE(n.handshake("/none"));
    EXPECT_EQ(n.next(), text("no data"));
}

TEST(UserData, DestroyedAfterTheConnectionCloses) {
    TypedServer s;
    {
        WsClient a(s.port), b(s.port);
        ASSERT_TRUE(a.handshake("/given?name=alice"));
        ASSERT_TRUE(b.handshake("/default"));
        EXPECT_EQ(a.next(), text("hello alice"));
        EXPECT_EQ(b.next(), text("hello anonymous"));
        EXPECT_EQ(Profile::alive.load(), 2);
        ASSERT_TRUE(a.close(1000));
        EXPECT_EQ(a.nextClose(), closeEv(1000));
        EXPECT_TRUE(a.waitEof());
        a.closeSocket();
        EXPECT_TRUE(s.probe.waitFor("close alice")) << "the close handler still sees the user data";
        EXPECT_TRUE(eventually([] { return Profile::alive.load() == 1; }));
        b.abort();
        EXPECT_TRUE(s.probe.waitFor("close anonymous"));
    }
    EXPECT_TRUE(eventually([] { return Profile::alive.load() == 0; }));
}

TEST(UserData, DestroyedWhenTheUpgradeIsRefused) {
    Profile::alive = 0;
    {
        TestServer ts;
        WebSocketBehavior b;
        b.upgrade = [](tongdao::UpgradeRequest&, UpgradeResponse& res) {
            res.accept(Profile{"refused", 0}, "not-offered"); // 500: the data is never used
        };
        ts.server.ws<Profile>("/ws", std::move(b));
        const auto port = ts.start();
        WsClient c(port);
        EXPECT_FALSE(c.handshake("/ws"));
        EXPECT_EQ(c.reply().status, 500);
        EXPECT_TRUE(c.waitEof());
    }
    EXPECT_EQ(Profile::alive.load(), 0);
}

// --- the request ------------------------------------------------------------------------

TEST(UpgradeRequestFields, QueryParametersPathAndHeaders) {
    UpgradeServer s([](tongdao::UpgradeRequest& req, UpgradeResponse& res) {
        std::string seen = std::string(req.path()) + "|" + std::string(req.query()) + "|";
        for (auto name : {"name", "x", "empty", "flag", "missing", "na"})
            seen += std::string(name) + "=" + std::string(req.queryParam(name)) + ";";
        seen += "|" + std::string(req.header("x-client")) + "|" + std::string(req.method());
        res.setHeader("X-Seen", seen);
        res.accept();
    });
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws?name=alice&x=1&empty=&flag&name=again", {}, {{"X-Client", "test"}}));
    EXPECT_EQ(c.reply().header("X-Seen"),
              "/ws|name=alice&x=1&empty=&flag&name=again|name=alice;x=1;empty=;flag=;missing=;na=;|test|GET");
}

TEST(UpgradeRequestFields, InvalidExtraHeaderIsDropped) {
    UpgradeServer s([](tongdao::UpgradeRequest&, UpgradeResponse& res) {
        res.setHeader("X-Good", "yes");
        res.setHeader("X-Bad", "a\r\nInjected: 1");
        res.setHeader("Bad Name", "v");
        res.accept();
    });
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    EXPECT_EQ(c.reply().header("X-Good"), "yes");
    EXPECT_FALSE(c.reply().has("X-Bad"));
    EXPECT_FALSE(c.reply().has("Injected"));
    EXPECT_EQ(c.next(), text("protocol="));
}

TEST(UpgradeRoutes, ExactPathWinsThenTheLongestPrefix) {
    TestServer ts;
    auto endpoint = [](std::string name) {
        WebSocketBehavior b;
        b.open = [name](WebSocket& ws) { ws.sendText(name); };
        return b;
    };
    ts.server.ws("/rooms/*", endpoint("rooms prefix"));
    ts.server.ws("/rooms/vip/*", endpoint("vip prefix"));
    ts.server.ws("/rooms/lobby", endpoint("lobby"));
    const auto port = ts.start();
    for (const auto& [path, expected] : std::vector<std::pair<std::string, std::string>>{
             {"/rooms/lobby", "lobby"},
             {"/rooms/kitchen", "rooms prefix"},
             {"/rooms/vip/1", "vip prefix"},
             {"/rooms/lobby?x=1", "lobby"}}) {
        WsClient c(port);
        ASSERT_TRUE(c.handshake(path)) << path;
        EXPECT_EQ(c.next(), text(expected)) << path;
    }
    WsClient c(port);
    EXPECT_FALSE(c.handshake("/room"));
    EXPECT_EQ(c.reply().status, 404);
}

} // namespace
} // namespace tongdao::test
