// The supervisor: owns the shared memory and every socket, forks and restarts the children.
#pragma once
#include "config.hpp"

namespace vrelay {

struct SupervisorOptions {
  bool foreground = false;
  bool allow_root = false;  // started as root, stay root (see privileges.hpp)
};

// Runs until SIGTERM/SIGINT (or a moderator's SHUTDOWN); returns the exit status.
int run_supervisor(const Config& config, const SupervisorOptions& options);

}  // namespace vrelay
