// vrelayd's fan-out process: wakes when ingest signals the eventfd, takes the waiting
// datagrams from the ring and sends each, byte for byte, to every subscriber whose active
// range covers it.
//
// What waits for one subscriber goes out as few messages as possible: a run of equal-size
// datagrams (VLC and ffmpeg send 1316 bytes) is one UDP GSO message, which the kernel takes
// through its stack once and cuts into the very same datagrams. The messages of every
// subscriber leave in one sendmmsg from the shared fan-out socket: one system call per
// batch, not one per subscriber (in this VM a call costs about as much as a copy).
//
// Every unicast subscriber also has a UDP socket of its own, connected to the viewer and bound to
// the shared socket's port. The kernel delivers a viewer's ICMP errors to the socket that
// matches it best, that one: a closed port is heard per subscriber (EPOLLERR, ECONNREFUSED),
// counted, and after fanout.unreachable_pause of nothing but refusals, paused by control.
// A subscriber that joins or resumes mid-stream starts at the last key frame (fast start):
// the PAT and PMT, then the ring from there, paced, until it has caught up with the others.
// Messages point into the ring: no copy, no allocation per datagram.
#include <ev.h>
#include <netinet/udp.h>
#include <sys/epoll.h>
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
#include "fast_start.hpp"
#include "log.hpp"
#include "mpegts.hpp"
#include "ring.hpp"
#include "subscribers.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

