// Fan-out throughput benchmark: a real vrelayd on loopback, one source sending 1316-byte
// datagrams (7 TS packets, as VLC sends) as fast as the ring allows, and N subscribers
// drained by a receiver thread with recvmmsg. Reports copies sent per second by the
// fan-out, and what the subscribers' sockets received.
//
//   fanout_bench [SUBSCRIBERS...]      default: 1 10 100 500
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

constexpr uint64_t kDatagrams = 20000;
constexpr size_t kSize = 1316;
constexpr uint64_t kInFlight = 1024;  // never more than this ahead of the fan-out (ring: 4096)

struct Result {
  double seconds;
  uint64_t sent, received, dropped_at_ingest;
};

Result run(unsigned subscribers) {
  Relay relay("control:\n  max_sessions_per_ip: 1024\nfanout:\n  max_subscribers: 1024\n  socket_buffer: 16777216\n");
  std::vector<std::unique_ptr<UdpSink>> sinks;
  std::vector<std::unique_ptr<Session>> sessions;
  for (unsigned i = 0; i < subscribers; ++i) {
    sinks.push_back(std::make_unique<UdpSink>());
    sessions.push_back(std::make_unique<Session>(relay.control_port()));
    if (sessions.back()->command("CONECTAR " + std::to_string(sinks.back()->port())) != "OK") std::abort();
  }
  std::atomic<bool> done{false};
  std::atomic<uint64_t> received{0};
  std::thread receiver([&] {
    while (!done.load()) {
      uint64_t got = 0;
      for (auto& sink : sinks) got += sink->drain();
      received += got;
      if (!got) std::this_thread::yield();
    }
  });

  Stats& stats = relay.shm().stats();
  UdpSource source(relay.ingest_port());
  std::string payload(kSize, 'G');
  auto start = Clock::now();
  for (uint64_t i = 0; i < kDatagrams; ++i) {
    while (i - stats.fanout.datagrams.load(std::memory_order_relaxed) > kInFlight) std::this_thread::yield();
    source.send(payload);
  }
  wait_until([&] { return stats.fanout.datagrams.load() + stats.ingest.drops_ring_full.load() >= kDatagrams; }, 60000ms);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  wait_until([&] { return received.load() >= stats.fanout.sent_datagrams.load(); }, 2000ms);
  done = true;
  receiver.join();
  return {seconds, stats.fanout.sent_datagrams.load(), received.load(), stats.ingest.drops_ring_full.load()};
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<unsigned> counts = {1, 10, 100, 500};
  if (argc > 1) {
    counts.clear();
    for (int i = 1; i < argc; ++i) counts.push_back(unsigned(std::atoi(argv[i])));
  }
  std::printf("%-12s %10s %12s %14s %12s %10s\n", "subscribers", "datagrams", "copies", "copies/s", "Mbit/s out",
              "received");
  for (unsigned n : counts) {
    Result r = run(n);
    double rate = double(r.sent) / r.seconds;
    std::printf("%-12u %10lu %12lu %14.0f %12.0f %9.1f%%\n", n, (unsigned long)kDatagrams, (unsigned long)r.sent, rate,
                rate * kSize * 8 / 1e6, r.sent ? 100.0 * double(r.received) / double(r.sent) : 0.0);
    std::fflush(stdout);
  }
  return 0;
}
