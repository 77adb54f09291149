// Pub/sub across two loops: subscribe, publish from a connection (not to itself) and from
// any thread, unsubscribe, the subscription queries, cleanup when subscribers leave, and
// order under load.
#include "support/deflate.hpp"
#include "support/server_harness.hpp"

#include <algorithm>
#include <set>
#include <sstream>

namespace tongdao::test {
namespace {

/**
 * /ws on two loops. The open handler sends "loop <index>". Commands: "sub T", "unsub T",
 * "pub T M", "topics" (sorted topics, then whether subscribed to "a" and "c").
 */
struct PubSubServer {
    Probe probe;
    TestServer ts{testOptions(2)};
    std::uint16_t port = 0;

    PubSubServer() {
        WebSocketBehavior b;
        b.open = [](WebSocket& ws) { ws.sendText("loop " + std::to_string(ws.loop().index())); };
        b.message = [](WebSocket& ws, std::string_view m, MessageKind) {
            std::istringstream in{std::string(m)};
            std::string cmd, topic;
            in >> cmd >> topic;
            if (cmd == "sub") {
                ws.sendText("subscribed " + topic + " " + (ws.subscribe(topic) ? "1" : "0"));
            } else if (cmd == "unsub") {
                ws.sendText("unsubscribed " + topic + " " + (ws.unsubscribe(topic) ? "1" : "0"));
            } else if (cmd == "pub") {
                std::string message;
                std::getline(in >> std::ws, message);
                ws.sendText(ws.publish(topic, message) ? "published" : "not published");
            } else if (cmd == "topics") {
                std::vector<std::string> topics;
                for (auto t : ws.getTopics()) topics.emplace_back(t);
                std::sort(topics.begin(), topics.end());
                std::string out;
                for (const auto& t : topics) out += t + ",";
                out += std::string(" a=") + (ws.isSubscribed("a") ? "1" : "0");
                out += std::string(" c=") + (ws.isSubscribed("c") ? "1" : "0");
                ws.sendText(out);
            }
        };
        b.close = [this](WebSocket& ws, int code, std::string_view) {
            probe.add("close:" + std::to_string(code) + " topics=" + std::to_string(ws.getTopics().size()));
        };
        ts.server.ws("/ws", std::move(b));
        port = ts.start();
    }
};

struct Member {
    std::unique_ptr<WsClient> client;
    std::size_t loop = 0;
};

/** Connects at least `atLeast` clients, and more until both loops have some. */
std::vector<Member> connectSpread(std::uint16_t port, std::size_t atLeast) {
    std::vector<Member> members;
    std::set<std::size_t> loops;
    while ((members.size() < atLeast || loops.size() < 2) && members.size() < 64) {
        Member m{std::make_unique<WsClient>(port)};
        EXPECT_TRUE(m.client->handshake("/ws"));
        const auto hello = m.client->nextMessage();
        EXPECT_TRUE(hello && hello->starts_with("loop ")) << (hello ? *hello : "nothing");
        if (!hello) break;
        m.loop = std::stoul(hello->substr(5));
        loops.insert(m.loop);
        members.push_back(std::move(m));
    }
    EXPECT_EQ(loops.size(), 2u) << "clients on both loops";
    return members;
}

void subscribeAll(std::vector<Member>& members, const std::string& topic) {
    for (auto& m : members) {
        ASSERT_TRUE(m.client->sendText("sub " + topic));
        ASSERT_EQ(m.client->nextMessage(), "subscribed " + topic + " 1");
    }
}

TEST(PubSub, PublishFromAConnectionReachesOthersOnBothLoopsButNotItself) {
    PubSubServer s;
    auto members = connectSpread(s.port, 8);
    subscribeAll(members, "news");
    auto& sender = *members[0].client;
    ASSERT_TRUE(sender.sendText("pub news hello all"));
    ASSERT_EQ(sender.nextMessage(), "published");
    s.ts.server.publish("news", "fence"); // from this thread, after the publish
    EXPECT_EQ(sender.nextMessage(), "fence") << "the sender does not get its own message";
    std::set<std::size_t> reached;
    for (std::size_t i = 1; i < members.size(); ++i) {
        EXPECT_EQ(members[i].client->nextMessage(), "hello all") << "member " << i;
        EXPECT_EQ(members[i].client->nextMessage(), "fence") << "member " << i;
        reached.insert(members[i].loop);
    }
    EXPECT_EQ(reached.size(), 2u) << "subscribers on both loops received it";
}

TEST(PubSub, ServerPublishReachesEverySubscriberAndNobodyElse) {
    PubSubServer s;
    auto members = connectSpread(s.port, 8);
    subscribeAll(members, "control");
    // Every other member subscribes to "news".
    for (std::size_t i = 0; i < members.size(); i += 2) {
        ASSERT_TRUE(members[i].client->sendText("sub news"));
        ASSERT_EQ(members[i].client->nextMessage(), "subscribed news 1");
    }
    s.ts.server.publish("news", "headline");
    s.ts.server.publish("news", std::string("\x00\xff", 2), MessageKind::binary);
    s.ts.server.publish("control", "fence");
    for (std::size_t i = 0; i < members.size(); ++i) {
        auto& c = *members[i].client;
        if (i % 2 == 0) {
            EXPECT_EQ(c.next(), text("headline")) << i;
            EXPECT_EQ(c.next(), binary(std::string("\x00\xff", 2))) << i;
        }
        EXPECT_EQ(c.next(), text("fence")) << i;
    }
}

TEST(PubSub, ServerPublishDropsTextThatIsNotUtf8) {
    PubSubServer s;
    auto members = connectSpread(s.port, 2);
    subscribeAll(members, "news");
    s.ts.server.publish("news", "\xff\xfe"); // text must be UTF-8: dropped
    s.ts.server.publish("nobody-listens", "void");
    s.ts.server.publish("news", "fence");
    for (auto& m : members) EXPECT_EQ(m.client->next(), text("fence"));
}

TEST(PubSub, UnsubscribeStopsDelivery) {
    PubSubServer s;
    auto members = connectSpread(s.port, 4);
    subscribeAll(members, "news");
    subscribeAll(members, "control");
    auto& leaver = *members[0].client;
    ASSERT_TRUE(leaver.sendText("unsub news"));
    ASSERT_EQ(leaver.nextMessage(), "unsubscribed news 1");
    ASSERT_TRUE(leaver.sendText("unsub news"));
    ASSERT_EQ(leaver.nextMessage(), "unsubscribed news 0");
    s.ts.server.publish("news", "after");
    s.ts.server.publish("control", "fence");
    EXPECT_EQ(leaver.nextMessage(), "fence");
    for (std::size_t i = 1; i < members.size(); ++i) {
        EXPECT_EQ(members[i].client->nextMessage(), "after");
        EXPECT_EQ(members[i].client->nextMessage(), "fence");
    }
    // Subscribing again works.
    ASSERT_TRUE(leaver.sendText("sub news"));
    ASSERT_EQ(leaver.nextMessage(), "subscribed news 1");
    s.ts.server.publish("news", "back");
    EXPECT_EQ(leaver.nextMessage(), "back");
}

TEST(PubSub, SubscriptionQueries) {
    PubSubServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.handshake("/ws"));
    ASSERT_TRUE(c.nextMessage());
    ASSERT_TRUE(c.sendText("topics"));
    EXPECT_EQ(c.nextMessage(), " a=0 c=0");
    for (auto cmd : {"sub b", "sub a", "sub a", "sub c", "unsub c", "topics"}) ASSERT_TRUE(c.sendText(cmd));
    EXPECT_EQ(c.nextMessage(), "subscribed b 1");
    EXPECT_EQ(c.nextMessage(), "subscribed a 1");
    EXPECT_EQ(c.nextMessage(), "subscribed a 0") << "already subscribed";
    EXPECT_EQ(c.nextMessage(), "subscribed c 1");
    EXPECT_EQ(c.nextMessage(), "unsubscribed c 1");
    EXPECT_EQ(c.nextMessage(), "a,b, a=1 c=0");
}

TEST(PubSub, ClosedSubscribersAreCleanedUp) {
    PubSubServer s;
    auto members = connectSpread(s.port, 6);
    subscribeAll(members, "news");
    subscribeAll(members, "sports");
    const auto total = members.size();
    // One leaves with a closing handshake, one abruptly.
    ASSERT_TRUE(members[0].client->close(1000));
    EXPECT_EQ(members[0].client->nextClose(), closeEv(1000));
    EXPECT_TRUE(members[0].client->waitEof());
    members[0].client.reset();
    members[1].client->abort();
    members[1].client.reset();
    ASSERT_TRUE(s.probe.waitForPrefix("close:", 2));
    EXPECT_EQ(s.probe.count("close:1000 topics=0"), 1u) << "unsubscribed before the close handler";
    EXPECT_EQ(s.probe.count("close:1006 topics=0"), 1u);
    EXPECT_TRUE(eventually([&] { return s.ts.server.stats().connectionsOpen == total - 2; }));

    // Publishing afterwards reaches the others and touches nothing freed (ASan watches).
    s.ts.server.publish("news", "still here");
    for (std::size_t i = 2; i < members.size(); ++i) EXPECT_EQ(members[i].client->nextMessage(), "still here") << i;
    ASSERT_TRUE(members[2].client->sendText("pub sports from a member"));
    EXPECT_EQ(members[2].client->nextMessage(), "published");
    for (std::size_t i = 3; i < members.size(); ++i)
        EXPECT_EQ(members[i].client->nextMessage(), "from a member") << i;
}

TEST(PubSub, ThousandMessagesFromOneThreadArriveInOrderEverywhere) {
    PubSubServer s;
    auto members = connectSpread(s.port, 8);
    subscribeAll(members, "seq");
    constexpr int count = 1000;
    for (int i = 0; i < count; ++i) s.ts.server.publish("seq", std::to_string(i));
    for (std::size_t m = 0; m < members.size(); ++m) {
        for (int i = 0; i < count; ++i) {
            const auto r = members[m].client->next();
            ASSERT_TRUE(r) << "member " << m << " message " << i;
            ASSERT_EQ(*r, text(std::to_string(i))) << "member " << m;
        }
    }
    EXPECT_GE(s.ts.server.stats().messagesOut, static_cast<std::uint64_t>(count) * members.size());
}

// --- the write delay -------------------------------------------------------------------------

/**
 * /ws on one loop with a write delay: subscribed to "t" on open; "direct" is answered by a
 * send, "pub M" publishes M to the others and answers "published", "end" closes.
 */
struct DelayedServer {
    TestServer ts;
    std::uint16_t port = 0;

