// src/chat/wire: requests parsed and checked, replies and events written (docs/PROTOCOL.md §2-§4).
#include "chat/wire.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tongdao::chat {
namespace {

namespace json = boost::json;

struct Parsed {
    std::optional<Failure> failure;
    Request request;
};

Parsed parse(std::string_view text, ParseLimits limits = {}) {
    Parsed p;
    p.failure = parseRequest(text, limits, p.request);
    return p;
}

json::object obj(std::string_view text) { return json::parse(json::string_view(text.data(), text.size())).as_object(); }

/** Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF. */
bool validUtf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        for (std::size_t k = 1; k <= n; ++k) {
            if (i + k >= s.size()) return false;
            const auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3fu);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

std::string repeat(std::string_view unit, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += unit;
    return s;
}

/** A request whose total nesting is `levels` (the request object itself is level 1). */
std::string nested(std::size_t levels) {
    return R"({"op":"ping","id":1,"x":)" + std::string(levels - 1, '[') + std::string(levels - 1, ']') + "}";
}

StoredEvent message(std::uint64_t seq, std::string body) {
    StoredEvent e;
    e.seq = seq;
    e.ts = 1764590400123;
    e.kind = EventKind::message;
    e.user = "alice";
    e.name = "Alice";
    e.cid = "c-1f3a";
    e.body = std::move(body);
    return e;
}

// --- parseRequest -----------------------------------------------------------------------

TEST(WireParse, EveryOpIsRecognised) {
    const std::pair<const char*, Op> ops[] = {
        {"hello", Op::hello},     {"join", Op::join},         {"leave", Op::leave},     {"send", Op::send},
        {"edit", Op::edit},       {"delete", Op::remove},     {"history", Op::history}, {"read", Op::read},
        {"typing", Op::typing},   {"presence", Op::presence}, {"rooms", Op::rooms},     {"ping", Op::ping},
    };
    for (const auto& [name, op] : ops) {
        SCOPED_TRACE(name);
        const auto p = parse(std::string(R"({"op":")") + name + R"(","id":1})");
        EXPECT_FALSE(p.failure) << p.failure->message;
        EXPECT_EQ(p.request.op, op);
        EXPECT_EQ(p.request.id, "1");
    }
}

TEST(WireParse, KeepsTheWholeObjectAndIgnoresUnknownFields) {
    const auto p = parse(R"({"op":"send","id":7,"room":"lobby","cid":"c-1f3a","body":{"text":"hi"},"future":[1,2]})");
    ASSERT_FALSE(p.failure);
    EXPECT_EQ(p.request.op, Op::send);
    EXPECT_EQ(p.request.fields.at("room"), "lobby");
    EXPECT_EQ(p.request.fields.at("body"), json::parse(R"({"text":"hi"})"));
    EXPECT_TRUE(p.request.fields.contains("future"));
}

TEST(WireParse, IntegerIdsAreEchoedExactly) {
    for (const char* id : {"0", "7", "-5", "9007199254740992", "-9007199254740992", "123456"}) {
        SCOPED_TRACE(id);
        const auto p = parse(std::string(R"({"op":"ping","id":)") + id + "}");
        ASSERT_FALSE(p.failure) << p.failure->message;
        EXPECT_EQ(p.request.id, id);
    }
}

TEST(WireParse, StringIdsAreEchoedAsTheSameString) {
    for (const char* id : {R"("")", R"("abc")", R"("x\"y\\z")", R"("tab\tnl\n")", R"("中文 id")", R"("\u0001")"}) {
        SCOPED_TRACE(id);
        const auto p = parse(std::string(R"({"op":"ping","id":)") + id + "}");
        ASSERT_FALSE(p.failure) << p.failure->message;
        // The echo is JSON text for the same string (escapes may be spelt differently).
        EXPECT_EQ(json::parse(p.request.id), json::parse(id));
        EXPECT_TRUE(json::parse(p.request.id).is_string());
    }
    // A plain one is echoed byte for byte.
    EXPECT_EQ(parse(R"({"op":"ping","id":"req-42"})").request.id, R"("req-42")");
}

TEST(WireParse, IdOf64CharactersIsAcceptedAnd65Refused) {
    const auto ok = parse(R"({"op":"ping","id":")" + std::string(64, 'a') + R"("})");
    EXPECT_FALSE(ok.failure);
    EXPECT_EQ(ok.request.id, "\"" + std::string(64, 'a') + "\"");
    const auto longer = parse(R"({"op":"ping","id":")" + std::string(65, 'a') + R"("})");
    ASSERT_TRUE(longer.failure);
    EXPECT_EQ(longer.failure->code, Code::badRequest);
    EXPECT_EQ(longer.request.id, "null");
}

// docs/PROTOCOL.md §2: an id of at most 64 characters, counted as characters, not bytes.
TEST(WireParse, IdOf64NonAsciiCharactersIsAccepted) {
    const auto p = parse(R"({"op":"ping","id":")" + repeat("中", 64) + R"("})");
    EXPECT_FALSE(p.failure) << p.failure->message;
}

TEST(WireParse, IdsOfOtherTypesAreRefusedWithNullId) {
    for (const char* id : {"1.5", "1.0", "1e2", "9007199254740993", "-9007199254740993", "18446744073709551615",
                           "1e400", "123456789012345678901234567890", "true", "null", "[1]", "{\"a\":1}"}) {
        SCOPED_TRACE(id);
        const auto p = parse(std::string(R"({"op":"ping","id":)") + id + "}");
        ASSERT_TRUE(p.failure);
        EXPECT_EQ(p.failure->code, Code::badRequest);
        EXPECT_EQ(p.request.id, "null");
    }
}

TEST(WireParse, MissingIdIsBadRequest) {
    const auto p = parse(R"({"op":"ping"})");
    ASSERT_TRUE(p.failure);
    EXPECT_EQ(p.failure->code, Code::badRequest);
    EXPECT_EQ(p.failure->message, "request has no id");
    EXPECT_EQ(p.request.id, "null");
}

TEST(WireParse, MissingOrNonStringOpIsAnsweredWithNullId) {
    // PROTOCOL.md §2: without an op it is not a request, so its id is not echoed.
    for (const char* text : {R"({"id":3})", R"({"id":3,"op":5})", R"({"id":3,"op":null})", R"({"id":3,"op":["ping"]})"}) {
        SCOPED_TRACE(text);
        const auto p = parse(text);
        ASSERT_TRUE(p.failure);
        EXPECT_EQ(p.failure->code, Code::badRequest);
        EXPECT_EQ(p.failure->message, "request has no op");
        EXPECT_EQ(p.request.id, "null");
        EXPECT_EQ(p.request.op, Op::unknown);
    }
}

TEST(WireParse, UnknownOpIsNamedSanitised) {
    auto p = parse(R"({"op":"shout","id":"a"})");
    ASSERT_TRUE(p.failure);
    EXPECT_EQ(p.failure->code, Code::badRequest);
    EXPECT_EQ(p.failure->message, "unknown op 'shout'");
    EXPECT_EQ(p.request.id, R"("a")");
    EXPECT_EQ(p.request.op, Op::unknown);

    // Control characters and quotes become '?'.
    p = parse(R"({"op":"bad\u0001'x\n","id":1})");
    ASSERT_TRUE(p.failure);
    EXPECT_EQ(p.failure->message, "unknown op 'bad??x?'");

    // Long names are cut to 32 characters.
    p = parse(R"({"op":")" + std::string(100, 'z') + R"(","id":1})");
    ASSERT_TRUE(p.failure);
    EXPECT_EQ(p.failure->message, "unknown op '" + std::string(32, 'z') + "'");

    // Case matters: ops are lower case.
    p = parse(R"({"op":"PING","id":1})");
    ASSERT_TRUE(p.failure);
    EXPECT_EQ(p.failure->message, "unknown op 'PING'");
}

// An unknown op is quoted in the reply cut to 32 characters, never inside a UTF-8 sequence:
// the reply must stay valid UTF-8 (RFC 6455 §8.1) and JSON.
TEST(WireParse, UnknownOpCutInsideAUtf8SequenceStaysValidUtf8) {
    const auto p = parse(R"({"op":")" + std::string(31, 'a') + "é" + R"(","id":1})");
    ASSERT_TRUE(p.failure);
    EXPECT_TRUE(validUtf8(p.failure->message)) << "message bytes are not UTF-8";
    const auto reply = errorReply(p.request.id, p.failure->code, p.failure->message);
    std::error_code ec;
    (void)json::parse(reply, ec);
    EXPECT_FALSE(ec) << "the error reply is not valid JSON: " << ec.message();
}

TEST(WireParse, NonObjectsAreRefused) {
    for (const char* text : {"[1,2]", R"("ping")", "42", "null", "true", R"([{"op":"ping","id":1}])"}) {
        SCOPED_TRACE(text);
        const auto p = parse(text);
        ASSERT_TRUE(p.failure);
        EXPECT_EQ(p.failure->code, Code::badRequest);
        EXPECT_EQ(p.failure->message, "request is not a JSON object");
        EXPECT_EQ(p.request.id, "null");
    }
}

TEST(WireParse, InvalidJsonIsRefused) {
    for (const char* text : {"", " ", "{", R"({"op":)", R"({"op":"ping","id":1)", R"({"op":"ping","id":1}})",
                             R"({"op":"ping","id":1} x)", R"({op:"ping"})", R"({'op':'ping'})", R"({"op":"ping",})",
                             "\xff", R"({"op":"pi\xc3ng","id":1})"}) {
        SCOPED_TRACE(text);
        const auto p = parse(text);
        ASSERT_TRUE(p.failure);
        EXPECT_EQ(p.failure->code, Code::badRequest);
        EXPECT_EQ(p.failure->message.rfind("request is not valid JSON", 0), 0u) << p.failure->message;
        EXPECT_EQ(p.request.id, "null");
    }
}

TEST(WireParse, NestingUpTo32LevelsIsAcceptedDeeperIsRefused) {
    EXPECT_FALSE(parse(nested(2)).failure);
    const auto at = parse(nested(32));
    EXPECT_FALSE(at.failure) << at.failure->message;
    const auto over = parse(nested(33));
    ASSERT_TRUE(over.failure);
    EXPECT_EQ(over.failure->code, Code::badRequest);
    EXPECT_EQ(over.failure->message, "request nested too deeply");
    // Far deeper: no stack trouble, same answer.
    const auto deep = parse(std::string(20000, '['));
    ASSERT_TRUE(deep.failure);
    EXPECT_EQ(deep.failure->message, "request nested too deeply");
    // The limit is the caller's.
    const auto custom = parse(nested(5), ParseLimits{1024, 4});
    ASSERT_TRUE(custom.failure);
    EXPECT_EQ(custom.failure->message, "request nested too deeply");
}

TEST(WireParse, SizeOverMaxBytesIsTooLargeBeforeParsing) {
    const std::string base = R"({"op":"ping","id":1,"pad":""})";
    ParseLimits limits;
    limits.maxBytes = 64;
    std::string exact = base;
    exact.insert(exact.size() - 2, std::string(64 - base.size(), 'x'));
    ASSERT_EQ(exact.size(), 64u);
    EXPECT_FALSE(parse(exact, limits).failure);
    std::string over = base;
    over.insert(over.size() - 2, std::string(65 - base.size(), 'x'));
    const auto p = parse(over, limits);
    ASSERT_TRUE(p.failure);
    EXPECT_EQ(p.failure->code, Code::tooLarge);
    EXPECT_EQ(p.request.id, "null");
    // Checked before parsing: even garbage gets too_large.
    const auto garbage = parse(std::string(65, '{'), limits);
    ASSERT_TRUE(garbage.failure);
    EXPECT_EQ(garbage.failure->code, Code::tooLarge);
}

TEST(WireParse, HugeNumbersInOtherFieldsDoNotBreakTheRequest) {
    for (const char* n : {"1e400", "-1e400", "123456789012345678901234567890", "1e-400", "0.1e99999"}) {
        SCOPED_TRACE(n);
        const auto p = parse(std::string(R"({"op":"ping","id":1,"x":)") + n + "}");
        if (p.failure) {
            EXPECT_EQ(p.failure->code, Code::badRequest);
        } else {
            EXPECT_EQ(p.request.op, Op::ping);
            EXPECT_TRUE(p.request.fields.at("x").is_double());
        }
    }
}

TEST(WireParse, ReusedRequestIsReset) {
    Request r;
    ASSERT_FALSE(parseRequest(R"({"op":"join","id":5,"room":"a"})", {}, r));
    ASSERT_TRUE(parseRequest("[]", {}, r));
    EXPECT_EQ(r.id, "null");
    EXPECT_EQ(r.op, Op::unknown);
    EXPECT_TRUE(r.fields.empty());
}

// --- fields -------------------------------------------------------------------------------

TEST(WireFields, NeedRoomAcceptsValidNames) {
    for (const std::string& room : {std::string("lobby"), std::string("a"), std::string("A-z_0.9:x"),
                                   std::string("orders.1234"), std::string(64, 'r')}) {
        SCOPED_TRACE(room);
        const auto o = obj(R"({"room":")" + room + R"("})");
        std::string_view out;
        EXPECT_FALSE(needRoom(o, out));
        EXPECT_EQ(out, room);
        EXPECT_TRUE(validRoomName(room));
    }
}

TEST(WireFields, NeedRoomRefusesInvalidNames) {
    for (const std::string& room : {std::string(""), std::string(65, 'r'), std::string("has space"), std::string("a/b"),
                                   std::string("中"), std::string("a*"), std::string("tab\\t"), std::string("q\\\"")}) {
        SCOPED_TRACE(room);
        const auto o = obj(R"({"room":")" + room + R"("})");
        std::string_view out;
        const auto f = needRoom(o, out);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->code, Code::badRequest);
    }
    std::string_view out;
    auto f = needRoom(obj(R"({})"), out);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->message, "room is required");
    f = needRoom(obj(R"({"room":5})"), out);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->message, "room must be a string");
    f = needRoom(obj(R"({"room":null})"), out);
    ASSERT_TRUE(f);
    EXPECT_FALSE(validRoomName(std::string_view("a\0b", 3)));
}

