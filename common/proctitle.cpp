// Rewrites argv in place (the memory ps reads from /proc/PID/cmdline), after moving the
// environment strings that follow it in memory to the heap.
#include "proctitle.hpp"

#include <sys/prctl.h>

#include <algorithm>

#include <cstring>
#include <cstdlib>

extern char** environ;

namespace vrelay {
namespace {
char* g_area = nullptr;
size_t g_area_size = 0;
}  // namespace

void proctitle_init(int argc, char** argv) {
  if (argc < 1 || !argv[0]) return;
  char* end = argv[0] + strlen(argv[0]) + 1;
  for (int i = 1; i < argc; ++i)
    if (argv[i] == end) end = argv[i] + strlen(argv[i]) + 1;
  size_t env_count = 0;
  while (environ[env_count]) ++env_count;
  char** copy = static_cast<char**>(malloc((env_count + 1) * sizeof(char*)));
  if (!copy) return;
  for (size_t i = 0; i < env_count; ++i) {
    if (environ[i] == end) end = environ[i] + strlen(environ[i]) + 1;
    copy[i] = strdup(environ[i]);
  }
  copy[env_count] = nullptr;
  environ = copy;
  g_area = argv[0];
  g_area_size = size_t(end - argv[0]);
}

void proctitle_set(const char* title) {
  prctl(PR_SET_NAME, title, 0, 0, 0);  // truncated to 15 bytes by the kernel
  if (!g_area || g_area_size < 2) return;
  size_t n = std::min(strlen(title), g_area_size - 1);
  memcpy(g_area, title, n);
  memset(g_area + n, 0, g_area_size - n);
}

}  // namespace vrelay
