// RFC 7692: permessage-deflate, negotiation in both roles and the transform.
#include "support/deflate.hpp"
#include "support/engine.hpp"

#include "tongdao/protocol/handshake.hpp"
#include "tongdao/protocol/permessage_deflate.hpp"

#include <zlib.h>

#include <random>

namespace tongdao::test {
namespace {

ExtensionItem item(std::string_view header) {
    std::vector<ExtensionItem> items;
    EXPECT_TRUE(parseExtensions(header, items)) << header;
    return items.empty() ? ExtensionItem{} : items.front();
}

std::optional<std::string> serverAnswer(const ServerDeflateFactory& f, std::string_view offers) {
    std::vector<ExtensionItem> items;
    EXPECT_TRUE(parseExtensions(offers, items)) << offers;
    std::vector<const ExtensionItem*> ptrs;
    for (auto& i : items) ptrs.push_back(&i);
    auto a = f.negotiate(ptrs);
    if (!a) return std::nullopt;
    EXPECT_NE(a->extension, nullptr);
    return a->response;
}

std::unique_ptr<Extension> clientExtension(std::string_view response, DeflateOptions o = {}) {
    std::error_code ec;
    auto ext = ClientDeflateFactory(o).accept(item(response), ec);
    EXPECT_FALSE(ec) << response << ": " << ec.message();
    return ext;
}

// --- negotiation, server side (RFC 7692 §7.1) --------------------------------------------

TEST(DeflateNegotiation, ChromiumsOfferInSharedAndDedicatedModes) {
    SharedDeflate shared;
    const ServerDeflateFactory sharedFactory({}, &shared), dedicated;
    // Shared streams need each message to stand alone in both directions (§7.1.1).
    EXPECT_EQ(serverAnswer(sharedFactory, "permessage-deflate; client_max_window_bits"),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    EXPECT_EQ(serverAnswer(dedicated, "permessage-deflate; client_max_window_bits"), "permessage-deflate");
    EXPECT_EQ(serverAnswer(dedicated, "permessage-deflate"), "permessage-deflate");
}

TEST(DeflateNegotiation, ServerWindowAndContextRequestsAreHonoured) {
    const ServerDeflateFactory dedicated;
    EXPECT_EQ(serverAnswer(dedicated, "permessage-deflate; server_max_window_bits=10"),
              "permessage-deflate; server_max_window_bits=10");
    EXPECT_EQ(serverAnswer(dedicated, "permessage-deflate; server_no_context_takeover"),
              "permessage-deflate; server_no_context_takeover");
    // A client that gives up context itself needs nothing in the answer (§7.1.1.2 is a hint).
    EXPECT_EQ(serverAnswer(dedicated, "permessage-deflate; client_no_context_takeover"), "permessage-deflate");
}

TEST(DeflateNegotiation, OffersWeCannotTakeAreDeclined) {
    const ServerDeflateFactory dedicated;
    for (std::string_view bad : {
             "permessage-deflate; server_max_window_bits=8", // zlib has no 8-bit window
             "permessage-deflate; server_max_window_bits",   // a value is required
             "permessage-deflate; server_max_window_bits=07",
             "permessage-deflate; server_max_window_bits=16",
             "permessage-deflate; client_max_window_bits=7",
             "permessage-deflate; server_no_context_takeover=1",
             "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
             "permessage-deflate; foo",
         })
        EXPECT_EQ(serverAnswer(dedicated, bad), std::nullopt) << bad;
    // The first acceptable offer wins (§5.1: offers are in order of preference).
    EXPECT_EQ(serverAnswer(dedicated, "permessage-deflate; foo, permessage-deflate; server_max_window_bits=12"),
              "permessage-deflate; server_max_window_bits=12");
    // Shared mode too: an 8 is declined and the client's next offer taken.
    SharedDeflate shared;
    const ServerDeflateFactory sharedFactory({}, &shared);
    EXPECT_EQ(serverAnswer(sharedFactory, "permessage-deflate; server_max_window_bits=8"), std::nullopt);
    EXPECT_EQ(serverAnswer(sharedFactory, "permessage-deflate; server_max_window_bits=8; client_max_window_bits, "
                                          "permessage-deflate; server_max_window_bits=9"),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9");
    EXPECT_EQ(serverAnswer(dedicated, "permessage-deflate; server_max_window_bits=8, permessage-deflate"),
              "permessage-deflate");
}

TEST(DeflateNegotiation, EveryServerWindowFrom9To15InBothModes) {
    // RFC 7692 §7.1.2.1: the response carries server_max_window_bits, no larger than offered.
    SharedDeflate shared;
    const ServerDeflateFactory sharedFactory({}, &shared), dedicated;
    for (int bits = 9; bits <= 15; ++bits) {
        const auto n = std::to_string(bits);
        for (std::string offer : {"permessage-deflate; server_max_window_bits=" + n,
                                  "permessage-deflate; server_max_window_bits=" + n + "; client_max_window_bits"}) {
            EXPECT_EQ(serverAnswer(sharedFactory, offer), "permessage-deflate; server_no_context_takeover; "
                                                          "client_no_context_takeover; server_max_window_bits=" + n)
                << offer;
            EXPECT_EQ(serverAnswer(dedicated, offer), "permessage-deflate; server_max_window_bits=" + n) << offer;
        }
    }
    // Our own cap (compressWindowBits) wins when it is smaller, in shared mode as well.
    DeflateOptions o;
    o.maxWindowBits = 11;
    SharedDeflate small(o);
    const ServerDeflateFactory smallShared(o, &small);
    EXPECT_EQ(serverAnswer(smallShared, "permessage-deflate; server_max_window_bits=13"),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11");
    EXPECT_EQ(serverAnswer(smallShared, "permessage-deflate; server_max_window_bits=10"),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10");
    EXPECT_EQ(serverAnswer(smallShared, "permessage-deflate"),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11");
}

TEST(DeflateNegotiation, ThroughTheHandshake) {
    ClientRequest req;
    req.host = "h";
    req.extensions.push_back(std::make_shared<ClientDeflateFactory>());
    ClientHandshake client(req);
    EXPECT_NE(client.request().find("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
              std::string::npos);
    ServerHandshake server;
    std::size_t used = 0;
    ASSERT_EQ(server.receive(asBytes(client.request()), used), http::ParseStatus::done);
    SharedDeflate shared;
    auto n = negotiateExtensions(server.upgrade().extensions, {std::make_shared<ServerDeflateFactory>(DeflateOptions{}, &shared)});
    ASSERT_NE(n.extension, nullptr);
    const auto response = acceptResponse(server.upgrade().key, {}, n.header);
    ASSERT_EQ(client.receive(asBytes(response), used), http::ParseStatus::done) << client.error().message();
    EXPECT_NE(client.takeExtension(), nullptr);
}

// --- negotiation, client side -----------------------------------------------------------

TEST(DeflateNegotiation, ClientAcceptsValidAnswers) {
    for (std::string_view ok : {"permessage-deflate", "permessage-deflate; server_no_context_takeover",
                                "permessage-deflate; client_no_context_takeover",
                                "permessage-deflate; client_max_window_bits=10",
                                "permessage-deflate; server_max_window_bits=9"})
        EXPECT_NE(clientExtension(ok), nullptr) << ok;
}

TEST(DeflateNegotiation, ClientRefusesBadAnswers) {
    for (std::string_view bad : {"permessage-deflate; client_max_window_bits", // a response must give a value
                                 "permessage-deflate; client_max_window_bits=8", // we cannot compress so
                                 "permessage-deflate; x=1", "permessage-deflate; server_max_window_bits=20",
                                 "permessage-deflate; client_no_context_takeover; client_no_context_takeover"}) {
        std::error_code ec;
        EXPECT_EQ(ClientDeflateFactory().accept(item(bad), ec), nullptr) << bad;
        EXPECT_EQ(ec, make_error_code(error::badExtensionResponse)) << bad;
    }
    // We asked for server_no_context_takeover: an answer without it did not accept the offer.
    std::error_code ec;
    DeflateOptions o;
    o.noContextTakeover = true;
    EXPECT_EQ(ClientDeflateFactory(o).accept(item("permessage-deflate"), ec), nullptr);
}

// --- the RFC 7692 §7.2.3 examples, received by a client -----------------------------------

class Rfc7692Examples : public ::testing::Test {
protected:
    test::Run feed(const ByteVec& in) {
        ConnectionOptions o;
        o.role = Role::client;
        return feedAllWays(o, in, [] { return clientExtension("permessage-deflate"); });
    }
};

TEST_F(Rfc7692Examples, ASingleCompressedMessage) {
    // §7.2.3.1: "Hello" compressed, one frame.
    EXPECT_EQ(feed(bytes({0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})).events, std::vector<Rec>{text("Hello")});
}

TEST_F(Rfc7692Examples, FragmentedCompressedMessage) {
    // §7.2.3.1: the same, in two fragments; RSV1 on the first only.
    EXPECT_EQ(feed(bytes({0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00})).events,
              std::vector<Rec>{text("Hello")});
}

TEST_F(Rfc7692Examples, TwoMessagesSharingContext) {
    // §7.2.3.2: the second "Hello" refers back into the first.
    EXPECT_EQ(feed(bytes({0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00}))
                  .events,
              (std::vector<Rec>{text("Hello"), text("Hello")}));
}

TEST_F(Rfc7692Examples, StoredBlockAndBfinal) {
    // §7.2.3.3: a stored (uncompressed) block; §7.2.3.4: a block with BFINAL set.
    EXPECT_EQ(feed(bytes({0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00})).events,
              std::vector<Rec>{text("Hello")});
    EXPECT_EQ(feed(bytes({0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00})).events,
              std::vector<Rec>{text("Hello")});
}

TEST_F(Rfc7692Examples, Rsv1OnAContinuationFails) {
    // §6.1: RSV1 only on a message's first frame.
    auto r = feed(bytes({0x41, 0x03, 0xf2, 0x48, 0xcd, 0xc0, 0x04, 0xc9, 0xc9, 0x07, 0x00}));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::reservedBits)});
    r = feed(bytes({0xc9, 0x00})); // and never on control frames
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::reservedBits)});
}

TEST_F(Rfc7692Examples, CorruptDataFailsWith1007) {
    auto r = feed(bytes({0xc1, 0x04, 0xff, 0xff, 0xff, 0xff}));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::badCompressedData)});
    EXPECT_EQ(r.status.code, 1007);
}