TEST(WireFields, ValidCid) {
    EXPECT_TRUE(validCid("c-1f3a"));
    EXPECT_TRUE(validCid("!"));
    EXPECT_TRUE(validCid("~"));
    EXPECT_TRUE(validCid(std::string(64, 'x')));
    EXPECT_TRUE(validCid("order-1234/{\"x\"}"));
    EXPECT_FALSE(validCid(""));
    EXPECT_FALSE(validCid(std::string(65, 'x')));
    EXPECT_FALSE(validCid("has space"));
    EXPECT_FALSE(validCid("tab\t"));
    EXPECT_FALSE(validCid("\x7f"));
    EXPECT_FALSE(validCid("\x1f"));
    EXPECT_FALSE(validCid("é"));
    EXPECT_FALSE(validCid(std::string_view("a\0", 2)));
}

TEST(WireFields, ValidNameCountsCodePoints) {
    EXPECT_TRUE(validName("alice"));
    EXPECT_TRUE(validName("Alice Smith"));
    EXPECT_TRUE(validName(std::string(32, 'a')));
    EXPECT_FALSE(validName(std::string(33, 'a')));
    EXPECT_TRUE(validName(repeat("中", 32)));  // 96 bytes
    EXPECT_FALSE(validName(repeat("中", 33)));
    EXPECT_TRUE(validName(repeat("😀", 32))); // 128 bytes: the byte bound exactly
    EXPECT_FALSE(validName(repeat("😀", 33)));
    EXPECT_TRUE(validName("é"));
    EXPECT_FALSE(validName(""));
}

