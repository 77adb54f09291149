// Both engines end to end, in memory: the handshake hands over to the frame engine with
// nothing lost, and random traffic in random pieces arrives intact and in order.
#include "support/engine.hpp"

#include "tongdao/protocol/handshake.hpp"

#include <random>

namespace tongdao::test {
namespace {

TEST(Session, FramesInTheSameReadAsThe101AreNotLost) {
    ClientRequest req;
    req.host = "example.com";
    req.target = "/chat?room=1";
    ClientHandshake client(req);
    ServerHandshake server;
    std::size_t used = 0;
    ASSERT_EQ(server.receive(asBytes(client.request()), used), http::ParseStatus::done);
    EXPECT_EQ(used, client.request().size());
    EXPECT_EQ(server.request().path(), "/chat");
    EXPECT_EQ(server.request().query(), "room=1");

    // The server's 101 and its first two messages leave in one write.
    ConnectionOptions so;
    Connection serverConn(so);
    ASSERT_FALSE(serverConn.sendText("welcome"));
    ASSERT_FALSE(serverConn.ping(asBytes("hb")));
    auto wire = concat({bytes(acceptResponse(server.upgrade().key)), drain(serverConn)});

    for (std::size_t split = 0; split <= wire.size(); ++split) {
        ClientHandshake c(req, {}, client.key());
        ConnectionOptions co;
        co.role = Role::client;
        Connection conn(co);
        Recorder r;
        ByteVec copy = wire;
        MutableBytes in(copy);
        // Two reads: [0, split) and [split, end); the handshake takes what it needs.
        for (auto piece : {in.first(split), in.subspan(split)}) {
            std::size_t consumed = 0;
            if (c.error()) break;
            auto st = c.receive(piece, consumed);
            if (st == http::ParseStatus::needMore && consumed == piece.size()) continue;
            ASSERT_EQ(st, http::ParseStatus::done);
            conn.receive(piece.subspan(consumed), r);
        }
        ASSERT_EQ(r.events, (std::vector<Rec>{pingEv("hb"), text("welcome")})) << "split " << split;
    }
}

// Random traffic between a client and a server engine through byte pipes cut at random.
TEST(Session, RandomTrafficBothWays) {
    std::mt19937 rng(13);
    ConnectionOptions co, so;
    co.role = Role::client;
    so.role = Role::server;
    so.maxMessageSize = co.maxMessageSize = 1 << 20;
    Connection client(co), server(so);

    std::vector<Rec> sentToServer, sentToClient;
    auto randomPayload = [&](bool asText) {
        std::string s(rng() % 3 == 0 ? rng() % 70000 : rng() % 200, '\0');
        for (auto& ch : s) ch = asText ? static_cast<char>('a' + rng() % 26) : static_cast<char>(rng());
        return s;
    };
    auto sendRandom = [&](Connection& c, std::vector<Rec>& log) {
        const bool asText = rng() % 2;
        auto payload = randomPayload(asText);
        const auto kind = asText ? MessageKind::text : MessageKind::binary;
        if (rng() % 4 == 0 && payload.size() > 3) {
            const std::size_t cut = payload.size() / 3;
            ASSERT_FALSE(c.sendFragment(kind, asBytes(payload.substr(0, cut)), false));
            ASSERT_FALSE(c.ping(asBytes("between")));
            ASSERT_FALSE(c.sendFragment(kind, asBytes(payload.substr(cut)), true));
        } else {
            ASSERT_FALSE(c.send(kind, asBytes(payload)));
        }
        log.push_back(asText ? text(payload) : binary(payload));
    };
    // Moves a random amount of `from`'s output into `to`, in random pieces.
    auto pump = [&](Connection& from, Connection& to, Recorder& r) {
        auto out = from.pendingOutput();
        ByteVec buf;
        for (auto part : out) buf.insert(buf.end(), part.begin(), part.end());
        if (buf.empty()) return;
        const std::size_t n = rng() % 3 == 0 ? buf.size() : 1 + rng() % buf.size();
        from.consumeOutput(n);
        std::size_t pos = 0;
        while (pos < n) {
            const std::size_t piece = std::min<std::size_t>(n - pos, 1 + rng() % 9000);
            ByteVec chunk(buf.begin() + static_cast<std::ptrdiff_t>(pos),
                          buf.begin() + static_cast<std::ptrdiff_t>(pos + piece));
            to.receive(chunk, r);
            pos += piece;
        }
    };

    Recorder atServer, atClient;
    for (int round = 0; round < 300; ++round) {
        if (rng() % 2) sendRandom(client, sentToServer);
        if (rng() % 2) sendRandom(server, sentToClient);
        pump(client, server, atServer);
        pump(server, client, atClient);
    }
    for (int i = 0; i < 1000 && (client.bufferedAmount() || server.bufferedAmount()); ++i) {
        pump(client, server, atServer);
        pump(server, client, atClient);
    }
    auto messagesOnly = [](std::vector<Rec> v) {
        std::erase_if(v, [](const Rec& r) { return r.type == "ping" || r.type == "pong"; });
        return v;
    };
    EXPECT_EQ(messagesOnly(atServer.events), sentToServer);
    EXPECT_EQ(messagesOnly(atClient.events), sentToClient);

    // Then the closing handshake, started by the client.
    ASSERT_FALSE(client.close(1000, "bye"));
    for (int i = 0; i < 100 && (client.bufferedAmount() || server.bufferedAmount()); ++i) {
        pump(client, server, atServer);
        pump(server, client, atClient);
    }
    EXPECT_EQ(atServer.events.back(), closeEv(1000, "bye"));
    EXPECT_EQ(atClient.events.back(), closeEv(1000, "bye"));
    EXPECT_TRUE(server.transportDone());
    EXPECT_TRUE(client.closeExpected());
    client.receiveEof();
    EXPECT_TRUE(client.transportDone());
}

TEST(Session, PooledBuffersAreReturnedWhenIdle) {
    BufferPool pool;
    ConnectionOptions o;
    o.pool = &pool;
    Connection c(o);
    ASSERT_FALSE(c.sendText(std::string(5000, 'x')));
    EXPECT_EQ(pool.size(), 0u);
    drain(c);
    EXPECT_EQ(pool.size(), 1u); // back in the pool: an idle connection holds no buffer
    ASSERT_FALSE(c.sendText("again"));
    EXPECT_EQ(pool.size(), 0u); // and reused
    drain(c);
    EXPECT_EQ(pool.size(), 1u);

    // An assembled message's buffer goes back too, once the next input arrives.
    Recorder r;
    auto in = concat({cframe(1, "frag", false), cframe(0, "mented")});
    c.receive(in, r);
    EXPECT_EQ(r.events, std::vector<Rec>{text("fragmented")});
    ByteVec none;
    c.receive(none, r);
    EXPECT_EQ(pool.size(), 2u); // the output block and the message buffer
}

TEST(Session, PoolBounds) {
    BufferPool pool(1000, 1024); // 1000 bytes in all, 1024 for one item
    std::size_t each = 0;
    for (int i = 0; i < 40; ++i) {
        ByteBuffer b;
        b.resize(300);
        each = b.capacity();
        pool.release(std::move(b));
    }
    EXPECT_EQ(pool.size(), 1000 / each); // as many as the budget holds
    EXPECT_LE(pool.keptBytes(), 1000u);
    EXPECT_EQ(pool.keptBytes(), pool.size() * each);
    ByteBuffer big;
    big.resize(4096);
    pool.release(std::move(big));
    EXPECT_EQ(pool.size(), 1000 / each); // over the item bound: freed
    const auto b = pool.acquire();
    EXPECT_EQ(b.capacity(), each);
    EXPECT_EQ(pool.keptBytes(), (1000 / each - 1) * each); // what is taken out no longer counts

    BufferPool blocks(3 * 1024);
    std::vector<std::unique_ptr<OutputBlock>> out;
    for (int i = 0; i < 10; ++i) out.push_back(blocks.acquireBlock());
    for (auto& o : out) {
        o->data.resize(500);
        blocks.releaseBlock(std::move(o));
    }
    EXPECT_GE(blocks.size(), 2u);
    EXPECT_LE(blocks.keptBytes(), 3u * 1024); // blocks count with their storage
}

} // namespace
} // namespace tongdao::test
