// The cost of the observability tools, per unit of work, on this machine (no network):
//   - vrelay-probe's analysis: nanoseconds per datagram for each kind of stream (counter
//     stream, raw MPEG-TS of 7 packets, RTP carrying 7 TS packets);
//   - one scrape: take_snapshot + prometheus_text / snapshot_json of a segment whose
//     subscriber table is full (what /metrics, /status.json and vrelaystat pay each time).
// Usage: tools_bench [DATAGRAMS] (default 2,000,000). Figures: docs/benchmarks.md.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "analysis.hpp"
#include "counter_stream.hpp"
#include "net.hpp"
#include "stats_view.hpp"
#include "subscribers.hpp"

namespace {

using namespace vrelay;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// n datagrams made by `make(i, buffer)` (which returns the length), analysed in one pass.
template <typename Make>
void bench_analysis(const char* kind, uint64_t n, size_t buffer_size, Make make) {
  // Built before the clock starts, so that the loop measures the analysis alone.
  std::vector<std::vector<uint8_t>> datagrams(1024, std::vector<uint8_t>(buffer_size));
  std::vector<size_t> lengths(datagrams.size());
  probe::Analyzer analyzer;
  auto start = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    size_t slot = i % datagrams.size();
    lengths[slot] = make(i, datagrams[slot].data());
    analyzer.feed(datagrams[slot].data(), lengths[slot], i * 1000);
  }
  double s = seconds_since(start);
  printf("%-26s %10llu datagrams  %7.1f ns/datagram  %10.0f datagrams/s  (lost %llu)\n", kind,
         (unsigned long long)n, s * 1e9 / double(n), double(n) / s,
         (unsigned long long)analyzer.sequence().lost());
}

// 7 TS packets of three PIDs, continuity counters in order.
size_t make_ts(uint64_t i, uint8_t* out) {
  for (size_t p = 0; p < 7; ++p) {
    uint8_t* packet = out + p * kTsPacketSize;
    uint16_t pid = uint16_t(0x100 + p % 3);
    uint64_t sequence = (i * 7 + p) / 3;  // packets of this PID so far
    packet[0] = kTsSync;
    packet[1] = uint8_t(pid >> 8);
    packet[2] = uint8_t(pid);
    packet[3] = uint8_t(0x10 | (sequence & 0x0f));  // payload only
    std::memset(packet + 4, 0xff, kTsPacketSize - 4);
  }
  return 7 * kTsPacketSize;
}

size_t make_rtp(uint64_t i, uint8_t* out) {
  out[0] = 0x80;
  out[1] = 33;  // MP2T
  out[2] = uint8_t(i >> 8);
  out[3] = uint8_t(i);
  std::memset(out + 4, 0, 8);
  return 12 + make_ts(i, out + 12);
}

void bench_scrape(uint32_t subscribers, int rounds) {
  std::string instance = "bench-" + std::to_string(getpid());
  auto segment = Segment::create(instance, {subscribers, 16, 1500});
  segment->publish();
  for (uint32_t i = 0; i < subscribers; ++i) {
    SubscriberSlot& slot = segment->subscribers()[i];
    auto ep = parse_endpoint("127.0.0." + std::to_string(1 + i / 60000) + ":" + std::to_string(1025 + i % 60000));
    {
      SubscriberWrite write(slot, segment->table());
      write.set_destination(*ep);
      slot.incarnation.store(i + 1);
      slot.owner.store(1);
      slot.state.store(uint32_t(SubscriberState::kPlaying));
    }
    slot.counted_incarnation.store(i + 1);
    slot.datagrams.store(1000000 + i);
    slot.bytes.store(1316000000ull + i);
  }
  size_t metrics_bytes = 0, json_bytes = 0;
  auto start = Clock::now();
  for (int r = 0; r < rounds; ++r) metrics_bytes = prometheus_text(take_snapshot(*segment)).size();
  double metrics_s = seconds_since(start) / rounds;
  start = Clock::now();
  for (int r = 0; r < rounds; ++r) json_bytes = snapshot_json(take_snapshot(*segment)).dump().size();
  double json_s = seconds_since(start) / rounds;
  printf("scrape, %5u subscribers    /metrics %8.3f ms (%7zu bytes)   /status.json %8.3f ms (%7zu bytes)\n",
         subscribers, metrics_s * 1e3, metrics_bytes, json_s * 1e3, json_bytes);
  segment.reset();
  Segment::remove(instance);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], nullptr, 10) : 2000000;
  if (n == 0) {
    fprintf(stderr, "usage: tools_bench [DATAGRAMS]\n");
    return 2;
  }
  printf("vrelay-probe analysis\n");
  bench_analysis("counter stream (24 B)", n, kCounterDatagramSize,
                 [](uint64_t i, uint8_t* out) { return encode_counter(i + 1, reinterpret_cast<char*>(out)); });
  bench_analysis("MPEG-TS (7 packets)", n, 7 * kTsPacketSize, make_ts);
  bench_analysis("RTP + MPEG-TS (7 packets)", n, 12 + 7 * kTsPacketSize, make_rtp);
  printf("\nstats_view: one scrape of the whole segment (mean of the rounds)\n");
  for (uint32_t subscribers : {16u, 1024u, 16384u}) bench_scrape(subscribers, subscribers > 2000 ? 5 : 50);
  return 0;
}
