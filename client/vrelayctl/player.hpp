// vrelayctl watch --play: the VLC viewer it starts (`cvlc udp://@:PORT`) and stops.
// VLC refuses to run as root (it prints a warning and exits 0), so when vrelayctl runs as
// root the player runs as $SUDO_USER (the user who ran sudo) or else as nobody, with a
// private HOME that is removed afterwards.
#pragma once
#include <sys/types.h>

#include <string>

#include "result.hpp"

namespace vrelay::ctl {

class Player {
 public:
  Player() = default;
  ~Player();
  Player(const Player&) = delete;
  Player& operator=(const Player&) = delete;

  // Starts the player on UDP port `port` in a process group of its own (the terminal's
  // Ctrl-C is vrelayctl's, which then stops the player itself).
  Status start(unsigned port);
  pid_t pid() const { return pid_; }
  const std::string& user() const { return user_; }  // empty when it runs as ourselves
  // The player exited by itself (status as from waitpid).
  void exited(int wait_status);
  // SIGTERM to its process group, then SIGKILL after `grace` seconds; waits for it.
  void stop(double grace = 3.0);

 private:
  pid_t pid_ = -1;
  std::string user_;
  std::string temp_home_;  // removed by stop()/exited()
  void cleanup_home();
};

}  // namespace vrelay::ctl
