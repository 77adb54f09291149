#pragma once
/**
 * @file
 * Where client callbacks run: one event loop, on a thread of your choice.
 *
 * - `run()`: on the calling thread, until no task is connecting, open or closing and
 *   every callback has run — the shape of a small program or a test.
 * - `start()` / `stop()`: on a thread of the runtime's own.
 * - `Runtime(io_context&)`: on an `asio::io_context` the application already runs.
 *
 * @par Thread Safety
 * `run`, `start`, `stop` and the destructor from one thread; everything else from any.
 */

#include <cstddef>
#include <memory>

namespace asio {
class io_context;
}

namespace tongdao {

namespace net {
class Loop;
}

struct RuntimeOptions {
    /** Tasks connecting or open at once; one more fails ("fail reach max websocket connect count"). */
    int maxConnections = 5;
};

class Runtime {
public:
    explicit Runtime(RuntimeOptions options = {});
    /** Runs on `context`, which the application runs; the caller keeps it alive. */
    explicit Runtime(asio::io_context& context, RuntimeOptions options = {});
    /** Aborts what is still open (without callbacks) and stops the loop. */
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    /** Runs callbacks on this thread until no task is left and nothing is pending. */
    void run();
    /** Runs the loop on a thread of its own until `stop()`. */
    void start();
    /** Aborts open tasks (reported with onClose 1006), stops and joins the loop's thread. */
    void stop();

    /** Tasks connecting, open or closing. */
    std::size_t activeTasks() const noexcept;
    const RuntimeOptions& options() const noexcept;
    net::Loop& loop() noexcept;

    struct Impl;
    Impl& impl() noexcept { return *impl_; }

private:
    std::unique_ptr<Impl> impl_;
};

/**
 * The runtime `tongdao::connectSocket(options)` and the `wx` functions use. It does not
 * run by itself: call `defaultRuntime().run()` (or `start()`).
 */
Runtime& defaultRuntime();

} // namespace tongdao
