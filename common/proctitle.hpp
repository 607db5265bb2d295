// Process titles: children show their role in ps ("vrelayd: ingest").
#pragma once

namespace vrelay {
// Call once from main() before anything reads the environment through `environ` pointers
// captured earlier; moves the environment aside so the title may use its space.
void proctitle_init(int argc, char** argv);
// Sets both the command line shown by `ps` and the kernel thread name (`ps -o comm`).
void proctitle_set(const char* title);
}  // namespace vrelay
