#pragma once
/**
 * @file
 * UTF-8 validation (RFC 3629), whole or incremental.
 *
 * RFC 6455 §8.1: a text message must be valid UTF-8, and an endpoint receiving one that
 * is not must fail the connection (1007). Validation here is incremental across
 * fragments and reads, and it fails at the first byte after which no continuation
 * could make the text valid (an overlong form, a surrogate, a code point beyond
 * U+10FFFF, a stray continuation byte), not only at the end of the message.
 */

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tongdao::protocol {

/** Incremental UTF-8 validator: a small DFA with an ASCII fast path. */
class Utf8Validator {
public:
    /**
     * Validates the next `n` bytes. Returns false as soon as the text can no longer be
     * valid; once false, every later call returns false until `reset()`.
     */
    bool feed(const std::byte* p, std::size_t n) noexcept;
    bool feed(std::span<const std::byte> b) noexcept { return feed(b.data(), b.size()); }

    /** True if everything fed so far is valid and ends on a character boundary. */
    bool complete() const noexcept { return state_ == acceptState; }

    /** True if the bytes fed so far can still be the start of valid text. */
    bool ok() const noexcept { return state_ != errorState; }

    void reset() noexcept { state_ = acceptState; }

    // The DFA's states are bit offsets (see utf8.cpp); these two are public for tests.
    static constexpr std::uint8_t errorState = 0;
    static constexpr std::uint8_t acceptState = 6;

private:
    std::uint8_t state_ = acceptState;
};

/** True if `b` is complete, valid UTF-8. */
bool isValidUtf8(std::span<const std::byte> b) noexcept;
inline bool isValidUtf8(std::string_view s) noexcept {
    return isValidUtf8({reinterpret_cast<const std::byte*>(s.data()), s.size()});
}

} // namespace tongdao::protocol
