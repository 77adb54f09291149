#include "tongdao/net/loop.hpp"
#include "tongdao/log.hpp"
#include "tongdao/net/socket.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include <sys/epoll.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <system_error>

namespace tongdao::net {
namespace {

thread_local Loop* currentLoop = nullptr;

// Rounds of polling the epoll set per wake-up before giving Asio its turn (timers,
// posted work): enough to stay in the cheap path under load, few enough that timers
// are never late by more than a few rounds.
constexpr int maxRoundsPerWake = 16;
constexpr int maxEventsPerRound = 1024;

// After this many new sockets, once 200 ms pass without one, free heap pages go back to
// the system: a burst of handshakes leaves the pages of their short-lived allocations
// resident (the peak of handshakes in flight, out of sbrk's reach): ~25 B per connection
// held after 10,000 opened 200 at a time. Never while sockets keep coming.
constexpr std::uint32_t trimAfterSockets = 1024;
constexpr auto trimQuiet = std::chrono::milliseconds(200);

void trimHeap() noexcept {
#if defined(__GLIBC__)
    ::malloc_trim(0);
#endif
}

} // namespace

struct Loop::Impl {
    explicit Impl(asio::io_context& io) : watcher(io), timer(io), trimTimer(io), delayTimer(io) {}
    int epfd = -1;
    asio::posix::stream_descriptor watcher; // Asio waits on the epoll set's descriptor
    asio::steady_timer timer;               // the one-second tick
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::array<epoll_event, maxEventsPerRound> events{};
    asio::steady_timer trimTimer;       // a burst of new sockets is over: trim the heap
    std::uint32_t tracked = 0;          ///< sockets made since the heap was last trimmed
    asio::steady_timer delayTimer;      ///< armed while writes wait for the write delay
};

Loop::Loop(std::size_t index)
    // Scheduler locking stays on (post() comes from other threads); reactor I/O locking
    // is off: only this loop's thread touches its descriptors.
    : owned_(std::make_unique<asio::io_context>(ASIO_CONCURRENCY_HINT_UNSAFE_IO)), io_(*owned_),
      impl_(std::make_unique<Impl>(io_)), index_(index), recv_(new std::byte[receiveBufferSize]) {
    impl_->epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (impl_->epfd < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
    impl_->watcher.assign(impl_->epfd);
}

Loop::Loop(asio::io_context& external, std::size_t index)
    : io_(external), impl_(std::make_unique<Impl>(io_)), index_(index), recv_(new std::byte[receiveBufferSize]) {
    impl_->epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (impl_->epfd < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
    impl_->watcher.assign(impl_->epfd);
    arm();
}

bool Loop::isInLoopThread() const noexcept { return io_.get_executor().running_in_this_thread(); }

void Loop::arm() {
    // The epoll wait and the tick stay pending in the context across stop() and run().
    if (armed_) return;
    armed_ = true;
    waitForEvents();
    asio::post(io_, [this] { tick(); });
}

Loop::~Loop() {
    // Sockets still open belong to the loop: close and delete them.
    const auto open = sockets_;
    for (Socket* s : open) delete s;
    doomed_.clear();
    asio::error_code ignored;
    impl_->timer.cancel();
    impl_->trimTimer.cancel();
    impl_->delayTimer.cancel();
    impl_->watcher.close(ignored); // closes the epoll descriptor
}

Loop* Loop::current() noexcept { return currentLoop; }

void Loop::run() {
    Loop* outer = currentLoop;
    currentLoop = this;
    stopped_ = false;
    io_.restart();
    arm();
    for (;;) {
        try {
            io_.run();
            break;
        } catch (const std::exception& e) {
            // A posted function threw: report it and keep the loop alive.
            log(LogLevel::error, "loop %zu: unhandled exception: %s", index_, e.what());
            if (stopped_) break;
        } catch (...) {
            log(LogLevel::error, "loop %zu: unhandled exception", index_);
            if (stopped_) break;
        }
    }
    currentLoop = outer;
}

void Loop::stop() {
    stopped_ = true;
    io_.stop();
}

void Loop::waitForEvents() {
    impl_->watcher.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
        if (!ec) onReady();
    });
}

void Loop::onReady() {
    {
        Turn turn(*this);
        for (int round = 0; round < maxRoundsPerWake; ++round) {
            const int n = ::epoll_wait(impl_->epfd, impl_->events.data(), maxEventsPerRound, 0);
            if (n <= 0) break;
            for (int i = 0; i < n; ++i)
                static_cast<Pollable*>(impl_->events[static_cast<std::size_t>(i)].data.ptr)
                    ->onEvents(impl_->events[static_cast<std::size_t>(i)].events);
            // Sockets closed in this round left the epoll set, so no later round names them.
            endTurn();
        }
    }
    waitForEvents();
}

void Loop::tick() {
    using namespace std::chrono;
    now_ = static_cast<std::uint32_t>(duration_cast<seconds>(steady_clock::now() - impl_->start).count());
    {
        Turn turn(*this);
        // A socket may close, or others open, during onTimeout: walk by index.
        for (std::size_t i = 0; i < sockets_.size(); ++i) {
            Socket* s = sockets_[i];
            if (s->deadline_ != 0 && s->deadline_ <= now_) {
                s->deadline_ = 0;
                s->onTimeout();
                if (i < sockets_.size() && sockets_[i] != s) --i; // s was removed: revisit slot i
            }
        }
        for (auto& hook : tickHooks_) hook();
    }

    impl_->timer.expires_at(impl_->start + seconds(now_ + 1));
    impl_->timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) tick();
    });
}

