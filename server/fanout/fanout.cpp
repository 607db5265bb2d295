// vrelayd's fan-out process: wakes when ingest signals the eventfd, takes the waiting
// datagrams from the ring, and sends each, byte for byte, to every subscriber whose active
// range covers it, with one sendmmsg per batch whose messages point into the ring (no copy).
// A subscriber the kernel refuses is counted and skipped; it never holds the others back.
#include <ev.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "child.hpp"
#include "log.hpp"
#include "ring.hpp"
#include "subscribers.hpp"

namespace vrelay {
namespace {

constexpr unsigned kMaxMessages = 1024;   // UIO_MAXIOV: the most sendmmsg takes at once
constexpr unsigned kMaxDatagramsPerBatch = 64;

struct Target {
  uint32_t slot;
  uint64_t from_ns, until_ns;
  Endpoint destination;
};

class Fanout {
 public:
  explicit Fanout(ChildContext& ctx)
      : ctx_(ctx), ring_(ring_of(ctx.segment)), stats_(ctx.segment.stats().fanout),
        slots_(ctx.segment.subscribers()), slot_count_(ctx.segment.header().max_subscribers) {
    targets_.reserve(slot_count_);
    size_t room = std::max<size_t>(kMaxMessages, slot_count_);  // one datagram to every slot fits
    msgs_.resize(room);
    iovs_.resize(room);
    owners_.resize(room);
  }

  void drain() {
    uint64_t tail = ring_.consumer_position();
    while (true) {
      // The head is read before the subscriber table: a change whose OK was sent before a
      // datagram arrived is therefore always seen when that datagram is sent.
      uint64_t waiting = ring_.readable(tail);
      stats_.ring_lag.store(waiting, std::memory_order_relaxed);
      if (waiting == 0) return;
      uint64_t generation = ctx_.segment.table().generation.load(std::memory_order_seq_cst);
      if (generation != generation_) rebuild(generation);

      unsigned per_datagram = std::max<unsigned>(1, unsigned(targets_.size()));
      uint64_t count = std::min<uint64_t>({waiting, uint64_t(kMaxDatagramsPerBatch), uint64_t(std::max(1u, kMaxMessages / per_datagram))});
      send_range(tail, tail + count);
      tail += count;
      ring_.release(tail);
      stats_.datagrams.fetch_add(count, std::memory_order_relaxed);
    }
  }

 private:
  void rebuild(uint64_t generation) {
    generation_ = generation;
    targets_.clear();
    uint64_t playing = 0;
    for (uint32_t i = 0; i < slot_count_; ++i) {
      SubscriberSlot& slot = slots_[i];
      if (slot.state.load(std::memory_order_relaxed) == uint32_t(SubscriberState::kFree) &&
          !(slot.seq.load(std::memory_order_relaxed) & 1))
        continue;
      SubscriberSnapshot s;
      if (!read_subscriber(slot, &s) || s.state == SubscriberState::kFree) continue;
      if (slot.counted_incarnation.load(std::memory_order_relaxed) != s.incarnation) {
        // A new subscription in this slot: its counters start from zero.
        slot.datagrams.store(0, std::memory_order_relaxed);
        slot.bytes.store(0, std::memory_order_relaxed);
        slot.errors.store(0, std::memory_order_relaxed);
        slot.counted_incarnation.store(s.incarnation, std::memory_order_release);
      }
      targets_.push_back({i, s.from_ns, s.until_ns, s.destination});
      if (s.state == SubscriberState::kPlaying) ++playing;
    }
    stats_.playing.store(playing, std::memory_order_relaxed);
  }

  void send_range(uint64_t first, uint64_t end) {
    unsigned n = 0;
    for (uint64_t position = first; position < end; ++position) {
      const RingSlotHeader& h = ring_.header(position);
      for (const Target& t : targets_) {
        if (h.received_ns < t.from_ns || h.received_ns >= t.until_ns) continue;
        iovs_[n] = {ring_.data(position), h.length};
        msghdr& m = msgs_[n].msg_hdr;
        m = {};
        m.msg_name = const_cast<sockaddr*>(t.destination.addr());
        m.msg_namelen = t.destination.length;
        m.msg_iov = &iovs_[n];
        m.msg_iovlen = 1;
        owners_[n] = t.slot;
        ++n;
      }
    }
    unsigned i = 0;
    uint64_t sent = 0, bytes = 0, errors = 0;
    while (i < n) {
      int r = sendmmsg(ctx_.sockets.fanout, &msgs_[i], std::min(n - i, kMaxMessages), 0);
      stats_.batches.fetch_add(1, std::memory_order_relaxed);
      if (r < 0) {
        if (errno == EINTR) continue;
        // The first message failed: count it against its subscriber, go on with the rest.
        slots_[owners_[i]].errors.fetch_add(1, std::memory_order_relaxed);
        if (errors++ == 0) LOG_DEBUG("send to subscriber slot %u failed: %s", owners_[i], strerror(errno));
        ++i;
        continue;
      }
      for (int k = 0; k < r; ++k, ++i) {
        SubscriberSlot& slot = slots_[owners_[i]];
        slot.datagrams.fetch_add(1, std::memory_order_relaxed);
        slot.bytes.fetch_add(msgs_[i].msg_len, std::memory_order_relaxed);
        bytes += msgs_[i].msg_len;
        ++sent;
      }
    }
    stats_.sent_datagrams.fetch_add(sent, std::memory_order_relaxed);
    stats_.sent_bytes.fetch_add(bytes, std::memory_order_relaxed);
    if (errors) stats_.send_errors.fetch_add(errors, std::memory_order_relaxed);
  }

  ChildContext& ctx_;
  RingView ring_;
  fanout_stats& stats_;
  SubscriberSlot* slots_;
  uint32_t slot_count_;
  uint64_t generation_ = ~0ull;
  std::vector<Target> targets_;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iovs_;
  std::vector<uint32_t> owners_;
};

}  // namespace

int run_fanout(ChildContext& ctx) {
  ChildLoop child(ctx);
  Fanout fanout(ctx);
  ev_io wake;
  ev_io_init(&wake, [](struct ev_loop*, ev_io* w, int) {
    uint64_t count;
    ssize_t ignored = read(w->fd, &count, sizeof count);  // reset the eventfd, then drain
    (void)ignored;
    static_cast<Fanout*>(w->data)->drain();
  }, ctx.sockets.wake, EV_READ);
  wake.data = &fanout;
  ev_io_start(child.loop(), &wake);
  LOG_INFO("sending copies to up to %u subscribers", ctx.segment.header().max_subscribers);
  fanout.drain();  // what arrived while this process was (re)starting
  child.run();
  return 0;
}

}  // namespace vrelay
