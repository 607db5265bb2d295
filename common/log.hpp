// Logging for every vrelay process: one line per event on stderr, with the systemd priority
// prefix ("<6>") that journald turns into a log level; or, with log.file, appended to that
// file with the time and level in words. Control bytes are escaped.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>

namespace vrelay::log {

enum Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

void set_level(int level);
void set_role(const char* role);  // "supervisor", "ingest", ...; shown on every line
bool enabled(int level);
// Appends stderr (and so the log of every process forked later) to `path`: the file is
// opened and put in place of descriptor 2. Returns "" or the reason it failed.
std::string use_file(const std::string& path);
// Makes the log file the service account's (vrelayd dropping root), so that it can write
// and reopen it; "" or the reason.
std::string give_to(uid_t uid, gid_t gid);
// Opens the log file again (after logrotate moved it away); "" or the reason.
std::string reopen();
void write(int level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A message that can come in floods (refused connections, skipped datagrams) is counted in
// full elsewhere but logged at most once per interval, each line saying how many went
// unlogged before it: the log never grows with an attacker's rate. One thread only.
class Throttle {
 public:
  explicit Throttle(uint64_t interval_ns) : interval_ns_(interval_ns) {}
  // Whether to log the occurrence at monotonic time `now_ns`; if so, summary() says what
  // was not logged since the last line.
  bool due(uint64_t now_ns) {
    if (logged_ && now_ns - last_ns_ < interval_ns_) {
      ++unlogged_;
      return false;
    }
    summarised_ = unlogged_;
    unlogged_ = 0;
    last_ns_ = now_ns;
    logged_ = true;
    return true;
  }
  // " (and 12 more <what>, not logged)", or "" when none went unlogged.
  std::string summary(const char* what) const {
    return summarised_ ? " (and " + std::to_string(summarised_) + " more " + what + ", not logged)" : "";
  }

 private:
  uint64_t interval_ns_, last_ns_ = 0, unlogged_ = 0, summarised_ = 0;
  bool logged_ = false;
};

}  // namespace vrelay::log

#define VLOG(level, ...) \
  do { if (::vrelay::log::enabled(level)) ::vrelay::log::write(level, __VA_ARGS__); } while (0)
#define LOG_ERROR(...) VLOG(::vrelay::log::kError, __VA_ARGS__)
#define LOG_WARN(...) VLOG(::vrelay::log::kWarning, __VA_ARGS__)
#define LOG_NOTICE(...) VLOG(::vrelay::log::kNotice, __VA_ARGS__)
#define LOG_INFO(...) VLOG(::vrelay::log::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) VLOG(::vrelay::log::kDebug, __VA_ARGS__)
