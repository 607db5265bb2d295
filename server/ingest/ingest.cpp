// vrelayd's ingest process: receives the source's datagrams with recvmmsg straight into the
// shared-memory ring (no copy, no allocation per datagram), drops and counts what must not
// be relayed (foreign sender, oversize, ring full), and wakes the fan-out once per batch.
// It also keeps the source's figures (rate, stalled), reads an MPEG-TS source as it passes
// (tables, key frames: StreamInfo in shared memory, kSlotKeyFrame in the ring) and can be
// the source itself: the generator of the counter stream (ingest.source: generator). On an
// edge of a cascade it also subscribes to its upstream relay (ingest.upstream, upstream.hpp).
#include <ev.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "child.hpp"
#include "counter_stream.hpp"
#include "log.hpp"
#include "mpegts.hpp"
#include "net.hpp"
#include "ring.hpp"
#include "upstream.hpp"

namespace vrelay {
namespace {

constexpr unsigned kBatch = 64;
constexpr int kMaxBatchesPerWake = 32;  // then let the loop run its timers and signals
constexpr double kTick = 0.1;            // seconds between two stall checks
constexpr int kTicksPerRate = 10;        // the rates cover one second
constexpr uint64_t kMaxGeneratedPerTick = 1024;  // a late timer catches up, within reason

class Ingest {
 public:
  explicit Ingest(ChildContext& ctx)
      : ctx_(ctx), ring_(ring_of(ctx.segment)), stats_(ctx.segment.stats().ingest), stream_(ctx.segment.stream()),
        max_datagram_(ctx.config.ingest.max_datagram), scratch_(size_t(max_datagram_) + 1),
        stall_ns_(uint64_t(ctx.config.ingest.stall_timeout_s) * kNsPerSecond),
        rate_from_datagrams_(stats_.datagrams.load(std::memory_order_relaxed)),
        rate_from_bytes_(stats_.bytes.load(std::memory_order_relaxed)), rate_from_ns_(monotonic_ns()),
        allow_(ctx.config.ingest.allow) {
    if (ctx.config.ingest.upstream.empty())
      stats_.upstream_state.store(uint64_t(Upstream::State::kNone), std::memory_order_relaxed);
    stalled_ = stats_.stalled.load(std::memory_order_relaxed) != 0;
    // A restarted ingest goes on from its predecessor's last datagram: the ring's last
    // receive stamp, monotonic (the wall time in the counters would move with a clock step).
    if (uint64_t head = ring_.producer_position())
      last_datagram_monotonic_ns_ = std::max<uint64_t>(ring_.header(head - 1).received_ns, 1);
    check_stall();
    relearn_stream();
  }

  // Every kTick: the stall check, and once a second the rates.
  void tick() {
    check_stall();
    if (++ticks_ % kTicksPerRate) return;
    uint64_t now = monotonic_ns(), datagrams = stats_.datagrams.load(std::memory_order_relaxed),
             bytes = stats_.bytes.load(std::memory_order_relaxed);
    double elapsed = to_seconds(now - rate_from_ns_);
    if (elapsed > 0) {
      stats_.rate_datagrams.store(uint64_t(double(datagrams - rate_from_datagrams_) / elapsed + 0.5), std::memory_order_relaxed);
      uint64_t rate = uint64_t(double(bytes - rate_from_bytes_) / elapsed + 0.5);
      stats_.rate_bytes.store(rate, std::memory_order_relaxed);
      // The history the status page opens with: the sample first, then the count (release).
      uint64_t n = stream_.bitrate_samples.load(std::memory_order_relaxed);
      stream_.bitrate_history[n % kBitrateHistory].store(rate, std::memory_order_relaxed);
      stream_.bitrate_samples.store(n + 1, std::memory_order_release);
    }
    rate_from_ns_ = now;
    rate_from_datagrams_ = datagrams;
    rate_from_bytes_ = bytes;
  }

