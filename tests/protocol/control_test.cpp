// RFC 6455 §5.5.2 and §5.5.3: ping and pong; control frames ahead of queued data.
#include "support/engine.hpp"

namespace tongdao::test {
namespace {

using Control = BothRoles;
INSTANTIATE_TEST_SUITE_P(Roles, Control, ::testing::Values(Role::client, Role::server), roleName);

TEST_P(Control, PingIsAnsweredWithTheSamePayload) {
    for (std::size_t len : {0u, 1u, 125u}) {
        const std::string payload(len, 'p');
        auto r = feedAllWays(opts(), f(9, payload));
        EXPECT_EQ(r.events, std::vector<Rec>{pingEv(payload)});
        EXPECT_EQ(r.output, own(10, payload));
    }
}

TEST_P(Control, ControlPayloadOver125Fails) {
    for (int op : {8, 9, 10}) {
        auto r = feedAllWays(opts(), f(op, std::string(126, 'x')));
        EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::controlTooLong)});
        EXPECT_EQ(r.status.code, 1002);
    }
}

TEST_P(Control, UnsolicitedPongIsAccepted) {
    auto r = feedAllWays(opts(), concat({f(10, "heartbeat"), f(1, "still open")}));
    EXPECT_EQ(r.events, (std::vector<Rec>{pongEv("heartbeat"), text("still open")}));
    EXPECT_TRUE(r.output.empty());
}

TEST_P(Control, AutoPongCanBeTurnedOff) {
    auto o = opts();
    o.autoPong = false;
    auto r = feedAllWays(o, f(9, "x"));
    EXPECT_EQ(r.events, std::vector<Rec>{pingEv("x")});
    EXPECT_TRUE(r.output.empty());
}

TEST_P(Control, NoPongAfterOurClose) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.close(1000));
    Recorder r;
    auto in = f(9, "late ping");
    c.receive(in, r);
    EXPECT_EQ(r.events, std::vector<Rec>{pingEv("late ping")});
    EXPECT_EQ(drain(c), own(8, closePayload(1000)));
}

TEST_P(Control, PingOvertakesQueuedDataAtAFrameBoundary) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.send(MessageKind::binary, asBytes(std::string(1000, 'a'))));
    ASSERT_FALSE(c.send(MessageKind::binary, asBytes(std::string(10, 'b'))));
    // Half of the first frame is written; then a ping arrives.
    auto first = c.pendingOutput();
    ASSERT_EQ(first.count, 1u);
    c.consumeOutput(500);
    Recorder r;
    auto in = f(9, "p");
    c.receive(in, r);
    // The rest of the first frame, then the pong, then the second frame.
    auto out = c.pendingOutput();
    EXPECT_EQ(out.count, 3u);
    const auto frame1 = own(2, std::string(1000, 'a'));
    EXPECT_EQ(out.parts[0].size(), frame1.size() - 500);
    EXPECT_EQ(ByteVec(out.parts[1].begin(), out.parts[1].end()), own(10, "p"));
    EXPECT_EQ(ByteVec(out.parts[2].begin(), out.parts[2].end()), own(2, std::string(10, 'b')));
    EXPECT_EQ(c.bufferedAmount(), out.size());
    // Consumed in odd amounts, the bytes still leave in that order.
    ByteVec written;
    for (std::size_t step : {3u, 600u, 1u, 2u, 1000u}) {
        auto v = c.pendingOutput();
        std::size_t n = 0;
        for (auto part : v)
            for (auto b : part)
                if (n < step) written.push_back(b), ++n;
        c.consumeOutput(n);
    }
    EXPECT_EQ(c.bufferedAmount(), 0u);
    ByteVec expected(frame1.begin() + 500, frame1.end());
    expected = concat({expected, own(10, "p"), own(2, std::string(10, 'b'))});
    EXPECT_EQ(written, expected);
}

TEST_P(Control, ControlAtABoundaryGoesFirst) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.sendText("data"));
    ASSERT_FALSE(c.pong(asBytes("unsolicited")));
    EXPECT_EQ(drain(c), concat({own(10, "unsolicited"), own(1, "data")}));
}

TEST_P(Control, SendingOversizedControlPayloadIsRefused) {
    const auto cOpts = opts();
    Connection c(cOpts);
    EXPECT_EQ(c.ping(asBytes(std::string(126, 'x'))), make_error_code(error::controlPayloadTooLong));
    EXPECT_EQ(c.pong(asBytes(std::string(126, 'x'))), make_error_code(error::controlPayloadTooLong));
    EXPECT_FALSE(c.ping(asBytes(std::string(125, 'x'))));
}

} // namespace
} // namespace tongdao::test