TEST(WireFields, ValidNameRefusesControlCharacters) {
    for (const std::string_view name : {std::string_view("a\nb"), std::string_view("a\tb"), std::string_view("\x01"),
                                        std::string_view("x\x1f"), std::string_view("del\x7f"),
                                        std::string_view("nul\0x", 5), std::string_view("\r")}) {
        SCOPED_TRACE(::testing::PrintToString(std::string(name)));
        EXPECT_FALSE(validName(name));
    }
}

// "No control characters" in names includes the C1 controls U+0080-U+009F (C2 80 - C2 9F).
TEST(WireFields, ValidNameRefusesC1ControlCharacters) {
    EXPECT_FALSE(validName("a\xc2\x85"  "b")); // U+0085 NEXT LINE
    EXPECT_FALSE(validName("\xc2\x80"));       // U+0080
    EXPECT_FALSE(validName("\xc2\x9f"));       // U+009F
    EXPECT_TRUE(validName("\xc2\xa0x"));      // U+00A0 NO-BREAK SPACE is not a control
}

TEST(WireFields, NeedBodyAllowsExactlyMaxBody) {
    // "12345678" serialises to 10 bytes with its quotes.
    std::string out;
    EXPECT_FALSE(needBody(obj(R"({"body":"12345678"})"), 10, out));
    EXPECT_EQ(out, R"("12345678")");
    const auto f = needBody(obj(R"({"body":"123456789"})"), 10, out);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->code, Code::tooLarge);
    EXPECT_EQ(f->message, "body over 10 bytes");
}