namespace vrelay {
namespace {

constexpr unsigned kMaxBatch = 128;     // datagrams taken from the ring at once
// How long one drain may send before the loop runs again (signals, ICMP errors, the
// heartbeat): a time, not a count of batches, since one batch costs as many copies as there
// are subscribers. A backlog never keeps the fan-out from stopping or from answering.
constexpr uint64_t kDrainSliceNs = 20 * kNsPerMs;
// A fast start sends this many datagrams at once (the key frame, the player's first
// picture), then paces the rest; far less than a receive buffer's default 208 KiB.
constexpr unsigned kFirstBurst = 48;
constexpr unsigned kMaxSegments = 64;   // UDP_MAX_SEGMENTS: what every kernel with GSO takes
constexpr size_t kMaxGsoBytes = 65000;  // one GSO message stays under the 64 KiB of an IP packet
constexpr unsigned kMaxMessages = 1024; // UIO_MAXIOV: the most one sendmmsg takes
constexpr unsigned kMessageRoom = kMaxMessages + kMaxBatch;  // one more subscriber always fits
constexpr unsigned kIovRoom = 8192;     // the datagrams of the messages of one sendmmsg
constexpr uint64_t kRefusalQuietNs = 3'000'000'000;  // no refusal for this long ends a streak
constexpr uint64_t kForever = std::numeric_limits<uint64_t>::max();
// A message's ancillary data: its GSO segment size, and for a multicast output the
// interface (IP_PKTINFO / IPV6_PKTINFO) and the TTL (IP_TTL / IPV6_HOPLIMIT) it leaves with.
constexpr size_t kControlSpace = CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(int));

// What the fan-out keeps of one subscriber slot, across table changes.
struct Link {
  int fd = -1;                // connected to the viewer, to hear its ICMP; -1 if none could be made
  uint64_t incarnation = 0;   // the subscription the link was made for; 0 = none
  Endpoint destination;
  bool gso = true;            // false once this route refused a GSO message
  uint32_t multicast_ifindex = 0, multicast_ttl = 0;  // a multicast output's; 0 = the default
  uint64_t from_ns = 0;       // the playing period the refusal streak belongs to
  uint64_t until_ns = 0;
  uint64_t refused_first_ns = 0, refused_last_ns = 0;  // monotonic; 0 = no streak
  bool reported = false;      // this period was marked unreachable
  // Fast start: this period is sent from the ring position of the last key frame, not from
  // its start time; `cursor` is the next position to send while it catches up with the others.
  uint64_t from_position = kNoPosition, cursor = 0;
  bool tables_pending = false;  // the PAT and PMT go first
  uint32_t tables_seq = 0;      // the tables the key frame was chosen with
  double credit = 0;            // datagrams the pace allows now
  uint64_t credit_ns = 0;
};

struct Target {
  uint32_t slot;
  uint64_t from_ns, until_ns;
  // A datagram is the subscriber's when it came before until_ns and at or after from_ns, or
  // during a fast start, at or after the key frame's position.
  bool wants(const RingSlotHeader& h, uint64_t from_position) const {
    return h.received_ns < until_ns && (from_position != kNoPosition ? h.position >= from_position : h.received_ns >= from_ns);
  }
};

// The fan-out is the only writer of its counters: a plain add, no locked instruction.
void add(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// GSO unless fanout.gso is off or the kernel refuses the option (checked once, at start).
bool gso_available(const Config& config) {
  if (!config.fanout.gso) {
    LOG_INFO("fanout.gso is off: one message per datagram");
    return false;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int size = 1316;
  bool ok = fd >= 0 && setsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, sizeof size) == 0;
  int error = errno;
  if (fd >= 0) close(fd);
  if (!ok) LOG_WARN("the kernel refuses UDP GSO (%s): one message per datagram", strerror(error));
  return ok;
}

// The wildcard address of `family` at `port`: where a subscriber's socket is bound.
Endpoint wildcard(int family, uint16_t port) {
  Endpoint any = *parse_endpoint(family == AF_INET6 ? "[::]:0" : "0.0.0.0:0");
  any.set_port(port);
  return any;
}

class Fanout {
 public:
  explicit Fanout(ChildContext& ctx)
      : ctx_(ctx), ring_(ring_of(ctx.segment)), stats_(ctx.segment.stats().fanout),
        slots_(ctx.segment.subscribers()), slot_count_(ctx.segment.header().max_subscribers),
        local_(local_endpoint(ctx.sockets.fanout)), links_(slot_count_),
        errors_fd_(epoll_create1(EPOLL_CLOEXEC)), gso_(gso_available(ctx.config)),
        unreachable_ns_(uint64_t(ctx.config.fanout.unreachable_pause_s) * kNsPerSecond),
        delay_ns_(uint64_t(ctx.config.fanout.max_batch_delay_us) * 1000), stream_(ctx.segment.stream()),
        fast_start_(ctx.config.fanout.fast_start), max_lag_ns_(uint64_t(ctx.config.fanout.max_lag_ms) * kNsPerMs) {
    targets_.reserve(slot_count_);
    ends_.resize(slot_count_);
    stats_.gso.store(gso_, std::memory_order_relaxed);
  }

  ~Fanout() {
    for (Link& link : links_) close_link(link);
    if (errors_fd_ >= 0) close(errors_fd_);
  }

  // Readable when a subscriber's socket has an error (an ICMP refusal) to report.
  int errors_fd() const { return errors_fd_; }
  // Subscribers catching up from a key frame: the pace's timer must keep running.
  bool bursting() const { return bursting_ > 0; }

  // Ingest has published datagrams. With fanout.max_batch_delay, wait that long for more
  // (unless a full batch waits already), so that each subscriber gets them in fewer messages.
  void on_wake(int timer_fd) {
    if (delay_ns_ == 0 || ring_.readable(ring_.consumer_position()) >= kMaxBatch) {
      drain();
      return;
    }
    if (timer_armed_) return;
    itimerspec when{};
    when.it_value = to_timespec(delay_ns_);
    timer_armed_ = timerfd_settime(timer_fd, 0, &when, nullptr) == 0;
    if (!timer_armed_) drain();
  }
  void on_timer() {
    timer_armed_ = false;
    drain();
  }

  void drain() {
    uint64_t tail = skip_stale(ring_.consumer_position());
    uint64_t slice_end = monotonic_ns() + kDrainSliceNs;
    for (bool first = true;; first = false) {
      if (!first && monotonic_ns() > slice_end) {
        wake_self();  // more waits: the loop comes back here once it has run
        return;
      }
      // The head is read before the subscriber table: a change whose OK was sent before a
      // datagram arrived is therefore always seen when that datagram is sent.
      uint64_t waiting = ring_.readable(tail);
      stats_.ring_lag.store(waiting, std::memory_order_relaxed);
      uint64_t generation = ctx_.segment.table().generation.load(std::memory_order_seq_cst);
      if (generation != generation_) rebuild(generation);
      if (waiting == 0) {
        if (bursting_) send_bursts(tail);  // the pace's timer: nothing new, the bursts go on
        return;
      }

      uint64_t end = tail + std::min<uint64_t>(waiting, kMaxBatch);
      if (bursting_) send_bursts(tail);
      for (const Target& t : targets_) {
        Link& link = links_[t.slot];
        if (link.from_position != kNoPosition && link.cursor < tail) continue;  // still catching up
        add_messages(t, tail, end);
        link.cursor = end;  // caught up: it goes on with the others
        send_if_full();
      }
      send_messages();
      add(stats_.datagrams, end - tail);
      tail = end;
      ring_.release(tail);
    }
  }

  // Signals the eventfd ingest signals: the loop calls on_wake() again at its next turn.
  void wake_self() {
    uint64_t one = 1;
    ssize_t ignored = write(ctx_.sockets.wake, &one, sizeof one);
    (void)ignored;
  }

  // The kernel reported errors on subscribers' sockets: ICMP refusals, each counted.
  void on_errors() {
    epoll_event events[64];
    int n = epoll_wait(errors_fd_, events, 64, 0);
    for (int i = 0; i < n; ++i) {
      uint32_t slot = events[i].data.u32;
      Link& link = links_[slot];
      int error = 0;
      socklen_t length = sizeof error;
      // Reading the error clears it (what a viewer may send us is never read: only errors
      // wake this set, and the socket's receive buffer is the smallest there is).
      if (link.fd < 0 || getsockopt(link.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) continue;
      if (error == ECONNREFUSED) note_refusal(link, slots_[slot]);
    }
  }

 private:
  // A fan-out that comes back after a stop (SIGSTOP, a hang its replacement ends) finds
  // seconds of stream waiting: what is older than fanout.max_lag is skipped, so viewers go
  // on live instead of getting it all in one burst. Receive stamps grow with positions,
  // so the first fresh datagram is found by bisection; the common case is one comparison.
  uint64_t skip_stale(uint64_t tail) {
    uint64_t waiting = ring_.readable(tail), now = monotonic_ns();
    if (max_lag_ns_ == 0 || waiting == 0 || now <= max_lag_ns_) return tail;
    uint64_t fresh_from = now - max_lag_ns_;
    if (ring_.header(tail).received_ns >= fresh_from) return tail;
    uint64_t stale = tail, end = tail + waiting;  // header(stale) is stale; find the first fresh one
    while (end - stale > 1) {
      uint64_t middle = stale + (end - stale) / 2;
      (ring_.header(middle).received_ns < fresh_from ? stale : end) = middle;
    }
    uint64_t skipped = end - tail;
    add(stats_.stale_skipped, skipped);
    if (auto note = stale_log_.due(now, "skips"))
      LOG_WARN("the fan-out was %.1f s behind the source: skipped %lu stale datagrams (fanout.max_lag)%s",
               to_seconds(now - ring_.header(tail).received_ns), (unsigned long)skipped, note->c_str());
    ring_.release(end);
    return end;
  }

  // Re-reads the subscriber table: a link for every new subscription, none for a gone one.
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
                              &slot.unreachable_from_ns, &slot.fast_start_from_ns})
          counter->store(0, std::memory_order_relaxed);
        slot.counted_incarnation.store(s.incarnation, std::memory_order_release);
      }
      if (link.incarnation != s.incarnation) open_link(link, i, s);
      link.multicast_ifindex = s.multicast_ifindex;  // a reload may change them in place
      link.multicast_ttl = s.multicast_ttl;
      if (link.from_ns != s.from_ns) {  // subscribed or resumed: a new period, a new streak
        link.refused_first_ns = link.refused_last_ns = 0;
        link.reported = false;
        link.from_position = kNoPosition;
        if (slot.fast_start_from_ns.load(std::memory_order_relaxed) != s.from_ns) {  // once per period
          slot.fast_start_from_ns.store(s.from_ns, std::memory_order_relaxed);
          if (fast_start_ && s.state == SubscriberState::kPlaying) begin_fast_start(link, slot, s.from_ns);
        }
      }
      link.from_ns = s.from_ns;
      link.until_ns = s.until_ns;
      targets_.push_back({i, s.from_ns, s.until_ns});
      if (s.state == SubscriberState::kPlaying) ++playing;
    }
    // IPv4 viewers first: their messages then go in as few sendmmsg calls as possible.
    std::stable_partition(targets_.begin(), targets_.end(),
                          [&](const Target& t) { return links_[t.slot].destination.family() == AF_INET; });
    stats_.playing.store(playing, std::memory_order_relaxed);
    stats_.sockets.store(open_links_, std::memory_order_relaxed);
    count_bursting(ring_.consumer_position());
  }

  void open_link(Link& link, uint32_t slot, const SubscriberSnapshot& s) {
    close_link(link);
    link.incarnation = s.incarnation;
    link.destination = s.destination;
    link.gso = gso_;
    if (s.destination.is_multicast()) return;  // no host answers for a group: nothing to hear
    int family = s.destination.family();
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1, small = 1;  // it receives nothing worth keeping: the smallest buffer
    // The same port as the shared socket (SO_REUSEADDR on both): viewers see one source, and
    // the viewer's ICMP errors find this socket.
    Endpoint local = wildcard(family, local_.port());
    epoll_event interest{};  // EPOLLERR is always reported
    interest.data.u32 = slot;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              (family != AF_INET6 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0) &&
              setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0 &&
              bind(fd, local.addr(), local.length) == 0 &&
              connect(fd, s.destination.addr(), s.destination.length) == 0 &&
              epoll_ctl(errors_fd_, EPOLL_CTL_ADD, fd, &interest) == 0;
    if (!ok) {
      // The stream still goes; only the viewer's refusals go unheard.
      if (socket_failures_++ == 0)
        LOG_WARN("no socket of its own for subscriber %s (%s): its refusals go unheard",
                 s.destination.to_string().c_str(), strerror(errno));
      if (fd >= 0) close(fd);
      return;
    }
    link.fd = fd;
    ++open_links_;
  }

  void close_link(Link& link) {
    if (link.fd >= 0) {
      close(link.fd);  // also leaves the epoll set
      --open_links_;
    }
    link = Link{};
  }

  // Adds the messages of datagrams [first, end) that belong to this subscriber. A run of
  // equal sizes is one GSO message (a shorter datagram may end it: the kernel allows the
  // last segment to be short).
  void add_messages(const Target& t, uint64_t first, uint64_t end) {
    const Link& link = links_[t.slot];
    // A fan-out killed mid-batch left how far it got: send nothing twice.
    first = std::max(first, slots_[t.slot].sent_until.load(std::memory_order_relaxed));
    ends_[t.slot] = end;
    uint32_t run_size = 0;
    bool run_open = false;
    for (uint64_t position = first; position < end; ++position) {
      const RingSlotHeader& h = ring_.header(position);
      if (!t.wants(h, link.from_position)) continue;
      unsigned last = messages_ - 1;
      bool joins = run_open && link.gso && h.length > 0 && h.length <= run_size &&
                   segments_[last] < kMaxSegments && bytes_[last] + h.length <= kMaxGsoBytes;
      if (!joins) {
        start_message(t.slot, link);
        run_size = h.length;
      }
      iovs_[iovs_used_++] = {ring_.data(position), h.length};
      ++segments_[messages_ - 1];
      bytes_[messages_ - 1] += h.length;
      run_open = h.length == run_size && run_size > 0;  // a shorter datagram ends the run
    }
  }

  void start_message(uint32_t slot, const Link& link) {
    unsigned m = messages_++;
    msghdr& h = msgs_[m].msg_hdr;
    h = {};
    h.msg_name = const_cast<sockaddr*>(link.destination.addr());
    h.msg_namelen = link.destination.length;
    h.msg_iov = &iovs_[iovs_used_];
    owners_[m] = slot;
    segments_[m] = 0;
    bytes_[m] = 0;
  }

  // Sends what is added when one more subscriber's messages might not fit.
  void send_if_full() {
    if (messages_ >= kMaxMessages || iovs_used_ > kIovRoom - kMaxBatch) send_messages();
  }

  // Sends the messages added so far, a sendmmsg at a time, and counts them per subscriber.
  // A GSO message the route refuses (EINVAL, EIO; EMSGSIZE to an IPv6 group) goes again one
  // datagram per message; any other failure drops that message, counted.
  void send_messages() {
    for (unsigned m = 0; m < messages_; ++m) {
      msghdr& h = msgs_[m].msg_hdr;
      h.msg_iovlen = segments_[m];
      set_control(h, control_[m], segments_[m] > 1 ? uint16_t(h.msg_iov[0].iov_len) : 0, links_[owners_[m]]);
    }
    Totals totals;
    unsigned i = 0;
    while (i < messages_) {
      // Messages to IPv4 viewers leave from the IPv4 socket (the targets come grouped by family).
      int family = address_family(i);
      unsigned count = 1;
      while (i + count < messages_ && count < kMaxMessages && address_family(i + count) == family) ++count;
      int r = sendmmsg(socket_for(family), &msgs_[i], count, 0);
      ++totals.calls;
      if (r > 0) {
        for (unsigned m = i; m < i + unsigned(r); ++m) count_sent(owners_[m], segments_[m], bytes_[m], &totals);
        i += unsigned(r);
        continue;
      }
      int error = errno;
      if (error == EINTR) continue;
      if (segments_[i] > 1 && (error == EINVAL || error == EIO || error == EMSGSIZE))
        send_split(i, error, &totals);  // this route takes no GSO
      else
        count_failed(owners_[i], segments_[i], error, &totals);
      ++i;
    }
    for (unsigned m = 0; m < messages_; ++m)
      slots_[owners_[m]].sent_until.store(ends_[owners_[m]], std::memory_order_relaxed);
    add(stats_.sent_datagrams, totals.sent);
    add(stats_.sent_bytes, totals.bytes);
    add(stats_.send_errors, totals.failed);
    add(stats_.batches, totals.calls);
    add(stats_.gso_sends, totals.gso_sends);
    messages_ = 0;
    iovs_used_ = 0;
  }

  int address_family(unsigned m) const { return static_cast<const sockaddr*>(msgs_[m].msg_hdr.msg_name)->sa_family; }
  int socket_for(int family) const { return family == AF_INET ? ctx_.sockets.fanout4 : ctx_.sockets.fanout; }

  struct Totals {
    uint64_t sent = 0, bytes = 0, failed = 0, calls = 0, gso_sends = 0;
  };

  void count_sent(uint32_t slot, unsigned segments, size_t bytes, Totals* totals) {
    add(slots_[slot].datagrams, segments);
    add(slots_[slot].bytes, bytes);
    totals->sent += segments;
    totals->bytes += bytes;
    totals->gso_sends += segments > 1;
  }

  void count_failed(uint32_t slot, unsigned segments, int error, Totals* totals) {
    add(slots_[slot].errors, segments);
    totals->failed += segments;
    if (send_failures_++ == 0)
      LOG_WARN("send to %s failed: %s", links_[slot].destination.to_string().c_str(), strerror(error));
  }

  // The ancillary data of a message to `link`: the GSO segment size (0: no GSO), and a
  // multicast output's interface and TTL. None at all for most messages.
  static void set_control(msghdr& h, char* control, uint16_t segment_size, const Link& link) {
    h.msg_control = control;
    h.msg_controllen = kControlSpace;
    size_t used = 0;
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    auto add = [&](int level, int type, const void* data, size_t size) {
      c->cmsg_level = level;
      c->cmsg_type = type;
      c->cmsg_len = CMSG_LEN(size);
      std::memcpy(CMSG_DATA(c), data, size);
      used += CMSG_SPACE(size);
      c = CMSG_NXTHDR(&h, c);
    };
    if (segment_size) add(SOL_UDP, UDP_SEGMENT, &segment_size, sizeof segment_size);
    int ttl = int(link.multicast_ttl);
    bool v6 = link.destination.family() == AF_INET6;
    if (link.multicast_ifindex && v6) {
      in6_pktinfo info{};
      info.ipi6_ifindex = link.multicast_ifindex;
      add(IPPROTO_IPV6, IPV6_PKTINFO, &info, sizeof info);
    } else if (link.multicast_ifindex) {
      in_pktinfo info{};
      info.ipi_ifindex = int(link.multicast_ifindex);
      add(IPPROTO_IP, IP_PKTINFO, &info, sizeof info);
    }
    if (ttl) add(v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_HOPLIMIT : IP_TTL, &ttl, sizeof ttl);
    h.msg_controllen = used;
    if (used == 0) h.msg_control = nullptr;
  }

  // Message m again, one datagram per message, and none in GSO to that subscriber from now on
  // (a device without checksum offload, a segment over the path's MTU).
  void send_split(unsigned m, int error, Totals* totals) {
    Link& link = links_[owners_[m]];
    link.gso = false;
    LOG_NOTICE("the route to %s refuses UDP GSO (%s): one message per datagram to it",
               link.destination.to_string().c_str(), strerror(error));
    const msghdr& gso = msgs_[m].msg_hdr;
    unsigned count = unsigned(gso.msg_iovlen);
    for (unsigned k = 0; k < count; ++k) {
      split_[k].msg_hdr = {};
      split_[k].msg_hdr.msg_name = gso.msg_name;
      split_[k].msg_hdr.msg_namelen = gso.msg_namelen;
      split_[k].msg_hdr.msg_iov = gso.msg_iov + k;
      split_[k].msg_hdr.msg_iovlen = 1;
      set_control(split_[k].msg_hdr, split_control_[k], 0, link);
    }
    for (unsigned k = 0; k < count;) {
      int r = sendmmsg(socket_for(address_family(m)), &split_[k], count - k, 0);
      ++totals->calls;
      if (r > 0) {
        for (unsigned j = k; j < k + unsigned(r); ++j) count_sent(owners_[m], 1, gso.msg_iov[j].iov_len, totals);
        k += unsigned(r);
      } else if (errno != EINTR) {
        count_failed(owners_[m], 1, errno, totals);
        ++k;
      }
    }
  }

  // A new viewer (or one that resumes) gets the stream's PAT and PMT, then everything from
  // the last key frame before it came on, at fanout.fast_start_rate times the stream's
  // rate, then goes on live: a picture at once instead of at the next key frame. Only when
  // the tables are known and that key frame is still well inside the ring (its slot flag).
  void begin_fast_start(Link& link, SubscriberSlot& slot, uint64_t from_ns) {
    std::optional<FastStartPoint> start = choose_fast_start(ring_, stream_, from_ns);
    if (!start) return;
    uint64_t key = start->key_position;
    link.from_position = key;
    link.tables_seq = start->tables_seq;
    // A key frame not sent to anyone yet goes with the next batch, as live.
    link.cursor = std::min(key, ring_.consumer_position());
    slot.sent_until.store(key, std::memory_order_relaxed);  // a resumed viewer gets them again
    link.tables_pending = true;
    link.credit = kFirstBurst;
    link.credit_ns = monotonic_ns();
    add(stats_.fast_starts, 1);
  }

  // Each catching-up subscriber gets what its pace allows of [cursor, tail); one that has
  // caught up joins the others (its later datagrams go with theirs, by position). All the
  // bursts together send at most kMaxBatch datagrams per call, so that however many viewers
  // join at once, the live stream waits at most one batch for them; the turn rotates.
  void send_bursts(uint64_t tail) {
    uint64_t now = monotonic_ns(), head = ring_.head_now();
    double rate = burst_rate();
    uint64_t budget = kMaxBatch;
    size_t count = targets_.size(), first = count ? burst_turn_++ % count : 0;
    for (size_t k = 0; k < count; ++k) {
      const Target& t = targets_[(first + k) % count];
      Link& link = links_[t.slot];
      if (link.from_position == kNoPosition || link.cursor >= tail) continue;
      if (head - link.cursor > reachable_span(ring_)) {  // fell too far behind: ingest will write there
        link.cursor = tail;
        continue;
      }
      link.credit = std::min(double(kMaxBatch), link.credit + rate * to_seconds(now - link.credit_ns));
      link.credit_ns = now;
      if (link.tables_pending && !read_tables(stream_, link.tables_seq, &tables_)) {
        link.tables_pending = false;  // the source changed its tables: no burst, live from here
        link.cursor = tail;
        continue;
      }
      if (link.tables_pending) {
        continue_counters(ring_, link.from_position, tail, &tables_);
        start_message(t.slot, link);
        iovs_[iovs_used_++] = {tables_.data(), tables_.size()};
        segments_[messages_ - 1] = 1;
        bytes_[messages_ - 1] = tables_.size();
        ends_[t.slot] = link.cursor;
        link.tables_pending = false;
        send_messages();  // tables_ is one buffer: the next subscriber's counters may differ
      }
      uint64_t end = std::min({tail, link.cursor + uint64_t(link.credit), link.cursor + budget});
      if (end <= link.cursor) continue;
      add_messages(t, link.cursor, end);
      add(stats_.burst_datagrams, end - link.cursor);
      link.credit -= double(end - link.cursor);
      budget -= end - link.cursor;
      link.cursor = end;
      send_if_full();
    }
    send_messages();
    count_bursting(tail);
  }

  void count_bursting(uint64_t tail) {
    bursting_ = 0;
    for (const Target& t : targets_) bursting_ += links_[t.slot].from_position != kNoPosition && links_[t.slot].cursor < tail;
  }

  // Datagrams per second of a burst: fanout.fast_start_rate times the source's (at least 100/s).
  double burst_rate() const {
    double stream = double(ctx_.segment.stats().ingest.rate_datagrams.load(std::memory_order_relaxed));
    return std::max(100.0, stream) * ctx_.config.fanout.fast_start_rate;
  }

  // Refusals with no quiet gap for fanout.unreachable_pause while playing: the viewer is
  // gone. Control alone writes the table, so the fan-out marks the slot and control pauses it.
  void note_refusal(Link& link, SubscriberSlot& slot) {
    add(slot.refusals, 1);
    add(slot.errors, 1);
    add(stats_.refusals, 1);
    uint64_t now = monotonic_ns();
    if (!link.refused_first_ns || now - link.refused_last_ns > kRefusalQuietNs) link.refused_first_ns = now;
    link.refused_last_ns = now;
    if (!unreachable_ns_ || link.reported || link.until_ns != kForever || now - link.refused_first_ns < unreachable_ns_)
      return;
    link.reported = true;
    slot.unreachable_from_ns.store(link.from_ns, std::memory_order_release);
    stats_.unreachable.store(stats_.unreachable.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    LOG_NOTICE("%s refused every datagram for %u s: its subscription is paused",
               link.destination.to_string().c_str(), ctx_.config.fanout.unreachable_pause_s);
  }

  ChildContext& ctx_;
  RingView ring_;
  fanout_stats& stats_;
  SubscriberSlot* slots_;
  uint32_t slot_count_;
  Endpoint local_;  // the shared socket's address, whose port every subscriber's socket binds
  std::vector<Link> links_;  // by slot
  int errors_fd_;            // epoll set of the subscribers' sockets
  bool gso_;
  uint64_t unreachable_ns_, delay_ns_;
  StreamInfo& stream_;
  bool fast_start_;
  uint64_t bursting_ = 0;  // subscribers catching up from a key frame
  uint64_t burst_turn_ = 0;  // whose burst goes first (send_bursts)
  TablePackets tables_{};
  uint64_t max_lag_ns_;
  log::Throttle stale_log_{kNsPerSecond};
  std::vector<uint64_t> ends_;  // per slot: the position this send goes up to
  bool timer_armed_ = false;
  uint64_t generation_ = ~0ull;
  std::vector<Target> targets_;
  uint64_t open_links_ = 0, socket_failures_ = 0, send_failures_ = 0;
  // The messages of one sendmmsg, for many subscribers, reused batch after batch.
  unsigned messages_ = 0, iovs_used_ = 0;
  std::array<mmsghdr, kMessageRoom> msgs_{};
  std::array<uint32_t, kMessageRoom> owners_{};  // the slot each message goes to
  std::array<unsigned, kMessageRoom> segments_{};
  std::array<size_t, kMessageRoom> bytes_{};
  std::array<iovec, kIovRoom> iovs_{};           // a message's datagrams, one iovec each
  alignas(cmsghdr) char control_[kMessageRoom][kControlSpace]{};
  mmsghdr split_[kMaxSegments]{};
  alignas(cmsghdr) char split_control_[kMaxSegments][kControlSpace]{};
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
    ev_timer* pace = nullptr;
  } watchers{&fanout, timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)};
  if (fanout.errors_fd() < 0 || (watchers.timer_fd < 0 && ctx.config.fanout.max_batch_delay_us)) {
    LOG_ERROR("epoll_create1 or timerfd_create: %s", strerror(errno));
    return 1;
  }
  ev_io wake, timer, errors;
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
  ev_io_init(&errors, [](struct ev_loop*, ev_io* w, int) { static_cast<Watchers*>(w->data)->fanout->on_errors(); },
             fanout.errors_fd(), EV_READ);
  errors.data = &watchers;
  ev_io_start(child.loop(), &errors);
  // The pace of fast starts: while a subscriber catches up, every 2 ms, new datagrams or not.
  ev_prepare pace_check;
  ev_timer pace;
  ev_timer_init(&pace, [](struct ev_loop*, ev_timer* w, int) { static_cast<Watchers*>(w->data)->fanout->drain(); },
                0.002, 0.002);
  pace.data = &watchers;
  ev_prepare_init(&pace_check, [](struct ev_loop* loop, ev_prepare* w, int) {
    auto* watchers = static_cast<Watchers*>(w->data);
    ev_timer* timer = watchers->pace;
    if (watchers->fanout->bursting() && !ev_is_active(timer)) ev_timer_start(loop, timer);
    if (!watchers->fanout->bursting() && ev_is_active(timer)) ev_timer_stop(loop, timer);
  });
  pace_check.data = &watchers;
  watchers.pace = &pace;
  ev_prepare_start(child.loop(), &pace_check);
  LOG_INFO("sending copies from %s to up to %u subscribers", ctx.segment.header().fanout_address,
           ctx.segment.header().max_subscribers);
  fanout.wake_self();  // what arrived while this process was (re)starting, once it is ready
  child.run();
  if (watchers.timer_fd >= 0) close(watchers.timer_fd);
  return 0;
}

}  // namespace vrelay
