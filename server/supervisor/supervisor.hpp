// The supervisor: owns the shared memory and every socket, forks and restarts the children.
#pragma once
#include <functional>

#include "config.hpp"

namespace vrelay {

struct SupervisorOptions {
  bool foreground = false;
  bool allow_root = false;  // started as root, stay root (see privileges.hpp)
  // Reads and validates the configuration as at start (the file, then the command line's
  // overrides); throws ConfigError naming file, line and key. A reload calls it.
  std::function<Config()> reload_config;
};

// Runs until SIGTERM/SIGINT (or a moderator's SHUTDOWN); returns the exit status.
int run_supervisor(const Config& config, const SupervisorOptions& options);

}  // namespace vrelay