TEST(WireFields, NeedBodySerialisesCompactlyAndMeasuresThat) {
    std::string out;
    ASSERT_FALSE(needBody(obj(R"({"body" : { "text" : "hi" ,  "n" : [ 1 , 2 ] } })"), 100, out));
    EXPECT_EQ(out, R"({"text":"hi","n":[1,2]})");
    // The limit applies to the serialised form, not the input: lots of whitespace is fine.
    const std::string spaced = R"({"body":[)" + std::string(1000, ' ') + "1]}";
    ASSERT_FALSE(needBody(obj(spaced), 3, out));
    EXPECT_EQ(out, "[1]");
    // Any JSON value is a body, null included.
    for (const char* b : {"null", "0", "true", R"("")", "[]", "{}"}) {
        SCOPED_TRACE(b);
        ASSERT_FALSE(needBody(obj(std::string(R"({"body":)") + b + "}"), 100, out));
        EXPECT_EQ(out, b);
    }
    const auto f = needBody(obj("{}"), 100, out);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->code, Code::badRequest);
    EXPECT_EQ(f->message, "body is required");
}

// A number beyond a double's range (1e400) would be written back as "Infinity", which is not
// JSON, and sent to every member: such a body is refused.
TEST(WireFields, BodyBeyondDoubleRangeIsRefusedOrStaysJson) {
    for (const char* b : {"1e400", "-1e400", "[1,{\"x\":1e999}]"}) {
        SCOPED_TRACE(b);
        Request r;
        if (parseRequest(std::string(R"({"op":"send","id":1,"room":"r","cid":"c","body":)") + b + "}", {}, r))
            continue; // refused as a request: fine
        std::string out;
        if (needBody(r.fields, 16384, out)) continue; // refused as a body: fine
        std::error_code ec;
        (void)json::parse(out, ec);
        EXPECT_FALSE(ec) << "the stored body is not JSON: " << out;
        auto e = message(1, out);
        (void)json::parse(eventJson("r", e), ec);
        EXPECT_FALSE(ec) << "the event is not JSON: " << eventJson("r", e);
    }
    // Large but finite numbers are fine and keep their value.
    Request r;
    ASSERT_FALSE(parseRequest(R"({"op":"send","id":1,"body":123456789012345678901234567890})", {}, r));
    std::string out;
    ASSERT_FALSE(needBody(r.fields, 100, out));
    EXPECT_DOUBLE_EQ(json::parse(out).as_double(), 1.2345678901234568e29);
}

