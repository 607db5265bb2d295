// The shared-memory segment of one vrelay instance (/vrelay.<instance>): its fixed layout,
// created by the supervisor before it forks, mapped read-only by outside readers.
// No lock lives here: every field has exactly one writing process (see docs/architecture.md).
#pragma once
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "clock.hpp"
#include "result.hpp"

namespace vrelay {

constexpr size_t kCacheLine = 64;
constexpr uint64_t kShmMagic = 0x31594C4552525621ull;  // "!VRRELY1" little-endian
constexpr uint32_t kLayoutMajor = 9;  // 6: monotonic receive stamps and cut-offs; 7: Header.reload_error;
                                      // 8: SubscriberSlot.owner_name, StreamInfo.bitrate_history;
                                      // 9: SubscriberSlot.multicast_ifindex/multicast_ttl (outputs),
                                      //    Header.upstream_address, ingest.upstream_* counters,
                                      //    http.streams, streams_opened, stream_bytes, stream_cut,
                                      //    streams_refused (the /stream counters)
constexpr uint32_t kLayoutMinor = 0;
constexpr uint32_t layout_version(uint32_t major, uint32_t minor) { return major << 16 | minor; }

// kHttp runs only when http.listen is set; its process slot stays kStopped otherwise.
enum Role : uint32_t { kIngest = 0, kFanout = 1, kControl = 2, kHttp = 3, kRoleCount = 4 };
const char* role_name(Role role);

enum class ProcessState : uint32_t { kStopped = 0, kStarting = 1, kReady = 2, kBackoff = 3 };

// The fields up to supervisor_pid keep their offsets in every layout version, so any
// release can tell a live segment from a stale one.
struct alignas(kCacheLine) Header {
  uint64_t magic;
  std::atomic<uint32_t> version;  // layout_version(); 0 while the supervisor fills the segment
  uint32_t header_size;
  uint64_t total_size;
  uint64_t created_ns;
  int32_t supervisor_pid;
  uint32_t max_subscribers;
  uint64_t processes_offset;
  uint64_t stats_offset;
  uint64_t subscribers_offset;
  uint64_t ring_offset;        // RingControl, then the slots
  uint32_t ring_slots;         // power of two
  uint32_t ring_slot_stride;   // bytes per slot, header included
  uint32_t max_datagram;
  uint32_t reserved;
  char instance[40];
  char software_version[24];
  char control_address[64];    // bound addresses ("127.0.0.1:41234"), port 0 resolved
  char ingest_address[64];
  char http_address[64];       // "" when http.listen is off
  char fanout_address[64];     // where every copy comes from ("[::]:41235")
  // Why the last reload was refused, written before supervisor.reload_failures counts it.
  char reload_error[512];
  // ingest.upstream as configured ("10.0.0.1:7700"), "" when this relay has none; its
  // state is the counter ingest.upstream_state.
  char upstream_address[64];
};

struct alignas(kCacheLine) ProcessSlot {  // written by the supervisor, except heartbeat/state
  std::atomic<int32_t> pid;
  std::atomic<uint32_t> state;            // ProcessState; kReady written by the child
  std::atomic<uint64_t> started_ns;
  std::atomic<uint64_t> restarts;
  std::atomic<uint64_t> heartbeat_ns;     // written by the child; CLOCK_MONOTONIC
};

// Counter groups generated from counters.def, one cache-line-aligned block per process.
#define VRELAY_GROUP_BEGIN(group, help) struct alignas(kCacheLine) group##_stats {
#define VRELAY_COUNTER(group, name, kind, help) std::atomic<uint64_t> name;
#define VRELAY_GROUP_END(group) };
#include "counters.def"
#undef VRELAY_GROUP_BEGIN
#undef VRELAY_COUNTER
#undef VRELAY_GROUP_END

// Every group, in the order of counters.def: stats.ingest.datagrams, ...
struct Stats {
#define VRELAY_GROUP_BEGIN(group, help) group##_stats group;
#define VRELAY_COUNTER(group, name, kind, help)
#define VRELAY_GROUP_END(group)
#include "counters.def"
#undef VRELAY_GROUP_BEGIN
#undef VRELAY_COUNTER
#undef VRELAY_GROUP_END
};

enum class CounterKind { counter, gauge };
struct CounterInfo {
  const char* group;
  const char* name;
  CounterKind kind;
  const char* help;
  size_t offset;  // within Stats
};
extern const CounterInfo kCounters[];
extern const size_t kCounterCount;
inline uint64_t read_counter(const Stats& stats, const CounterInfo& info) {
  auto* p = reinterpret_cast<const std::atomic<uint64_t>*>(reinterpret_cast<const char*>(&stats) + info.offset);
  return p->load(std::memory_order_relaxed);
}

constexpr size_t kOwnerNameWords = 5;  // SubscriberSlot.owner_name: 40 bytes
// The owner of a fixed output (the `outputs:` of vrelay.yaml(5)): no session, never an
// orphan; its owner_name is the output's name.
constexpr uint64_t kOutputOwner = ~0ull;
enum class SubscriberState : uint32_t { kFree = 0, kPlaying = 1, kPaused = 2 };
const char* subscriber_state_name(SubscriberState state);

// One subscription. Control writes the first block under a seqlock (odd `seq` = being
// written); fan-out reads it only when `table_generation` changed. Fan-out alone writes the
// counters. A datagram goes to the subscriber iff from_ns <= its receive time < until_ns:
// the cut-offs of PAUSE and RESUME are exact whatever the fan-out's lag, and monotonic.
struct alignas(kCacheLine) SubscriberSlot {
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> state;        // SubscriberState
  std::atomic<uint64_t> incarnation;  // new for every subscription using this slot
  std::atomic<uint64_t> from_ns;      // CLOCK_MONOTONIC, as the ring's receive stamps
  std::atomic<uint64_t> until_ns;     // UINT64_MAX while playing
  std::atomic<uint32_t> family;       // AF_INET or AF_INET6
  std::atomic<uint32_t> port;
  std::atomic<uint32_t> ip[4];        // network byte order; IPv4 in ip[0]
  std::atomic<uint64_t> since_ns;     // when the current state began (wall clock, for people)
  std::atomic<uint64_t> owner;        // control session id; 0 = orphan of a dead control
  std::atomic<uint64_t> orphan_deadline_ns;  // CLOCK_MONOTONIC
  // The owner session's name ("ana", "guest-3"), NUL-padded, kOwnerNameWords * 8 bytes at
  // most; all zero for an orphan. Words, not chars, so the seqlock's readers race with nothing.
  std::atomic<uint64_t> owner_name[kOwnerNameWords];
  // A multicast output's interface (0 = the routing table's choice) and TTL or hop limit
  // (0 = the socket's default: 1 for multicast); zero for every other subscription.
  std::atomic<uint32_t> multicast_ifindex;
  std::atomic<uint32_t> multicast_ttl;

