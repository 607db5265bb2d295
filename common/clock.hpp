// Time in vrelay. Monotonic time (CLOCK_MONOTONIC, one clock for every process of the
// machine) for every duration, heartbeat, deadline, timeout, rate limit and backoff, so
// that an NTP step never makes a child look hung, a source stalled or an orphan expired.
// The wall clock (CLOCK_REALTIME) only for what people read (started at, last datagram at)
// and for what the kernel stamps: SO_TIMESTAMPNS on received datagrams, against which the
// subscriptions' cut-offs are compared.
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
constexpr double to_seconds(uint64_t ns) { return double(ns) / double(kNsPerSecond); }
constexpr uint64_t seconds_to_ns(double seconds) { return seconds <= 0 ? 0 : uint64_t(seconds * double(kNsPerSecond)); }

}  // namespace vrelay
