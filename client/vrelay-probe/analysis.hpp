// vrelay-probe's analysis (pure code, no I/O): datagram bytes and arrival time in, counters
// out. Tells the stream's kind (counter stream, RTP, raw MPEG-TS, unknown) and checks it:
// sequence numbers (received, lost, out of order, duplicates) and MPEG-TS continuity
// counters per PID. Nothing here allocates per datagram: the windows and the PID table are
// sized once, when the Analyzer is built. The exact definitions are in man/vrelay-probe.1.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mpegts.hpp"  // kTsPacketSize, parse_rtp

namespace vrelay::probe {

// The bitmap of SequenceTracker remembers this many indexes below the highest one.
constexpr uint64_t kSequenceWindow = 65536;

// Counts a sequence-numbered stream from its (already extended, 64-bit) indexes.
//   duplicates   datagrams whose index was already received
//   out_of_order datagrams, not duplicates, whose index is lower than the highest index
//                received before them
//   lost         (highest - lowest + 1) - distinct indexes received
//   too_old      datagrams kSequenceWindow or more below the highest index: whether they are
//                duplicates cannot be told, so they count in received and out_of_order only,
//                and never as a distinct index (lowest, highest, lost stay as they were)
class SequenceTracker {
 public:
  void add(uint64_t index);

  uint64_t received() const { return received_; }
  uint64_t duplicates() const { return duplicates_; }
  uint64_t out_of_order() const { return out_of_order_; }
  uint64_t too_old() const { return too_old_; }
  uint64_t distinct() const { return distinct_; }
  bool any() const { return distinct_ > 0; }
  uint64_t lowest() const { return lowest_; }
  uint64_t highest() const { return highest_; }
  uint64_t lost() const;

 private:
  bool test_and_set(uint64_t index);  // returns the old bit
  void clear_range(uint64_t from, uint64_t to);  // indexes from..to, to - from < kSequenceWindow

  std::array<uint64_t, kSequenceWindow / 64> bits_{};  // bit (index % window) for index
  uint64_t received_ = 0, duplicates_ = 0, out_of_order_ = 0, too_old_ = 0, distinct_ = 0;
  uint64_t lowest_ = 0, highest_ = 0;
};

// Extends 16-bit RTP sequence numbers to 64 bits (RFC 3550, appendix A.1): each number is
// taken as the value nearest to the highest extended number so far, i.e. up to 32767 ahead
// (crossing 65535 -> 0 starts a new cycle) or up to 32768 behind.
class RtpSequenceExtender {
 public:
  uint64_t extend(uint16_t sequence);

 private:
  bool started_ = false;
  uint64_t highest_ = 0;
};


// Checks MPEG-TS packets (ISO/IEC 13818-1, 2.4.3.3): continuity counter errors per PID and
// packets per PID.
class TsAnalyzer {
 public:
  struct Pid {
    uint64_t packets = 0;
    uint64_t cc_errors = 0;
    uint64_t discontinuities = 0;  // packets with discontinuity_indicator set
    uint8_t last_cc = 0;
    bool seen = false, last_had_payload = false, duplicate_used = false;
  };

  TsAnalyzer();  // allocates the PID table (8192 entries), once
  // Every 188-byte packet of `data`; a tail shorter than a packet counts one sync error.
  void feed(const uint8_t* data, size_t length);
  void feed_packet(const uint8_t* packet);  // exactly kTsPacketSize bytes

  uint64_t packets() const { return packets_; }          // complete packets, sync byte or not
  uint64_t sync_errors() const { return sync_errors_; }  // bad sync bytes + short tails
  uint64_t cc_errors() const { return cc_errors_; }
  uint64_t transport_errors() const { return transport_errors_; }  // transport_error_indicator
  uint64_t pid_count() const { return pid_count_; }      // PIDs seen
  const Pid& pid(uint16_t pid) const { return pids_[pid]; }

 private:
  std::vector<Pid> pids_;
  uint64_t packets_ = 0, sync_errors_ = 0, cc_errors_ = 0, transport_errors_ = 0, pid_count_ = 0;
};

enum class StreamKind { kUnknown, kCounter, kRtp, kMpegTs };
const char* kind_name(StreamKind kind);  // "unknown", "counter", "rtp", "mpegts"

// How one datagram reads, before the stream's kind is known.
StreamKind classify(const uint8_t* data, size_t length);


// Plain numbers of one moment, for the live line (differences between two) and the report.
struct Totals {
  uint64_t datagrams = 0, bytes = 0;
  uint64_t other = 0;  // datagrams not of the stream's kind (or before it was known)
  uint64_t first_ns = 0, last_ns = 0;  // arrival times (monotonic) of the first and last
  uint64_t first_bytes = 0;            // size of the first datagram
  uint64_t max_gap_ns = 0;             // longest time between two datagrams in a row
};

// The whole analysis of one stream. The kind is set by the first datagram that classify()
// recognises, and stays; datagrams of another kind then count as `other` only.
class Analyzer {
 public:
  Analyzer() = default;
  void feed(const uint8_t* data, size_t length, uint64_t arrival_ns);

  StreamKind kind() const { return kind_; }
  const Totals& totals() const { return totals_; }
  const SequenceTracker& sequence() const { return sequence_; }  // counter and RTP
  const TsAnalyzer& ts() const { return ts_; }  // raw MPEG-TS, and RTP's TS payloads
  uint64_t counter_sum() const { return counter_sum_; }  // modulo 2^64
  uint64_t counter_corrupt() const { return counter_corrupt_; }
  uint64_t rtp_ts_payloads() const { return rtp_ts_payloads_; }  // RTP packets carrying TS
  int rtp_payload_type() const { return rtp_payload_type_; }     // of the last one; -1 none
  uint32_t rtp_ssrc() const { return rtp_ssrc_; }
  uint64_t rtp_ssrc_changes() const { return rtp_ssrc_changes_; }
  // Average bitrate: 8 * (bytes after the first datagram) / (last - first arrival); 0 for
  // fewer than two datagrams or no time between them.
  double bitrate_bps() const;

 private:
  bool feed_kind(const uint8_t* data, size_t length);  // false: not of the stream's kind

  StreamKind kind_ = StreamKind::kUnknown;
  Totals totals_;
  SequenceTracker sequence_;
  RtpSequenceExtender rtp_extender_;
  TsAnalyzer ts_;
  uint64_t counter_sum_ = 0, counter_corrupt_ = 0;
  uint64_t rtp_ts_payloads_ = 0, rtp_ssrc_changes_ = 0;
  int rtp_payload_type_ = -1;
  uint32_t rtp_ssrc_ = 0;
};

}  // namespace vrelay::probe
