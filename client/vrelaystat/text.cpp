// vrelaystat: text renderings of snapshots (text.hpp).
#include "text.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "version.hpp"

namespace vrelay::vstat {
namespace {

std::string printf_string(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string printf_string(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

size_t name_width(const std::vector<std::string>& filters) {
  size_t width = 0;
  for (size_t i = 0; i < kCounterCount; ++i) {
    std::string name = counter_name(kCounters[i]);
    if (counter_selected(filters, name)) width = std::max(width, name.size());
  }
  return width;
}

bool is_running(ProcessState state) { return state == ProcessState::kReady || state == ProcessState::kStarting; }

}  // namespace

bool counter_selected(const std::vector<std::string>& filters, const std::string& name) {
  if (filters.empty()) return true;
  for (const std::string& f : filters)
    if (fnmatch(f.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

std::string format_duration(uint64_t ns) {
  if (ns == 0) return "-";
  uint64_t s = ns / kNsPerSecond;
  uint64_t days = s / 86400;
  s %= 86400;
  std::string hms = printf_string("%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s / 60 % 60, s % 60);
  return days ? std::to_string(days) + "d " + hms : hms;
}

std::string format_time(uint64_t ns) {
  if (ns == 0) return "-";
  time_t t = time_t(ns / kNsPerSecond);
  tm local{};
  localtime_r(&t, &local);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &local);
  return buf;
}

std::string format_bitrate(uint64_t bits) {
  if (bits >= 1000000) return printf_string("%.2f Mbit/s", double(bits) / 1e6);
  if (bits >= 1000) return printf_string("%.1f kbit/s", double(bits) / 1e3);
  return std::to_string(bits) + " bit/s";
}

std::string once_text(const Snapshot& s, const std::vector<std::string>& filters) {
  size_t width = name_width(filters);
  std::string out;
  for (size_t i = 0; i < kCounterCount && i < s.counters.size(); ++i) {
    std::string name = counter_name(kCounters[i]);
    if (!counter_selected(filters, name)) continue;
    out += printf_string("%-*s  %20" PRIu64 "  %s\n", int(width), name.c_str(), s.counters[i], kCounters[i].help);
  }
  return out;
}

nlohmann::ordered_json json_output(const Snapshot& s, const std::vector<std::string>& filters) {
  nlohmann::ordered_json j = snapshot_json(s);
  if (!filters.empty()) {
    nlohmann::ordered_json kept = nlohmann::ordered_json::object();
    for (auto& [name, value] : j["counters"].items())
      if (counter_selected(filters, name)) kept[name] = value;
    j["counters"] = std::move(kept);
  }
  return j;
}

namespace {
const char* kSubscriberHeader = "SLOT  ADDRESS                 PORT  STATE    SINCE                 DATAGRAMS             BYTES  ERRORS  REFUSED  ORPHAN  SESSION";

std::string subscriber_line(const SubscriberView& v, const std::string& since) {
  return printf_string("%4" PRIu32 "  %-22s %5u  %-7s  %-19s %11" PRIu64 " %17" PRIu64 " %7" PRIu64 " %8" PRIu64 "  %-6s  %s", v.slot,
                       v.address.c_str(), unsigned(v.port), subscriber_state_name(v.state), since.c_str(),
                       v.datagrams, v.bytes, v.errors, v.refusals, v.orphan ? "yes" : "no",
                       v.owner_name.empty() ? "-" : (v.output ? "output:" + v.owner_name : v.owner_name).c_str());
}
}  // namespace

std::string subscribers_text(const Snapshot& s) {
  std::string out = std::string(kSubscriberHeader) + "\n";
  for (const SubscriberView& v : s.subscribers) out += subscriber_line(v, format_time(v.since_ns)) + "\n";
  return out;
}

std::vector<std::string> live_frame(const Snapshot& s, const Snapshot* previous, double elapsed_s,
                                    const std::vector<std::string>& filters) {
  std::vector<std::string> lines;
  auto uptime = [&](uint64_t since) { return since && s.taken_ns > since ? s.taken_ns - since : 0; };
  lines.push_back(printf_string("vrelaystat %s  instance %s  vrelayd %s pid %d  %s", VRELAY_VERSION, s.instance.c_str(),
                                s.software_version.c_str(), int(s.supervisor_pid), format_time(s.taken_ns).c_str()));
  uint64_t ring_used = s.ring_head >= s.ring_tail ? s.ring_head - s.ring_tail : 0;
  std::string over_http =  // the /stream viewers, when the http endpoint is on
      s.http_address.empty() ? "" : printf_string("  http viewers %" PRIu64, s.counter("http", "streams"));
  lines.push_back(printf_string("uptime %s  source %s  bitrate %s  subscribers %zu/%" PRIu32 "%s  ring %" PRIu64 "/%" PRIu32,
                                format_duration(uptime(s.created_ns)).c_str(),
                                s.source_state(),
                                format_bitrate(8 * s.counter("ingest", "rate_bytes")).c_str(), s.subscribers.size(),
                                s.max_subscribers, over_http.c_str(), ring_used, s.ring_slots));
  lines.push_back("control " + s.control_address + "  ingest " + s.ingest_address +
                  (s.upstream_address.empty() ? "" : "  upstream " + s.upstream_address + " " + s.upstream_state()));
  lines.push_back("");

  lines.push_back("PROCESS       PID  STATE     UPTIME        RESTARTS");
  for (const ProcessView& p : s.processes)
    lines.push_back(printf_string("%-8s %8d  %-8s  %-12s  %8" PRIu64, role_name(p.role), int(p.pid),
                                  process_state_name(p.state),
                                  format_duration(is_running(p.state) ? uptime(p.started_ns) : 0).c_str(), p.restarts));
  lines.push_back("");

  size_t width = std::max<size_t>(name_width(filters), 7);
  lines.push_back(printf_string("%-*s  %20s  %12s  %s", int(width), "COUNTER", "VALUE", "RATE/S", "DESCRIPTION"));
  bool rates = previous && previous->counters.size() == s.counters.size() && elapsed_s > 0;
  for (size_t i = 0; i < kCounterCount && i < s.counters.size(); ++i) {
    const CounterInfo& info = kCounters[i];
    std::string name = counter_name(info);
    if (!counter_selected(filters, name)) continue;
    std::string rate;
    if (info.kind == CounterKind::counter && rates && s.counters[i] >= previous->counters[i])
      rate = printf_string("%.1f", double(s.counters[i] - previous->counters[i]) / elapsed_s);
    lines.push_back(printf_string("%-*s  %20" PRIu64 "  %12s  %s", int(width), name.c_str(), s.counters[i], rate.c_str(),
                                  info.help));
  }
  lines.push_back("");

  lines.push_back(printf_string("SUBSCRIBERS %zu (SINCE: time in the current state)", s.subscribers.size()));
  lines.push_back(kSubscriberHeader);
  for (const SubscriberView& v : s.subscribers) lines.push_back(subscriber_line(v, format_duration(uptime(v.since_ns))));
  return lines;
}

std::vector<std::string> waiting_frame(const std::string& instance, const std::string& reason, uint64_t now) {
  std::vector<std::string> lines;
  lines.push_back(printf_string("vrelaystat %s  instance %s  %s", VRELAY_VERSION, instance.c_str(), format_time(now).c_str()));
  lines.push_back("");
  lines.push_back("waiting for vrelayd (instance " + instance + ")...");
  if (!reason.empty()) lines.push_back(reason);
  return lines;
}

std::vector<std::string> fit(std::vector<std::string> lines, size_t columns, size_t rows) {
  if (rows > 0 && lines.size() > rows) {
    size_t left_out = lines.size() - (rows - 1);
    lines.resize(rows - 1);
    lines.push_back("... " + std::to_string(left_out) + " more lines (a larger window, -f, or --subscribers)");
  }
  if (columns > 0)
    for (std::string& line : lines)
      if (line.size() > columns) line.resize(columns);
  return lines;
}

}  // namespace vrelay::vstat