TEST(WireFields, OptSeq) {
    std::uint64_t v = 77;
    bool present = true;
    EXPECT_FALSE(optSeq(obj("{}"), "since", v, present));
    EXPECT_FALSE(present);
    EXPECT_EQ(v, 77u);
    present = true;
    EXPECT_FALSE(optSeq(obj(R"({"since":null})"), "since", v, present));
    EXPECT_FALSE(present);

    for (const auto& [text, want] : {std::pair<const char*, std::uint64_t>{"0", 0}, {"5", 5},
                                     {"9007199254740992", std::uint64_t{1} << 53}}) {
        SCOPED_TRACE(text);
        EXPECT_FALSE(optSeq(obj(std::string(R"({"since":)") + text + "}"), "since", v, present));
        EXPECT_TRUE(present);
        EXPECT_EQ(v, want);
    }
    for (const char* text : {"-1", "1.5", "1.0", "1e3", "9007199254740993", "18446744073709551615", "1e400",
                             R"("5")", "true", "[]", "{}"}) {
        SCOPED_TRACE(text);
        const auto f = optSeq(obj(std::string(R"({"since":)") + text + "}"), "since", v, present);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->code, Code::badRequest);
        EXPECT_FALSE(present);
    }
}

TEST(WireFields, OptBoolAndNeedString) {
    bool b = false;
    EXPECT_FALSE(optBool(obj(R"({"x":true})"), "x", b));
    EXPECT_TRUE(b);
    EXPECT_FALSE(optBool(obj(R"({"x":null})"), "x", b));
    EXPECT_TRUE(b);
    EXPECT_FALSE(optBool(obj(R"({})"), "x", b));
    EXPECT_TRUE(optBool(obj(R"({"x":1})"), "x", b));
    EXPECT_TRUE(optBool(obj(R"({"x":"true"})"), "x", b));

    std::string_view s;
    const auto withCid = obj(R"({"cid":"c1"})"); // `s` points into it
    EXPECT_FALSE(needString(withCid, "cid", s));
    EXPECT_EQ(s, "c1");
    auto f = needString(obj(R"({})"), "cid", s);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->message, "cid is required");
    f = needString(obj(R"({"cid":1})"), "cid", s);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->message, "cid must be a string");
}

