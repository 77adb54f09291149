#pragma once
// Test support for HTTP heads and opening handshakes: feeding anything with a
// receive(Bytes, consumed) shape whole, one byte at a time and split in two at every
// point, and comparing what each way produced; and small extensions whose factories
// record what they were offered. Bytes only, no sockets.

#include "tongdao/protocol/handshake.hpp"
#include "tongdao/protocol/http.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace tongdao::protocol::http {
/** Lets GoogleTest print a parse status by name. */
inline void PrintTo(ParseStatus s, std::ostream* os) {
    *os << (s == ParseStatus::needMore ? "needMore" : s == ParseStatus::done ? "done" : "failed");
}
} // namespace tongdao::protocol::http

namespace tongdao::test {

using namespace tongdao::protocol;
using http::ParseStatus;

/** A HeadParser fed as a request, in the receive() shape of the handshakes. */
struct RequestFeeder {
    http::HeadParser parser;
    explicit RequestFeeder(http::Limits limits = {}) : parser(limits) {}
    ParseStatus receive(Bytes in, std::size_t& consumed) { return parser.feedRequest(in, consumed); }
    std::error_code error() const noexcept { return parser.error(); }
};

/** A HeadParser fed as a response, in the receive() shape of the handshakes. */
struct ResponseFeeder {
    http::HeadParser parser;
    explicit ResponseFeeder(http::Limits limits = {}) : parser(limits) {}
    ParseStatus receive(Bytes in, std::size_t& consumed) { return parser.feedResponse(in, consumed); }
    std::error_code error() const noexcept { return parser.error(); }
};

inline const char* statusName(ParseStatus s) {
    switch (s) {
    case ParseStatus::needMore: return "needMore";
    case ParseStatus::done: return "done";
    case ParseStatus::failed: return "failed";
    }
    return "?";
}

/** Header fields, one "name: value" line each, in arrival order. */
inline std::string render(const http::HeaderList& headers) {
    std::string out;
    for (const auto& f : headers) {
        out += f.name;
        out += ": ";
        out += f.value;
        out += '\n';
    }
    return out;
}
/** A request head as a plain string, for comparing parses. */
inline std::string render(const http::Request& r) {
    return std::string(r.method) + ' ' + std::string(r.target) + " HTTP/" + std::to_string(r.versionMajor) + '.' +
           std::to_string(r.versionMinor) + '\n' + render(r.headers);
}
/** A response head as a plain string, for comparing parses. */
inline std::string render(const http::Response& r) {
    return "HTTP/" + std::to_string(r.versionMajor) + '.' + std::to_string(r.versionMinor) + ' ' +
           std::to_string(r.status) + " [" + std::string(r.reason) + "]\n" + render(r.headers);
}

/** What feeding one input produced. `summary` is whatever the test wants compared. */
struct FeedResult {
    ParseStatus status = ParseStatus::needMore;
    std::error_code error;
    std::size_t consumed = 0; ///< bytes consumed over all calls
    std::size_t calls = 0;    ///< receive() calls made
    std::string summary;
};
inline std::ostream& operator<<(std::ostream& os, const FeedResult& r) {
    return os << statusName(r.status) << " error=" << r.error.message() << " consumed=" << r.consumed << "\n"
              << r.summary;
}

/**
 * Feeds `input` to a fresh object from `make`, in pieces of the given sizes (the rest in
 * one piece), until it reports done or failed. Each piece is a fresh copy, overwritten
 * after the call: a parse must not keep views into the caller's buffers.
 */
template <class T>
FeedResult feedPieces(const std::function<T()>& make, std::string_view input, const std::vector<std::size_t>& sizes,
                      const std::function<std::string(T&)>& summarize = nullptr) {
    T subject = make();
    FeedResult r;
    std::size_t pos = 0;
    auto feed = [&](std::size_t n) {
        std::vector<std::byte> piece(n);
        std::transform(input.begin() + static_cast<std::ptrdiff_t>(pos),
                       input.begin() + static_cast<std::ptrdiff_t>(pos + n), piece.begin(),
                       [](char c) { return static_cast<std::byte>(c); });
        std::size_t consumed = 0;
        r.status = subject.receive(piece, consumed);
        ++r.calls;
        EXPECT_LE(consumed, n) << "consumed more than it was given";
        r.consumed += consumed;
        if (r.status == ParseStatus::needMore) {
            EXPECT_EQ(consumed, n) << "needMore must consume everything";
        }
        std::fill(piece.begin(), piece.end(), std::byte{0xEE});
        pos += n;
    };
    for (auto n : sizes) {
        if (r.status != ParseStatus::needMore || pos + n > input.size()) break;
        feed(n);
    }
    if (r.status == ParseStatus::needMore && (pos < input.size() || r.calls == 0)) feed(input.size() - pos);
    r.error = subject.error();
    if (summarize) r.summary = summarize(subject);
    return r;
}

/**
 * Feeds `input` whole, one byte at a time and split in two at every point; checks that
 * every way ends in the same status, error and summary, and (unless it failed: a failure
 * may be noticed at different bytes) consumed as many bytes. Returns the whole feed.
 */
template <class T>
FeedResult feedAllWays(const std::function<T()>& make, std::string_view input,
                       const std::function<std::string(T&)>& summarize = nullptr) {
    const FeedResult whole = feedPieces<T>(make, input, {}, summarize);
    auto same = [&](const FeedResult& other, const std::string& how) {
        EXPECT_EQ(whole.status, other.status) << how;
        EXPECT_EQ(whole.error, other.error) << how;
        EXPECT_EQ(whole.summary, other.summary) << how;
        if (whole.status != ParseStatus::failed) {
            EXPECT_EQ(whole.consumed, other.consumed) << how;
        }
        return whole.status == other.status && whole.error == other.error && whole.summary == other.summary &&
               (whole.status == ParseStatus::failed || whole.consumed == other.consumed);
    };
    same(feedPieces<T>(make, input, std::vector<std::size_t>(input.size(), 1), summarize), "one byte at a time");
    for (std::size_t split = 1; split < input.size(); ++split)
        if (!same(feedPieces<T>(make, input, {split}, summarize), "split at " + std::to_string(split)))
            break; // one report is enough
    return whole;
}

/** A request head fed to a HeadParser every way. */
inline FeedResult parseRequest(std::string_view input, http::Limits limits = {}) {
    return feedAllWays<RequestFeeder>([limits] { return RequestFeeder(limits); }, input,
                                      [](RequestFeeder& f) { return render(f.parser.request()); });
}
/** A response head fed to a HeadParser every way. */
inline FeedResult parseResponse(std::string_view input, http::Limits limits = {}) {
    return feedAllWays<ResponseFeeder>([limits] { return ResponseFeeder(limits); }, input,
                                       [](ResponseFeeder& f) { return render(f.parser.response()); });
}

/**
 * A head parsed whole in one call, for inspecting its fields; fails the test if it does
 * not parse. On the heap: the parse's views point into the parser, which must not move.
 */
inline std::unique_ptr<http::HeadParser> parsedResponse(std::string_view text) {
    auto p = std::make_unique<http::HeadParser>();
    std::size_t consumed = 0;
    EXPECT_EQ(p->feedResponse(asBytes(text), consumed), ParseStatus::done) << text;
    EXPECT_EQ(consumed, text.size()) << text;
    return p;
}
inline std::unique_ptr<http::HeadParser> parsedRequest(std::string_view text) {
    auto p = std::make_unique<http::HeadParser>();
    std::size_t consumed = 0;
    EXPECT_EQ(p->feedRequest(asBytes(text), consumed), ParseStatus::done) << text;
    EXPECT_EQ(consumed, text.size()) << text;
    return p;
}

// --- test extensions ----------------------------------------------------------------

/** An extension that only remembers how it was negotiated. */
struct TestExtension : Extension {
    std::string name_;
    std::string agreed; ///< the negotiated element, formatted
    TestExtension(std::string n, std::string a) : name_(std::move(n)), agreed(std::move(a)) {}
    std::string_view name() const noexcept override { return name_; }
    std::error_code decode(Bytes, bool, ByteBuffer&, std::size_t) override { return {}; }
    std::optional<Bytes> encode(Bytes, MessageKind) override { return std::nullopt; }
};

/** Offers `offer_`; accepts any answer without a `bad` parameter. */
struct TestClientFactory : ClientExtensionFactory {
    std::string name_ = "x-test";
    std::string offer_ = "x-test; level=1";
    std::string_view name() const noexcept override { return name_; }
    std::string offer() const override { return offer_; }
    std::unique_ptr<Extension> accept(const ExtensionItem& response, std::error_code& e) const override {
        if (response.find("bad")) {
            e = tongdao::error::badExtensionResponse;
            return nullptr;
        }
        return std::make_unique<TestExtension>(name_, formatExtension(response));
    }
};

/** A client factory of this name that offers `offer`. */
inline std::shared_ptr<const ClientExtensionFactory> clientFactory(std::string name, std::string offer) {
    auto f = std::make_shared<TestClientFactory>();
    f->name_ = std::move(name);
    f->offer_ = std::move(offer);
    return f;
}

/** Sees the offers of its name; agrees to the first unless it declines everything. */
struct TestServerFactory : ServerExtensionFactory {
    std::string name_;
    bool agrees = true;
    std::string tag; ///< appended to the response so a test can tell factories apart
    mutable std::vector<std::string> seen;
    std::string_view name() const noexcept override { return name_; }
    std::optional<Agreement> negotiate(const std::vector<const ExtensionItem*>& offers) const override {
        for (auto* o : offers) seen.push_back(formatExtension(*o));
        if (!agrees) return std::nullopt;
        auto response = formatExtension(*offers.front()) + tag;
        return Agreement{response, std::make_unique<TestExtension>(name_, response)};
    }
};

/** A server factory of this name; `tag` is appended to the element it agrees to. */
inline std::shared_ptr<TestServerFactory> serverFactory(std::string name, bool agrees, std::string tag = {}) {
    auto f = std::make_shared<TestServerFactory>();
    f->name_ = std::move(name);
    f->agrees = agrees;
    f->tag = std::move(tag);
    return f;
}

} // namespace tongdao::test
