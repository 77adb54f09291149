#pragma once
/**
 * @file
 * An event loop: one Asio `io_context` on one thread, with its own epoll set for sockets.
 *
 * Sockets are not Asio sockets. Each loop keeps an epoll set of its own (level-triggered,
 * one registration per socket for its whole life) and Asio waits on that set's descriptor.
 * When it is ready the loop reads every ready socket into one receive buffer shared by
 * the whole loop, lets the owners react, then writes what they queued, one `writev` per
 * socket. Under load it polls the set again before returning to Asio, so a busy loop costs
 * what a hand-written epoll loop costs; Asio still runs timers, posted work and DNS.
 *
 * Why not Asio's own socket operations: a wait on an Asio socket re-arms epoll with a
 * system call every time, and Asio's reads need a buffer per connection. Both are what
 * this design avoids (uSockets' "shared receive buffer", DESIGN.md "Hot path").
 *
 * @par Thread Safety
 * A loop and its sockets are used from the loop's thread only, except `post()`, `stop()`
 * and `isInLoopThread()`, which are safe from any thread.
 */

#include "tongdao/protocol/buffer.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace tongdao::net {

class Pollable;
class Socket;

class Loop {
public:
    /** Bytes of the shared receive buffer. */
    static constexpr std::size_t receiveBufferSize = 512 * 1024;

    explicit Loop(std::size_t index = 0);
    /**
     * A loop on an `io_context` the application runs (and keeps alive). Its handlers run
     * on whichever thread runs the context; `run()` must not be called.
     */
    explicit Loop(asio::io_context& external, std::size_t index = 0);
    ~Loop();
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    /** Runs on the calling thread until `stop()`; may be called again after. */
    void run();
    /** Makes `run()` return soon. Thread-safe. */
    void stop();

    asio::io_context& context() noexcept { return io_; }
    std::size_t index() const noexcept { return index_; }

    /** The loop running on this thread, or null. */
    static Loop* current() noexcept;
    bool isInLoopThread() const noexcept;

    /**
     * Runs `f` on the loop's thread, after what is already queued. Thread-safe. What
     * sockets queue while `f` runs is written when it returns.
     */
    template <class F>
    void post(F&& f) {
        asio::post(io_, [this, fn = std::forward<F>(f)]() mutable {
            Turn turn(*this);
            fn();
        });
    }

    /** Seconds since the loop started, advanced by the loop's one-second tick. */
    std::uint32_t now() const noexcept { return now_; }

    /** The receive buffer every socket of this loop reads into; valid within a callback. */
    protocol::MutableBytes receiveBuffer() noexcept { return {recv_.get(), receiveBufferSize}; }
    /** A second buffer of the same size, for decrypted bytes (allocated on first use). */
    protocol::MutableBytes plainBuffer();
    /** Where small writes are gathered into one TLS record (16 KiB, allocated on first use). */
    protocol::MutableBytes tlsStaging();
    /** Spare output buffers, so idle connections hold none. */
    protocol::BufferPool& bufferPool() noexcept { return pool_; }

    /**
     * What the loop belongs to (the server's per-loop state), so a socket finds it from its
     * loop instead of keeping a pointer of its own: 8 bytes less per connection.
     */
    void setOwner(void* owner) noexcept { owner_ = owner; }
    void* owner() const noexcept { return owner_; }

    /**
     * Marks a socket as having output to write at the end of this turn, so everything
     * queued for it in one turn leaves in one `writev` (corking).
     */
    void markDirty(Socket& s);
    /**
     * Like `markDirty`, but the write may wait up to the write delay for more output to the
     * same socket, so that it leaves in fewer, larger writes (at the end of this turn when
     * the delay is 0). What `markDirty` marks in the meantime takes it along at once.
     */
    void markDirtySoon(Socket& s);
    /** How long `markDirtySoon` lets output wait (0, the default: not at all). */
    void setWriteDelay(std::chrono::microseconds d) noexcept { writeDelay_ = d; }

    // --- used by Pollable / Socket --------------------------------------------------
    void add(Pollable& p, int fd, std::uint32_t events);
    void modify(Pollable& p, int fd, std::uint32_t events);
    void remove(int fd) noexcept;
    /** Adds a socket to those the tick visits. */
    void track(Socket& s);
    void untrack(Socket& s) noexcept;
    /** Deletes `p` after the current turn (events for it may still be pending). */
    void destroyLater(std::unique_ptr<Pollable> p);
    /** Runs at each one-second tick, after the sockets' own timeouts. */
    void onTick(std::function<void()> f) { tickHooks_.push_back(std::move(f)); }
    /** True while the loop dispatches events or posted work: sends are flushed at its end. */
    bool inTurn() const noexcept { return turnDepth_ > 0; }

    /** Marks the span of one turn: dirty sockets are flushed and doomed ones deleted at its end. */
    class Turn {
    public:
        explicit Turn(Loop& l) noexcept : loop_(l) { ++loop_.turnDepth_; }
        ~Turn() {
            if (--loop_.turnDepth_ == 0) loop_.endTurn();
        }
        Turn(const Turn&) = delete;
        Turn& operator=(const Turn&) = delete;

    private:
        Loop& loop_;
    };

private:
    struct Impl;
    void arm();
    void waitForEvents();
    void onReady();
    void endTurn() noexcept;
    void flushDirty() noexcept;
    void flushDelayed();
    void undelay(Socket& s) noexcept;
    void tick();
    void trimWhenQuiet();

    std::unique_ptr<asio::io_context> owned_;
    asio::io_context& io_;
    std::unique_ptr<Impl> impl_;
    std::size_t index_;
    std::unique_ptr<std::byte[]> recv_;
    std::unique_ptr<std::byte[]> plain_;
    std::unique_ptr<std::byte[]> staging_;
    protocol::BufferPool pool_;
    std::vector<Socket*> dirty_;
    std::vector<Socket*> delayed_; ///< marked by markDirtySoon, written when the delay timer fires
    std::vector<Socket*> sockets_;
    std::vector<std::unique_ptr<Pollable>> doomed_;
    std::vector<std::function<void()>> tickHooks_;
    void* owner_ = nullptr;
    std::chrono::microseconds writeDelay_{0};
    std::uint32_t now_ = 0;
    int turnDepth_ = 0;
    bool armed_ = false;
    std::atomic<bool> stopped_{false};
};

} // namespace tongdao::net