  // The generator source: the datagrams that fell due since it started, so the rate holds
  // on average however late the timer fires.
  void generate(double interval_s) {
    if (!generator_start_ns_) generator_start_ns_ = monotonic_ns();
    uint64_t due = uint64_t(to_seconds(monotonic_ns() - generator_start_ns_) / interval_s) + 1;
    uint64_t count = std::min(due - std::min(due, generated_here_), kMaxGeneratedPerTick);
    generated_here_ += count;
    uint64_t head = ring_.producer_position();
    uint64_t room = ring_.writable(head, uint32_t(count));
    uint64_t index = stats_.generated.load(std::memory_order_relaxed);  // goes on across restarts
    uint64_t now = wall_ns(), stamp = monotonic_ns();
    for (uint64_t i = 0; i < room; ++i) {
      RingSlotHeader& slot = ring_.header(head + i);
      slot.length = uint32_t(encode_counter(index + 1 + i, ring_.data(head + i)));
      slot.flags = 0;
      slot.position = head + i;
      slot.received_ns = stamp;
    }
    stats_.generated.store(index + count, std::memory_order_relaxed);
    if (room < count) stats_.drops_ring_full.fetch_add(count - room, std::memory_order_relaxed);
    if (room) accepted(head + room, room, room * kCounterDatagramSize, now);
  }

  // The upstream's address, from the upstream thread before it sends CONECTAR: its
  // datagrams are allowed in addition to ingest.allow. Taken by drain() before it reads,
  // so the first datagram the subscription brings finds it.
  void offer_upstream(const Endpoint& upstream) {
    std::lock_guard lock(upstream_mutex_);
    offered_upstream_ = upstream;
    upstream_offered_.store(true, std::memory_order_release);
  }

  // Reads until the socket is empty or the batch budget is spent.
  void drain() {
    if (upstream_offered_.load(std::memory_order_acquire)) allow_upstream();
    for (int round = 0; round < kMaxBatchesPerWake; ++round) {
      uint64_t head = ring_.producer_position();
      unsigned room = ring_.writable(head, kBatch);
      int got = room ? receive_into_ring(head, room) : receive_and_drop();
      if (got <= 0) return;
    }
  }

 private:
  void prepare(unsigned i, char* buffer, size_t size) {
    iov_[i] = {buffer, size};
    msgs_[i].msg_hdr = {};
    msgs_[i].msg_hdr.msg_name = &senders_[i];
    msgs_[i].msg_hdr.msg_namelen = sizeof senders_[i];
    msgs_[i].msg_hdr.msg_iov = &iov_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
    msgs_[i].msg_hdr.msg_control = control_[i];
    msgs_[i].msg_hdr.msg_controllen = sizeof control_[i];
  }

