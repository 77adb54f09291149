// Size limits: frames and messages over the configured maximum fail with 1009.
#include "support/engine.hpp"

namespace tongdao::test {
namespace {

class Limits : public BothRoles {
protected:
    ConnectionOptions limited(std::size_t frame, std::size_t message) const {
        auto o = opts();
        o.maxFrameSize = frame;
        o.maxMessageSize = message;
        return o;
    }
};
INSTANTIATE_TEST_SUITE_P(Roles, Limits, ::testing::Values(Role::client, Role::server), roleName);

TEST_P(Limits, DefaultsAre16MiB) {
    ConnectionOptions o;
    EXPECT_EQ(o.maxFrameSize, 16u << 20);
    EXPECT_EQ(o.maxMessageSize, 16u << 20);
}

TEST_P(Limits, FrameAtTheLimitPasses) {
    auto r = feedAllWays(limited(10, 100), f(2, "0123456789"));
    EXPECT_EQ(r.events, std::vector<Rec>{binary("0123456789")});
}

TEST_P(Limits, FrameOverTheLimitFailsWith1009) {
    auto r = feedAllWays(limited(10, 100), f(2, "0123456789X"));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::frameTooBig)});
    EXPECT_EQ(r.status.code, 1009);
    EXPECT_EQ(r.output, own(8, closePayload(1009, "frame too big")));
}

TEST_P(Limits, FailsAtTheHeaderBeforeThePayloadArrives) {
    // Only the header of a 1 GiB frame arrives: refused at once, nothing buffered.
    const bool masked = GetParam() == Role::server;
    auto head = bytes({0x82, (masked ? 0x80 : 0) | 127, 0, 0, 0, 0x40, 0, 0, 0, 0});
    if (masked) head = concat({head, bytes({1, 2, 3, 4})});
    auto r = feedAllWays(opts(), head);
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::frameTooBig)});
}

TEST_P(Limits, FragmentedMessageOverTheLimitFailsWith1009) {
    auto o = limited(100, 10);
    auto r = feedAllWays(o, concat({f(1, "01234", false), f(0, "56789", false), f(0, "")}));
    EXPECT_EQ(r.events, std::vector<Rec>{text("0123456789")});
    r = feedAllWays(o, concat({f(1, "01234", false), f(0, "56789", false), f(0, "X")}));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::messageTooBig)});
    EXPECT_EQ(r.output, own(8, closePayload(1009, "message too big")));
    EXPECT_EQ(r.status.code, 1009);
}

TEST_P(Limits, ControlFramesBetweenFragmentsDoNotCount) {
    auto r = feedAllWays(limited(100, 10), concat({f(1, "01234", false), f(9, std::string(100, 'p')), f(0, "56789")}));
    EXPECT_EQ(r.events, (std::vector<Rec>{pingEv(std::string(100, 'p')), text("0123456789")}));
}

TEST_P(Limits, ALargeMessageAtTheDefaultLimit) {
    // 16 MiB in one frame, arriving in 64 KiB reads: delivered whole, exactly once.
    const std::string payload(16u << 20, 'L');
    auto in = f(2, payload);
    const auto cOpts = opts();
    Connection c(cOpts);
    std::size_t messages = 0, size = 0;
    struct Count : EventHandler {
        std::size_t* m;
        std::size_t* s;
        void onMessage(MessageKind, Bytes b) { ++*m, *s = b.size(); }
    } h;
    h.m = &messages;
    h.s = &size;
    for (std::size_t pos = 0; pos < in.size(); pos += 65536) {
        MutableBytes piece(in.data() + pos, std::min<std::size_t>(65536, in.size() - pos));
        c.receive(piece, h);
    }
    EXPECT_EQ(messages, 1u);
    EXPECT_EQ(size, payload.size());
}

} // namespace
} // namespace tongdao::test
