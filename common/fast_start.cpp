#include "fast_start.hpp"

#include <algorithm>
#include <cstring>

namespace vrelay {
namespace {
constexpr uint64_t kCounterScan = 128;  // datagrams after the key frame searched for the tables
}

std::optional<FastStartPoint> choose_fast_start(RingView& ring, const StreamInfo& stream, uint64_t from_ns) {
  uint32_t seq = stream.tables_seq.load(std::memory_order_acquire);
  if (seq == 0 || (seq & 1)) return std::nullopt;
  uint64_t head = ring.head_now(), span = reachable_span(ring);
  // Only key frames of the stream the tables describe (a source may restart with others).
  uint64_t lowest = std::max(head > span ? head - span : 0, stream.tables_position.load(std::memory_order_relaxed));
  uint64_t key = kNoPosition;
  for (uint64_t p = head; p-- > lowest;) {
    RingSlotHeader& h = ring.header(p);
    if (h.received_ns >= from_ns || !(std::atomic_ref<uint32_t>(h.flags).load(std::memory_order_relaxed) & kSlotKeyFrame))
      continue;
    bool first = key == kNoPosition;
    key = p;
    if (!first || h.received_ns + kMinBacklogNs <= from_ns) break;
  }
  // Tables that changed meanwhile may not describe that key frame's stream.
  if (key == kNoPosition || stream.tables_seq.load(std::memory_order_acquire) != seq) return std::nullopt;
  return FastStartPoint{key, seq};
}

bool read_tables(const StreamInfo& stream, uint32_t seq, TablePackets* out) {
  if (stream.tables_seq.load(std::memory_order_acquire) != seq) return false;
  for (size_t w = 0; w < kTablePacketWords; ++w) {
    uint64_t pat = stream.pat[w].load(std::memory_order_acquire), pmt = stream.pmt[w].load(std::memory_order_acquire);
    size_t at = w * 8, count = std::min<size_t>(8, kTsPacketSize - at);
    std::memcpy(out->data() + at, &pat, count);
    std::memcpy(out->data() + kTsPacketSize + at, &pmt, count);
  }
  return stream.tables_seq.load(std::memory_order_acquire) == seq;
}

void continue_counters(RingView& ring, uint64_t key, uint64_t end, TablePackets* tables) {
  uint16_t pids[2] = {0, ts_pid(tables->data() + kTsPacketSize)};
  bool done[2] = {false, false};
  for (uint64_t p = key; p < end && p < key + kCounterScan && !(done[0] && done[1]); ++p) {
    size_t length;
    const auto* packets = ts_packets(reinterpret_cast<const uint8_t*>(ring.data(p)), ring.header(p).length, &length);
    for (size_t at = 0; packets && at + kTsPacketSize <= length; at += kTsPacketSize)
      for (int k = 0; k < 2; ++k)
        if (!done[k] && ts_pid(packets + at) == pids[k] && (packets[at + 3] & 0x10)) {
          uint8_t& header = (*tables)[k * kTsPacketSize + 3];
          header = uint8_t((header & 0xF0) | ((packets[at + 3] - 1) & 0x0F));
          done[k] = true;
        }
  }
}

}  // namespace vrelay
