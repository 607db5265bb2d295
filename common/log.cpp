// Logging: formats a whole line first and writes it with one write(2), so lines from
// several threads or processes sharing stderr never interleave.
#include "log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace vrelay::log {
namespace {
std::atomic<int> g_level{kInfo};
const char* g_role = "vrelayd";
std::mutex g_file_mutex;       // guards g_file_path
std::string g_file_path;       // "" = stderr as given (journald)
std::atomic<bool> g_to_file{false};

// Whether standard error is the journal: systemd says which stream it gave in
// JOURNAL_STREAM ("device:inode"). Only there does a line start with the <priority> prefix
// journald reads; a terminal, a pipe or a file gets the time and the level in words.
bool stderr_is_journal() {
  const char* stream = getenv("JOURNAL_STREAM");
  struct stat st;
  unsigned long long device = 0, inode = 0;
  if (!stream || sscanf(stream, "%llu:%llu", &device, &inode) != 2 || fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev_t(device) && st.st_ino == ino_t(inode);
}
std::atomic<bool> g_journal{stderr_is_journal()};

const char* level_name(int level) {
  switch (level) {
    case kError: return "error";
    case kWarning: return "warning";
    case kNotice: return "notice";
    case kInfo: return "info";
    default: return "debug";
  }
}

Status open_on_stderr(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return Failure{"cannot open the log file " + path + ": " + strerror(errno)};
  if (fd != STDERR_FILENO) {
    dup2(fd, STDERR_FILENO);  // atomically replaces fd 2: no line is lost or misdirected
    close(fd);
  }
  return {};
}
}  // namespace

Status use_file(const std::string& path) {
  std::lock_guard lock(g_file_mutex);
  Status opened = open_on_stderr(path);
  if (opened) {
    g_file_path = path;
    g_to_file.store(true);
  }
  return opened;
}

Status give_to(uid_t uid, gid_t gid) {
  std::lock_guard lock(g_file_mutex);
  if (g_file_path.empty() || fchown(STDERR_FILENO, uid, gid) == 0) return {};
  return Failure{"cannot give the log file " + g_file_path + " to uid " + std::to_string(uid) + ": " + strerror(errno)};
}

Status reopen() {
  std::lock_guard lock(g_file_mutex);
  if (g_file_path.empty()) return {};
  return open_on_stderr(g_file_path);
}

void set_level(int level) { g_level.store(level, std::memory_order_relaxed); }
void set_role(const char* role) { g_role = role; }
bool enabled(int level) { return level <= g_level.load(std::memory_order_relaxed); }

void write(int level, const char* fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = std::min<size_t>(size_t(n), sizeof text - 1);

  char line[1200];
  size_t out;
  if (g_to_file.load(std::memory_order_relaxed) || !g_journal.load(std::memory_order_relaxed)) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tm utc;
    gmtime_r(&ts.tv_sec, &utc);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &utc);
    out = size_t(snprintf(line, sizeof line, "%s.%06ldZ %s %s[%d]: ", when, ts.tv_nsec / 1000, level_name(level), g_role,
                          int(getpid())));
  } else {
    out = size_t(snprintf(line, sizeof line, "<%d>%s: ", level, g_role));
  }
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < len && out + 5 < sizeof line; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {  // never raw control bytes in a log
      line[out++] = '\\';
      line[out++] = 'x';
      line[out++] = hex[c >> 4];
      line[out++] = hex[c & 15];
    } else {
      line[out++] = char(c);
    }
  }
  line[out++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, out);
  (void)ignored;
}

}  // namespace vrelay::log
