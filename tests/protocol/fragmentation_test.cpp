// RFC 6455 §5.4: fragmentation, and §5.5: control frames between fragments.
#include "support/engine.hpp"

namespace tongdao::test {
namespace {

using Fragmentation = BothRoles;
INSTANTIATE_TEST_SUITE_P(Roles, Fragmentation, ::testing::Values(Role::client, Role::server), roleName);

TEST_P(Fragmentation, TextAndBinaryInManyFragments) {
    auto r = feedAllWays(opts(), concat({f(1, "a", false), f(0, "b", false), f(0, "", false), f(0, "c"),
                                         f(2, "x", false), f(0, "yz")}));
    EXPECT_EQ(r.events, (std::vector<Rec>{text("abc"), binary("xyz")}));
}

TEST_P(Fragmentation, EmptyFragments) {
    auto r = feedAllWays(opts(), concat({f(1, "", false), f(0, "", false), f(0, "")}));
    EXPECT_EQ(r.events, std::vector<Rec>{text("")});
}

TEST_P(Fragmentation, ControlFramesBetweenFragments) {
    // RFC 6455 §5.4: "Control frames MAY be injected in the middle of a fragmented message."
    auto r = feedAllWays(opts(), concat({f(1, "Hel", false), f(9, "are you there?"), f(10, "unsolicited"),
                                         f(0, "lo")}));
    EXPECT_EQ(r.events, (std::vector<Rec>{pingEv("are you there?"), pongEv("unsolicited"), text("Hello")}));
    EXPECT_EQ(r.output, own(10, "are you there?"));
}

TEST_P(Fragmentation, CloseBetweenFragmentsEndsTheMessage) {
    auto r = feedAllWays(opts(), concat({f(1, "Hel", false), f(8, closePayload(1000)), f(0, "lo")}));
    EXPECT_EQ(r.events, std::vector<Rec>{closeEv(1000)});
    EXPECT_EQ(r.output, own(8, closePayload(1000)));
}

TEST_P(Fragmentation, ContinuationWithoutAStartFails) {
    auto r = feedAllWays(opts(), f(0, "orphan"));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::unexpectedContinuation)});
    EXPECT_EQ(r.status.code, 1002);
    r = feedAllWays(opts(), concat({f(1, "done"), f(0, "again")}));
    EXPECT_EQ(r.events, (std::vector<Rec>{text("done"), errorEv(error::unexpectedContinuation)}));
}

TEST_P(Fragmentation, NewDataFrameInsideAFragmentedMessageFails) {
    for (int op : {1, 2}) {
        auto r = feedAllWays(opts(), concat({f(2, "start", false), f(op, "intruder")}));
        EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::expectedContinuation)});
        EXPECT_EQ(r.status.code, 1002);
    }
}

TEST_P(Fragmentation, ACharacterSplitAcrossFragments) {
    // "€" is E2 82 AC; each fragment alone is not valid UTF-8, the message is.
    auto r = feedAllWays(opts(), concat({f(1, "\xE2", false), f(0, "\x82", false), f(0, "\xAC")}));
    EXPECT_EQ(r.events, std::vector<Rec>{text("€")});
}

TEST_P(Fragmentation, ControlFramesAreNeverFragmented) {
    for (int op : {8, 9, 10}) {
        auto r = feedAllWays(opts(), f(op, "", false));
        EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::fragmentedControl)});
        EXPECT_EQ(r.status.code, 1002);
    }
}

TEST_P(Fragmentation, SendingFragmentsWithControlInBetween) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.sendFragment(MessageKind::binary, asBytes("ab"), false));
    EXPECT_EQ(c.send(MessageKind::text, asBytes("no")), make_error_code(error::messageInProgress));
    ASSERT_FALSE(c.ping(asBytes("!")));
    ASSERT_FALSE(c.sendFragment(MessageKind::text, asBytes("cd"), true)); // kind ignored after the first
    // The ping was queued after the first fragment and goes ahead of nothing still queued:
    // the first fragment is unsent, and control overtakes data at a frame boundary.
    EXPECT_EQ(drain(c), concat({own(9, "!"), own(2, "ab", false), own(0, "cd")}));
    ASSERT_FALSE(c.sendText("next"));
}

TEST_P(Fragmentation, SentFragmentedTextIsValidatedAcrossFragments) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.sendFragment(MessageKind::text, asBytes("\xE2\x82"), false));
    EXPECT_EQ(c.sendFragment(MessageKind::text, asBytes("\xFF"), true), make_error_code(error::invalidUtf8ToSend));
    EXPECT_EQ(c.sendFragment(MessageKind::text, asBytes(""), true), make_error_code(error::invalidUtf8ToSend));
    ASSERT_FALSE(c.sendFragment(MessageKind::text, asBytes("\xAC"), true));
    // Binary fragments are not validated.
    ASSERT_FALSE(c.sendFragment(MessageKind::binary, asBytes("\xFF"), false));
    ASSERT_FALSE(c.sendFragment(MessageKind::binary, asBytes("\xFE"), true));
}

} // namespace
} // namespace tongdao::test