// --- writing ------------------------------------------------------------------------------

TEST(WireEvents, MessageAsInTheProtocol) {
    const auto s = eventJson("lobby", message(42, R"("hi")"));
    EXPECT_EQ(s, R"({"op":"message","room":"lobby","seq":42,"ts":1764590400123,"user":"alice","name":"Alice",)"
                 R"("cid":"c-1f3a","body":"hi"})");
    EXPECT_EQ(json::parse(s), json::parse(R"({"op": "message", "room": "lobby", "seq": 42, "ts": 1764590400123,
        "user": "alice", "name": "Alice", "cid": "c-1f3a", "body": "hi"})"));
    // An object body is embedded as JSON, not as a string.
    const auto v = json::parse(eventJson("lobby", message(43, R"({"text":"hi","mentions":["bob"]})")));
    EXPECT_EQ(v.at("body"), json::parse(R"({"text":"hi","mentions":["bob"]})"));
}

TEST(WireEvents, EditAsInTheProtocol) {
    StoredEvent e;
    e.seq = 44;
    e.ts = 1764590402000;
    e.kind = EventKind::edit;
    e.target = 43;
    e.user = "alice";
    e.name = "alice";
    e.cid = "e-1";
    e.body = R"({"text":"hi!"})";
    const auto s = eventJson("lobby", e);
    EXPECT_EQ(json::parse(s), json::parse(R"({"op": "edit", "room": "lobby", "seq": 44, "ts": 1764590402000,
        "user": "alice", "name": "alice", "target": 43, "body": {"text": "hi!"}})"));
    EXPECT_EQ(s, R"({"op":"edit","room":"lobby","seq":44,"ts":1764590402000,"user":"alice","name":"alice",)"
                 R"("target":43,"body":{"text":"hi!"}})");
}