// --- round trips between our own engines ------------------------------------------------------

struct Pair {
    // The engines refer to these options: a Pair must not move (hence no copies, no moves).
    Pair(const Pair&) = delete;
    ConnectionOptions co, so;
    std::unique_ptr<Connection> client, server;
    Pair(std::unique_ptr<Extension> c, std::unique_ptr<Extension> s, std::size_t limit = 16u << 20) {
        co.role = Role::client;
        co.maxMessageSize = so.maxMessageSize = limit;
        client = std::make_unique<Connection>(co, std::move(c));
        server = std::make_unique<Connection>(so, std::move(s));
    }
};

std::pair<std::unique_ptr<Extension>, std::unique_ptr<Extension>> negotiated(const ServerDeflateFactory& f,
                                                                           std::string_view offer) {
    auto offered = item(offer);
    auto a = f.negotiate({&offered});
    EXPECT_TRUE(a);
    return {clientExtension(a->response), std::move(a->extension)};
}

TEST(DeflateRoundTrip, DedicatedKeepsContextAndCompresses) {
    const ServerDeflateFactory f;
    auto [c, s] = negotiated(f, "permessage-deflate; client_max_window_bits");
    Pair p(std::move(c), std::move(s));
    const std::string msg = R"({"type":"chat","room":"lobby","from":"alice","text":"hello everyone, how are you today?"})";
    ASSERT_FALSE(p.server->sendText(msg));
    auto first = drain(*p.server);
    ASSERT_FALSE(p.server->sendText(msg));
    auto second = drain(*p.server);
    EXPECT_EQ(static_cast<int>(first[0]) & 0x40, 0x40); // RSV1: compressed
    EXPECT_LT(first.size(), msg.size());
    EXPECT_LT(second.size(), first.size()); // the second refers back to the first
    Recorder r;
    auto both = concat({first, second});
    p.client->receive(both, r);
    EXPECT_EQ(r.events, (std::vector<Rec>{text(msg), text(msg)}));
    // And the other way, masked.
    ASSERT_FALSE(p.client->send(MessageKind::binary, asBytes(std::string(10000, 'z'))));
    auto up = drain(*p.client);
    EXPECT_LT(up.size(), 200u);
    Recorder rs;
    p.server->receive(up, rs);
    EXPECT_EQ(rs.events, std::vector<Rec>{binary(std::string(10000, 'z'))});
}

