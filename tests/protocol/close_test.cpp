// RFC 6455 §5.5.1 and §7: the closing handshake, close codes, and failing the connection.
#include "support/engine.hpp"

namespace tongdao::test {
namespace {

using Close = BothRoles;
INSTANTIATE_TEST_SUITE_P(Roles, Close, ::testing::Values(Role::client, Role::server), roleName);

// --- the peer closes ------------------------------------------------------------------

TEST_P(Close, ValidCodesAreEchoed) {
    // RFC 6455 §7.4.1 and the IANA registry: the codes an endpoint may send.
    for (int code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999}) {
        SCOPED_TRACE(code);
        auto r = feedAllWays(opts(), f(8, closePayload(code, "bye")));
        EXPECT_EQ(r.events, std::vector<Rec>{closeEv(code, "bye")});
        EXPECT_EQ(r.output, own(8, closePayload(code, "bye")));
        EXPECT_EQ(r.state, CloseState::closed);
        EXPECT_EQ(r.status.code, code);
        EXPECT_EQ(r.status.reason, "bye");
        EXPECT_TRUE(r.status.remote);
        EXPECT_FALSE(r.status.error);
    }
}

TEST_P(Close, InvalidCodesFailWith1002) {
    // RFC 6455 §7.4: 0-999 unused, 1004 reserved, 1005/1006/1015 never on the wire,
    // 1016-2999 unassigned, 5000 and up out of range.
    for (int code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
        SCOPED_TRACE(code);
        auto r = feedAllWays(opts(), f(8, closePayload(code)));
        EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::badCloseCode)});
        EXPECT_EQ(r.output, own(8, closePayload(1002, "invalid close code")));
        EXPECT_EQ(r.status.code, 1002);
        EXPECT_FALSE(r.status.remote);
    }
}

TEST_P(Close, EmptyCloseIsReportedAs1005AndEchoedEmpty) {
    auto r = feedAllWays(opts(), f(8, ""));
    EXPECT_EQ(r.events, std::vector<Rec>{closeEv(1005)});
    EXPECT_EQ(r.output, own(8, ""));
    EXPECT_EQ(r.status.code, 1005);
}

TEST_P(Close, OneBytePayloadFails) {
    auto r = feedAllWays(opts(), f(8, "\x03"));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::badClosePayload)});
    EXPECT_EQ(r.status.code, 1002);
}

TEST_P(Close, ReasonMustBeUtf8) {
    auto r = feedAllWays(opts(), f(8, closePayload(1000, "bad \xC0\xAF")));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::invalidCloseReason)});
    EXPECT_EQ(r.output, own(8, closePayload(1007, "invalid UTF-8 in close reason")));
    EXPECT_EQ(r.status.code, 1007);
}

TEST_P(Close, LongestReason) {
    const std::string reason(123, 'r');
    auto r = feedAllWays(opts(), f(8, closePayload(4000, reason)));
    EXPECT_EQ(r.events, std::vector<Rec>{closeEv(4000, reason)});
}

TEST_P(Close, NothingIsReadAfterTheClose) {
    auto r = feedAllWays(opts(), concat({f(8, closePayload(1000)), f(1, "after close"), f(9, "ping")}));
    EXPECT_EQ(r.events, std::vector<Rec>{closeEv(1000)});
    EXPECT_EQ(r.output, own(8, closePayload(1000)));
}

TEST_P(Close, NothingIsSentAfterTheEcho) {
    const auto cOpts = opts();
    Connection c(cOpts);
    Recorder r;
    auto in = f(8, closePayload(1001));
    c.receive(in, r);
    EXPECT_EQ(c.sendText("late"), make_error_code(error::notOpen));
    EXPECT_EQ(c.ping(), make_error_code(error::notOpen));
    EXPECT_EQ(c.close(), make_error_code(error::notOpen));
    EXPECT_EQ(drain(c), own(8, closePayload(1001)));
}

// --- we close -------------------------------------------------------------------------

TEST_P(Close, LocalCloseThenThePeersReply) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.close(4001, "done"));
    EXPECT_EQ(c.closeState(), CloseState::closingLocal);
    EXPECT_TRUE(c.closeExpected()); // arm the close timer
    EXPECT_FALSE(c.transportDone());
    EXPECT_EQ(c.sendText("x"), make_error_code(error::notOpen));
    EXPECT_EQ(drain(c), own(8, closePayload(4001, "done")));

    // Data may still arrive before the peer's close (RFC 6455 §1.4).
    Recorder r;
    auto in = concat({f(1, "in flight"), f(8, closePayload(4001, "done"))});
    c.receive(in, r);
    EXPECT_EQ(r.events, (std::vector<Rec>{text("in flight"), closeEv(4001, "done")}));
    EXPECT_EQ(c.closeState(), CloseState::closed);
    EXPECT_TRUE(drain(c).empty()); // no second close frame

    if (GetParam() == Role::server) {
        // RFC 6455 §7.1.1: the server closes the TCP connection first.
        EXPECT_TRUE(c.transportDone());
        EXPECT_FALSE(c.closeExpected());
    } else {
        // The client waits for the server's TCP close, under a timer.
        EXPECT_FALSE(c.transportDone());
        EXPECT_TRUE(c.closeExpected());
        c.receiveEof();
        EXPECT_TRUE(c.transportDone());
        EXPECT_FALSE(c.closeExpected());
    }
    EXPECT_EQ(c.closeStatus().code, 4001);
}