TEST(WireEvents, DeleteAsInTheProtocol) {
    StoredEvent e;
    e.seq = 45;
    e.ts = 1764590403000;
    e.kind = EventKind::remove;
    e.target = 43;
    e.user = "alice";
    e.name = "alice";
    e.body = "null";
    const auto s = eventJson("lobby", e);
    EXPECT_EQ(json::parse(s), json::parse(R"({"op": "delete", "room": "lobby", "seq": 45, "ts": 1764590403000,
        "user": "alice", "name": "alice", "target": 43})"));
    EXPECT_FALSE(json::parse(s).as_object().contains("body"));
    EXPECT_FALSE(json::parse(s).as_object().contains("cid"));
}

TEST(WireEvents, EditedAndDeletedMessagesInHistory) {
    auto edited = message(43, R"({"text":"hi!"})");
    edited.state = MessageState::edited;
    auto v = json::parse(eventJson("lobby", edited)).as_object();
    EXPECT_EQ(v.at("op"), "message");
    EXPECT_EQ(v.at("edited"), true);
    EXPECT_FALSE(v.contains("deleted"));
    EXPECT_EQ(v.at("body"), json::parse(R"({"text":"hi!"})"));
    EXPECT_EQ(v.at("cid"), "c-1f3a");

    auto deleted = message(43, "null");
    deleted.state = MessageState::deleted;
    v = json::parse(eventJson("lobby", deleted)).as_object();
    EXPECT_EQ(v.at("op"), "message");
    EXPECT_EQ(v.at("deleted"), true);
    EXPECT_FALSE(v.contains("edited"));
    ASSERT_TRUE(v.contains("body"));
    EXPECT_TRUE(v.at("body").is_null());

    v = json::parse(eventJson("lobby", message(1, "1"))).as_object();
    EXPECT_FALSE(v.contains("edited"));
    EXPECT_FALSE(v.contains("deleted"));
    EXPECT_FALSE(v.contains("target"));
}

TEST(WireEvents, AppendEventAppendsToWhatIsThere) {
    std::string out = "[";
    appendEvent(out, "r", message(1, "1"));
    out += ',';
    appendEvent(out, "r", message(2, "2"));
    out += ']';
    const auto v = json::parse(out).as_array();
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0].at("seq"), 1);
    EXPECT_EQ(v[1].at("seq"), 2);
    EXPECT_EQ(out, "[" + eventJson("r", message(1, "1")) + "," + eventJson("r", message(2, "2")) + "]");
}

TEST(WireEvents, UserTextInEventsIsEscaped) {
    auto e = message(1, R"("x")");
    e.user = "u\"\\";
    e.name = "名前\n\x01";
    e.cid = "c\"1";
    const auto v = json::parse(eventJson("lobby", e)).as_object();
    EXPECT_EQ(v.at("user"), "u\"\\");
    EXPECT_EQ(v.at("name"), "名前\n\x01");
    EXPECT_EQ(v.at("cid"), "c\"1");
}