TEST(DeflateRoundTrip, SharedStreamsServeManyConnections) {
    SharedDeflate shared;
    const ServerDeflateFactory f({}, &shared);
    std::vector<std::unique_ptr<Pair>> pairs;
    for (int i = 0; i < 3; ++i) {
        auto [c, s] = negotiated(f, "permessage-deflate; client_max_window_bits");
        pairs.push_back(std::make_unique<Pair>(std::move(c), std::move(s)));
    }
    std::mt19937 rng(7692);
    for (int round = 0; round < 50; ++round) {
        const std::size_t pi = rng() % pairs.size();
        auto& p = *pairs[pi];
        std::string msg(200 + rng() % 5000, 'a');
        for (auto& ch : msg) ch = static_cast<char>('a' + rng() % 4);
        // Client to server, cut into random reads, interleaved with another connection's message.
        ASSERT_FALSE(p.client->sendText(msg));
        auto wire = drain(*p.client);
        auto& other = *pairs[(pi + 1 + rng() % 2) % pairs.size()];
        ASSERT_FALSE(other.client->sendText("interleaved " + msg));
        auto otherWire = drain(*other.client);
        const std::size_t cut = rng() % wire.size();
        Recorder r, ro;
        ByteVec a(wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(cut)), b(wire.begin() + static_cast<std::ptrdiff_t>(cut), wire.end());
        p.server->receive(a, r);
        other.server->receive(otherWire, ro);
        p.server->receive(b, r);
        ASSERT_EQ(r.events, std::vector<Rec>{text(msg)});
        ASSERT_EQ(ro.events, std::vector<Rec>{text("interleaved " + msg)});
        // Server to client.
        ASSERT_FALSE(p.server->sendText(msg));
        Recorder rc;
        auto down = drain(*p.server);
        p.client->receive(down, rc);
        ASSERT_EQ(rc.events, std::vector<Rec>{text(msg)});
    }
}

