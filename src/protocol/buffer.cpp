#include "tongdao/protocol/buffer.hpp"
#include "tongdao/error.hpp"
#include "tongdao/protocol/frame.hpp"

#include <algorithm>

namespace tongdao::protocol {

namespace {
// Without a pool, a connection keeps up to this much capacity for its next burst.
constexpr std::size_t keptWithoutPool = 64 * 1024;
} // namespace

OutputQueue::~OutputQueue() {
    recycle(data_);
    recycle(ctrl_);
}

void OutputQueue::recycle(ByteBuffer& b) noexcept {
    if (pool_) {
        pool_->release(std::move(b));
    } else if (b.capacity() > keptWithoutPool) {
        b.release();
    } else {
        b.clear();
    }
}

std::byte* OutputQueue::appendData(std::size_t n) {
    if (data_.capacity() == 0 && pool_) data_ = pool_->acquire();
    return data_.extend(n);
}

std::byte* OutputQueue::appendControl(std::size_t n) {
    if (ctrl_.capacity() == 0 && pool_) ctrl_ = pool_->acquire();
    return ctrl_.extend(n);
}

// The end of the data frame that contains `offset`, or `offset` itself at a boundary.
// Frames in the queue are whole and were written by us, so their headers parse.
std::size_t OutputQueue::frameEndAfter(std::size_t offset) const noexcept {
    std::size_t b = dataBoundary_;
    while (b < offset) {
        FrameHeader h;
        std::error_code ec;
        const std::size_t hs = parseFrameHeader(data_.data() + b, data_.size() - b, h, ec);
        const std::size_t next = b + hs + static_cast<std::size_t>(h.payloadLength);
        if (next > offset) return next;
        b = next;
    }
    dataBoundary_ = b;
    return b;
}

OutputView OutputQueue::pending() const noexcept {
    OutputView v;
    const std::size_t ctrlLeft = ctrl_.size() - ctrlSent_;
    if (ctrlLeft == 0) {
        if (dataSent_ < data_.size()) v.parts[v.count++] = {data_.data() + dataSent_, data_.size() - dataSent_};
        return v;
    }
    const std::size_t end = frameEndAfter(dataSent_);
    if (end > dataSent_) v.parts[v.count++] = {data_.data() + dataSent_, end - dataSent_};
    v.parts[v.count++] = {ctrl_.data() + ctrlSent_, ctrlLeft};
    if (end < data_.size()) v.parts[v.count++] = {data_.data() + end, data_.size() - end};
    return v;
}

void OutputQueue::consume(std::size_t n) noexcept {
    const std::size_t ctrlLeft = ctrl_.size() - ctrlSent_;
    if (ctrlLeft != 0) {
        // The same order as pending(): the rest of the current data frame, control, data.
        const std::size_t end = frameEndAfter(dataSent_);
        const std::size_t a = std::min(n, end - dataSent_);
        dataSent_ += a;
        n -= a;
        const std::size_t c = std::min(n, ctrlLeft);
        ctrlSent_ += c;
        n -= c;
        if (ctrlSent_ == ctrl_.size()) {
            recycle(ctrl_);
            ctrlSent_ = 0;
        }
    }
    dataSent_ += std::min(n, data_.size() - dataSent_);
    if (dataSent_ == data_.size() && dataSent_ != 0) {
        recycle(data_);
        dataSent_ = 0;
        dataBoundary_ = 0;
    }
}

} // namespace tongdao::protocol
