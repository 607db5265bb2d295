// vrelaystat: the text it prints, from snapshots (no I/O, no terminal): the counter list of
// -1, the subscriber table, the frames of the live view. Shared with the unit tests.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stats_view.hpp"

namespace vrelay::vstat {

// Glob patterns (fnmatch) on counter names ("ingest.*"); no pattern matches every counter.
bool counter_selected(const std::vector<std::string>& filters, const std::string& name);

// "1d 02:03:04" or "02:03:04" for a duration; "-" for 0.
std::string format_duration(uint64_t ns);
// "2026-11-22T12:01:02" in local time; "-" for 0.
std::string format_time(uint64_t ns_since_epoch);
// "4.21 Mbit/s", "812.0 kbit/s", "96 bit/s".
std::string format_bitrate(uint64_t bits_per_second);

// -1: one "group.name  value  help" line per selected counter, in kCounters order.
std::string once_text(const Snapshot& snapshot, const std::vector<std::string>& filters);
// -j: snapshot_json() with only the selected counters.
nlohmann::ordered_json json_output(const Snapshot& snapshot, const std::vector<std::string>& filters);
// --subscribers: a header line, then one line per subscriber in use.
std::string subscribers_text(const Snapshot& snapshot);

// One frame of the live view. `previous` is the snapshot of the last frame of the same
// segment (nullopt right after attaching: no rates yet); `elapsed_s` the time between them.
std::vector<std::string> live_frame(const Snapshot& current, const Snapshot* previous, double elapsed_s,
                                    const std::vector<std::string>& filters);
// The frame shown while no usable segment is there.
std::vector<std::string> waiting_frame(const std::string& instance, const std::string& reason, uint64_t now_ns);

// Fits a frame into a terminal: lines cut at `columns`, and at most `rows` lines (the last
// one then says how many were left out).
std::vector<std::string> fit(std::vector<std::string> lines, size_t columns, size_t rows);

}  // namespace vrelay::vstat
