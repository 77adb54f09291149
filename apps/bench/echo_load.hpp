#pragma once
// The echo engine of `tongdao bench`: every connection sends messages that the server echoes,
// each echo compared byte for byte with what was sent (echo_load.cpp).

#include "common.hpp"

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tongdao::bench {

/** Connection i goes to targets[i % size]. `window`: kept full in a closed loop (rate 0), the
 *  most in flight with a rate. */
struct EchoOptions : LoadOptions {
    std::size_t size = 20;
    bool binary = true, raw = false, idle = false;
    bool deflate = false, noContextTakeover = false, jsonMessages = false;
    std::uint64_t seed = 1;
};

/** Runs the load to its end; the exit status (0 when any connection opened and no error). */
int runEcho(EchoOptions options);

} // namespace tongdao::bench
