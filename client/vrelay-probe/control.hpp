// vrelay-probe's control session (--subscribe): a blocking TCP client with poll() deadlines
// that subscribes the probe's UDP port to a relay (CONECTAR) and leaves at the end
// (DESCONECTAR). Run by vrelay-probe's only thread, between batches of datagrams.
#pragma once
#include <cstdint>
#include <string>

#include "control_client.hpp"

namespace vrelay::probe {

class ControlSession {
 public:
  ControlSession() = default;
  ControlSession(const ControlSession&) = delete;
  ControlSession& operator=(const ControlSession&) = delete;

  // Each fails with a message a person can act on; timeout_s bounds the whole call.
  // Connects and reads the greeting (EVENT HELLO vrelay ...).
  Status open(const std::string& host, const std::string& port, double timeout_s);
  // Sends CONECTAR <udp_port>; succeeds on OK, fails on ERR (quoted) or no reply.
  Status subscribe(uint16_t udp_port, double timeout_s);
  // When fd() is readable: reads what came (events, replies to PING) and drops it; fails
  // when the relay closed the connection or it failed.
  Status service();
  // Sends PING (the relay's idle timeout counts lines sent); its reply is dropped.
  Status ping();
  // Sends DESCONECTAR and waits for its OK (after the replies still due).
  Status unsubscribe(double timeout_s);

  // A file descriptor (vrelay-probe's signalfd) whose readability interrupts every wait
  // of open(), subscribe() and unsubscribe(): they then fail with interrupted() set.
  void set_interrupt_fd(int fd) { client_.set_interrupt_fd(fd); }
  bool interrupted() const { return client_.interrupted(); }

  int fd() const { return client_.fd(); }
  bool connected() const { return client_.connected(); }

 private:
  // Sends `command` and returns its reply line, skipping events and the replies of PINGs
  // still due; fails on timeout, close or failure.
  Result<std::string> command(const std::string& command, double timeout_s);

  control::Client client_;
  std::string last_event_;  // the last event service() read, for the message when the relay closes
  int pending_replies_ = 0;  // PINGs sent whose reply has not been read
};

}  // namespace vrelay::probe
