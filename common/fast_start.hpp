// Where a viewer who comes in mid-stream starts (fast start), decided once for the fan-out's
// UDP subscribers and the http process's /stream readers: at the last key frame still well
// inside the ring, after the stream's PAT and PMT, so that its player shows a picture at
// once instead of at the next key frame. Without key frames (not MPEG-TS, none yet, or out
// of reach) there is no fast start: the viewer starts live.
#pragma once
#include <array>
#include <cstdint>
#include <optional>

#include "mpegts.hpp"
#include "ring.hpp"
#include "shm.hpp"

namespace vrelay {

// How far behind the head a reader that is not the ring's consumer may read: the slots
// ingest will not write again before long (it writes slot p again at position p + capacity,
// and fills a batch at a time), with a quarter of the ring to spare.
inline uint64_t reachable_span(const RingView& ring) { return ring.capacity() / 4 * 3; }

// Players read about half a second of stream before their first picture (ffmpeg's probe,
// VLC's network-caching): a fast start sends at least this much at once.
constexpr uint64_t kMinBacklogNs = kNsPerSecond;

struct FastStartPoint {
  uint64_t key_position;  // the ring position the viewer starts at
  uint32_t tables_seq;    // the StreamInfo tables (seqlock value) that key frame belongs to
};

// The key frame a viewer arriving at monotonic time `from_ns` starts at: the last one
// received before it, or the one before that if the last left less than kMinBacklogNs.
// Only key frames of the stream the current tables describe, within reachable_span.
std::optional<FastStartPoint> choose_fast_start(RingView& ring, const StreamInfo& stream, uint64_t from_ns);

// The PAT and the PMT, one TS packet each, as one buffer (a datagram of its own for UDP).
using TablePackets = std::array<uint8_t, 2 * kTsPacketSize>;

// Reads the PAT and PMT under StreamInfo's seqlock; false unless they are still those of
// seqlock value `seq` (a change, or one under way, means another stream).
bool read_tables(const StreamInfo& stream, uint32_t seq, TablePackets* out);

// Gives the repeated PAT and PMT the continuity counters that come just before the first PAT
// and PMT of the ring from `key` on (up to `end`, at most a batch), so a player sees them
// in sequence (no CC error).
void continue_counters(RingView& ring, uint64_t key, uint64_t end, TablePackets* tables);

}  // namespace vrelay