  // When the datagram reached the socket (SO_TIMESTAMPNS, set by the supervisor), in
  // monotonic time: the subscribers' PAUSE/RESUME cut-offs compare with it, so neither
  // ingest's own lag nor a wall-clock step counts.
  static uint64_t receive_time(const msghdr& m, uint64_t wall_now, uint64_t monotonic_now) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&m), c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
        timespec ts;
        std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
        return monotonic_receive_time(to_ns(ts), wall_now, monotonic_now);
      }
    return monotonic_now;
  }

  int receive(unsigned count) {
    int got = recvmmsg(ctx_.sockets.ingest, msgs_, count, MSG_DONTWAIT, nullptr);
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      LOG_WARN("recvmmsg: %s", strerror(errno));
    return got;
  }

  int receive_into_ring(uint64_t head, unsigned room) {
    // Receive directly into the free slots; a datagram larger than max_datagram comes back
    // with MSG_TRUNC and is dropped, never relayed truncated.
    for (unsigned i = 0; i < room; ++i) prepare(i, ring_.data(head + i), max_datagram_);
    int got = receive(room);
    if (got <= 0) return got;

    uint64_t now = wall_ns(), monotonic_now = monotonic_ns();
    uint64_t kept = 0, bytes = 0, oversize = 0, foreign = 0;
    for (int i = 0; i < got; ++i) {
      const msghdr& m = msgs_[i].msg_hdr;
      if (m.msg_flags & MSG_TRUNC) {
        ++oversize;
        continue;
      }
      if (!allowed(allow_, sender(m))) {
        ++foreign;
        continue;
      }
      uint64_t position = head + kept;
      if (kept != uint64_t(i))  // close the gap a dropped datagram left (rare)
        std::memmove(ring_.data(position), ring_.data(head + uint64_t(i)), msgs_[i].msg_len);
      RingSlotHeader& slot = ring_.header(position);
      slot.length = msgs_[i].msg_len;
      slot.flags = 0;
      slot.position = position;
      slot.received_ns = receive_time(m, now, monotonic_now);
      inspect(position, head);
      bytes += msgs_[i].msg_len;
      ++kept;
    }
    if (kept) accepted(head + kept, kept, bytes, now);
    stats_.batches.fetch_add(1, std::memory_order_relaxed);
    if (oversize) {
      stats_.drops_oversize.fetch_add(oversize, std::memory_order_relaxed);
      LOG_DEBUG("dropped %lu datagrams larger than %u bytes", (unsigned long)oversize, max_datagram_);
    }
    if (foreign) stats_.drops_foreign_sender.fetch_add(foreign, std::memory_order_relaxed);
    return got;
  }

  // Reads one datagram of the ring as MPEG-TS; slots from `unpublished` on are this
  // process's alone still.
  void inspect(uint64_t position, uint64_t unpublished) {
    const RingSlotHeader& h = ring_.header(position);
    auto found = inspector_.inspect(reinterpret_cast<const uint8_t*>(ring_.data(position)), h.length, position);
    if (found.tables_changed) publish_tables(position);
    if (found.key_frame_from && position - *found.key_frame_from < ring_.capacity())
      mark_key_frame(*found.key_frame_from, unpublished);
  }

  // The latest PAT and PMT, under the seqlock, valid from ring position `from` on; the key
  // frames before it would start a viewer on the wrong stream, so they are forgotten.
  void publish_tables(uint64_t from) {
    uint32_t seq = stream_.tables_seq.load(std::memory_order_relaxed);
    stream_.tables_seq.store(seq | 1, std::memory_order_relaxed);
    for (size_t w = 0; w < kTablePacketWords; ++w) {
      uint64_t pat = 0, pmt = 0;
      size_t at = w * 8, count = std::min<size_t>(8, kTsPacketSize - at);
      std::memcpy(&pat, inspector_.pat().data() + at, count);
      std::memcpy(&pmt, inspector_.pmt().data() + at, count);
      stream_.pat[w].store(pat, std::memory_order_release);
      stream_.pmt[w].store(pmt, std::memory_order_release);
    }
    stream_.codec.store(uint32_t(inspector_.codec()), std::memory_order_relaxed);
    stream_.key_frame_position.store(kNoPosition, std::memory_order_relaxed);
    stream_.tables_position.store(from, std::memory_order_relaxed);
    stream_.tables_seq.store((seq | 1) + 1, std::memory_order_release);
    stats_.table_changes.fetch_add(1, std::memory_order_relaxed);
    LOG_INFO("source tables: video PID %u (%s)", unsigned(inspector_.video_pid()), codec_name(inspector_.codec()));
  }

  void mark_key_frame(uint64_t position, uint64_t unpublished) {
    RingSlotHeader& slot = ring_.header(position);
    if (position >= unpublished) slot.flags |= kSlotKeyFrame;
    else std::atomic_ref<uint32_t>(slot.flags).fetch_or(kSlotKeyFrame, std::memory_order_relaxed);
    uint64_t previous = stream_.key_frame_position.load(std::memory_order_relaxed);
    uint64_t previous_ns = stream_.key_frame_ns.load(std::memory_order_relaxed);
    if (previous != kNoPosition && position > previous) {
      uint64_t gop = position - previous, gop_ns = slot.received_ns - std::min(slot.received_ns, previous_ns);
      stats_.gop_datagrams.store(gop, std::memory_order_relaxed);
      stats_.gop_ns.store(gop_ns, std::memory_order_relaxed);
      check_gop_fits(gop, gop_ns);
    }
    stream_.key_frame_ns.store(slot.received_ns, std::memory_order_relaxed);
    stream_.key_frame_position.store(position, std::memory_order_release);
    stats_.key_frames.fetch_add(1, std::memory_order_relaxed);
  }

  // A fast start reads back within three quarters of the ring (the rest is about to be
  // written): a longer GOP leaves the viewers who join late in it without one. Said once,
  // and again when it happens after the GOPs fitted.
  void check_gop_fits(uint64_t gop, uint64_t gop_ns) {
    uint64_t usable = ring_.capacity() / 4 * 3;
    bool fits = gop <= usable;
    if (!fits) {
      stats_.gops_too_long.fetch_add(1, std::memory_order_relaxed);
      if (gop_fitted_)
        LOG_WARN("the source's GOP (%lu datagrams, %.1f s) is longer than three quarters of the ring (%lu of %lu "
                 "slots): viewers who join late in it get no fast start; set ingest.ring_bytes to %lu or more",
                 (unsigned long)gop, double(gop_ns) / 1e9, (unsigned long)usable, (unsigned long)ring_.capacity(),
                 (unsigned long)((gop + 1) * 2 * kRingBytesPerSlot));
    }
    gop_fitted_ = fits;
  }

  // A restarted ingest reads what the ring still holds to know the stream again (its PIDs,
  // the access unit in progress); what it had published stays in shared memory.
  void relearn_stream() {
    uint64_t head = ring_.producer_position();
    uint64_t first = head > ring_.capacity() ? head - ring_.capacity() : 0;
    for (uint64_t position = first; position < head; ++position) {
      const RingSlotHeader& h = ring_.header(position);
      inspector_.inspect(reinterpret_cast<const uint8_t*>(ring_.data(position)), h.length, position);
    }
    // Tables never published: the key frames already in the ring are not trusted with them.
    if (inspector_.has_tables() && stream_.tables_seq.load(std::memory_order_relaxed) == 0) publish_tables(head);
  }

  // Datagrams up to new_head are in the ring: publish them, wake the fan-out, count them.
  void accepted(uint64_t new_head, uint64_t count, uint64_t bytes, uint64_t now) {
    // Counted before they are published: a datagram a viewer got is always in ingest's counters.
    stats_.datagrams.fetch_add(count, std::memory_order_relaxed);
    stats_.bytes.fetch_add(bytes, std::memory_order_relaxed);
    stats_.last_datagram_ns.store(now, std::memory_order_relaxed);  // for people to read
    last_datagram_monotonic_ns_ = monotonic_ns();
    ring_.publish(new_head);
    uint64_t one = 1;
    ssize_t ignored = write(ctx_.sockets.wake, &one, sizeof one);
    (void)ignored;
    if (stalled_) check_stall();  // live again: say so now, not at the next tick
  }

  // The source is stalled when no datagram came for ingest.stall_timeout, or none yet.
  // Control turns each change into EVENT SOURCE for the sessions.
  void check_stall() {
    uint64_t last = last_datagram_monotonic_ns_, now = monotonic_ns();
    bool stalled = last == 0 || now - std::min(now, last) >= stall_ns_;
    if (stalled == stalled_) return;
    stalled_ = stalled;
    stats_.stalled.store(stalled, std::memory_order_relaxed);
    if (stalled && last == 0) return;  // no source yet: nothing went wrong
    if (stalled) {
      stats_.stalls.fetch_add(1, std::memory_order_relaxed);  // control announces each one
      LOG_NOTICE("source stalled: no datagram for %u s", ctx_.config.ingest.stall_timeout_s);
    } else {
      LOG_NOTICE("source live");
    }
  }

  // The ring is full (fan-out is behind): the producer never waits, it drops and counts
  // (under the reason that applies first, as if there had been room).
  int receive_and_drop() {
    for (unsigned i = 0; i < kBatch; ++i) prepare(i, scratch_.data(), scratch_.size() - 1);
    int got = receive(kBatch);
    for (int i = 0; i < got; ++i) {
      const msghdr& m = msgs_[i].msg_hdr;
      auto& counter = (m.msg_flags & MSG_TRUNC) ? stats_.drops_oversize
                      : !allowed(allow_, sender(m)) ? stats_.drops_foreign_sender
                                                    : stats_.drops_ring_full;
      counter.fetch_add(1, std::memory_order_relaxed);
    }
    return got;
  }

  // The datagram path reads only allow_ (this thread's): ingest.allow, and the upstream.
  void allow_upstream() {
    Endpoint upstream;
    {
      std::lock_guard lock(upstream_mutex_);
      upstream = offered_upstream_;
      upstream_offered_.store(false, std::memory_order_relaxed);
    }
    auto cidr = parse_cidr(upstream.host());
    if (!cidr || (upstream_cidr_ && *upstream_cidr_ == *cidr)) return;
    upstream_cidr_ = *cidr;
    allow_ = ctx_.config.ingest.allow;
    allow_.push_back(*cidr);
    LOG_NOTICE("the upstream %s (%s) may send the stream, in addition to ingest.allow",
               ctx_.config.ingest.upstream.c_str(), upstream.host().c_str());
  }

  static Endpoint sender(const msghdr& m) {
    return Endpoint::from_sockaddr(static_cast<sockaddr*>(m.msg_name), m.msg_namelen);
  }

  ChildContext& ctx_;
  RingView ring_;
  ingest_stats& stats_;
  StreamInfo& stream_;
  TsInspector inspector_;
  bool gop_fitted_ = true;  // the last GOP fitted the ring (check_gop_fits)
  uint64_t last_datagram_monotonic_ns_ = 0;  // the stall check's clock; 0 = none yet
  uint32_t max_datagram_;
  std::vector<char> scratch_;
  uint64_t stall_ns_;
  bool stalled_ = false;
  unsigned ticks_ = 0;
  uint64_t rate_from_datagrams_, rate_from_bytes_, rate_from_ns_;
  uint64_t generator_start_ns_ = 0, generated_here_ = 0;
  std::vector<Cidr> allow_;             // ingest.allow, and the upstream's address
  std::optional<Cidr> upstream_cidr_;
  std::mutex upstream_mutex_;  // offered_upstream_, between the upstream thread and this one
  Endpoint offered_upstream_;
  std::atomic<bool> upstream_offered_{false};
  mmsghdr msgs_[kBatch]{};
  iovec iov_[kBatch]{};
  sockaddr_storage senders_[kBatch]{};
  alignas(cmsghdr) char control_[kBatch][CMSG_SPACE(sizeof(timespec))]{};
};

}  // namespace