TEST(DeflateRoundTrip, SmallMessagesGoUncompressed) {
    const ServerDeflateFactory f;
    auto [c, s] = negotiated(f, "permessage-deflate");
    Pair p(std::move(c), std::move(s));
    ASSERT_FALSE(p.server->sendText("hi"));
    auto out = drain(*p.server);
    EXPECT_EQ(out, bytes({0x81, 0x02, 'h', 'i'}));
}

TEST(DeflateRoundTrip, AZipBombStopsAtTheLimit) {
    // 64 MiB of zeros deflate to about 64 KiB; the limit is 1 MiB: 1009, having inflated
    // at most the limit (plus one chunk of zlib's own) rather than 64 MiB.
    std::string zeros(64u << 20, '\0');
    z_stream z{};
    ASSERT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    std::string packed(deflateBound(&z, zeros.size()), '\0');
    z.next_in = reinterpret_cast<Bytef*>(zeros.data());
    z.avail_in = static_cast<uInt>(zeros.size());
    z.next_out = reinterpret_cast<Bytef*>(packed.data());
    z.avail_out = static_cast<uInt>(packed.size());
    ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    packed.resize(packed.size() - z.avail_out - 4); // without the empty-block tail
    deflateEnd(&z);
    ASSERT_LT(packed.size(), 200000u);

    for (bool sharedMode : {false, true}) {
        SharedDeflate shared;
        const ServerDeflateFactory f({}, sharedMode ? &shared : nullptr);
        auto [c, s] = negotiated(f, "permessage-deflate");
        Pair p(std::move(c), std::move(s), 1u << 20);
        auto bomb = frame(2, packed, true, true, rfcKey, Rsv::rsv1);
        Recorder r;
        p.server->receive(bomb, r);
        EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::messageTooBig)}) << sharedMode;
        EXPECT_EQ(p.server->closeStatus().code, 1009);
    }
}