    explicit DelayedServer(std::chrono::milliseconds delay) : ts([delay] {
        auto o = testOptions(1);
        o.writeDelay = delay;
        return o;
    }()) {
        WebSocketBehavior b;
        b.open = [](WebSocket& ws) {
            ws.subscribe("t");
            ws.sendText("open");
        };
        b.message = [](WebSocket& ws, std::string_view m, MessageKind) {
            if (m == "direct") ws.sendText("answer");
            else if (m == "end") ws.end(1000, "bye");
            else if (m.starts_with("pub ")) ws.sendText(ws.publish("t", m.substr(4)) ? "published" : "not published");
        };
        ts.server.ws("/ws", std::move(b));
        port = ts.start();
    }

    std::unique_ptr<WsClient> join() {
        auto c = std::make_unique<WsClient>(port);
        EXPECT_TRUE(c->handshake("/ws"));
        EXPECT_EQ(c->nextMessage(), "open") << "a direct send is not delayed";
        return c;
    }
};

TEST(PubSubWriteDelay, PublishedMessagesWaitAndLeaveTogetherInOrder) {
    DelayedServer s(1000ms);
    auto a = s.join(), b = s.join();
    const auto reads = a->reads();
    const auto start = Clock::now();
    for (int i = 0; i < 5; ++i) {
        s.ts.server.publish("t", "m" + std::to_string(i));
        std::this_thread::sleep_for(5ms);
    }
    for (int i = 0; i < 5; ++i) EXPECT_EQ(a->nextMessage(), "m" + std::to_string(i));
    EXPECT_GE(Clock::now() - start, 900ms) << "held for the delay";
    EXPECT_EQ(a->reads() - reads, 1u) << "the five left in one write";
    for (int i = 0; i < 5; ++i) EXPECT_EQ(b->nextMessage(), "m" + std::to_string(i));
    // The next ones wait again.
    const auto again = Clock::now();
    s.ts.server.publish("t", "later");
    EXPECT_EQ(a->nextMessage(), "later");
    EXPECT_GE(Clock::now() - again, 900ms);
}

TEST(PubSubWriteDelay, ADirectSendTakesAlongWhatWaits) {
    DelayedServer s(2500ms);
    auto a = s.join(), b = s.join();
    const auto start = Clock::now();
    s.ts.server.publish("t", "news");
    ASSERT_TRUE(a->sendText("direct"));
    EXPECT_EQ(a->nextMessage(), "news") << "in the order queued";
    EXPECT_EQ(a->nextMessage(), "answer");
    EXPECT_LT(Clock::now() - start, 2000ms) << "the answer did not wait for the delay, nor did what it took along";
    // The other subscriber, which sent nothing, still waits for the delay.
    EXPECT_EQ(b->nextMessage(10s), "news");
    EXPECT_GE(Clock::now() - start, 2400ms);
    // A closing handshake is not delayed either, and takes what waits with it.
    s.ts.server.publish("t", "last");
    ASSERT_TRUE(a->sendText("end"));
    EXPECT_EQ(a->nextMessage(), "last");
    EXPECT_EQ(a->nextClose(), closeEv(1000, "bye"));
}

TEST(PubSubWriteDelay, ConnectionsThatCloseWhileTheirWriteWaitsAreForgotten) {
    DelayedServer s(300ms);
    std::vector<std::unique_ptr<WsClient>> clients;
    for (int i = 0; i < 6; ++i) clients.push_back(s.join());
    // Published from the loop, so that it is queued before what the clients send next.
    auto publisher = s.join();
    ASSERT_TRUE(publisher->sendText("pub to all"));
    ASSERT_EQ(publisher->nextMessage(), "published");
    // Two go before the delay is over, one abruptly and one from the server's side; the
    // timer then finds neither (ASan watches for a freed socket).
    clients[0]->abort();
    clients[0].reset();
    ASSERT_TRUE(clients[1]->sendText("end"));
    EXPECT_EQ(clients[1]->nextMessage(), "to all");
    EXPECT_EQ(clients[1]->nextClose(), closeEv(1000, "bye"));
    EXPECT_TRUE(eventually([&] { return s.ts.server.stats().connectionsOpen == 5; })) << "four, and the publisher";
    for (std::size_t i = 2; i < clients.size(); ++i) EXPECT_EQ(clients[i]->nextMessage(), "to all") << i;
    s.ts.server.publish("t", "again");
    for (std::size_t i = 2; i < clients.size(); ++i) EXPECT_EQ(clients[i]->nextMessage(), "again") << i;
}

} // namespace
} // namespace tongdao::test

