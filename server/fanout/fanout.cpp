// vrelayd's fan-out process: wakes when ingest signals the eventfd, takes the waiting
// datagrams from the ring and sends each, byte for byte, to every subscriber whose active
// range covers it.
//
// Every subscriber has its own UDP socket, bound to the relay's one fan-out address and
// connected to the viewer. What waits for a subscriber leaves in one send call, and a run
// of equal-size datagrams (VLC and ffmpeg send 1316 bytes) as one UDP GSO message: the
// kernel takes it through the stack once and cuts it into the same datagrams, which is
// what makes the fan-out several times cheaper per copy than one sendmmsg entry per
// datagram. A connected socket also hears ICMP: a viewer whose port is closed is counted,
// and after fanout.unreachable_pause of nothing but refusals, paused by control.
// Messages point into the ring: no copy, no allocation per datagram.
#include <ev.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "child.hpp"
#include "log.hpp"
#include "ring.hpp"
#include "subscribers.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

namespace vrelay {
namespace {

constexpr unsigned kMaxBatch = 128;     // datagrams taken from the ring at once
constexpr unsigned kMaxSegments = 64;   // UDP_MAX_SEGMENTS: what every kernel with GSO takes
constexpr size_t kMaxGsoBytes = 65000;  // one GSO message stays under the 64 KiB of an IP packet
constexpr uint64_t kRefusalQuietNs = 3'000'000'000;  // no refusal for this long ends a streak
constexpr uint64_t kForever = std::numeric_limits<uint64_t>::max();
constexpr size_t kControlSpace = CMSG_SPACE(sizeof(uint16_t));

// What the fan-out keeps of one subscriber slot, across table changes.
struct Link {
  int fd = -1;                // connected to the viewer; -1: sent through the shared socket
  uint64_t incarnation = 0;   // the subscription the socket was made for; 0 = none
  Endpoint destination;
  bool gso = true;            // false once this route refused a GSO message
  uint64_t from_ns = 0;       // the playing period the refusal streak belongs to
  uint64_t refused_first_ns = 0, refused_last_ns = 0;  // monotonic; 0 = no streak
  bool reported = false;      // this period was marked unreachable
};

struct Target {
  uint32_t slot;
  uint64_t from_ns, until_ns;
};

// GSO unless fanout.gso is off or the kernel refuses the option (checked once, at start).
bool gso_available(const Config& config, int family) {
  if (!config.fanout.gso) {
    LOG_INFO("fanout.gso is off: one message per datagram");
    return false;
  }
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int size = 1316;
  bool ok = fd >= 0 && setsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, sizeof size) == 0;
  int error = errno;
  if (fd >= 0) close(fd);
  if (!ok) LOG_WARN("the kernel refuses UDP GSO (%s): one message per datagram", strerror(error));
  return ok;
}

// The destination as a socket of `family` takes it: an AF_INET6 socket reaches an IPv4
// viewer at ::ffff:a.b.c.d.
socklen_t address_for(const Endpoint& destination, int family, sockaddr_storage* out) {
  std::memcpy(out, &destination.storage, sizeof *out);
  if (family != AF_INET6 || destination.family() != AF_INET) return destination.length;
  const auto* in = reinterpret_cast<const sockaddr_in*>(&destination.storage);
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = in->sin_port;
  in6.sin6_addr.s6_addr[10] = in6.sin6_addr.s6_addr[11] = 0xff;
  std::memcpy(&in6.sin6_addr.s6_addr[12], &in->sin_addr, 4);
  std::memcpy(out, &in6, sizeof in6);
  return sizeof in6;
}

class Fanout {
 public:
  explicit Fanout(ChildContext& ctx)
      : ctx_(ctx), ring_(ring_of(ctx.segment)), stats_(ctx.segment.stats().fanout),
        slots_(ctx.segment.subscribers()), slot_count_(ctx.segment.header().max_subscribers),
        local_(local_endpoint(ctx.sockets.fanout)), links_(slot_count_),
        gso_(gso_available(ctx.config, local_.family())),
        unreachable_ns_(uint64_t(ctx.config.fanout.unreachable_pause_s) * 1'000'000'000),
        delay_ns_(uint64_t(ctx.config.fanout.max_batch_delay_us) * 1000) {
    targets_.reserve(slot_count_);
    stats_.gso.store(gso_, std::memory_order_relaxed);
  }

  ~Fanout() {
    for (Link& link : links_) close_link(link);
  }

  // Ingest has published datagrams. With fanout.max_batch_delay, wait that long for more
  // (unless a full batch waits already), so that each subscriber gets them in fewer sends.
  void on_wake(int timer_fd) {
    if (delay_ns_ == 0 || ring_.readable(ring_.consumer_position()) >= kMaxBatch) {
      drain();
      return;
    }
    if (timer_armed_) return;
    itimerspec when{};
    when.it_value.tv_sec = time_t(delay_ns_ / 1'000'000'000);
    when.it_value.tv_nsec = long(delay_ns_ % 1'000'000'000);
    timer_armed_ = timerfd_settime(timer_fd, 0, &when, nullptr) == 0;
    if (!timer_armed_) drain();
  }
  void on_timer() {
    timer_armed_ = false;
    drain();
  }

  void drain() {
    uint64_t tail = ring_.consumer_position();
    for (unsigned batches = 1;; ++batches) {
      if (batches % 64 == 0) heartbeat(ctx_);  // a source faster than the fan-out keeps it here
      // The head is read before the subscriber table: a change whose OK was sent before a
      // datagram arrived is therefore always seen when that datagram is sent.
      uint64_t waiting = ring_.readable(tail);
      stats_.ring_lag.store(waiting, std::memory_order_relaxed);
      if (waiting == 0) return;
      uint64_t generation = ctx_.segment.table().generation.load(std::memory_order_seq_cst);
      if (generation != generation_) rebuild(generation);

      uint64_t end = tail + std::min<uint64_t>(waiting, kMaxBatch);
      // Start at another subscriber each batch, so none is always served last.
      size_t count = targets_.size();
      for (size_t k = 0; k < count; ++k) send_to(targets_[(first_target_ + k) % count], tail, end);
      if (count) first_target_ = (first_target_ + 1) % count;
      stats_.datagrams.fetch_add(end - tail, std::memory_order_relaxed);
      tail = end;
      ring_.release(tail);
    }
  }

 private:
  // Re-reads the subscriber table: a socket for every new subscription, none for a gone one.
  void rebuild(uint64_t generation) {
    generation_ = generation;
    targets_.clear();
    uint64_t playing = 0;
    for (uint32_t i = 0; i < slot_count_; ++i) {
      SubscriberSlot& slot = slots_[i];
      Link& link = links_[i];
      SubscriberSnapshot s;
      bool maybe_used = slot.state.load(std::memory_order_relaxed) != uint32_t(SubscriberState::kFree) ||
                        (slot.seq.load(std::memory_order_relaxed) & 1);
      if (!maybe_used || !read_subscriber(slot, &s) || s.state == SubscriberState::kFree) {
        close_link(link);
        continue;
      }
      if (slot.counted_incarnation.load(std::memory_order_relaxed) != s.incarnation) {
        // A new subscription in this slot: its counters start from zero.
        for (auto* counter : {&slot.datagrams, &slot.bytes, &slot.errors, &slot.refusals, &slot.sent_until,
                              &slot.unreachable_from_ns})
          counter->store(0, std::memory_order_relaxed);
        slot.counted_incarnation.store(s.incarnation, std::memory_order_release);
      }
      if (link.incarnation != s.incarnation) open_link(link, s);
      if (link.from_ns != s.from_ns) {  // subscribed or resumed: a new period, a new streak
        link.from_ns = s.from_ns;
        link.refused_first_ns = link.refused_last_ns = 0;
        link.reported = false;
      }
      targets_.push_back({i, s.from_ns, s.until_ns});
      if (s.state == SubscriberState::kPlaying) ++playing;
    }
    first_target_ = 0;
    stats_.playing.store(playing, std::memory_order_relaxed);
    stats_.sockets.store(open_links_, std::memory_order_relaxed);
  }

  void open_link(Link& link, const SubscriberSnapshot& s) {
    close_link(link);
    link.incarnation = s.incarnation;
    link.destination = s.destination;
    link.gso = gso_;
    int fd = socket(local_.family(), SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1, zero = 0, buffer = int(ctx_.config.fanout.socket_buffer);
    sockaddr_storage to;
    socklen_t to_length = address_for(s.destination, local_.family(), &to);
    // Same local address as the shared socket (SO_REUSEADDR on both): viewers see one source.
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              (local_.family() != AF_INET6 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) == 0) &&
              setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer) == 0 &&
              bind(fd, local_.addr(), local_.length) == 0 &&
              connect(fd, reinterpret_cast<sockaddr*>(&to), to_length) == 0;
    if (!ok) {
      // Still served, through the shared socket, only without GSO runs of its own or ICMP.
      if (socket_failures_++ == 0)
        LOG_WARN("no socket of its own for subscriber %s (%s): sending through the shared socket",
                 s.destination.to_string().c_str(), strerror(errno));
      if (fd >= 0) close(fd);
      return;
    }
    link.fd = fd;
    ++open_links_;
  }

  void close_link(Link& link) {
    if (link.fd >= 0) {
      close(link.fd);
      --open_links_;
    }
    link = Link{};
  }

  // Builds the messages of datagrams [first, end) that belong to this subscriber and sends
  // them in one call. A run of equal sizes is one GSO message (a shorter datagram may end
  // it: the kernel allows the last segment to be short).
  void send_to(const Target& t, uint64_t first, uint64_t end) {
    SubscriberSlot& slot = slots_[t.slot];
    Link& link = links_[t.slot];
    // A fan-out killed mid-batch left how far it got: send nothing twice.
    first = std::max(first, slot.sent_until.load(std::memory_order_relaxed));
    unsigned messages = 0, iovs = 0;
    uint32_t run_size = 0;
    bool run_open = false;
    for (uint64_t position = first; position < end; ++position) {
      const RingSlotHeader& h = ring_.header(position);
      if (h.received_ns < t.from_ns || h.received_ns >= t.until_ns) continue;
      bool joins = run_open && link.gso && h.length > 0 && h.length <= run_size &&
                   segments_[messages - 1] < kMaxSegments && bytes_[messages - 1] + h.length <= kMaxGsoBytes;
      if (!joins) {
        start_message(messages++, link, iovs);
        run_size = h.length;
      }
      iovs_[iovs++] = {ring_.data(position), h.length};
      ++segments_[messages - 1];
      bytes_[messages - 1] += h.length;
      run_open = h.length == run_size && run_size > 0;  // a shorter datagram ends the run
    }
    for (unsigned m = 0; m < messages; ++m) finish_message(m, run_size_of(m));
    if (messages) send_messages(link, slot, msgs_.data(), messages, false);
    slot.sent_until.store(end, std::memory_order_relaxed);
  }

  void start_message(unsigned m, const Link& link, unsigned first_iov) {
    msghdr& h = msgs_[m].msg_hdr;
    h = {};
    if (link.fd < 0) {  // the shared socket is not connected
      h.msg_name = const_cast<sockaddr*>(link.destination.addr());
      h.msg_namelen = link.destination.length;
    }
    h.msg_iov = &iovs_[first_iov];
    segments_[m] = 0;
    bytes_[m] = 0;
  }

  uint32_t run_size_of(unsigned m) const { return uint32_t(msgs_[m].msg_hdr.msg_iov[0].iov_len); }

  void finish_message(unsigned m, uint32_t segment_size) {
    msghdr& h = msgs_[m].msg_hdr;
    h.msg_iovlen = segments_[m];
    if (segments_[m] < 2) return;
    h.msg_control = control_[m];
    h.msg_controllen = kControlSpace;
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t size = uint16_t(segment_size);
    std::memcpy(CMSG_DATA(c), &size, sizeof size);
  }

  // Sends `count` messages to one subscriber. A refusal (ECONNREFUSED: the ICMP of an earlier
  // datagram) is counted and the message sent again, once; a GSO message the route refuses
  // goes again one datagram per message; any other failure drops that message, counted.
  // `split` marks messages of one datagram each (their counts are 1, their bytes iov_len).
  void send_messages(Link& link, SubscriberSlot& slot, mmsghdr* msgs, unsigned count, bool split) {
    int fd = link.fd >= 0 ? link.fd : ctx_.sockets.fanout;
    uint64_t sent = 0, bytes = 0, failed = 0;
    unsigned i = 0, refused_at = ~0u;
    while (i < count) {
      int r = sendmmsg(fd, msgs + i, count - i, MSG_DONTWAIT);
      stats_.batches.fetch_add(1, std::memory_order_relaxed);
      if (r > 0) {
        for (unsigned k = i; k < i + unsigned(r); ++k) {
          sent += split ? 1 : segments_[k];
          bytes += split ? msgs[k].msg_hdr.msg_iov[0].iov_len : bytes_[k];
          if (!split && segments_[k] > 1) stats_.gso_sends.fetch_add(1, std::memory_order_relaxed);
        }
        i += unsigned(r);
        continue;
      }
      int error = errno;
      if (error == EINTR) continue;
      if (error == ECONNREFUSED) {
        note_refusal(link, slot);
        if (refused_at != i) {  // the error is consumed: the message itself can go
          refused_at = i;
          continue;
        }
      } else if (!split && segments_[i] > 1 && (error == EINVAL || error == EIO)) {
        // This route takes no GSO (a device without checksum offload, a segment over its MTU).
        link.gso = false;
        LOG_NOTICE("the route to %s refuses UDP GSO (%s): one message per datagram to it",
                   link.destination.to_string().c_str(), strerror(error));
        send_split(link, slot, msgs[i].msg_hdr);
        ++i;
        continue;
      }
      uint64_t lost = split ? 1 : segments_[i];
      failed += lost;
      if (send_failures_++ == 0)
        LOG_DEBUG("send to %s failed: %s", link.destination.to_string().c_str(), strerror(error));
      ++i;
    }
    slot.datagrams.fetch_add(sent, std::memory_order_relaxed);
    slot.bytes.fetch_add(bytes, std::memory_order_relaxed);
    stats_.sent_datagrams.fetch_add(sent, std::memory_order_relaxed);
    stats_.sent_bytes.fetch_add(bytes, std::memory_order_relaxed);
    if (failed) {
      slot.errors.fetch_add(failed, std::memory_order_relaxed);
      stats_.send_errors.fetch_add(failed, std::memory_order_relaxed);
    }
  }

  void send_split(Link& link, SubscriberSlot& slot, const msghdr& gso_message) {
    unsigned count = unsigned(gso_message.msg_iovlen);
    for (unsigned k = 0; k < count; ++k) {
      msghdr& h = split_[k].msg_hdr;
      h = {};
      h.msg_name = gso_message.msg_name;
      h.msg_namelen = gso_message.msg_namelen;
      h.msg_iov = gso_message.msg_iov + k;
      h.msg_iovlen = 1;
    }
    send_messages(link, slot, split_, count, true);
  }

  // Refusals with no quiet gap for fanout.unreachable_pause while playing: the viewer is
  // gone. Control alone writes the table, so the fan-out marks the slot and control pauses it.
  void note_refusal(Link& link, SubscriberSlot& slot) {
    slot.refusals.fetch_add(1, std::memory_order_relaxed);
    slot.errors.fetch_add(1, std::memory_order_relaxed);
    stats_.refusals.fetch_add(1, std::memory_order_relaxed);
    uint64_t now = monotonic_ns();
    if (!link.refused_first_ns || now - link.refused_last_ns > kRefusalQuietNs) link.refused_first_ns = now;
    link.refused_last_ns = now;
    if (!unreachable_ns_ || link.reported || now - link.refused_first_ns < unreachable_ns_) return;
    SubscriberSnapshot s;
    if (!read_subscriber(slot, &s) || s.until_ns != kForever || s.from_ns != link.from_ns) return;
    link.reported = true;
    slot.unreachable_from_ns.store(link.from_ns, std::memory_order_release);
    stats_.unreachable.fetch_add(1, std::memory_order_release);
    LOG_NOTICE("%s refused every datagram for %u s: its subscription is paused",
               link.destination.to_string().c_str(), ctx_.config.fanout.unreachable_pause_s);
  }

  ChildContext& ctx_;
  RingView ring_;
  fanout_stats& stats_;
  SubscriberSlot* slots_;
  uint32_t slot_count_;
  Endpoint local_;  // the shared socket's address, which every subscriber socket binds too
  std::vector<Link> links_;  // by slot
  bool gso_;
  uint64_t unreachable_ns_, delay_ns_;
  bool timer_armed_ = false;
  uint64_t generation_ = ~0ull;
  std::vector<Target> targets_;
  size_t first_target_ = 0;
  uint64_t open_links_ = 0, socket_failures_ = 0, send_failures_ = 0;
  // The messages of one subscriber's send, reused for every subscriber.
  std::array<mmsghdr, kMaxBatch> msgs_{};
  std::array<iovec, kMaxBatch> iovs_{};
  std::array<unsigned, kMaxBatch> segments_{};
  std::array<size_t, kMaxBatch> bytes_{};
  alignas(cmsghdr) char control_[kMaxBatch][kControlSpace]{};
  mmsghdr split_[kMaxSegments]{};
};

}  // namespace

// The descriptors the fan-out needs besides one socket per subscriber.
uint32_t fanout_descriptors(const Config& config) { return config.fanout.max_subscribers + 64; }

int run_fanout(ChildContext& ctx) {
  ChildLoop child(ctx);
  Fanout fanout(ctx);
  struct Watchers {
    Fanout* fanout;
    int timer_fd;
  } watchers{&fanout, timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)};
  if (watchers.timer_fd < 0 && ctx.config.fanout.max_batch_delay_us) {
    LOG_ERROR("timerfd_create: %s", strerror(errno));
    return kExitConfig;
  }
  ev_io wake, timer;
  ev_io_init(&wake, [](struct ev_loop*, ev_io* w, int) {
    uint64_t count;
    ssize_t ignored = read(w->fd, &count, sizeof count);  // reset the eventfd, then send
    (void)ignored;
    auto* self = static_cast<Watchers*>(w->data);
    self->fanout->on_wake(self->timer_fd);
  }, ctx.sockets.wake, EV_READ);
  wake.data = &watchers;
  ev_io_start(child.loop(), &wake);
  ev_io_init(&timer, [](struct ev_loop*, ev_io* w, int) {
    uint64_t expirations;
    ssize_t ignored = read(w->fd, &expirations, sizeof expirations);
    (void)ignored;
    static_cast<Watchers*>(w->data)->fanout->on_timer();
  }, watchers.timer_fd, EV_READ);
  timer.data = &watchers;
  if (watchers.timer_fd >= 0) ev_io_start(child.loop(), &timer);
  LOG_INFO("sending copies from %s to up to %u subscribers, one connected socket each",
           ctx.segment.header().fanout_address, ctx.segment.header().max_subscribers);
  fanout.drain();  // what arrived while this process was (re)starting
  child.run();
  if (watchers.timer_fd >= 0) close(watchers.timer_fd);
  return 0;
}

}  // namespace vrelay