  alignas(kCacheLine) std::atomic<uint64_t> counted_incarnation;  // fan-out: counters belong to it
  std::atomic<uint64_t> datagrams;
  std::atomic<uint64_t> bytes;
  std::atomic<uint64_t> errors;        // copies not sent, refusals included
  std::atomic<uint64_t> refusals;      // ECONNREFUSED: the viewer's host said its port is closed
  std::atomic<uint64_t> sent_until;    // ring position this subscription was sent up to, so a
                                       // restarted fan-out sends nothing twice
  // The from_ns of the playing period that met only refusals for fanout.unreachable_pause:
  // control pauses that subscription and tells its session (EVENT UNREACHABLE).
  std::atomic<uint64_t> unreachable_from_ns;
  std::atomic<uint64_t> fast_start_from_ns;  // the period whose fast start the fan-out decided
};

struct alignas(kCacheLine) TableControl {
  std::atomic<uint64_t> generation;  // control bumps it after every slot change
};

// What ingest learned of the stream it relays (common/mpegts.hpp), for the fan-out's fast
// start and for readers: written by ingest alone, rebuilt from the ring when it restarts.
constexpr uint64_t kNoPosition = ~0ull;
constexpr size_t kTablePacketWords = 24;  // a 188-byte TS packet in 64-bit words
constexpr size_t kBitrateHistory = 600;    // StreamInfo.bitrate_history: ten minutes
struct alignas(kCacheLine) StreamInfo {
  std::atomic<uint64_t> key_frame_position;  // ring position where the last key frame's access
                                             // unit begins; kNoPosition: none yet
  std::atomic<uint64_t> key_frame_ns;        // its receive time (monotonic)
  std::atomic<uint32_t> codec;               // VideoCodec of the video PID
  std::atomic<uint32_t> tables_seq;          // seqlock of pat/pmt: odd while written, 0 = none
  std::atomic<uint64_t> tables_position;     // the ring position from which they hold: no key
                                             // frame before it belongs to this stream
  std::atomic<uint64_t> pat[kTablePacketWords];  // the latest PAT and PMT packets
  std::atomic<uint64_t> pmt[kTablePacketWords];
  // The source's rate, once a second (ingest.rate_bytes), for the last kBitrateHistory
  // seconds: sample n lies in bitrate_history[n % kBitrateHistory]; bitrate_samples counts
  // the samples ever written (stored with release after the sample). Kept across restarts
  // of ingest and of readers.
  alignas(kCacheLine) std::atomic<uint64_t> bitrate_samples;
  std::atomic<uint64_t> bitrate_history[kBitrateHistory];  // bytes per second
};

// Ring of datagrams: positions only grow; slot = position & (slots - 1).
struct RingControl {
  alignas(kCacheLine) std::atomic<uint64_t> head;  // written by ingest: next position to fill
  alignas(kCacheLine) std::atomic<uint64_t> tail;  // written by fan-out: next position to send
};
constexpr uint32_t kSlotKeyFrame = 1;  // a key frame's access unit begins in this datagram
struct RingSlotHeader {
  uint32_t length;
  uint32_t flags;  // kSlotKeyFrame; set through std::atomic_ref once the slot is published
  uint64_t position;
  uint64_t received_ns;  // CLOCK_MONOTONIC: monotonic_receive_time() of the kernel's stamp
  uint64_t reserved;
};
constexpr size_t kRingDataOffset = 32;
static_assert(sizeof(RingSlotHeader) <= kRingDataOffset);

static_assert(std::is_standard_layout_v<Header>);
static_assert(std::is_standard_layout_v<ProcessSlot>);
static_assert(std::is_standard_layout_v<SubscriberSlot>);
static_assert(std::is_standard_layout_v<RingControl>);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(sizeof(SubscriberSlot) % kCacheLine == 0);
static_assert(offsetof(SubscriberSlot, counted_incarnation) == 2 * kCacheLine, "the written block fills two lines");

struct LayoutParams {
  uint32_t max_subscribers;
  uint32_t ring_slots;
  uint32_t max_datagram;
};

// Byte offsets of each part for these parameters.
struct Layout {
  uint64_t processes, stats, table, stream, subscribers, ring, total;
  uint32_t slot_stride;
  static Layout compute(const LayoutParams& params);
};

// Checks a mapped segment before anything else is read: magic, version, sizes, offsets.
// Fails with a message a person can act on. `starting` is set when the supervisor has not
// published the header yet (version 0), `other_version` when another release's layout is
// there.
Status check_header(const void* base, size_t mapped_size, bool* starting = nullptr, bool* other_version = nullptr);

// Why a segment could not be opened or created, for callers that act on it (vrelaystat's
// advice, the supervisor's cleanup) without reading the message.
enum class SegmentProblem { kMissing, kDenied, kStarting, kOtherVersion, kDamaged, kRunning, kOther };
class SegmentError : public std::runtime_error {
 public:
  SegmentError(SegmentProblem problem, const std::string& message)
      : std::runtime_error(message), problem_(problem), reason_(message) {}
  // About one segment's contents: the message is "<segment>: <reason>".
  SegmentError(SegmentProblem problem, const std::string& segment, const std::string& reason)
      : std::runtime_error(segment + ": " + reason), problem_(problem), reason_(reason) {}
  SegmentProblem problem() const { return problem_; }
  // The message without the segment's name in front (for a caller that names it its own way).
  const std::string& reason() const { return reason_; }

