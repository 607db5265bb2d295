// Logging: formats a whole line first and writes it with one write(2), so lines from
// several threads or processes sharing stderr never interleave.
#include "log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>

namespace vrelay::log {
namespace {
std::atomic<int> g_level{kInfo};
const char* g_role = "vrelayd";
}  // namespace

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
  size_t out = size_t(snprintf(line, sizeof line, "<%d>%s: ", level, g_role));
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
