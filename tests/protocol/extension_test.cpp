// Extensions in the opening handshake: the Sec-WebSocket-Extensions grammar of RFC 6455
// §9.1 (parsing and formatting) and the server's choice among the client's offers.
#include "support/http.hpp"

#include <string>
#include <vector>

namespace tongdao::test {
namespace {

// --- server: extension negotiation --------------------------------------------------

std::vector<ExtensionItem> offers(std::string_view header) {
    std::vector<ExtensionItem> out;
    EXPECT_TRUE(parseExtensions(header, out)) << header;
    return out;
}

TEST(NegotiateExtensions, AFactoryAccepts) {
    auto f = serverFactory("x-test", true);
    auto n = negotiateExtensions(offers("other, x-test; a=1, X-TEST; b, x-more"), {f});
    EXPECT_EQ(n.header, "x-test; a=1");
    ASSERT_TRUE(n.extension);
    EXPECT_EQ(static_cast<TestExtension&>(*n.extension).agreed, "x-test; a=1");
    // The factory saw only its own offers (names compared case-insensitively), in the client's order.
    EXPECT_EQ(f->seen, (std::vector<std::string>{"x-test; a=1", "X-TEST; b"}));
}

TEST(NegotiateExtensions, AFactoryDeclines) {
    auto f = serverFactory("x-test", false);
    auto n = negotiateExtensions(offers("x-test; a=1"), {f});
    EXPECT_TRUE(n.header.empty());
    EXPECT_FALSE(n.extension);
    EXPECT_EQ(f->seen.size(), 1u);
}

TEST(NegotiateExtensions, NoOffersOfItsNameNoCall) {
    auto f = serverFactory("x-test", true);
    auto n = negotiateExtensions(offers("permessage-deflate"), {f});
    EXPECT_TRUE(n.header.empty());
    EXPECT_FALSE(n.extension);
    EXPECT_TRUE(f->seen.empty());
    EXPECT_TRUE(negotiateExtensions({}, {f}).header.empty());
    EXPECT_TRUE(negotiateExtensions(offers("x-test"), {}).header.empty());
}

TEST(NegotiateExtensions, TheFirstFactoryThatAgreesWins) {
    // Server order decides, not client order; a later factory is not asked once one agreed.
    auto first = serverFactory("x-b", true, "; by=first");
    auto second = serverFactory("x-a", true, "; by=second");
    auto n = negotiateExtensions(offers("x-a, x-b"), {first, second});
    EXPECT_EQ(n.header, "x-b; by=first");
    EXPECT_TRUE(second->seen.empty());

    // Two factories of the same name: the first one wins.
    auto same1 = serverFactory("x-a", true, "; by=1");
    auto same2 = serverFactory("x-a", true, "; by=2");
    EXPECT_EQ(negotiateExtensions(offers("x-a"), {same1, same2}).header, "x-a; by=1");

    // A factory that declines passes the turn to the next.
    auto declines = serverFactory("x-a", false);
    auto agrees = serverFactory("x-b", true);
    n = negotiateExtensions(offers("x-a, x-b"), {declines, agrees});
    EXPECT_EQ(n.header, "x-b");
    EXPECT_EQ(static_cast<TestExtension&>(*n.extension).name(), "x-b");
    EXPECT_EQ(declines->seen.size(), 1u);
}

// --- Sec-WebSocket-Extensions grammar -----------------------------------------------

/** A parse rendered as name(param=value,param)|..., or "invalid". */
std::string parsed(std::string_view header) {
    std::vector<ExtensionItem> items;
    if (!parseExtensions(header, items)) return "invalid";
    std::string s;
    for (const auto& i : items) {
        s += i.name + "(";
        for (std::size_t k = 0; k < i.params.size(); ++k) {
            if (k) s += ",";
            s += i.params[k].name;
            if (i.params[k].value) s += "=" + *i.params[k].value;
        }
        s += ")|";
    }
    return s;
}

TEST(ExtensionList, Parses) {
    EXPECT_EQ(parsed("permessage-deflate"), "permessage-deflate()|");
    EXPECT_EQ(parsed("permessage-deflate; client_max_window_bits"), "permessage-deflate(client_max_window_bits)|");
    EXPECT_EQ(parsed("permessage-deflate; client_max_window_bits=10; server_no_context_takeover"),
              "permessage-deflate(client_max_window_bits=10,server_no_context_takeover)|");
    EXPECT_EQ(parsed("a;b;c=1;d"), "a(b,c=1,d)|");
    EXPECT_EQ(parsed("  a ;\tb = 1 , c  "), "a(b=1)|c()|"); // implied *LWS of RFC 2616, as RFC 6455 §9.1 uses
    EXPECT_EQ(parsed("a; p=1, b, c; q"), "a(p=1)|b()|c(q)|");
    EXPECT_EQ(parsed("deflate-stream, mux; max-channels=4; flow-control, deflate-stream"),
              "deflate-stream()|mux(max-channels=4,flow-control)|deflate-stream()|");
}

TEST(ExtensionList, QuotedValuesMustBeTokensOnceUnquoted) {
    EXPECT_EQ(parsed("a; p=\"10\""), "a(p=10)|");
    EXPECT_EQ(parsed("a; p=\"1\\0\""), "a(p=10)|"); // quoted-pair
    EXPECT_EQ(parsed("a; p=\"x\", b; q=\"y\""), "a(p=x)|b(q=y)|");
    EXPECT_EQ(parsed("a; p = \"x\" ; q"), "a(p=x,q)|");
    EXPECT_EQ(parsed("a; p=\"a b\""), "invalid");
    EXPECT_EQ(parsed("a; p=\"\""), "invalid");
    EXPECT_EQ(parsed("a; p=\"x,y\""), "invalid");
    EXPECT_EQ(parsed("a; p=\"x;y\""), "invalid");
    EXPECT_EQ(parsed("a; p=\"x\\\"y\""), "invalid");
    EXPECT_EQ(parsed("a; p=\"10"), "invalid");   // unterminated
    EXPECT_EQ(parsed("a; p=\"10\\"), "invalid"); // escape at the end
    EXPECT_EQ(parsed("a; p=\"1\"0"), "invalid"); // junk after the quote
}

TEST(ExtensionList, EmptyElementsAreIgnored) {
    // RFC 9110 §5.6.1: a recipient accepts empty list elements, but 1# needs one real one.
    EXPECT_EQ(parsed(", a,, b ,"), "a()|b()|");
    EXPECT_EQ(parsed(" , ,\ta"), "a()|");
    EXPECT_EQ(parsed(""), "invalid");
    EXPECT_EQ(parsed("   "), "invalid");
    EXPECT_EQ(parsed(","), "invalid");
    EXPECT_EQ(parsed(" , , "), "invalid");
}

TEST(ExtensionList, MalformedInputsAreRejected) {
    for (std::string_view bad : {
             "a b", "a;", "a; ", "a;;b", ";a", "a; =1", "a; p=", "a; p= ", "a; p==1", "a; p=1 2", "a=1",
             "a; p=1;", "a@", "a; p=(1)", "a; p=1=2", "a,;", "a; p; ;q", "\"a\"", "a; \"p\"=1", "a;p=1 ;; q",
             "a; p=\x01", "a\x7f", "a; p=1\"\"",
         }) {
        EXPECT_EQ(parsed(bad), "invalid") << '"' << bad << '"';
    }
}

TEST(ExtensionList, AppendsToWhatIsThere) {
    std::vector<ExtensionItem> items;
    ASSERT_TRUE(parseExtensions("a", items));
    ASSERT_TRUE(parseExtensions("b; x=1", items));
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(items[0].name, "a");
    EXPECT_EQ(items[1].name, "b");
    EXPECT_EQ(items[1].find("X")->value, "1"); // parameter names compare case-insensitively
    EXPECT_EQ(items[1].find("y"), nullptr);
}

TEST(ExtensionList, Formats) {
    ExtensionItem item{"permessage-deflate", {{"client_max_window_bits", std::nullopt}, {"server_max_window_bits", "10"}}};
    EXPECT_EQ(formatExtension(item), "permessage-deflate; client_max_window_bits; server_max_window_bits=10");
    EXPECT_EQ(formatExtension({"a", {}}), "a");
    // Values that are not tokens are quoted, with '"' and '\' escaped.
    EXPECT_EQ(formatExtension({"a", {{"p", "x y"}}}), "a; p=\"x y\"");
    EXPECT_EQ(formatExtension({"a", {{"p", "q\"r\\s"}}}), "a; p=\"q\\\"r\\\\s\"");
    EXPECT_EQ(formatExtension({"a", {{"p", ""}}}), "a; p=\"\"");
}

TEST(ExtensionList, RoundTrips) {
    for (std::string_view header : {
             "permessage-deflate",
             "permessage-deflate; client_max_window_bits",
             "permessage-deflate; client_max_window_bits=15; server_no_context_takeover, permessage-deflate",
             " a ;b=\"1\" ,, c;d;e=f ",
             "x-test; level=\"\\1\\0\"",
         }) {
        std::vector<ExtensionItem> items;
        ASSERT_TRUE(parseExtensions(header, items)) << header;
        std::string again;
        for (const auto& i : items) again += (again.empty() ? "" : ", ") + formatExtension(i);
        EXPECT_EQ(parsed(again), parsed(header)) << header << " -> " << again;
        std::vector<ExtensionItem> twice;
        ASSERT_TRUE(parseExtensions(again, twice));
        std::string third;
        for (const auto& i : twice) third += (third.empty() ? "" : ", ") + formatExtension(i);
        EXPECT_EQ(third, again); // formatting is canonical
    }
}

} // namespace
} // namespace tongdao::test
