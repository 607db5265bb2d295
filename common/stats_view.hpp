// What readers outside the data path (vrelaystat, the HTTP endpoint) see of a segment: a
// copy of its header, processes, counters and subscriber table taken at one moment, and
// its two renderings, JSON and the Prometheus text format. Reading never writes the
// segment, so it works on a read-only mapping.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shm.hpp"

namespace vrelay {

struct ProcessView {
  Role role;
  int32_t pid = 0;
  ProcessState state = ProcessState::kStopped;
  uint64_t started_ns = 0, restarts = 0, heartbeat_ns = 0;
};

struct SubscriberView {
  uint32_t slot = 0;
  std::string address;  // "127.0.0.1" or "::1"
  uint16_t port = 0;
  SubscriberState state = SubscriberState::kFree;
  uint64_t since_ns = 0;
  bool orphan = false;  // its control session is gone; kept until control.orphan_grace
  std::string owner_name;  // the name of the control session that owns it; "" for an orphan
  bool output = false;     // a fixed output (vrelay.yaml(5) `outputs:`); owner_name is its name
  uint64_t datagrams = 0, bytes = 0, errors = 0, refusals = 0;
};

struct Snapshot {
  uint64_t taken_ns = 0;  // CLOCK_REALTIME
  std::string instance, software_version, control_address, ingest_address;
  std::string http_address;                // "" when http.listen is off
  std::string fanout_address;              // where the copies come from
  std::string upstream_address;            // ingest.upstream; "" when this relay has none
  int32_t supervisor_pid = 0;
  uint64_t created_ns = 0;
  uint32_t max_subscribers = 0, ring_slots = 0;
  uint64_t ring_head = 0, ring_tail = 0;
  std::vector<ProcessView> processes;      // one per Role the relay runs (http only when on)
  std::vector<uint64_t> counters;          // kCounters order
  std::vector<SubscriberView> subscribers; // slots in use, by slot number
  std::vector<uint64_t> bitrate_history;   // the source's bytes per second, one a second,
                                           // oldest first: up to kBitrateHistory (ingest's)

  // The value of group.name ("ingest", "datagrams"); 0 if there is no such counter.
  uint64_t counter(const char* group, const char* name) const;
  // "live", "stalled" (ingest.stalled), or "waiting" when no datagram ever came.
  const char* source_state() const;
  // The subscription to ingest.upstream: "none", "connecting", "subscribed" or "retrying".
  const char* upstream_state() const;
};

// The gauge ingest.upstream_state as a word: none, connecting, subscribed, retrying.
const char* upstream_state_name(uint64_t gauge);

Snapshot take_snapshot(const Segment& segment, bool with_subscribers = true);

// Counter name as vrelaystat, JSON and the man page show it: "ingest.datagrams".
std::string counter_name(const CounterInfo& info);

// "starting", "ready", "backoff" or "stopped", as the JSON and vrelaystat show a process.
const char* process_state_name(ProcessState state);

// {"instance":..,"taken_ns":..,"processes":[..],"counters":{"ingest.datagrams":..},
//  "stream_viewers":..,"subscribers":[..],"history":{"interval_s":1,"bytes_per_s":[..]}}: the reply of /status.json and of `vrelaystat -j`.
nlohmann::ordered_json snapshot_json(const Snapshot& snapshot);

// The metric of a counter: "vrelay_ingest_datagrams_total", "vrelay_ingest_last_datagram_seconds".
std::string metric_name(const CounterInfo& info);

// The Prometheus text exposition format (version 0.0.4): HELP and TYPE for every family,
// counters named vrelay_<group>_<name>_total, times ending in _ns given in seconds.
std::string prometheus_text(const Snapshot& snapshot);

}  // namespace vrelay