TEST(WireReplies, ErrorReply) {
    EXPECT_EQ(errorReply("7", Code::notJoined, "join the room first"),
              R"({"op":"reply","id":7,"ok":false,"code":"not_joined","message":"join the room first"})");
    EXPECT_EQ(errorReply("7", Code::rateLimited, "too many messages", 180),
              R"({"op":"reply","id":7,"ok":false,"code":"rate_limited","message":"too many messages","retryAfterMs":180})");
    // rate_limited always says when; other codes only when given.
    auto v = json::parse(errorReply("null", Code::rateLimited, "slow down")).as_object();
    EXPECT_EQ(v.at("retryAfterMs"), 0);
    EXPECT_TRUE(v.at("id").is_null());
    v = json::parse(errorReply(R"("a")", Code::unavailable, "store busy")).as_object();
    EXPECT_FALSE(v.contains("retryAfterMs"));
    EXPECT_EQ(v.at("id"), "a");
    v = json::parse(errorReply(R"("a")", Code::unavailable, "store busy", 250)).as_object();
    EXPECT_EQ(v.at("retryAfterMs"), 250);
    EXPECT_EQ(v.at("code"), "unavailable");
    // The message is escaped.
    v = json::parse(errorReply("1", Code::badRequest, "unknown op 'a\"b'\n")).as_object();
    EXPECT_EQ(v.at("message"), "unknown op 'a\"b'\n");
}

TEST(WireReplies, OkReply) {
    EXPECT_EQ(okReply("7").num("seq", 42).inum("ts", 1764590400123).done(),
              R"({"op":"reply","id":7,"ok":true,"seq":42,"ts":1764590400123})");
    EXPECT_EQ(okReply(R"("x")").done(), R"({"op":"reply","id":"x","ok":true})");
}

TEST(WireReplies, CodeNamesAndStatuses) {
    const std::tuple<Code, const char*, int> codes[] = {
        {Code::badRequest, "bad_request", 400},     {Code::unsupportedVersion, "unsupported_version", 400},
        {Code::unauthorized, "unauthorized", 401},  {Code::forbidden, "forbidden", 403},
        {Code::notJoined, "not_joined", 403},       {Code::notFound, "not_found", 404},
        {Code::tooLarge, "too_large", 413},         {Code::limitExceeded, "limit_exceeded", 429},
        {Code::rateLimited, "rate_limited", 429},   {Code::unavailable, "unavailable", 503},
        {Code::internal, "internal", 500},
    };
    for (const auto& [code, name, status] : codes) {
        EXPECT_EQ(codeName(code), name);
        EXPECT_EQ(httpStatus(code), status) << name;
    }
}

TEST(WireJsonOut, EscapesStrings) {
    const std::string tricky = std::string("quote\" backslash\\ slash/ nl\n cr\r tab\t bs\b ff\f nul") + '\0' +
                               " x01\x01 x1f\x1f del\x7f é 中文 😀 \xe2\x80\xa8";
    JsonOut o;
    o.str("s", tricky).num("n", 18446744073709551615ull).inum("i", -9223372036854775807ll - 1).boolean("t", true)
        .boolean("f", false).raw("r", R"([1,{"a":null}])");
    const auto s = o.done();
    for (char c : s) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "a raw control character in " << s;
    const auto v = json::parse(s).as_object();
    EXPECT_EQ(v.at("s").as_string(), json::string_view(tricky.data(), tricky.size()));
    EXPECT_EQ(v.at("n").as_uint64(), 18446744073709551615ull);
    EXPECT_EQ(v.at("i").as_int64(), -9223372036854775807ll - 1);
    EXPECT_EQ(v.at("t"), true);
    EXPECT_EQ(v.at("f"), false);
    EXPECT_EQ(v.at("r"), json::parse(R"([1,{"a":null}])"));
    // Non-ASCII stays UTF-8 (not \u escapes), quotes and backslashes are escaped.
    EXPECT_NE(s.find("é 中文 😀"), std::string::npos);
    EXPECT_NE(s.find(R"(quote\" backslash\\ )"), std::string::npos);
}

TEST(WireJsonOut, QuotedAndEmptyObject) {
    EXPECT_EQ(quoted(""), R"("")");
    EXPECT_EQ(quoted("a\"b"), R"("a\"b")");
    EXPECT_EQ(quoted("a\\b"), R"("a\\b")");
    EXPECT_EQ(json::parse(quoted("\n\x01")), json::value("\n\x01"));
    EXPECT_EQ(JsonOut().done(), "{}");
    EXPECT_EQ(JsonOut().num("a", 0).done(), R"({"a":0})");
}

} // namespace
} // namespace tongdao::chat
