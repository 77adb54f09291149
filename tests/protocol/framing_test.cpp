// RFC 6455 §5.2 and §5.3: the base framing protocol and masking, both roles.
#include "support/engine.hpp"

namespace tongdao::test {
namespace {

const ConnectionOptions server = roleOpts(Role::server);
const ConnectionOptions client = roleOpts(Role::client);

INSTANTIATE_TEST_SUITE_P(Roles, BothRoles, ::testing::Values(Role::client, Role::server), roleName);

// --- opcodes --------------------------------------------------------------------------

TEST_P(BothRoles, TextAndBinaryMessages) {
    auto r = feedAllWays(opts(), concat({f(1, "héllo"), f(2, std::string("\0\x01\xff", 3)), f(1, ""), f(2, "")}));
    EXPECT_EQ(r.events, (std::vector<Rec>{text("héllo"), binary(std::string("\0\x01\xff", 3)), text(""), binary("")}));
    EXPECT_TRUE(r.output.empty());
    EXPECT_EQ(r.state, CloseState::open);
}

TEST_P(BothRoles, ReservedOpcodesFailWith1002) {
    // RFC 6455 §5.2: %x3-7 are reserved for further non-control frames, %xB-F for control frames.
    for (int op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
        SCOPED_TRACE(op);
        auto r = feedAllWays(opts(), concat({f(op, "x"), f(1, "never seen")}));
        EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::reservedOpcode)});
        EXPECT_EQ(r.status.code, 1002);
        EXPECT_EQ(r.status.reason, "reserved opcode");
        EXPECT_EQ(r.state, CloseState::closed);
    }
}

TEST_P(BothRoles, RsvBitsWithoutExtensionFailWith1002) {
    for (int rsv : {Rsv::rsv1, Rsv::rsv2, Rsv::rsv3, Rsv::all}) {
        SCOPED_TRACE(rsv);
        auto r = feedAllWays(opts(), f(1, "x", true, rsv));
        EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::reservedBits)});
        EXPECT_EQ(r.status.code, 1002);
    }
}

// --- masking --------------------------------------------------------------------------

TEST(Masking, ServerFailsOnUnmaskedFrame) {
    // RFC 6455 §5.1: "a server MUST close the connection upon receiving a frame that is not masked"
    auto r = feedAllWays(server, frame(1, "Hello"));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::unmaskedFrame)});
    EXPECT_EQ(r.status.code, 1002);
}

TEST(Masking, ClientFailsOnMaskedFrame) {
    // RFC 6455 §5.1: "A client MUST close a connection if it detects a masked frame."
    auto r = feedAllWays(client, frame(1, "Hello", true, true));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::maskedFrame)});
    EXPECT_EQ(r.status.code, 1002);
}

TEST(Masking, ClientMasksEveryFrameWithAFreshKey) {
    FixedMask mask;
    mask.keys = {maskKey(1, 2, 3, 4), maskKey(0xa0, 0xb0, 0xc0, 0xd0), maskKey(9, 9, 9, 9)};
    auto o = client;
    o.maskSource = &mask;
    Connection c(o);
    ASSERT_FALSE(c.sendText("abc"));
    ASSERT_FALSE(c.ping(asBytes("p")));
    ASSERT_FALSE(c.send(MessageKind::binary, {}));
    auto out = drain(c);
    // The ping overtook the text frame (control ahead of queued data), so it drew key 2 of
    // the sequence but left first: ping with key a0 b0 c0 d0, then text with key 01 02 03 04.
    auto expected = concat({frame(9, "p", true, true, maskKey(0xa0, 0xb0, 0xc0, 0xd0)),
                            frame(1, "abc", true, true, maskKey(1, 2, 3, 4)),
                            frame(2, "", true, true, maskKey(9, 9, 9, 9))});
    EXPECT_EQ(out, expected);
}

TEST(Masking, LongPayloadsUnmaskAtEveryAlignment) {
    // The vectorised path takes over at 64 bytes; check lengths and offsets around it.
    for (std::size_t len : {63u, 64u, 65u, 127u, 128u, 129u, 1000u, 4099u}) {
        std::string payload(len, '\0');
        for (std::size_t i = 0; i < len; ++i) payload[i] = static_cast<char>('a' + i % 26);
        const auto in = cframe(2, payload);
        for (std::size_t split : {1u, 3u, 7u, 17u, 70u}) {
            auto r = feedPieces(server, in, {split, 5, 64});
            ASSERT_EQ(r.events, std::vector<Rec>{binary(payload)}) << len << " " << split;
        }
    }
}

TEST(Masking, ServerNeverMasks) {
    Connection c(server);
    ASSERT_FALSE(c.sendText("x"));
    auto out = drain(c);
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(static_cast<int>(out[1]) & 0x80, 0);
}

// --- payload lengths ------------------------------------------------------------------