namespace tongdao::test {
namespace {

// RFC 7692 with pub/sub: a published message reaches subscribers that agreed on
// permessage-deflate compressed (framed and compressed once per loop in shared mode, by
// each connection's own compressor in dedicated mode) and the others plain.
void publishToMixedSubscribers(Compression mode) {
    TestServer ts(testOptions(2));
    WebSocketBehavior b;
    b.compression = mode;
    b.open = [](WebSocket& ws) {
        ws.subscribe("t");
        ws.sendText(ws.extension() ? "deflate" : "plain");
    };
    ts.server.ws("/ws", std::move(b));
    const auto port = ts.start();

    std::vector<std::unique_ptr<WsClient>> clients;
    for (int i = 0; i < 6; ++i) {
        ClientOptions o;
        o.deflate = i % 2 == 0; // half of them offer it
        clients.push_back(std::make_unique<WsClient>(port, o));
        ASSERT_TRUE(clients.back()->handshake("/ws"));
        ASSERT_EQ(clients.back()->nextMessage(), o.deflate ? "deflate" : "plain");
    }
    const std::string chat = [] {
        std::string s;
        for (int i = 0; s.size() < 20000; ++i)
            s += R"({"type":"chat","room":"lobby","from":"user)" + std::to_string(i % 7) +
                 R"(","text":"hello everyone, the meeting moves to three o'clock"})";
        return s;
    }();
    std::vector<std::size_t> before;
    for (auto& c : clients) before.push_back(c->bytesReceived());
    ts.server.publish("t", chat);
    for (std::size_t i = 0; i < clients.size(); ++i) {
        ASSERT_EQ(clients[i]->nextMessage(), chat) << i;
        const std::size_t wire = clients[i]->bytesReceived() - before[i];
        if (i % 2 == 0) EXPECT_LT(wire, chat.size() / 4) << "client " << i << " got it compressed";
        else EXPECT_GT(wire, chat.size()) << "client " << i << " got it plain";
    }
}

