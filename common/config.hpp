// vrelay configuration: the embedded defaults, the YAML file (vrelay.yaml(5)) and the
// command-line overrides. Read by the supervisor before it forks; children get a copy.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "net.hpp"

namespace vrelay {

// The values of the keys declared in common/config_keys.def, where their defaults are:
// a Config not made by default_config() or load_config_*() holds zeros.
struct Config {
  std::string instance;  // names the shared-memory segment /vrelay.<instance>
  // The account every process runs as when vrelayd starts as root (server/supervisor/
  // privileges.hpp); "" = vrelay where that account exists, else nobody.
  std::string user, group;

  struct Control {
    Endpoint listen;
    uint32_t max_sessions = 0;
    uint32_t max_sessions_per_ip = 0;
    uint32_t idle_timeout_s = 0;     // 0 = never
    uint32_t max_line = 0;           // bytes, terminator included
    uint16_t port_min = 0, port_max = 0;
    uint32_t orphan_grace_s = 0;
    uint32_t thread_stack_kib = 0;
    uint32_t rate_limit = 0;         // lines per second per session
    uint32_t rate_burst = 0;
    uint32_t outbox_bytes = 0;       // a session that lets more pile up is disconnected
    // Who hears JOIN, LEAVE and RENAME: only the sessions that took a NAME (chat users, the
    // default: O(named) per event), or every session (O(all): for small relays).
    bool presence_to_named_only = false;
    bool operator==(const Control&) const = default;
  } control;

  struct Moderators {
    std::vector<std::string> token_files;
    std::vector<std::string> tokens;   // read from the files at load time; never logged
    bool operator==(const Moderators&) const = default;
  } moderators;

  struct Ingest {
    Endpoint listen;                 // a unicast address, or a multicast group and its port
    // A multicast group is joined on this interface (a name or one of its addresses),
    // from any sender or, with ssm_source, from that one only (source-specific).
    std::string interface;
    std::optional<Endpoint> ssm_source;
    std::vector<Cidr> allow;
    uint32_t max_datagram = 0;       // larger datagrams are dropped, never truncated
    uint32_t ring_slots = 0;         // power of two; the ring holds at least this many
    uint32_t ring_bytes = 0;         // and at least this much stream
    uint32_t socket_buffer = 0;
    uint32_t stall_timeout_s = 0;    // no datagram for this long: the source is stalled
    // Where datagrams come from: the ingest socket, or the built-in generator of the
    // counter stream (common/counter_stream.hpp), one datagram every interval_ms.
    enum class Source { kSocket, kGenerator } source = Source::kSocket;
    uint32_t interval_ms = 0;
    // Another vrelayd's control address (HOST:PORT) to subscribe to (server/ingest/
    // upstream.cpp): this relay is then an edge of that one. "" = none.
    std::string upstream;
    bool operator==(const Ingest&) const = default;
  } ingest;

  struct Fanout {
    uint32_t max_subscribers = 0;
    uint32_t socket_buffer = 0;
    bool gso = false;                   // UDP GSO where the kernel takes it
    uint32_t max_batch_delay_us = 0;    // 0 = send as soon as ingest wakes the fan-out
    uint32_t unreachable_pause_s = 0;   // only refusals for this long: paused; 0 = never
    bool fast_start = false;            // a new viewer starts at a recent key frame
    uint32_t fast_start_rate = 0;       // its burst: this many times the stream's rate
    uint32_t max_lag_ms = 0;            // older datagrams are skipped, not sent; 0 = never
    bool operator==(const Fanout&) const = default;
  } fanout;

  struct Http {
    bool enabled = false;            // http.listen is not "off"
    Endpoint listen;                 // /metrics, /status.json, /stream and the status page
    uint32_t max_streams = 0;        // /stream viewers at once; more get 503
    uint32_t stream_buffer = 0;      // bytes a /stream viewer may lag the ring's head
    bool operator==(const Http&) const = default;
  } http;

  // Destinations that always receive the stream, through the fan-out as subscribers do
  // (`outputs:`, vrelay.yaml(5)); control keeps the subscriber table in step with them.
  struct Output {
    std::string name;       // shown where a subscriber's session name is
    Endpoint to;
    std::string interface;  // a multicast destination's; "" = the routing table's choice
    uint32_t ttl = 0;       // a multicast destination's TTL or hop limit; 0 = 1, the default
    bool operator==(const Output&) const = default;
  };
  std::vector<Output> outputs;

  struct Log {
    int level = 0;     // syslog priority: 3 err, 4 warning, 5 notice, 6 info, 7 debug
    std::string file;  // "" = stderr (journald); else appended to, reopened on SIGUSR1
    bool operator==(const Log&) const = default;
  } log;
};

// One key of config_keys.def, for `vrelayd --help-config` and the checks.
struct ConfigKey {
  std::string path;      // "control.listen"
  const char* values;    // "a whole number from 1 to 100", "on or off", or "" (see help)
  const char* fallback;  // the default, as written in YAML
  const char* help;
};
const std::vector<ConfigKey>& config_keys();

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The embedded defaults.
Config default_config();
// Defaults overlaid with the file; throws ConfigError naming the file, line and key.
Config load_config_file(const std::string& path);
// Same, from YAML text (for tests); `origin` names it in errors.
Config load_config_text(const std::string& yaml, const std::string& origin);
// Checks values that depend on each other; throws ConfigError.
void validate(const Config& config);

// Datagrams the ring holds: ingest.ring_slots, or more to hold ingest.ring_bytes of a
// stream of 1316-byte datagrams (what VLC and ffmpeg send); a power of two.
constexpr uint64_t kRingBytesPerSlot = 1316;
uint32_t ring_slot_count(const Config& config);

// How the ingest socket hears a multicast group, for the log: " (joined on eth0, source
// 10.0.0.1)", " (joined on eth0)"; "" for a unicast address.
std::string multicast_join_text(const Config::Ingest& ingest);

// "info" -> 6; -1 if unknown.
int parse_log_level(const std::string& name);

}  // namespace vrelay
