// bench_json: how the chat server's JSON library was chosen. Each benchmark does what the
// server does with one request (parse it, find op, id, room, cid, body, and the body as
// compact JSON text to store), with Boost.JSON (what src/chat uses) and with simdjson's
// On Demand API beside it; and writes one message event. simdjson's On Demand kernel is
// chosen at compile time: this target is built with -march=native so that it gets its best,
// which a packaged server binary could not assume.
//
//   build/release/bin/bench_json --benchmark_min_time=1

#include "chat/wire.hpp"

#include <benchmark/benchmark.h>
#include <boost/json.hpp>
#if __has_include(<simdjson.h>)
#include <simdjson.h>
#define HAVE_SIMDJSON 1
#endif

#include <string>

namespace {

const std::string smallSend =
    R"({"op":"send","id":1234,"room":"lobby","cid":"c-7d1e9a2f","body":{"text":"hello, how are you today?"}})";
const std::string largeSend = [] {
    std::string body = R"({"text":")" + std::string(900, 'x') + R"(","mentions":["bob","carol"],"reply":{"seq":41,"quote":"ok"}})";
    return R"({"op":"send","id":"r-99","room":"team:alpha","cid":"c-00000001","excludeSelf":false,"body":)" + body + "}";
}();

void boostParse(benchmark::State& state, const std::string& text) {
    tongdao::chat::ParseLimits limits;
    for (auto _ : state) {
        tongdao::chat::Request req;
        auto f = tongdao::chat::parseRequest(text, limits, req);
        std::string_view room, cid;
        std::string body;
        (void)tongdao::chat::needRoom(req.fields, room);
        (void)tongdao::chat::needString(req.fields, "cid", cid);
        (void)tongdao::chat::needBody(req.fields, 16384, body);
        benchmark::DoNotOptimize(f);
        benchmark::DoNotOptimize(body);
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(text.size()));
}
void BM_boost_small(benchmark::State& s) { boostParse(s, smallSend); }
void BM_boost_large(benchmark::State& s) { boostParse(s, largeSend); }
BENCHMARK(BM_boost_small);
BENCHMARK(BM_boost_large);

#ifdef HAVE_SIMDJSON
void simdParse(benchmark::State& state, const std::string& text) {
    simdjson::ondemand::parser parser;
    simdjson::padded_string padded(text);
    for (auto _ : state) {
        auto doc = parser.iterate(padded);
        std::string_view op, room, cid, body;
        std::string_view id;
        // On Demand reads fields in document order; the body is its raw text (validated
        // only as far as it was iterated: a full check needs another pass).
        for (auto field : doc.get_object()) {
            std::string_view key = field.unescaped_key();
            if (key == "op") op = field.value().get_string();
            else if (key == "id") id = field.value().raw_json_token();
            else if (key == "room") room = field.value().get_string();
            else if (key == "cid") cid = field.value().get_string();
            else if (key == "body") {
                simdjson::ondemand::object o = field.value().get_object();
                body = o.raw_json();
            }
        }
        benchmark::DoNotOptimize(op);
        benchmark::DoNotOptimize(id);
        benchmark::DoNotOptimize(body);
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(text.size()));
}
void BM_simdjson_small(benchmark::State& s) { simdParse(s, smallSend); }
void BM_simdjson_large(benchmark::State& s) { simdParse(s, largeSend); }
BENCHMARK(BM_simdjson_small);
BENCHMARK(BM_simdjson_large);
#endif

void BM_event_write(benchmark::State& state) {
    tongdao::chat::StoredEvent e{42, 1764590400123, tongdao::chat::EventKind::message, tongdao::chat::MessageState::normal,
                                 0, "alice", "Alice", "c-7d1e9a2f", R"({"text":"hello, how are you today?"})"};
    for (auto _ : state) {
        auto s = tongdao::chat::eventJson("lobby", e);
        benchmark::DoNotOptimize(s);
    }
}
BENCHMARK(BM_event_write);

} // namespace

BENCHMARK_MAIN();
