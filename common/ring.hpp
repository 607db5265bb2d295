// The lock-free single-producer/single-consumer ring of datagrams in shared memory.
// Producer: the ingest process; consumer: the fan-out process. Positions only grow and
// index the slots modulo their (power of two) count; each side keeps a cached copy of the
// other side's position so the common case touches no shared cache line.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "shm.hpp"

namespace vrelay {

class RingView {
 public:
  RingView(RingControl* control, char* slots, uint32_t slot_count, uint32_t stride)
      : control_(control), slots_(slots), mask_(slot_count - 1), stride_(stride) {}

  uint32_t capacity() const { return mask_ + 1; }
  uint32_t max_payload() const { return stride_ - uint32_t(kRingDataOffset); }
  RingSlotHeader& header(uint64_t position) const {
    return *reinterpret_cast<RingSlotHeader*>(slots_ + (position & mask_) * stride_);
  }
  char* data(uint64_t position) const { return slots_ + (position & mask_) * stride_ + kRingDataOffset; }

  // Producer side.
  uint64_t producer_position() const { return control_->head.load(std::memory_order_relaxed); }
  // How many of the `wanted` slots from `head` on may be written now: fewer only when the
  // consumer is that far behind (0 = full: the producer drops). The cached tail is read
  // again whenever it offers fewer than wanted, not only when it says full: a stale copy
  // one slot short of room for two would otherwise drop a datagram the ring had room for.
  uint32_t writable(uint64_t head, uint32_t wanted) {
    uint64_t used = head - cached_tail_;
    if (used + wanted > capacity()) {
      cached_tail_ = control_->tail.load(std::memory_order_acquire);
      used = head - cached_tail_;
    }
    return uint32_t(std::min<uint64_t>(wanted, capacity() - used));
  }
  void publish(uint64_t new_head) { control_->head.store(new_head, std::memory_order_release); }

  // Consumer side.
  uint64_t consumer_position() const { return control_->tail.load(std::memory_order_relaxed); }
  // Datagrams ready from `tail` on.
  uint64_t readable(uint64_t tail) {
    if (cached_head_ <= tail) cached_head_ = control_->head.load(std::memory_order_acquire);
    return cached_head_ > tail ? cached_head_ - tail : 0;
  }
  uint64_t head_now() { return cached_head_ = control_->head.load(std::memory_order_acquire); }
  void release(uint64_t new_tail) { control_->tail.store(new_tail, std::memory_order_release); }

  // A reader the producer does not wait for (the http process's /stream) copies a slot,
  // then asks whether it still holds `position`: if not, the producer wrote it meanwhile
  // and the copy is worthless (a seqlock's read side, the position as its version).
  bool still_holds(uint64_t position) const {
#if defined(__SANITIZE_THREAD__)
    // TSan takes no thread fence (and cannot see the producer, another process): a
    // compiler barrier keeps the copy before the check, as x86 orders loads anyway.
    std::atomic_signal_fence(std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_acquire);  // the copy's loads come first
#endif
    return std::atomic_ref<uint64_t>(header(position).position).load(std::memory_order_relaxed) == position;
  }

 private:
  RingControl* control_;
  char* slots_;
  uint32_t mask_;
  uint32_t stride_;
  uint64_t cached_tail_ = 0;  // producer's copy of tail
  uint64_t cached_head_ = 0;  // consumer's copy of head
};

inline RingView ring_of(const Segment& seg) {
  const Header& h = seg.header();
  return RingView(&seg.ring_control(), seg.ring_slots(), h.ring_slots, h.ring_slot_stride);
}

}  // namespace vrelay
