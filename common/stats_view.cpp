// Snapshot of a segment and its JSON and Prometheus renderings (stats_view.hpp).
#include "stats_view.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "subscribers.hpp"

namespace vrelay {
namespace {

// A NUL-terminated header field that a damaged segment might not terminate.
// A text field of the header: printable ASCII by construction (instance names, versions,
// addresses); anything else, from a damaged or planted segment, shows as '?', so no output
// (JSON above all) meets bytes it cannot encode.
std::string fixed_string(const char* field, size_t size) {
  std::string text(field, strnlen(field, size));
  for (char& c : text)
    if (c < 0x20 || c > 0x7e) c = '?';
  return text;
}

double seconds(uint64_t ns) { return to_seconds(ns); }

uint64_t uptime_ns(uint64_t now, uint64_t since) { return since && now > since ? now - since : 0; }

bool ends_with(const std::string& s, const char* suffix) {
  size_t n = strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Label values and HELP texts of the text format escape backslash, newline (and, in label
// values, the double quote).
std::string escape(const std::string& text, bool label) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && label) out += "\\\"";
    else out += c;
  }
  return out;
}

class PrometheusWriter {
 public:
  void family(const std::string& name, const char* type, const std::string& help) {
    out_ += "# HELP " + name + " " + escape(help, false) + "\n";
    out_ += "# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, const std::string& labels, uint64_t value) {
    out_ += name + labels + " " + std::to_string(value) + "\n";
  }
  void sample(const std::string& name, const std::string& labels, double value) {
    char text[64];
    snprintf(text, sizeof text, "%.9f", value);
    out_ += name + labels + " " + text + "\n";
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string labels(std::initializer_list<std::pair<const char*, std::string>> pairs) {
  std::string out = "{";
  for (const auto& [key, value] : pairs) {
    if (out.size() > 1) out += ",";
    out += std::string(key) + "=\"" + escape(value, true) + "\"";
  }
  return out + "}";
}

}  // namespace

const char* process_state_name(ProcessState state) {
  switch (state) {
    case ProcessState::kStarting: return "starting";
    case ProcessState::kReady: return "ready";
    case ProcessState::kBackoff: return "backoff";
    default: return "stopped";
  }
}

uint64_t Snapshot::counter(const char* group, const char* name) const {
  for (size_t i = 0; i < kCounterCount && i < counters.size(); ++i)
    if (strcmp(kCounters[i].group, group) == 0 && strcmp(kCounters[i].name, name) == 0) return counters[i];
  return 0;
}

const char* upstream_state_name(uint64_t gauge) {
  static const char* const names[] = {"none", "connecting", "subscribed", "retrying"};
  return gauge < std::size(names) ? names[gauge] : "none";
}

const char* Snapshot::upstream_state() const { return upstream_state_name(counter("ingest", "upstream_state")); }

const char* Snapshot::source_state() const {
  if (counter("ingest", "last_datagram_ns") == 0) return "waiting";
  return counter("ingest", "stalled") ? "stalled" : "live";
}

// The last kBitrateHistory samples of StreamInfo, oldest first; those ingest overwrote while
// they were read are left out.
static std::vector<uint64_t> read_bitrate_history(const StreamInfo& stream) {
  uint64_t end = stream.bitrate_samples.load(std::memory_order_acquire);
  uint64_t begin = end > kBitrateHistory ? end - kBitrateHistory : 0;
  std::vector<uint64_t> samples;
  samples.reserve(end - begin);
  for (uint64_t n = begin; n < end; ++n)
    samples.push_back(stream.bitrate_history[n % kBitrateHistory].load(std::memory_order_acquire));
  uint64_t now = stream.bitrate_samples.load(std::memory_order_acquire);
  if (now > begin + kBitrateHistory) {
    uint64_t overwritten = std::min<uint64_t>(now - kBitrateHistory - begin, samples.size());
    samples.erase(samples.begin(), samples.begin() + ptrdiff_t(overwritten));
  }
  return samples;
}

std::string counter_name(const CounterInfo& info) { return std::string(info.group) + "." + info.name; }

Snapshot take_snapshot(const Segment& segment, bool with_subscribers) {
  Snapshot s;
  const Header& h = segment.header();
  s.taken_ns = wall_ns();
  s.instance = fixed_string(h.instance, sizeof h.instance);
  s.software_version = fixed_string(h.software_version, sizeof h.software_version);
  s.control_address = fixed_string(h.control_address, sizeof h.control_address);
  s.ingest_address = fixed_string(h.ingest_address, sizeof h.ingest_address);
  s.http_address = fixed_string(h.http_address, sizeof h.http_address);
  s.fanout_address = fixed_string(h.fanout_address, sizeof h.fanout_address);
  s.upstream_address = fixed_string(h.upstream_address, sizeof h.upstream_address);
  s.supervisor_pid = h.supervisor_pid;
  s.created_ns = h.created_ns;
  s.max_subscribers = h.max_subscribers;
  s.ring_slots = h.ring_slots;
  s.ring_head = segment.ring_control().head.load(std::memory_order_relaxed);
  s.ring_tail = segment.ring_control().tail.load(std::memory_order_relaxed);

  for (uint32_t r = 0; r < kRoleCount; ++r) {
    const ProcessSlot& p = segment.process(Role(r));
    if (Role(r) == kHttp && s.http_address.empty()) continue;  // off: not a stopped process
    s.processes.push_back({Role(r), p.pid.load(std::memory_order_relaxed),
                           ProcessState(p.state.load(std::memory_order_relaxed)),
                           p.started_ns.load(std::memory_order_relaxed), p.restarts.load(std::memory_order_relaxed),
                           p.heartbeat_ns.load(std::memory_order_relaxed)});
  }

  s.bitrate_history = read_bitrate_history(segment.stream());

  s.counters.reserve(kCounterCount);
  for (size_t i = 0; i < kCounterCount; ++i) s.counters.push_back(read_counter(segment.stats(), kCounters[i]));

  if (with_subscribers) {
    const SubscriberSlot* slots = segment.subscribers();
    for (uint32_t i = 0; i < s.max_subscribers; ++i) {
      const SubscriberSlot& slot = slots[i];
      if (slot.state.load(std::memory_order_relaxed) == uint32_t(SubscriberState::kFree) &&
          !(slot.seq.load(std::memory_order_relaxed) & 1))
        continue;
      SubscriberSnapshot sub;
      if (!read_subscriber(slot, &sub, 100) || sub.state == SubscriberState::kFree) continue;
      SubscriberView v;
      v.slot = i;
      v.address = sub.destination.host();
      v.port = sub.destination.port();
      v.state = sub.state;
      v.since_ns = sub.since_ns;
      v.orphan = sub.owner == 0;
      v.output = sub.is_output();
      // Names are printable by the protocol's rules; a damaged segment's control bytes show as '?'.
      v.owner_name = v.orphan ? std::string() : std::move(sub.owner_name);
      for (char& c : v.owner_name)
        if ((c >= 0 && c < 0x20) || c == 0x7f) c = '?';
      // The counters belong to this subscription once fan-out has taken it in.
      if (slot.counted_incarnation.load(std::memory_order_acquire) == sub.incarnation) {
        v.datagrams = slot.datagrams.load(std::memory_order_relaxed);
        v.bytes = slot.bytes.load(std::memory_order_relaxed);
        v.errors = slot.errors.load(std::memory_order_relaxed);
        v.refusals = slot.refusals.load(std::memory_order_relaxed);
      }
      s.subscribers.push_back(std::move(v));
    }
  }
  return s;
}

nlohmann::ordered_json snapshot_json(const Snapshot& s) {
  nlohmann::ordered_json j;
  j["instance"] = s.instance;
  j["version"] = s.software_version;
  j["supervisor_pid"] = s.supervisor_pid;
  j["created_ns"] = s.created_ns;
  j["taken_ns"] = s.taken_ns;
  j["uptime_s"] = uptime_ns(s.taken_ns, s.created_ns) / kNsPerSecond;
  j["control_address"] = s.control_address;
  j["ingest_address"] = s.ingest_address;
  j["http_address"] = s.http_address;
  j["fanout_address"] = s.fanout_address;
  j["source"] = s.source_state();
  j["upstream_address"] = s.upstream_address;
  j["upstream"] = s.upstream_state();
  j["ring"] = {{"slots", s.ring_slots}, {"head", s.ring_head}, {"tail", s.ring_tail}};
  j["max_subscribers"] = s.max_subscribers;
  j["stream_viewers"] = s.counter("http", "streams");  // /stream: viewers besides the subscribers

  auto processes = nlohmann::ordered_json::array();
  for (const ProcessView& p : s.processes) {
    bool running = p.state == ProcessState::kReady || p.state == ProcessState::kStarting;
    processes.push_back({{"role", role_name(p.role)},
                         {"pid", p.pid},
                         {"state", process_state_name(p.state)},
                         {"started_ns", p.started_ns},
                         {"uptime_s", running ? uptime_ns(s.taken_ns, p.started_ns) / kNsPerSecond : 0},
                         {"restarts", p.restarts},
                         {"heartbeat_ns", p.heartbeat_ns}});
  }
  j["processes"] = std::move(processes);

  nlohmann::ordered_json counters = nlohmann::ordered_json::object();
  for (size_t i = 0; i < kCounterCount && i < s.counters.size(); ++i) counters[counter_name(kCounters[i])] = s.counters[i];
  j["counters"] = std::move(counters);

  auto subscribers = nlohmann::ordered_json::array();
  for (const SubscriberView& v : s.subscribers)
    subscribers.push_back({{"slot", v.slot},
                           {"address", v.address},
                           {"port", v.port},
                           {"state", subscriber_state_name(v.state)},
                           {"since_ns", v.since_ns},
                           {"orphan", v.orphan},
                           {"owner_name", v.owner_name},
                           {"output", v.output},
                           {"datagrams", v.datagrams},
                           {"bytes", v.bytes},
                           {"errors", v.errors},
                           {"refusals", v.refusals}});
  j["subscribers"] = std::move(subscribers);
  j["history"] = {{"interval_s", 1}, {"bytes_per_s", s.bitrate_history}};
  return j;
}

std::string metric_name(const CounterInfo& info) {
  std::string name = std::string("vrelay_") + info.group + "_" + info.name;
  if (ends_with(name, "_ns")) return name.substr(0, name.size() - 3) + "_seconds";  // a time: in seconds
  // control.sessions_total is already a total: vrelay_control_sessions_total, not _total_total.
  if (info.kind == CounterKind::counter && !ends_with(name, "_total")) name += "_total";
  return name;
}

std::string prometheus_text(const Snapshot& s) {
  PrometheusWriter w;
  w.family("vrelay_info", "gauge", "Always 1; the labels name the instance and the software version");
  w.sample("vrelay_info", labels({{"instance", s.instance}, {"version", s.software_version}}), uint64_t(1));
  w.family("vrelay_uptime_seconds", "gauge", "Seconds since the relay started");
  w.sample("vrelay_uptime_seconds", "", seconds(uptime_ns(s.taken_ns, s.created_ns)));

  for (size_t i = 0; i < kCounterCount && i < s.counters.size(); ++i) {
    const CounterInfo& info = kCounters[i];
    std::string name = metric_name(info);
    if (ends_with(name, "_seconds")) {
      w.family(name, "gauge", std::string(info.help) + ", in seconds");
      w.sample(name, "", seconds(s.counters[i]));
    } else {
      bool counter = info.kind == CounterKind::counter;
      w.family(name, counter ? "counter" : "gauge", info.help);
      w.sample(name, "", s.counters[i]);
    }
  }

  w.family("vrelay_process_ready", "gauge", "1 when the process reported ready, else 0");
  for (const ProcessView& p : s.processes)
    w.sample("vrelay_process_ready", labels({{"process", role_name(p.role)}}), uint64_t(p.state == ProcessState::kReady));
  w.family("vrelay_process_restarts_total", "counter", "Times the supervisor restarted the process");
  for (const ProcessView& p : s.processes)
    w.sample("vrelay_process_restarts_total", labels({{"process", role_name(p.role)}}), p.restarts);
  w.family("vrelay_process_uptime_seconds", "gauge", "Seconds since the process was started, 0 when it is not running");
  for (const ProcessView& p : s.processes) {
    bool running = p.state == ProcessState::kReady || p.state == ProcessState::kStarting;
    w.sample("vrelay_process_uptime_seconds", labels({{"process", role_name(p.role)}}),
             running ? seconds(uptime_ns(s.taken_ns, p.started_ns)) : 0.0);
  }

  struct SubscriberFamily {
    const char* name;
    const char* type;
    const char* help;
    uint64_t SubscriberView::*field;
  };
  const SubscriberFamily families[] = {
      {"vrelay_subscriber_datagrams_total", "counter", "Datagrams sent to the subscriber", &SubscriberView::datagrams},
      {"vrelay_subscriber_bytes_total", "counter", "Bytes sent to the subscriber", &SubscriberView::bytes},
      {"vrelay_subscriber_errors_total", "counter", "Copies to the subscriber the kernel did not send, and refusals", &SubscriberView::errors},
      {"vrelay_subscriber_refusals_total", "counter", "Sends to the subscriber refused with ECONNREFUSED (its port is closed)", &SubscriberView::refusals},
  };
  auto subscriber_labels = [](const SubscriberView& v) {
    std::string slot = std::to_string(v.slot), port = std::to_string(v.port);
    if (v.output)  // an output goes by its name
      return labels({{"slot", slot}, {"address", v.address}, {"port", port}, {"output", v.owner_name}});
    return labels({{"slot", slot}, {"address", v.address}, {"port", port}});
  };
  w.family("vrelay_subscriber_playing", "gauge", "1 while the subscriber is being sent the stream, 0 while paused");
  for (const SubscriberView& v : s.subscribers)
    w.sample("vrelay_subscriber_playing", subscriber_labels(v), uint64_t(v.state == SubscriberState::kPlaying));
  for (const SubscriberFamily& f : families) {
    w.family(f.name, f.type, f.help);
    for (const SubscriberView& v : s.subscribers) w.sample(f.name, subscriber_labels(v), v.*f.field);
  }
  return w.take();
}

}  // namespace vrelay