TEST(DeflateRoundTrip, UsesSharedDeflateTellsTheModes) {
    SharedDeflate shared;
    auto [c1, s1] = negotiated(ServerDeflateFactory({}, &shared), "permessage-deflate");
    auto [c2, s2] = negotiated(ServerDeflateFactory(), "permessage-deflate");
    EXPECT_TRUE(usesSharedDeflate(s1.get(), &shared));
    EXPECT_FALSE(usesSharedDeflate(s2.get(), &shared));
    EXPECT_FALSE(usesSharedDeflate(nullptr, &shared));
}

// --- window sizes on the wire (RFC 7692 §7.1.2) -----------------------------------------------

TEST(DeflateWindows, ServerKeepsToTheWindowAskedForInBothModes) {
    const std::string msg = farRepeats(40000);
    for (bool sharedMode : {true, false}) {
        SharedDeflate shared;
        const ServerDeflateFactory f({}, sharedMode ? &shared : nullptr);
        // Every size on one set of shared compressors, interleaved: each keeps to its own
        // window. A strict inflater of exactly that window reads each message as well as our
        // own client (whose inflater takes any window); with context takeover (dedicated) it
        // keeps its window across messages, as the peer's must.
        struct Peer {
            std::unique_ptr<Pair> pair;
            std::unique_ptr<Extension> strict;
        };
        std::vector<Peer> peers;
        for (int bits = 9; bits <= 15; ++bits) {
            auto offered = item("permessage-deflate; server_max_window_bits=" + std::to_string(bits) +
                                "; client_max_window_bits");
            auto a = f.negotiate({&offered});
            ASSERT_TRUE(a);
            std::error_code ec;
            auto strict = WindowCheckingFactory(bits).accept(item(a->response), ec);
            peers.push_back({std::make_unique<Pair>(clientExtension(a->response), std::move(a->extension)),
                             std::move(strict)});
        }
        std::size_t smallest = 0, largest = 0;
        for (int round = 0; round < 2; ++round) {
            for (int bits = 9; bits <= 15; ++bits) {
                auto& [p, strict] = peers[static_cast<std::size_t>(bits - 9)];
                ASSERT_FALSE(p->server->sendText(msg));
                auto wire = drain(*p->server);
                const auto frames = splitFrames(wire);
                ASSERT_EQ(frames.size(), 1u);
                ASSERT_TRUE(frames[0].rsv1);
                ByteBuffer got;
                ASSERT_FALSE(strict->decode(asBytes(frames[0].payload), true, got, 1u << 20))
                    << "a match beyond " << bits << " bits, shared " << sharedMode << ", round " << round;
                ASSERT_EQ(str(got.view()), msg) << bits;
                if (round == 0 && bits == 9) smallest = wire.size();
                if (round == 0 && bits == 15) largest = wire.size();
                Recorder r;
                p->client->receive(wire, r);
                ASSERT_EQ(r.events, std::vector<Rec>{text(msg)}) << bits;
            }
        }
        // The 1.5 KiB repeats are within reach of 11 bits and up only.
        EXPECT_LT(smallest, msg.size());
        EXPECT_LT(largest * 3, smallest) << "sizes " << largest << " and " << smallest;
    }
}

