// Logging for every vrelay process: one line per event on stderr, with the systemd priority
// prefix ("<6>") that journald turns into a log level; or, with log.file, appended to that
// file with the time and level in words. Control bytes are escaped.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "result.hpp"

namespace vrelay::log {

enum Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

void set_level(int level);
void set_role(const char* role);  // "supervisor", "ingest", ...; shown on every line
bool enabled(int level);
// Appends stderr (and so the log of every process forked later) to `path`: the file is
// opened and put in place of descriptor 2.
Status use_file(const std::string& path);
// Makes the log file the service account's (vrelayd dropping root), so that it can write
// and reopen it.
Status give_to(uid_t uid, gid_t gid);
// Opens the log file again (after logrotate moved it away).
Status reopen();
void write(int level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A message that can come in floods (connections, refusals, skipped datagrams) is counted
// in full elsewhere but logged at most `lines` times per interval, a line then saying how
// many went unlogged before it: the log never grows with an attacker's rate. Any thread.
class Throttle {
 public:
  explicit Throttle(uint64_t interval_ns, uint64_t lines = 1) : interval_ns_(interval_ns), lines_(lines) {}
  // At monotonic time `now_ns`: nullopt when this occurrence goes unlogged; otherwise the
  // note to end its line with, " (and 12 more <what> not logged)" or "".
  std::optional<std::string> due(uint64_t now_ns, const char* what) {
    std::lock_guard lock(mutex_);
    if (now_ns - window_ns_ >= interval_ns_ || logged_ == 0) {
      window_ns_ = now_ns;
      logged_ = 0;
    }
    if (logged_ == lines_) {
      ++unlogged_;
      return std::nullopt;
    }
    ++logged_;
    std::string note = unlogged_ ? " (and " + std::to_string(unlogged_) + " more " + what + " not logged)" : "";
    unlogged_ = 0;
    return note;
  }

 private:
  std::mutex mutex_;
  uint64_t interval_ns_, lines_, window_ns_ = 0, logged_ = 0, unlogged_ = 0;
};

}  // namespace vrelay::log

#define VLOG(level, ...) \
  do { if (::vrelay::log::enabled(level)) ::vrelay::log::write(level, __VA_ARGS__); } while (0)
#define LOG_ERROR(...) VLOG(::vrelay::log::kError, __VA_ARGS__)
#define LOG_WARN(...) VLOG(::vrelay::log::kWarning, __VA_ARGS__)
#define LOG_NOTICE(...) VLOG(::vrelay::log::kNotice, __VA_ARGS__)
#define LOG_INFO(...) VLOG(::vrelay::log::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) VLOG(::vrelay::log::kDebug, __VA_ARGS__)
