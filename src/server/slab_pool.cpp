#include "slab_pool.hpp"

#include <sys/mman.h>

#include <cassert>
#include <cstdint>
#include <new>

// Under ASan, free slots are poisoned, so a use after delete is still caught here.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TONGDAO_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TONGDAO_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define TONGDAO_POISON(p, n) ((void)(p), (void)(n))
#define TONGDAO_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace tongdao::detail {

struct SlabPool::Block {
    SlabPool* pool;
    Block* prev = nullptr; ///< in `open_`
    Block* next = nullptr;
    void* free = nullptr;   ///< released slots, each holding the next one's address
    std::uint32_t used = 0; ///< slots handed out
    std::uint32_t carved = 0; ///< slots ever handed out: the rest of the block is untouched (not resident)
    bool listed = false;
};

namespace {

constexpr std::size_t headerSize = 64; // the Block, rounded up to a cache line

std::byte* slotsOf(void* block) noexcept { return static_cast<std::byte*>(block) + headerSize; }

void* mapAligned() {
    // Map twice the size and trim, so the block starts at a multiple of its size.
    constexpr std::size_t size = SlabPool::blockSize;
    void* p = ::mmap(nullptr, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    const auto start = reinterpret_cast<std::uintptr_t>(p);
    const auto aligned = (start + size - 1) & ~(std::uintptr_t{size} - 1);
    if (aligned > start) ::munmap(p, aligned - start);
    if (const auto tail = start + 2 * size - (aligned + size); tail != 0)
        ::munmap(reinterpret_cast<void*>(aligned + size), tail);
    return reinterpret_cast<void*>(aligned);
}

} // namespace

SlabPool::SlabPool(std::size_t slotSize) noexcept
    : slotSize_((slotSize + 7) & ~std::size_t{7}),
      slotsPerBlock_(static_cast<std::uint32_t>((blockSize - headerSize) / slotSize_)) {
    static_assert(sizeof(Block) <= headerSize);
    assert(slotSize_ >= sizeof(void*) && slotsPerBlock_ > 0);
}

SlabPool::~SlabPool() {
    // Every slot is back by now (the loop deletes its sockets first); unmap what is left.
    assert(inUse_ == 0);
    while (open_) {
        Block* b = open_;
        unlink(b);
        ::munmap(b, blockSize);
    }
    if (spare_) ::munmap(spare_, blockSize);
}

void SlabPool::unlink(Block* b) noexcept {
    if (b->prev) b->prev->next = b->next;
    else open_ = b->next;
    if (b->next) b->next->prev = b->prev;
    b->prev = b->next = nullptr;
    b->listed = false;
}

void* SlabPool::allocate() {
    Block* b = open_;
    if (!b) {
        if (spare_) {
            b = spare_;
            spare_ = nullptr;
        } else {
            b = new (mapAligned()) Block{this};
            ++blocks_;
        }
        b->next = open_;
        if (open_) open_->prev = b;
        open_ = b;
        b->listed = true;
    }
    void* p;
    if (b->free) {
        p = b->free;
        TONGDAO_UNPOISON(p, slotSize_);
        b->free = *static_cast<void**>(p);
    } else {
        p = slotsOf(b) + std::size_t{b->carved} * slotSize_;
        ++b->carved;
    }
    ++b->used;
    ++inUse_;
    if (b->used == slotsPerBlock_) unlink(b); // full
    return p;
}

void SlabPool::release(void* p) noexcept {
    if (!p) return;
    auto* b = reinterpret_cast<Block*>(reinterpret_cast<std::uintptr_t>(p) & ~(std::uintptr_t{blockSize} - 1));
    b->pool->releaseIn(b, p);
}

void SlabPool::releaseIn(Block* b, void* p) noexcept {
    *static_cast<void**>(p) = b->free;
    b->free = p;
    TONGDAO_POISON(p, slotSize_);
    --b->used;
    --inUse_;
    if (b->used == 0) {
        // Empty: keep one block spare, unmap the others (their pages go back to the system).
        if (b->listed) unlink(b);
        if (!spare_) {
            spare_ = b;
            b->free = nullptr; // carve afresh: the slots it had are free anyway
            b->carved = 0;
            TONGDAO_UNPOISON(slotsOf(b), blockSize - headerSize);
        } else {
            ::munmap(b, blockSize);
            --blocks_;
        }
        return;
    }
    if (!b->listed) {
        b->next = open_;
        if (open_) open_->prev = b;
        open_ = b;
        b->listed = true;
    }
}

} // namespace tongdao::detail