TEST_P(BothRoles, LengthEncodingsAtTheirBoundaries) {
    for (std::size_t len : {0u, 125u, 126u, 127u, 65535u, 65536u, 70000u}) {
        SCOPED_TRACE(len);
        const std::string payload(len, 'z');
        const auto in = f(2, payload);
        const std::size_t expectedHeader = frameHeaderSize(len, GetParam() == Role::server);
        EXPECT_EQ(in.size(), expectedHeader + len);
        auto r = feedPieces(opts(), in, {});
        EXPECT_EQ(r.events, std::vector<Rec>{binary(payload)});
        for (std::size_t split = 1; split <= expectedHeader + 1; ++split)
            ASSERT_EQ(feedPieces(opts(), in, {split}).events, r.events) << split;
    }
}

TEST_P(BothRoles, SentLengthsUseTheShortestEncoding) {
    FixedMask mask;
    auto o = opts();
    o.maskSource = &mask;
    for (std::size_t len : {0u, 125u, 126u, 65535u, 65536u}) {
        Connection c(o);
        ASSERT_FALSE(c.send(MessageKind::binary, asBytes(std::string(len, 'q'))));
        auto out = drain(c);
        EXPECT_EQ(out, peerFrame(GetParam() == Role::client ? Role::server : Role::client, 2, std::string(len, 'q')))
            << len;
    }
}

TEST_P(BothRoles, NonMinimalLengthsFailWith1002) {
    // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
    const bool masked = GetParam() == Role::server;
    const int m = masked ? 0x80 : 0;
    auto maskBytes = masked ? bytes({0x37, 0xfa, 0x21, 0x3d}) : ByteVec{};
    auto sixteen = concat({bytes({0x82, m | 126, 0x00, 0x05}), maskBytes, bytes("12345")});
    auto r = feedAllWays(opts(), sixteen);
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::nonMinimalLength)});
    auto sixtyFour = concat({bytes({0x82, m | 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}), maskBytes});
    r = feedAllWays(opts(), sixtyFour);
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::nonMinimalLength)});
    EXPECT_EQ(r.status.code, 1002);
}

TEST_P(BothRoles, SixtyFourBitLengthWithTopBitFails) {
    // RFC 6455 §5.2: "the most significant bit MUST be 0".
    const int m = GetParam() == Role::server ? 0x80 : 0;
    auto r = feedAllWays(opts(), bytes({0x82, m | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::badLength)});
    EXPECT_EQ(r.status.code, 1002);
}

// --- zero copy ------------------------------------------------------------------------

struct ViewCheck : EventHandler {
    const std::byte* begin = nullptr;
    const std::byte* end = nullptr;
    std::vector<bool> insideInput;
    void onMessage(MessageKind, Bytes b) {
        insideInput.push_back(b.empty() || (b.data() >= begin && b.data() + b.size() <= end));
    }
};

TEST(ZeroCopy, WholeMessagesAreViewsIntoTheInput) {
    auto in = concat({cframe(1, "first"), cframe(2, std::string(300, 'b')), cframe(1, "frag", false),
                      cframe(0, "mented")});
    Connection c(server);
    ViewCheck h;
    h.begin = in.data();
    h.end = in.data() + in.size();
    c.receive(in, h);
    // The two whole frames are views into the input; the fragmented message was assembled.
    EXPECT_EQ(h.insideInput, (std::vector<bool>{true, true, false}));
}

TEST(ZeroCopy, AMessageSplitAcrossReadsIsAssembled) {
    auto in = cframe(1, "split across two reads");
    Connection c(server);
    Recorder r;
    ByteVec a(in.begin(), in.begin() + 10), b(in.begin() + 10, in.end());
    c.receive(a, r);
    EXPECT_TRUE(r.events.empty());
    c.receive(b, r);
    EXPECT_EQ(r.events, std::vector<Rec>{text("split across two reads")});
}

// --- many frames in one read ----------------------------------------------------------

TEST_P(BothRoles, ManyFramesInOneRead) {
    ByteVec in;
    std::vector<Rec> expected;
    for (int i = 0; i < 50; ++i) {
        const std::string s = "message " + std::to_string(i);
        auto fr = f(i % 2 ? 2 : 1, s);
        in.insert(in.end(), fr.begin(), fr.end());
        expected.push_back(i % 2 ? binary(s) : text(s));
    }
    auto r = feedAllWays(opts(), in);
    EXPECT_EQ(r.events, expected);
}

TEST_P(BothRoles, InputAfterAFailureIsDiscarded) {
    const auto cOpts = opts();
    Connection c(cOpts);
    Recorder r;
    auto bad = f(0x3, "");
    c.receive(bad, r);
    auto good = f(1, "late");
    c.receive(good, r);
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::reservedOpcode)});
    EXPECT_TRUE(c.failed());
    // The close frame is queued; only once it is written is the transport done.
    EXPECT_FALSE(c.transportDone());
    EXPECT_EQ(drain(c), own(8, closePayload(1002, "reserved opcode")));
    EXPECT_TRUE(c.transportDone());
}

} // namespace
} // namespace tongdao::test