TEST(PubSubDeflate, SharedModeCompressesOnceForItsSubscribers) { publishToMixedSubscribers(Compression::shared); }
TEST(PubSubDeflate, DedicatedModeCompressesPerConnection) { publishToMixedSubscribers(Compression::dedicated); }

// RFC 7692 §7.1.2.1 with pub/sub: subscribers that asked for different server windows (9 to
// 15, two of each, on two loops) each get the message compressed within their own window
// (shared mode: once per loop and window size), read by an inflater of exactly that window.
void publishToEveryWindowSize(Compression mode) {
    TestServer ts(testOptions(2));
    WebSocketBehavior b;
    b.compression = mode;
    b.open = [](WebSocket& ws) {
        ws.subscribe("t");
        ws.sendText(ws.extension() ? "deflate" : "plain");
    };
    ts.server.ws("/ws", std::move(b));
    const auto port = ts.start();

    std::vector<std::unique_ptr<WsClient>> clients;
    std::vector<int> windows;
    // Widest first: a frame made for the first subscriber on a loop must not reach the
    // narrower ones after it.
    for (int bits = 15; bits >= 9; --bits) {
        for (int twice = 0; twice < 2; ++twice) {
            ClientOptions o;
            o.extension = std::make_shared<WindowCheckingFactory>(bits);
            clients.push_back(std::make_unique<WsClient>(port, o));
            ASSERT_TRUE(clients.back()->handshake("/ws"));
            const auto agreed = clients.back()->reply().header("Sec-WebSocket-Extensions");
            EXPECT_NE(agreed.find("server_max_window_bits=" + std::to_string(bits)), std::string::npos) << agreed;
            ASSERT_EQ(clients.back()->nextMessage(), "deflate") << bits;
            windows.push_back(bits);
        }
    }
    clients.push_back(std::make_unique<WsClient>(port)); // and one without deflate
    ASSERT_TRUE(clients.back()->handshake("/ws"));
    ASSERT_EQ(clients.back()->nextMessage(), "plain");
    windows.push_back(0);

    for (unsigned seed : {1u, 2u}) {
        const std::string msg = farRepeats(30000, seed);
        std::vector<std::size_t> before;
        for (auto& c : clients) before.push_back(c->bytesReceived());
        ts.server.publish("t", msg);
        std::size_t wire9 = 0, wire15 = 0;
        for (std::size_t i = 0; i < clients.size(); ++i) {
            ASSERT_EQ(clients[i]->nextMessage(), msg) << "window " << windows[i] << ", subscriber " << i;
            const std::size_t wire = clients[i]->bytesReceived() - before[i];
            if (windows[i] == 0) EXPECT_GT(wire, msg.size()) << "the plain subscriber";
            else EXPECT_LT(wire, msg.size()) << "window " << windows[i];
            if (windows[i] == 9) wire9 = wire;
            if (windows[i] == 15) wire15 = wire;
        }
        EXPECT_LT(wire15 * 3, wire9) << "the 15-bit window reaches the repeats, the 9-bit one does not";
    }
}

TEST(PubSubDeflate, SharedModeServesEveryWindowSize) { publishToEveryWindowSize(Compression::shared); }
TEST(PubSubDeflate, DedicatedModeServesEveryWindowSize) { publishToEveryWindowSize(Compression::dedicated); }

} // namespace
} // namespace tongdao::test