TEST_P(Close, CloseWithoutCode) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.close(0));
    EXPECT_EQ(drain(c), own(8, ""));
}

TEST_P(Close, CodesAndReasonsThatMayNotBeSent) {
    const auto cOpts = opts();
    Connection c(cOpts);
    for (int code : {1004, 1005, 1006, 1015, 999, 2000, 5000})
        EXPECT_EQ(c.close(static_cast<std::uint16_t>(code)), make_error_code(error::closeCodeNotSendable)) << code;
    EXPECT_EQ(c.close(0, "reason without code"), make_error_code(error::closeCodeNotSendable));
    EXPECT_EQ(c.close(1000, std::string(124, 'r')), make_error_code(error::closeReasonTooLong));
    EXPECT_EQ(c.close(1000, "\xFF"), make_error_code(error::invalidUtf8ToSend));
    EXPECT_EQ(c.bufferedAmount(), 0u);
    EXPECT_TRUE(c.isOpen());
    EXPECT_FALSE(c.close(1000, std::string(123, 'r')));
}

TEST_P(Close, CloseGoesBehindQueuedData) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.sendText("queued first"));
    ASSERT_FALSE(c.close(1000));
    EXPECT_EQ(drain(c), concat({own(1, "queued first"), own(8, closePayload(1000))}));
}

// --- the transport ends ---------------------------------------------------------------

TEST_P(Close, EofWithoutCloseIs1006) {
    const auto cOpts = opts();
    Connection c(cOpts);
    c.receiveEof();
    EXPECT_EQ(c.closeState(), CloseState::closed);
    EXPECT_EQ(c.closeStatus().code, 1006);
    EXPECT_TRUE(c.transportDone());
    Recorder r;
    auto in = f(1, "after eof");
    c.receive(in, r);
    EXPECT_TRUE(r.events.empty());
}

TEST_P(Close, EofAfterTheCloseHandshakeKeepsTheCode) {
    const auto cOpts = opts();
    Connection c(cOpts);
    Recorder r;
    auto in = f(8, closePayload(1000, "ok"));
    c.receive(in, r);
    c.receiveEof();
    EXPECT_EQ(c.closeStatus().code, 1000);
    EXPECT_EQ(c.closeStatus().reason, "ok");
}

// --- failing --------------------------------------------------------------------------

TEST_P(Close, FailingQueuesACloseAndStopsReading) {
    const auto cOpts = opts();
    Connection c(cOpts);
    Recorder r;
    auto in = concat({f(1, "fine"), f(1, "\xFF"), f(1, "never")});
    c.receive(in, r);
    EXPECT_EQ(r.events, (std::vector<Rec>{text("fine"), errorEv(error::invalidUtf8)}));
    EXPECT_TRUE(c.failed());
    EXPECT_EQ(c.closeStatus().code, 1007);
    EXPECT_EQ(c.closeStatus().error, make_error_code(error::invalidUtf8));
    EXPECT_EQ(c.closeState(), CloseState::closed);
    EXPECT_FALSE(c.closeExpected());
    EXPECT_FALSE(c.transportDone());
    EXPECT_EQ(drain(c), own(8, closePayload(1007, "invalid UTF-8 in text")));
    EXPECT_TRUE(c.transportDone()); // both roles close the transport after failing (§7.1.7)
}

TEST_P(Close, FailingAfterOurCloseSendsNoSecondClose) {
    const auto cOpts = opts();
    Connection c(cOpts);
    ASSERT_FALSE(c.close(1000));
    drain(c);
    Recorder r;
    auto in = f(0x7, "");
    c.receive(in, r);
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::reservedOpcode)});
    EXPECT_TRUE(drain(c).empty());
    EXPECT_TRUE(c.transportDone());
}

TEST(ErrorTable, EveryWireErrorHasItsCode) {
    EXPECT_EQ(closeCodeFor(error::reservedOpcode), 1002);
    EXPECT_EQ(closeCodeFor(error::invalidUtf8), 1007);
    EXPECT_EQ(closeCodeFor(error::invalidCloseReason), 1007);
    EXPECT_EQ(closeCodeFor(error::badCompressedData), 1007);
    EXPECT_EQ(closeCodeFor(error::frameTooBig), 1009);
    EXPECT_EQ(closeCodeFor(error::messageTooBig), 1009);
    EXPECT_EQ(closeCodeFor(error::notOpen), 0);
    std::error_code ec = error::unmaskedFrame;
    EXPECT_EQ(ec, condition::protocolViolation);
    EXPECT_NE(ec, condition::handshakeFailed);
    EXPECT_EQ(std::error_code(error::badAccept), condition::handshakeFailed);
    EXPECT_EQ(std::error_code(error::notOpen), condition::closed);
    EXPECT_EQ(ec.message(), "client frame not masked");
    for (int e = static_cast<int>(error::httpMalformed); e <= static_cast<int>(error::wrongRole); ++e)
        EXPECT_LE(describe(static_cast<error>(e)).size(), maxCloseReason) << e;
}

} // namespace
} // namespace tongdao::test