 private:
  SegmentProblem problem_;
  std::string reason_;
};

// Two relays of one instance exclude each other by this lock (flock), taken by the
// supervisor before it creates the segment and held, through fork, by every process of the
// relay while any lives: a lock, not a pid in a file anyone may write. The lock file lies
// in a directory no other user may write: $RUNTIME_DIRECTORY (systemd), /run/vrelay as
// root, $XDG_RUNTIME_DIR, or /tmp/vrelay-UID.
class InstanceLock {
 public:
  // Throws SegmentError(kRunning) when a relay of this instance holds it.
  explicit InstanceLock(const std::string& instance);
  ~InstanceLock();
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }  // every child keeps it open

 private:
  int fd_ = -1;
  std::string path_;
};

// A mapped segment. The supervisor creates it; every other process only opens it.
class Segment {
 public:
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Creates /vrelay.<instance> (mode 0640), replacing a stale or planted one; the caller
  // holds the InstanceLock. Throws SegmentError if another user's file is in the way (and
  // this is not root) or a live relay of another lock directory owns it. Leaves version 0
  // until publish().
  static std::unique_ptr<Segment> create(const std::string& instance, const LayoutParams& params);
  // Maps an existing segment and checks it; throws std::runtime_error with the reason.
  static std::unique_ptr<Segment> open(const std::string& instance, bool read_only);
  static std::string shm_name(const std::string& instance) { return "vrelay." + instance; }
  // An instance name becomes part of a file name: 1 to 32 of [A-Za-z0-9_-]. Fails with the
  // rule otherwise.
  static Status valid_instance_name(const std::string& instance);
  static bool remove(const std::string& instance);

