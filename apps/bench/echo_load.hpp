#pragma once
// The echo engine of `tongdao bench`: every connection sends messages that the server echoes,
// each echo compared byte for byte with what was sent (echo_load.cpp).

#include "common.hpp"

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tongdao::bench {

struct EchoOptions {
    std::vector<Target> targets;    ///< connection i goes to targets[i % size]
    std::size_t connections = 100, size = 20;
    std::uint32_t window = 1;       ///< messages in flight per connection (closed loop: kept full; --rate: at most)
    double rate = 0;                ///< messages/s per connection on a schedule; 0: closed loop
    double duration = 10, warmup = 1, rampUp = 0;
    bool binary = true, raw = false, idle = false;
    bool verify = true;             ///< wss://: check the certificate chain and the host name
    std::string caFile;             ///< wss://: trust these CAs instead of the system's
    bool deflate = false, noContextTakeover = false, jsonMessages = false;
    std::uint64_t seed = 1;
    std::vector<in_addr> sourceIps;
    double holdMax = 3600;          ///< --idle never holds longer than this
    double connectTimeout = 60;     ///< opening every connection must finish within this (after the ramp)
    std::size_t connectBatch = 256; ///< connects + handshakes in progress at once
    Report report;
};

/** Runs the load to its end; the exit status (0 when any connection opened and no error). */
int runEcho(EchoOptions options);

} // namespace tongdao::bench