TEST(DeflateWindows, SharedCompressorPerWindowIsMadeOnFirstNeed) {
    SharedDeflate shared;
    const std::string msg = farRepeats(20000);
    // The default (no window given) is the configured maximum, 15.
    const std::string c15(asString(shared.compress(asBytes(msg))));
    EXPECT_EQ(inflateStrict(asBytes(c15), 15), msg);
    const std::string c9(asString(shared.compress(asBytes(msg), 9)));
    EXPECT_EQ(inflateStrict(asBytes(c9), 9), msg);
    EXPECT_EQ(inflateStrict(asBytes(c15), 9), std::nullopt) << "15-bit output should not fit a 9-bit window";
    // A window over the configured maximum is held to it.
    DeflateOptions o;
    o.maxWindowBits = 10;
    SharedDeflate capped(o);
    EXPECT_EQ(inflateStrict(capped.compress(asBytes(msg), 15), 10), msg);
}

TEST(DeflateWindows, ClientTakesEveryServerWindowAndKeepsToItsOwn) {
    const std::string msg = farRepeats(30000);
    for (int bits = 8; bits <= 15; ++bits) {
        // The server's window: our inflater reads any (zlib compresses 8 as 9, same stream format).
        auto ext = clientExtension("permessage-deflate; server_max_window_bits=" + std::to_string(bits));
        ASSERT_NE(ext, nullptr) << bits;
        z_stream z{};
        ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -std::max(bits, 9), 8, Z_DEFAULT_STRATEGY), Z_OK);
        std::string packed(deflateBound(&z, msg.size()) + 16, '\0');
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(msg.data()));
        z.avail_in = static_cast<uInt>(msg.size());
        z.next_out = reinterpret_cast<Bytef*>(packed.data());
        z.avail_out = static_cast<uInt>(packed.size());
        ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
        packed.resize(packed.size() - z.avail_out - 4);
        deflateEnd(&z);
        ConnectionOptions o;
        o.role = Role::client;
        o.maxMessageSize = 1u << 20;
        Connection c(o, std::move(ext));
        Recorder r;
        auto wire = frame(1, packed, true, false, rfcKey, Rsv::rsv1);
        c.receive(wire, r);
        EXPECT_EQ(r.events, std::vector<Rec>{text(msg)}) << bits;
    }
    for (int bits = 9; bits <= 15; ++bits) {
        // client_max_window_bits in the answer: what the client compresses keeps to it.
        auto ext = clientExtension("permessage-deflate; client_max_window_bits=" + std::to_string(bits));
        ConnectionOptions o;
        o.role = Role::client;
        FixedMask mask;
        o.maskSource = &mask;
        Connection c(o, std::move(ext));
        for (int round = 0; round < 2; ++round) {
            ASSERT_FALSE(c.sendText(msg));
            const auto frames = splitFrames(drain(c));
            ASSERT_EQ(frames.size(), 1u);
            ASSERT_TRUE(frames[0].rsv1);
            // Context takeover: the second message needs the first in the window; check
            // the first on its own only.
            if (round == 0) {
                EXPECT_EQ(inflateStrict(asBytes(frames[0].payload), bits), msg) << bits;
            }
        }
    }
}

} // namespace
} // namespace tongdao::test
