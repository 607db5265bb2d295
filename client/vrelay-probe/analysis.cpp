// vrelay-probe's analysis (pure code, run by vrelay-probe and the unit tests): sequence
// tracking, RTP header parsing, MPEG-TS continuity checks. Every read of a datagram is
// bounded by its length first: any bytes may arrive.
#include "analysis.hpp"

#include <algorithm>

#include "counter_stream.hpp"

namespace vrelay::probe {

// ---- SequenceTracker ----
//
// Invariant: for every index i in (highest - kSequenceWindow, highest], the bit at
// i % kSequenceWindow says whether i was received. Moving `highest` up clears the bits of
// the indexes that enter the window (they reuse the positions of those that leave it).

bool SequenceTracker::test_and_set(uint64_t index) {
  uint64_t position = index % kSequenceWindow;
  uint64_t& word = bits_[position / 64];
  uint64_t mask = uint64_t(1) << (position % 64);
  bool was = (word & mask) != 0;
  word |= mask;
  return was;
}

void SequenceTracker::clear_range(uint64_t from, uint64_t to) {
  for (uint64_t i = from;; ++i) {
    uint64_t position = i % kSequenceWindow;
    if (position % 64 == 0 && to - i >= 63) {  // a whole word
      bits_[position / 64] = 0;
      i += 63;
    } else {
      bits_[position / 64] &= ~(uint64_t(1) << (position % 64));
    }
    if (i == to) break;
  }
}

void SequenceTracker::add(uint64_t index) {
  ++received_;
  if (distinct_ == 0) {
    lowest_ = highest_ = index;
    test_and_set(index);
    distinct_ = 1;
    return;
  }
  if (index > highest_) {
    if (index - highest_ >= kSequenceWindow)
      bits_.fill(0);
    else
      clear_range(highest_ + 1, index);
    test_and_set(index);
    highest_ = index;
    ++distinct_;
    return;
  }
  if (highest_ - index >= kSequenceWindow) {  // before the window: cannot tell a duplicate
    ++too_old_;
    ++out_of_order_;
    return;
  }
  if (test_and_set(index)) {
    ++duplicates_;
    return;
  }
  ++distinct_;
  if (index < highest_) ++out_of_order_;
  lowest_ = std::min(lowest_, index);
}

uint64_t SequenceTracker::lost() const {
  if (distinct_ == 0) return 0;
  // (highest - lowest + 1) - distinct, written so that it cannot overflow: every distinct
  // index lies in [lowest, highest], so distinct - 1 <= highest - lowest.
  return (highest_ - lowest_) - (distinct_ - 1);
}

// ---- RtpSequenceExtender ----

uint64_t RtpSequenceExtender::extend(uint16_t sequence) {
  if (!started_) {
    started_ = true;
    // Start many cycles above 0 so that numbers from before the first one stay positive.
    highest_ = (uint64_t(1) << 32) | sequence;
    return highest_;
  }
  // The 16-bit difference read as -32768..32767: the nearest extended number.
  auto delta = static_cast<int16_t>(static_cast<uint16_t>(sequence - static_cast<uint16_t>(highest_)));
  uint64_t extended = highest_ + static_cast<uint64_t>(static_cast<int64_t>(delta));
  if (delta > 0) highest_ = extended;
  return extended;
}

// ---- TsAnalyzer ----

TsAnalyzer::TsAnalyzer() : pids_(kTsPidCount) {}

void TsAnalyzer::feed(const uint8_t* data, size_t length) {
  size_t whole = length / kTsPacketSize;
  for (size_t i = 0; i < whole; ++i) feed_packet(data + i * kTsPacketSize);
  if (length % kTsPacketSize != 0) ++sync_errors_;
}

void TsAnalyzer::feed_packet(const uint8_t* p) {
  ++packets_;
  if (p[0] != kTsSync) {
    ++sync_errors_;
    return;
  }
  if (p[1] & 0x80) {  // transport_error_indicator: the header itself may be damaged
    ++transport_errors_;
    return;
  }
  uint16_t pid_number = static_cast<uint16_t>((p[1] & 0x1F) << 8 | p[2]);
  Pid& s = pids_[pid_number];
  if (s.packets++ == 0) ++pid_count_;
  if (pid_number == kTsNullPid) return;  // null packets: their counter means nothing

  unsigned control = (p[3] >> 4) & 3;  // adaptation_field_control
  if (control == 0) return;            // reserved: decoders discard such packets
  uint8_t cc = p[3] & 0x0F;
  bool payload = (control & 1) != 0;
  // An adaptation field of at least one byte holds the flags; its first bit is the
  // discontinuity_indicator. p[4] and p[5] are inside the 188 bytes in every case.
  bool discontinuity = (control & 2) != 0 && p[4] > 0 && (p[5] & 0x80) != 0;
  if (discontinuity) ++s.discontinuities;

  bool repeat = false;
  if (s.seen && !discontinuity) {
    bool error;
    if (payload) {
      if (cc == s.last_cc) {
        repeat = true;  // one duplicate packet may follow a packet with payload
        error = !s.last_had_payload || s.duplicate_used;
      } else {
        error = cc != ((s.last_cc + 1) & 0x0F);
      }
    } else {
      error = cc != s.last_cc;  // no payload: the counter does not move
    }
    if (error) {
      ++s.cc_errors;
      ++cc_errors_;
    }
  }
  s.seen = true;
  s.duplicate_used = repeat;
  s.last_cc = cc;
  s.last_had_payload = payload;
}

// ---- Kinds ----

const char* kind_name(StreamKind kind) {
  switch (kind) {
    case StreamKind::kCounter: return "counter";
    case StreamKind::kRtp: return "rtp";
    case StreamKind::kMpegTs: return "mpegts";
    case StreamKind::kUnknown: break;
  }
  return "unknown";
}

StreamKind classify(const uint8_t* data, size_t length) {
  if (decode_counter(reinterpret_cast<const char*>(data), length)) return StreamKind::kCounter;
  if (looks_like_ts(data, length)) return StreamKind::kMpegTs;
  RtpPacket rtp;
  if (parse_rtp(data, length, &rtp)) return StreamKind::kRtp;
  return StreamKind::kUnknown;
}

// ---- Analyzer ----

void Analyzer::feed(const uint8_t* data, size_t length, uint64_t arrival_ns) {
  if (totals_.datagrams == 0) {
    totals_.first_ns = arrival_ns;
    totals_.first_bytes = length;
  } else if (arrival_ns > totals_.last_ns) {
    totals_.max_gap_ns = std::max(totals_.max_gap_ns, arrival_ns - totals_.last_ns);
  }
  ++totals_.datagrams;
  totals_.bytes += length;
  totals_.last_ns = std::max(totals_.last_ns, arrival_ns);

  if (kind_ == StreamKind::kUnknown) kind_ = classify(data, length);
  if (kind_ == StreamKind::kUnknown || !feed_kind(data, length)) ++totals_.other;
}

bool Analyzer::feed_kind(const uint8_t* data, size_t length) {
  switch (kind_) {
    case StreamKind::kCounter: {
      auto counter = decode_counter(reinterpret_cast<const char*>(data), length);
      if (!counter) return false;
      sequence_.add(counter->index);
      counter_sum_ += counter->value;
      if (counter->value != counter_value(counter->index)) ++counter_corrupt_;
      return true;
    }
    case StreamKind::kMpegTs:
      ts_.feed(data, length);  // whatever it holds: bad bytes count as sync errors
      return true;
    case StreamKind::kRtp: {
      RtpPacket rtp;
      if (!parse_rtp(data, length, &rtp)) return false;
      sequence_.add(rtp_extender_.extend(rtp.sequence));
      if (rtp_payload_type_ >= 0 && rtp.ssrc != rtp_ssrc_) ++rtp_ssrc_changes_;
      rtp_ssrc_ = rtp.ssrc;
      rtp_payload_type_ = rtp.payload_type;
      const uint8_t* payload = data + rtp.payload_offset;
      if (rtp.payload_type == 33 || looks_like_ts(payload, rtp.payload_length)) {  // 33 = MP2T
        ts_.feed(payload, rtp.payload_length);
        ++rtp_ts_payloads_;
      }
      return true;
    }
    case StreamKind::kUnknown: break;
  }
  return false;
}

double Analyzer::bitrate_bps() const {
  if (totals_.datagrams < 2 || totals_.last_ns <= totals_.first_ns) return 0;
  return 8.0 * double(totals_.bytes - totals_.first_bytes) * 1e9 / double(totals_.last_ns - totals_.first_ns);
}

}  // namespace vrelay::probe
