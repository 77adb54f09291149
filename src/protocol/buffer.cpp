#include "tongdao/protocol/buffer.hpp"
#include "tongdao/error.hpp"
#include "tongdao/protocol/frame.hpp"

#include <algorithm>

namespace tongdao::protocol {

namespace {
// Without a pool, a connection keeps up to this much capacity for its next burst.
constexpr std::size_t keptWithoutPool = 64 * 1024;
} // namespace

OutputBlock& OutputQueue::block(BufferPool* pool) {
    if (!b_) b_ = pool ? pool->acquireBlock() : std::make_unique<OutputBlock>();
    return *b_;
}

std::byte* OutputQueue::appendData(std::size_t n, BufferPool* pool) { return block(pool).data.extend(n); }

std::byte* OutputQueue::appendControl(std::size_t n, BufferPool* pool) { return block(pool).ctrl.extend(n); }

// The end of the data frame that contains `offset`, or `offset` itself at a boundary.
// Frames in the queue are whole and were written by us, so their headers parse.
std::size_t OutputQueue::frameEndAfter(std::size_t offset) const noexcept {
    std::size_t b = b_->dataBoundary;
    while (b < offset) {
        FrameHeader h;
        std::error_code ec;
        const std::size_t hs = parseFrameHeader(b_->data.data() + b, b_->data.size() - b, h, ec);
        const std::size_t next = b + hs + static_cast<std::size_t>(h.payloadLength);
        if (next > offset) return next;
        b = next;
    }
    b_->dataBoundary = b;
    return b;
}

OutputView OutputQueue::pending() const noexcept {
    OutputView v;
    if (!b_) return v;
    const auto& q = *b_;
    const std::size_t ctrlLeft = q.ctrl.size() - q.ctrlSent;
    if (ctrlLeft == 0) {
        if (q.dataSent < q.data.size()) v.parts[v.count++] = {q.data.data() + q.dataSent, q.data.size() - q.dataSent};
        return v;
    }
    const std::size_t end = frameEndAfter(q.dataSent);
    if (end > q.dataSent) v.parts[v.count++] = {q.data.data() + q.dataSent, end - q.dataSent};
    v.parts[v.count++] = {q.ctrl.data() + q.ctrlSent, ctrlLeft};
    if (end < q.data.size()) v.parts[v.count++] = {q.data.data() + end, q.data.size() - end};
    return v;
}

void OutputQueue::consume(std::size_t n, BufferPool* pool) noexcept {
    if (!b_) return;
    auto& q = *b_;
    const std::size_t ctrlLeft = q.ctrl.size() - q.ctrlSent;
    if (ctrlLeft != 0) {
        // The same order as pending(): the rest of the current data frame, control, data.
        const std::size_t end = frameEndAfter(q.dataSent);
        const std::size_t a = std::min(n, end - q.dataSent);
        q.dataSent += a;
        n -= a;
        const std::size_t c = std::min(n, ctrlLeft);
        q.ctrlSent += c;
        n -= c;
        if (q.ctrlSent == q.ctrl.size()) {
            q.ctrl.clear();
            q.ctrlSent = 0;
        }
    }
    q.dataSent += std::min(n, q.data.size() - q.dataSent);
    if (q.dataSent == q.data.size()) {
        q.data.clear();
        q.dataSent = q.dataBoundary = 0;
    }
    if (!q.data.empty() || !q.ctrl.empty()) return;
    // Everything written: the storage goes back.
    if (pool) pool->releaseBlock(std::move(b_));
    else if (q.capacity() > keptWithoutPool) b_.reset();
}

} // namespace tongdao::protocol
