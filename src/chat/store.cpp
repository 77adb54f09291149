#include "store.hpp"

#include <openssl/rand.h>

#include <stdexcept>

namespace tongdao::chat {

std::string toHex(const unsigned char* bytes, std::size_t n) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    s.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        s += hex[bytes[i] >> 4];
        s += hex[bytes[i] & 15];
    }
    return s;
}

std::string newEpoch() {
    unsigned char b[8];
    if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
    return toHex(b, sizeof b);
}

void StoreCounters::committed(std::uint64_t events, double seconds) noexcept {
    commits_.fetch_add(1, std::memory_order_relaxed);
    events_.fetch_add(events, std::memory_order_relaxed);
    nanos_.fetch_add(static_cast<std::uint64_t>(seconds * 1e9), std::memory_order_relaxed);
    std::size_t b = 0;
    while (b < std::size(bounds_) && seconds > bounds_[b]) ++b;
    buckets_[b].fetch_add(1, std::memory_order_relaxed);
}

StoreStats StoreCounters::stats() const {
    StoreStats s;
    s.eventsStored = events_.load(std::memory_order_relaxed);
    s.commits = commits_.load(std::memory_order_relaxed);
    s.failures = failures_.load(std::memory_order_relaxed);
    s.commitSum = static_cast<double>(nanos_.load(std::memory_order_relaxed)) / 1e9;
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < std::size(bounds_); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        s.commitBounds.push_back(bounds_[i]);
        s.commitCounts.push_back(cumulative);
    }
    return s;
}

} // namespace tongdao::chat
