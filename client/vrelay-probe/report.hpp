// vrelay-probe's reports (pure code, run by vrelay-probe and the unit tests): the live
// status line, and the final report as text or as one JSON object. The keys are listed in
// OUTPUT of man/vrelay-probe.1.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "analysis.hpp"

namespace vrelay::probe {

struct RunInfo {
  double duration_s = 0;      // from the start of reception to the end
  std::string end = "signal"; // why it ended: count, duration, idle, signal, error
};

// Keys in the order of the man page (ordered_json), for people reading it.
nlohmann::ordered_json report_json(const Analyzer& analyzer, const RunInfo& run);
// The same fields as report_json, one "key: value" line each (nested keys joined by '.',
// one "pid NUMBER: packets N cc_errors M" line per PID).
std::string report_text(const Analyzer& analyzer, const RunInfo& run);

// One status line (no newline): elapsed time, kind, the rates since `previous` (taken
// `interval_s` seconds ago) and the counters that matter for the kind.
std::string live_line(const Analyzer& analyzer, const Totals& previous, double interval_s, double elapsed_s);

}  // namespace vrelay::probe