protocol::MutableBytes Loop::plainBuffer() {
    if (!plain_) plain_.reset(new std::byte[receiveBufferSize]);
    return {plain_.get(), receiveBufferSize};
}

protocol::MutableBytes Loop::tlsStaging() {
    constexpr std::size_t record = 16 * 1024; // TLS's largest record of plaintext
    if (!staging_) staging_.reset(new std::byte[record]);
    return {staging_.get(), record};
}

void Loop::markDirty(Socket& s) {
    if (s.dirty_) return;
    s.dirty_ = true;
    dirty_.push_back(&s);
    // Outside a turn (called from a handler of the application's own) nothing would flush
    // it: do it now. Closed sockets are left for the next turn to delete, as the caller may
    // still hold one.
    if (!inTurn()) flushDirty();
}

void Loop::markDirtySoon(Socket& s) {
    if (writeDelay_.count() == 0 || !inTurn()) return markDirty(s);
    if (s.dirty_ || s.delayed_) return; // written at the end of this turn, or when the timer fires
    s.delayed_ = true;
    delayed_.push_back(&s);
    if (delayed_.size() > 1) return;
    // One timer for the loop, from the first write that waits: each write waits at most
    // the delay, and everything marked until it fires leaves with it.
    impl_->delayTimer.expires_after(writeDelay_);
    impl_->delayTimer.async_wait([this](const asio::error_code& ec) {
        if (!ec) flushDelayed();
    });
}

void Loop::flushDelayed() {
    Turn turn(*this);
    // Marked dirty now, they are written at the end of this turn. What is marked soon
    // meanwhile starts a new wait.
    std::vector<Socket*> due;
    due.swap(delayed_);
    for (Socket* s : due) {
        s->delayed_ = false;
        markDirty(*s);
    }
    due.clear();
    if (delayed_.empty()) delayed_.swap(due); // keep the capacity
}

void Loop::undelay(Socket& s) noexcept {
    // A socket that closes while its write waits; the latest marked are at the back.
    s.delayed_ = false;
    for (std::size_t i = delayed_.size(); i-- > 0;) {
        if (delayed_[i] == &s) {
            delayed_[i] = delayed_.back();
            delayed_.pop_back();
            return;
        }
    }
}

void Loop::endTurn() noexcept {
    flushDirty();
    doomed_.clear();
}

void Loop::flushDirty() noexcept {
    // A flush may mark more sockets dirty; walk by index.
    for (std::size_t i = 0; i < dirty_.size(); ++i) {
        Socket* s = dirty_[i];
        if (!s->dirty_) continue; // flushed already, right after its own read
        s->dirty_ = false;
        if (s->isOpen()) s->onFlush();
    }
    dirty_.clear();
}

void Loop::add(Pollable& p, int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &p;
    if (::epoll_ctl(impl_->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        throw std::system_error(errno, std::system_category(), "epoll_ctl add");
}

void Loop::modify(Pollable& p, int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &p;
    ::epoll_ctl(impl_->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void Loop::remove(int fd) noexcept { ::epoll_ctl(impl_->epfd, EPOLL_CTL_DEL, fd, nullptr); }

void Loop::track(Socket& s) {
    s.trackIndex_ = static_cast<std::uint32_t>(sockets_.size());
    sockets_.push_back(&s);
    if (++impl_->tracked == trimAfterSockets) trimWhenQuiet();
}

void Loop::untrack(Socket& s) noexcept {
    if (s.delayed_) undelay(s);
    const std::uint32_t i = s.trackIndex_;
    if (i >= sockets_.size() || sockets_[i] != &s) return;
    sockets_[i] = sockets_.back();
    sockets_[i]->trackIndex_ = i;
    sockets_.pop_back();
}

void Loop::trimWhenQuiet() {
    impl_->trimTimer.expires_after(trimQuiet);
    impl_->trimTimer.async_wait([this, seen = impl_->tracked](const asio::error_code& ec) {
        if (ec) return;
        if (impl_->tracked != seen) return trimWhenQuiet(); // still coming: wait again
        trimHeap();
        impl_->tracked = 0;
    });
}

void Loop::destroyLater(std::unique_ptr<Pollable> p) { doomed_.push_back(std::move(p)); }

} // namespace tongdao::net
