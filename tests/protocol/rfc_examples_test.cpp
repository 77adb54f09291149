// RFC 6455 §5.7, the examples, byte for byte, in both roles.
#include "support/engine.hpp"

namespace tongdao::test {
namespace {

ConnectionOptions clientOpts() {
    ConnectionOptions o;
    o.role = Role::client;
    return o;
}
ConnectionOptions serverOpts() { return {}; }

TEST(RfcExamples, SingleFrameUnmaskedText) {
    auto r = feedAllWays(clientOpts(), bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
    EXPECT_EQ(r.events, std::vector<Rec>{text("Hello")});
    EXPECT_TRUE(r.output.empty());
}

TEST(RfcExamples, SingleFrameMaskedText) {
    auto r = feedAllWays(serverOpts(), bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
    EXPECT_EQ(r.events, std::vector<Rec>{text("Hello")});
}

TEST(RfcExamples, FragmentedUnmaskedText) {
    auto r = feedAllWays(clientOpts(), bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}));
    EXPECT_EQ(r.events, std::vector<Rec>{text("Hello")});
}

TEST(RfcExamples, UnmaskedPingAndMaskedPong) {
    FixedMask mask;
    auto opts = clientOpts();
    opts.maskSource = &mask;
    auto r = feedAllWays(opts, bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
    EXPECT_EQ(r.events, std::vector<Rec>{pingEv("Hello")});
    EXPECT_EQ(r.output, bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(RfcExamples, Binary256BytesIn16BitLength) {
    std::string payload(256, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i);
    auto in = concat({bytes({0x82, 0x7E, 0x01, 0x00}), bytes(payload)});
    auto r = feedPieces(clientOpts(), in, {});
    EXPECT_EQ(r.events, std::vector<Rec>{binary(payload)});
    for (std::size_t split : {1u, 2u, 3u, 4u, 5u, 100u, 259u}) EXPECT_EQ(feedPieces(clientOpts(), in, {split}).events, r.events);
}

TEST(RfcExamples, Binary64KiBIn64BitLength) {
    std::string payload(65536, 'x');
    auto in = concat({bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}), bytes(payload)});
    auto r = feedPieces(clientOpts(), in, {});
    EXPECT_EQ(r.events, std::vector<Rec>{binary(payload)});
    for (std::size_t split : {1u, 9u, 10u, 11u, 4096u, 65545u}) EXPECT_EQ(feedPieces(clientOpts(), in, {split}).events, r.events);
}

TEST(RfcExamples, SendingProducesTheSameBytes) {
    // Server role: unmasked "Hello"; client role with the RFC's key: the masked frame.
    ConnectionOptions s;
    Connection server(s);
    ASSERT_FALSE(server.sendText("Hello"));
    EXPECT_EQ(drain(server), bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));

    FixedMask mask;
    auto c = clientOpts();
    c.maskSource = &mask;
    Connection client(c);
    ASSERT_FALSE(client.sendText("Hello"));
    EXPECT_EQ(drain(client), bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));

    Connection frag(s);
    ASSERT_FALSE(frag.sendFragment(MessageKind::text, asBytes("Hel"), false));
    ASSERT_FALSE(frag.sendFragment(MessageKind::text, asBytes("lo"), true));
    EXPECT_EQ(drain(frag), bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}));
}

} // namespace
} // namespace tongdao::test