int run_ingest(ChildContext& ctx) {
  ChildLoop child(ctx);
  Ingest ingest(ctx);
  ev_timer tick;
  ev_now_update(child.loop());  // the rates' first window starts now, not at the loop's birth
  ev_timer_init(&tick, [](struct ev_loop*, ev_timer* w, int) { static_cast<Ingest*>(w->data)->tick(); }, kTick, kTick);
  tick.data = &ingest;
  ev_timer_start(child.loop(), &tick);

  ev_io readable;
  ev_timer generator;
  if (ctx.config.ingest.source == Config::Ingest::Source::kGenerator) {
    double interval = ctx.config.ingest.interval_ms / 1000.;
    ev_timer_init(&generator, [](struct ev_loop*, ev_timer* w, int) {
      static_cast<Ingest*>(w->data)->generate(w->repeat);
    }, 0., interval);
    generator.data = &ingest;
    ev_timer_start(child.loop(), &generator);
    LOG_INFO("generating the counter stream, one datagram every %u ms", ctx.config.ingest.interval_ms);
  } else {
    ev_io_init(&readable, [](struct ev_loop*, ev_io* w, int) { static_cast<Ingest*>(w->data)->drain(); },
               ctx.sockets.ingest, EV_READ);
    readable.data = &ingest;
    ev_io_start(child.loop(), &readable);
    LOG_INFO("receiving on %s%s", ctx.segment.header().ingest_address, multicast_join_text(ctx.config.ingest).c_str());
  }

  // The subscription to ingest.upstream, in a thread of its own (upstream.hpp says why).
  // Declared after the loop, so it is stopped and joined before the loop goes.
  std::unique_ptr<Upstream> upstream;
  if (!ctx.config.ingest.upstream.empty())
    upstream = std::make_unique<Upstream>(ctx.config.ingest.upstream, ctx.sockets.ingest, ctx.segment.stats().ingest,
                                          [&ingest](const Endpoint& peer) { ingest.offer_upstream(peer); });
  child.run();
  upstream.reset();
  return 0;
}

}  // namespace vrelay
