// Time in vrelay. Monotonic time (CLOCK_MONOTONIC, one clock for every process of the
// machine) for every duration, heartbeat, deadline, timeout, rate limit and backoff, so
// that an NTP step never makes a child look hung, a source stalled or an orphan expired.
// The wall clock (CLOCK_REALTIME) only for what people read (started at, last datagram at)
// and for what the kernel stamps (SO_TIMESTAMPNS on received datagrams), which ingest turns
// into a monotonic receive stamp at once: the subscriptions' PAUSE/RESUME cut-offs compare
// monotonic times, so no clock step withholds or repeats a datagram.
#pragma once
#include <time.h>

#include <cstdint>

namespace vrelay {

constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr uint64_t kNsPerMs = 1'000'000;

uint64_t wall_ns();       // CLOCK_REALTIME
uint64_t monotonic_ns();  // CLOCK_MONOTONIC

constexpr uint64_t to_ns(const timespec& t) { return uint64_t(t.tv_sec) * kNsPerSecond + uint64_t(t.tv_nsec); }
constexpr timespec to_timespec(uint64_t ns) { return {time_t(ns / kNsPerSecond), long(ns % kNsPerSecond)}; }
// When a datagram the kernel stamped `kernel_wall_ns` (SO_TIMESTAMPNS) reached the socket,
// in monotonic time, read at `wall_now`/`monotonic_now`: its age by the wall clock taken back
// from the monotonic now, if that age is believable (under a second). A wall-clock step
// between stamp and read, or a clock this process sees apart from the kernel's (a time
// shim), gives an unbelievable age: the stamp is then the read time, late by ingest's lag.
constexpr uint64_t kMaxBelievableAgeNs = kNsPerSecond;
constexpr uint64_t monotonic_receive_time(uint64_t kernel_wall_ns, uint64_t wall_now, uint64_t monotonic_now) {
  uint64_t age = wall_now - kernel_wall_ns;  // wraps to huge when the stamp is in the future
  return age < kMaxBelievableAgeNs && age < monotonic_now ? monotonic_now - age : monotonic_now;
}

constexpr double to_seconds(uint64_t ns) { return double(ns) / double(kNsPerSecond); }
constexpr uint64_t seconds_to_ns(double seconds) { return seconds <= 0 ? 0 : uint64_t(seconds * double(kNsPerSecond)); }

}  // namespace vrelay
