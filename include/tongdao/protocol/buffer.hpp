#pragma once
/**
 * @file
 * Byte storage for the engine: a growable buffer that does not zero what it adds, a
 * per-thread pool so idle connections hold no buffers, and the output queue in which
 * control frames overtake data at frame boundaries.
 */

#include "tongdao/protocol/types.hpp"

#include <array>
#include <memory>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace tongdao::protocol {

/** A contiguous byte buffer; `extend` adds uninitialised room (no memset before a memcpy). */
class ByteBuffer {
public:
    ByteBuffer() noexcept = default;
    ByteBuffer(ByteBuffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), cap_(std::exchange(o.cap_, 0)) {}
    ByteBuffer& operator=(ByteBuffer&& o) noexcept {
        if (this != &o) {
            std::free(data_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
            cap_ = std::exchange(o.cap_, 0);
        }
        return *this;
    }
    ~ByteBuffer() { std::free(data_); }

    /** Grows by `n` bytes and returns where they start; their content is unspecified. */
    std::byte* extend(std::size_t n) {
        if (cap_ - size_ < n) grow(size_ + n);
        std::byte* p = data_ + size_;
        size_ += n;
        return p;
    }
    void append(Bytes b) {
        if (!b.empty()) std::memcpy(extend(b.size()), b.data(), b.size());
    }
    void resize(std::size_t n) {
        if (n > cap_) grow(n);
        size_ = n;
    }
    void clear() noexcept { size_ = 0; }
    /** Frees the storage. */
    void release() noexcept {
        std::free(std::exchange(data_, nullptr));
        size_ = cap_ = 0;
    }

    std::byte* data() noexcept { return data_; }
    const std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return cap_; }
    bool empty() const noexcept { return size_ == 0; }
    Bytes view() const noexcept { return {data_, size_}; }

private:
    void grow(std::size_t need) {
        std::size_t cap = cap_ < 64 ? 64 : cap_;
        while (cap < need) cap = cap + cap / 2 + 64;
        auto* p = static_cast<std::byte*>(std::realloc(data_, cap));
        if (!p) throw std::bad_alloc();
        data_ = p;
        cap_ = cap;
    }

    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t cap_ = 0;
};

/** The storage of a non-empty output queue (see OutputQueue). */
struct OutputBlock {
    ByteBuffer data;
    ByteBuffer ctrl;
    std::size_t dataSent = 0;
    std::size_t ctrlSent = 0;
    std::size_t dataBoundary = 0; ///< a frame boundary at or before dataSent (a cache)

    void clear() noexcept {
        data.clear();
        ctrl.clear();
        dataSent = ctrlSent = dataBoundary = 0;
    }
    std::size_t capacity() const noexcept { return data.capacity() + ctrl.capacity(); }
};

/**
 * Spare storage for one thread's connections: output blocks and message buffers. A
 * connection takes what it needs when it has something to queue or assemble and gives it
 * back when done, so idle connections hold none and a busy thread allocates nothing in
 * steady state. Not thread-safe: one pool per thread.
 */
class BufferPool {
public:
    /**
     * Keeps up to `maxKeptBytes` of spare storage in all (so that as many connections as
     * write at once, e.g. all of a room's members when a delayed write is due, find theirs
     * here), and no single item of more than `maxItemBytes`.
     */
    explicit BufferPool(std::size_t maxKeptBytes = 4 * 1024 * 1024, std::size_t maxItemBytes = 256 * 1024)
        : maxKeptBytes_(maxKeptBytes), maxItem_(maxItemBytes) {}

    ByteBuffer acquire() {
        if (buffers_.empty()) return {};
        ByteBuffer b = std::move(buffers_.back());
        buffers_.pop_back();
        kept_ -= b.capacity();
        return b;
    }
    /** Takes a buffer back; one too large, or beyond the pool's budget, is freed. */
    void release(ByteBuffer&& b) {
        const std::size_t cap = b.capacity();
        if (cap == 0) return;
        if (cap > maxItem_ || kept_ + cap > maxKeptBytes_) {
            b.release();
            return;
        }
        b.clear();
        buffers_.push_back(std::move(b));
        kept_ += cap;
    }

    std::unique_ptr<OutputBlock> acquireBlock() {
        if (blocks_.empty()) return std::make_unique<OutputBlock>();
        auto b = std::move(blocks_.back());
        blocks_.pop_back();
        kept_ -= footprint(*b);
        return b;
    }
    void releaseBlock(std::unique_ptr<OutputBlock> b) {
        if (!b) return;
        const std::size_t bytes = footprint(*b);
        if (b->capacity() > maxItem_ || kept_ + bytes > maxKeptBytes_) return;
        b->clear();
        blocks_.push_back(std::move(b));
        kept_ += bytes;
    }

    /** Spare items held. */
    std::size_t size() const noexcept { return buffers_.size() + blocks_.size(); }
    /** Bytes of storage they hold. */
    std::size_t keptBytes() const noexcept { return kept_; }

private:
    static std::size_t footprint(const OutputBlock& b) noexcept { return sizeof(OutputBlock) + b.capacity(); }

    std::vector<ByteBuffer> buffers_;
    std::vector<std::unique_ptr<OutputBlock>> blocks_;
    std::size_t maxKeptBytes_;
    std::size_t maxItem_;
    std::size_t kept_ = 0;
};

/** Up to three runs of bytes to write, in order (a gather list for `writev`). */
struct OutputView {
    std::array<Bytes, 3> parts{};
    std::size_t count = 0;

    std::size_t size() const noexcept {
        std::size_t n = 0;
        for (std::size_t i = 0; i < count; ++i) n += parts[i].size();
        return n;
    }
    bool empty() const noexcept { return count == 0; }
    auto begin() const noexcept { return parts.begin(); }
    auto end() const noexcept { return parts.begin() + static_cast<std::ptrdiff_t>(count); }
};

/**
 * Frames waiting to be written: a data queue and a control queue. Control frames are
 * written ahead of queued data, but only at a frame boundary (RFC 6455 §5.4: control
 * frames may be injected between fragments, never inside a frame). Whole frames are
 * appended; the boundaries in the data queue are found again from the frame headers.
 *
 * An empty queue is one null pointer: its storage comes from the pool (or the heap)
 * when something is queued and goes back once everything is written.
 */
class OutputQueue {
public:
    OutputQueue() noexcept = default;
    ~OutputQueue() = default;
    OutputQueue(const OutputQueue&) = delete;
    OutputQueue& operator=(const OutputQueue&) = delete;

    /** Room for one whole data frame of `n` bytes, to be filled by the caller. */
    std::byte* appendData(std::size_t n, BufferPool* pool);
    /** Room for one whole control frame of `n` bytes; it overtakes queued data. */
    std::byte* appendControl(std::size_t n, BufferPool* pool);

    OutputView pending() const noexcept;
    /** `n` bytes of `pending()` were written; storage goes back to `pool` once all is. */
    void consume(std::size_t n, BufferPool* pool) noexcept;

    std::size_t size() const noexcept {
        return b_ ? (b_->data.size() - b_->dataSent) + (b_->ctrl.size() - b_->ctrlSent) : 0;
    }
    bool empty() const noexcept { return size() == 0; }

private:
    OutputBlock& block(BufferPool* pool);
    std::size_t frameEndAfter(std::size_t offset) const noexcept;

    std::unique_ptr<OutputBlock> b_;
};

} // namespace tongdao::protocol
