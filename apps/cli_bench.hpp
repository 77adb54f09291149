#pragma once
// `tongdao bench`: the load generator (cli_bench.cpp; its engines are in apps/bench/).

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tongdao::app {

struct BenchArgs {
    std::vector<std::string> urls;
    std::size_t connections = 100, size = 0, members = 0, chatRooms = 0, storm = 0, fillersPerRoom = 0;
    std::size_t connectBatch = 256;
    double rate = 0, duration = 10, warmup = 1, rampUp = 0, holdMax = 3600, connectTimeout = 60;
    double drain = 0, stormTimeout = 300;
    std::uint32_t pipeline = 1;
    std::uint64_t seed = 1;
    bool json = false, noProgress = false, phases = false, idle = false, text = false, deflate = false;
    bool noContextTakeover = false, jsonMessages = false, raw = false, insecure = false, goOnStdin = false;
    std::string ca, sourceIps, proto = "tongdao", namePrefix = "u", roomPrefix;
    std::vector<std::string> headers;
    std::string tokenSecretFile;
};

/** Adds the `bench` subcommand; `selected` runs when the command line chose it. */
void addBench(CLI::App& app, BenchArgs& args, const std::function<void()>& selected);
/** Runs the load; the exit status (0 ran, 1 no connection opened, 2 the options cannot run). */
int runBench(const BenchArgs& args);

} // namespace tongdao::app
