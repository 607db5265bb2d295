// vrelay-probe's reports (pure code, run by vrelay-probe and the unit tests): live line,
// final report as JSON or text. Once a second and once at the end: allocation is fine here.
#include "report.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>

namespace vrelay::probe {

namespace {

nlohmann::ordered_json ts_json(const TsAnalyzer& ts) {
  nlohmann::ordered_json pids = nlohmann::ordered_json::array();
  for (size_t pid = 0; pid < kTsPidCount; ++pid) {
    const TsAnalyzer::Pid& p = ts.pid(static_cast<uint16_t>(pid));
    if (p.packets == 0) continue;
    pids.push_back({{"pid", pid}, {"packets", p.packets}, {"cc_errors", p.cc_errors},
                    {"discontinuities", p.discontinuities}});
  }
  return {{"packets", ts.packets()}, {"sync_errors", ts.sync_errors()}, {"cc_errors", ts.cc_errors()},
          {"transport_errors", ts.transport_errors()}, {"pid_count", ts.pid_count()}, {"pids", pids}};
}

double round3(double x) { return std::round(x * 1000) / 1000; }

void flatten(const nlohmann::ordered_json& j, const std::string& prefix, std::string* out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object()) {
      flatten(*it, key, out);
    } else if (it->is_array()) {  // the PIDs: one line each
      for (const auto& pid : *it) {
        *out += key + " " + pid["pid"].dump() + ":";
        for (auto f = pid.begin(); f != pid.end(); ++f)
          if (f.key() != "pid") *out += " " + f.key() + " " + f->dump();
        *out += "\n";
      }
    } else {
      *out += key + ": " + (it->is_string() ? it->get<std::string>() : it->dump()) + "\n";
    }
  }
}

}  // namespace

nlohmann::ordered_json report_json(const Analyzer& a, const RunInfo& run) {
  const Totals& t = a.totals();
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["kind"] = kind_name(a.kind());
  j["end"] = run.end;
  j["duration_s"] = round3(run.duration_s);
  j["datagrams"] = t.datagrams;
  j["bytes"] = t.bytes;
  j["other_datagrams"] = t.other;
  j["bitrate_bps"] = static_cast<uint64_t>(std::llround(a.bitrate_bps()));
  j["max_gap_ms"] = round3(double(t.max_gap_ns) / 1e6);
  if (a.kind() == StreamKind::kCounter || a.kind() == StreamKind::kRtp) {
    const SequenceTracker& s = a.sequence();
    j["sequence"] = {{"received", s.received()}, {"lost", s.lost()}, {"out_of_order", s.out_of_order()},
                     {"duplicates", s.duplicates()}, {"too_old", s.too_old()}};
  }
  if (a.kind() == StreamKind::kCounter) {
    const SequenceTracker& s = a.sequence();
    j["counter"] = {{"sum", a.counter_sum()}, {"corrupt", a.counter_corrupt()},
                    {"lowest_index", s.lowest()}, {"highest_index", s.highest()}};
  }
  if (a.kind() == StreamKind::kRtp) {
    j["rtp"] = {{"payload_type", a.rtp_payload_type()}, {"ssrc", a.rtp_ssrc()},
                {"ssrc_changes", a.rtp_ssrc_changes()}, {"ts_payloads", a.rtp_ts_payloads()}};
  }
  if (a.kind() == StreamKind::kMpegTs || (a.kind() == StreamKind::kRtp && a.rtp_ts_payloads() > 0))
    j["ts"] = ts_json(a.ts());
  return j;
}

std::string report_text(const Analyzer& a, const RunInfo& run) {
  std::string out;
  flatten(report_json(a, run), "", &out);
  return out;
}

std::string live_line(const Analyzer& a, const Totals& previous, double interval_s, double elapsed_s) {
  const Totals& t = a.totals();
  char buffer[512];
  int n = 0;
  auto add = [&](const char* format, auto... args) {
    if (n >= 0 && size_t(n) < sizeof buffer)
      n += snprintf(buffer + n, sizeof buffer - size_t(n), format, args...);
  };
  double rate = interval_s > 0 ? double(t.datagrams - previous.datagrams) / interval_s : 0;
  double mbits = interval_s > 0 ? 8.0 * double(t.bytes - previous.bytes) / interval_s / 1e6 : 0;
  add("vrelay-probe: %.0fs %s %.0f datagrams/s %.3f Mbit/s datagrams %" PRIu64, elapsed_s,
      t.datagrams == 0 ? "waiting" : kind_name(a.kind()), rate, mbits, t.datagrams);
  if (t.other) add(" other %" PRIu64, t.other);
  const SequenceTracker& s = a.sequence();
  if (a.kind() == StreamKind::kCounter || a.kind() == StreamKind::kRtp)
    add(" | received %" PRIu64 " lost %" PRIu64 " out_of_order %" PRIu64 " duplicates %" PRIu64, s.received(),
        s.lost(), s.out_of_order(), s.duplicates());
  if (a.kind() == StreamKind::kCounter) add(" corrupt %" PRIu64, a.counter_corrupt());
  const TsAnalyzer& ts = a.ts();
  if (a.kind() == StreamKind::kMpegTs || (a.kind() == StreamKind::kRtp && a.rtp_ts_payloads() > 0))
    add(" | ts packets %" PRIu64 " pids %" PRIu64 " cc_errors %" PRIu64 " sync_errors %" PRIu64, ts.packets(),
        ts.pid_count(), ts.cc_errors(), ts.sync_errors());
  return std::string(buffer, std::min(size_t(n < 0 ? 0 : n), sizeof buffer - 1));
}

}  // namespace vrelay::probe