  // What a reload that resizes the segment carried over from the old one (carry_over_from).
  struct CarriedOver {
    uint32_t subscriptions = 0;  // packed into the first slots of the new table
    uint32_t left_out = 0;       // subscriptions the new table had no room for
    uint64_t datagrams = 0;      // the newest datagrams of the old ring that fit the new one
    uint64_t unsent = 0;         // datagrams the fan-out had not sent, older than those
  };
  // Fills this new (unpublished) segment with the relay's state in `old`, whose every other
  // process has stopped: process slots, counters, stream facts, subscriptions and the ring's
  // positions with the newest datagrams that fit (a restarted fan-out goes on from where
  // the old one stopped, each subscription from its sent_until).
  CarriedOver carry_over_from(const Segment& old);

  void publish();  // writes the version word last, with release
  void give_to(uid_t uid, gid_t gid);  // the service account's, when root dropped to it

  char* base() const { return base_; }
  size_t size() const { return size_; }
  // The file under the mapping is now shorter than the mapping: reading past its end would
  // raise SIGBUS, so a reader that sees this lets the mapping go.
  bool shrunk() const;
  // The name now points to another segment (a restarted relay's, or a reload's new sizes)
  // or to none: this mapping is stale, and a reader opens the name again.
  bool replaced() const;
  Header& header() const { return *reinterpret_cast<Header*>(base_); }
  ProcessSlot& process(Role role) const {
    return reinterpret_cast<ProcessSlot*>(base_ + header().processes_offset)[role];
  }
  Stats& stats() const { return *reinterpret_cast<Stats*>(base_ + header().stats_offset); }
  TableControl& table() const;
  StreamInfo& stream() const;
  SubscriberSlot* subscribers() const {
    return reinterpret_cast<SubscriberSlot*>(base_ + header().subscribers_offset);
  }
  RingControl& ring_control() const { return *reinterpret_cast<RingControl*>(base_ + header().ring_offset); }
  char* ring_slots() const { return base_ + header().ring_offset + sizeof(RingControl); }

 private:
  Segment() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  char* base_ = nullptr;
  size_t size_ = 0;
};


}  // namespace vrelay
