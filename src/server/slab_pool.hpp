#pragma once
// Fixed-size slots for long-lived objects (one per WebSocket), away from the heap.

#include <cstddef>
#include <cstdint>

namespace tongdao::detail {

/**
 * Slots of one size carved from 64 KiB blocks mapped on their own. Idle WebSockets live
 * here rather than on the heap, where they would sit between the handshake's short-lived
 * allocations and keep the holes those leave from being returned or coalesced (an idle
 * connection cost ~60 B more RSS than its heap bytes that way). A freed slot is reused
 * first; a block left empty is unmapped, but for one kept spare.
 *
 * @par Thread Safety
 * None: one pool per loop, used on the loop's thread.
 */
class SlabPool {
public:
    static constexpr std::size_t blockSize = 64 * 1024; ///< blocks are aligned to their size

    explicit SlabPool(std::size_t slotSize) noexcept;
    ~SlabPool();
    SlabPool(const SlabPool&) = delete;
    SlabPool& operator=(const SlabPool&) = delete;

    /** A slot of `slotSize()` bytes, 8-byte aligned (all a WebSocket needs); throws std::bad_alloc. */
    void* allocate();
    /** Returns a slot to the pool it came from (found from its address). */
    static void release(void* p) noexcept;

    std::size_t slotSize() const noexcept { return slotSize_; }
    /** Blocks mapped now, the spare included. */
    std::size_t blocks() const noexcept { return blocks_; }
    /** Slots handed out and not released. */
    std::size_t inUse() const noexcept { return inUse_; }

private:
    struct Block;
    void unlink(Block* b) noexcept;
    void releaseIn(Block* b, void* p) noexcept;

    std::size_t slotSize_;
    std::uint32_t slotsPerBlock_;
    Block* open_ = nullptr;  ///< blocks with a free slot, most recently freed into first
    Block* spare_ = nullptr; ///< an empty block kept so a connection that comes and goes maps nothing
    std::size_t blocks_ = 0;
    std::size_t inUse_ = 0;
};

} // namespace tongdao::detail
