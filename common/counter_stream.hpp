// The counter stream: the test stream of the first original report, made by vrelayd's
// generator source (ingest.source: generator) and checked by vrelay-probe. Each datagram
// carries an index that grows by 1 and a value that grows by 2, so a receiver can count
// what it lost, got twice or got out of order, and the sum of the values it got.
//
//   bytes 0..7    magic "VRCOUNT1"
//   bytes 8..15   index, big-endian, 1 for the first datagram
//   bytes 16..23  value, big-endian, always 2 * index
#pragma once
#include <endian.h>

#include <cstdint>
#include <cstring>
#include <optional>

namespace vrelay {

constexpr char kCounterMagic[8] = {'V', 'R', 'C', 'O', 'U', 'N', 'T', '1'};
constexpr size_t kCounterDatagramSize = 24;

struct CounterDatagram {
  uint64_t index;
  uint64_t value;
};

constexpr uint64_t counter_value(uint64_t index) { return 2 * index; }

// Writes datagram `index` into `out` (kCounterDatagramSize bytes); returns its size.
inline size_t encode_counter(uint64_t index, char* out) {
  std::memcpy(out, kCounterMagic, sizeof kCounterMagic);
  uint64_t be_index = htobe64(index), be_value = htobe64(counter_value(index));
  std::memcpy(out + 8, &be_index, 8);
  std::memcpy(out + 16, &be_value, 8);
  return kCounterDatagramSize;
}

// A counter datagram, or nullopt if these bytes are something else.
inline std::optional<CounterDatagram> decode_counter(const char* data, size_t length) {
  if (length != kCounterDatagramSize || std::memcmp(data, kCounterMagic, sizeof kCounterMagic) != 0)
    return std::nullopt;
  uint64_t be_index, be_value;
  std::memcpy(&be_index, data + 8, 8);
  std::memcpy(&be_value, data + 16, 8);
  return CounterDatagram{be64toh(be_index), be64toh(be_value)};
}

}  // namespace vrelay
