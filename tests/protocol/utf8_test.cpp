// RFC 3629 UTF-8 and RFC 6455 §8.1: text must be valid, failing as early as possible.
#include "support/engine.hpp"

#include <random>

namespace tongdao::test {
namespace {

// A plain decoder, written for clarity, as the reference.
bool referenceValid(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t n;
        std::uint32_t cp;
        if (b < 0x80) { ++i; continue; }
        if ((b & 0xE0) == 0xC0) n = 1, cp = b & 0x1F;
        else if ((b & 0xF0) == 0xE0) n = 2, cp = b & 0x0F;
        else if ((b & 0xF8) == 0xF0) n = 3, cp = b & 0x07;
        else return false;
        if (i + n >= s.size()) return false; // truncated
        for (std::size_t k = 1; k <= n; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            if ((c & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (c & 0x3F);
        }
        static constexpr std::uint32_t minimum[] = {0, 0x80, 0x800, 0x10000};
        if (cp < minimum[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n + 1;
    }
    return true;
}

TEST(Utf8, ValidBoundaries) {
    for (std::string_view s : {"", "a", "\x7F", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF",
                               "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF",
                               "κόσμε", "通道 WebSocket 🎉 ok"}) {
        EXPECT_TRUE(isValidUtf8(s)) << s;
        EXPECT_TRUE(referenceValid(s)) << s;
    }
}

TEST(Utf8, InvalidSequences) {
    for (std::string_view s : {"\x80", "\xBF", "\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xE0\x9F\xBF",
                               "\xED\xA0\x80", "\xED\xBF\xBF", "\xF0\x80\x80\x80", "\xF0\x8F\xBF\xBF",
                               "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFE", "\xFF", "\xC2", "\xE2\x82",
                               "\xF0\x9F\x8E", "a\xC2", "\xC2\x41", "\xE2\x28\xA1"}) {
        EXPECT_FALSE(isValidUtf8(s)) << ::testing::PrintToString(s);
        EXPECT_FALSE(referenceValid(s)) << ::testing::PrintToString(s);
    }
}

// The index of the first byte after which the text can never be valid, fed a byte at a time.
std::size_t failureIndex(std::string_view s) {
    Utf8Validator v;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (!v.feed(asBytes(s.substr(i, 1)))) return i;
    return s.size();
}

TEST(Utf8, FailsAtTheFirstImpossibleByte) {
    // Autobahn 6.3-6.4 style: the error is known before the end of the text.
    EXPECT_EQ(failureIndex("κόσμε\xED\xA0\x80" "edited"), 11u);   // ED A0: a surrogate, known at A0
    EXPECT_EQ(failureIndex("abc\xF4\x90"), 4u);                 // beyond U+10FFFF, known at 90
    EXPECT_EQ(failureIndex("abc\xE0\x80"), 4u);                 // overlong, known at 80
    EXPECT_EQ(failureIndex("\xC0"), 0u);                        // C0 can start nothing valid
    EXPECT_EQ(failureIndex("ok\xF8"), 2u);
    EXPECT_EQ(failureIndex("ok\x80"), 2u);
    EXPECT_EQ(failureIndex("\xE2\x82\x41"), 2u);                // not a continuation byte
    EXPECT_EQ(failureIndex("\xE2\x82"), 2u);                    // incomplete, but could still be valid
    Utf8Validator v;
    EXPECT_TRUE(v.feed(asBytes("\xE2\x82")));
    EXPECT_TRUE(v.ok());
    EXPECT_FALSE(v.complete());
    EXPECT_TRUE(v.feed(asBytes("\xAC")));
    EXPECT_TRUE(v.complete());
}

TEST(Utf8, MatchesTheReferenceOnRandomText) {
    std::mt19937 rng(6455);
    // Pieces that build mostly-valid text, and bytes that break it.
    const std::vector<std::string> pieces = {"a", "hello ", "é", "通", "道", "🎉", "\xF4\x8F\xBF\xBF", "\x80",
                                             "\xC3", "\xED\xA0\x80", "\xF0\x9F", "\xFF", std::string(40, 'x')};
    for (int round = 0; round < 20000; ++round) {
        std::string s;
        const int n = static_cast<int>(rng() % 12);
        for (int k = 0; k < n; ++k) s += pieces[rng() % pieces.size()];
        ASSERT_EQ(isValidUtf8(s), referenceValid(s)) << ::testing::PrintToString(s);
        // Incremental, split at a random point, agrees with whole.
        const std::size_t cut = s.empty() ? 0 : rng() % s.size();
        Utf8Validator v;
        const bool ok = v.feed(asBytes(s.substr(0, cut))) && v.feed(asBytes(s.substr(cut))) && v.complete();
        ASSERT_EQ(ok, referenceValid(s)) << ::testing::PrintToString(s) << " cut " << cut;
    }
}

TEST(Utf8, LongAsciiRunsAroundABadByte) {
    // The fast path skips ASCII in blocks; a bad byte at any offset must still be found.
    for (std::size_t pos = 0; pos < 200; ++pos) {
        std::string s(200, 'a');
        s[pos] = '\xFF';
        ASSERT_FALSE(isValidUtf8(s)) << pos;
        s[pos] = 'b';
        ASSERT_TRUE(isValidUtf8(s)) << pos;
    }
}

// --- in the engine --------------------------------------------------------------------

using TextMessages = BothRoles;
INSTANTIATE_TEST_SUITE_P(Roles, TextMessages, ::testing::Values(Role::client, Role::server), roleName);

TEST_P(TextMessages, InvalidTextFailsWith1007) {
    auto r = feedAllWays(opts(), f(1, "caf\xC3"));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::invalidUtf8)});
    EXPECT_EQ(r.status.code, 1007);
    EXPECT_EQ(r.output, own(8, closePayload(1007, "invalid UTF-8 in text")));
}

TEST_P(TextMessages, BinaryIsNotValidated) {
    auto r = feedAllWays(opts(), f(2, "\xFF\xFE"));
    EXPECT_EQ(r.events, std::vector<Rec>{binary("\xFF\xFE")});
}

TEST_P(TextMessages, FailsInTheFirstFragmentBeforeTheMessageEnds) {
    // The final fragment never arrives: the failure must not wait for it.
    auto r = feedAllWays(opts(), f(1, "ok \xED\xA0\x80 more", false));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::invalidUtf8)});
}

TEST_P(TextMessages, FailsInsideAFrameBeforeItEnds) {
    // A large frame whose bad byte arrives in its first read: failed before the rest comes.
    std::string payload(100000, 'a');
    payload[10] = '\xFF';
    auto in = f(1, payload);
    const auto cOpts = opts();
    Connection c(cOpts);
    Recorder r;
    ByteVec head(in.begin(), in.begin() + 100);
    c.receive(head, r);
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::invalidUtf8)});
}

TEST_P(TextMessages, IncompleteCharacterAtTheEndFails) {
    auto r = feedAllWays(opts(), concat({f(1, "abc\xE2\x82", false), f(0, "")}));
    EXPECT_EQ(r.events, std::vector<Rec>{errorEv(error::invalidUtf8)});
}

TEST_P(TextMessages, OutgoingTextIsValidated) {
    const auto cOpts = opts();
    Connection c(cOpts);
    EXPECT_EQ(c.sendText("\xC0\x80"), make_error_code(error::invalidUtf8ToSend));
    EXPECT_EQ(c.bufferedAmount(), 0u);
    auto o = opts();
    o.validateOutgoingText = false;
    Connection trusting(o);
    EXPECT_FALSE(trusting.sendText("\xC0\x80"));
}

} // namespace
} // namespace tongdao::test
