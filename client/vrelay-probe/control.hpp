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

  // Each returns false with a message in *error; timeout_s bounds the whole call.
  // Connects and reads the greeting (EVENT HELLO vrelay ...).
  bool open(const std::string& host, const std::string& port, double timeout_s, std::string* error);
  // Sends CONECTAR <udp_port>; true on OK, false on ERR (quoted in *error) or no reply.
  bool subscribe(uint16_t udp_port, double timeout_s, std::string* error);
  // When fd() is readable: reads what came (events, replies to PING) and drops it; false
  // when the relay closed the connection or it failed.
  bool service(std::string* error);
  // Sends PING (the relay's idle timeout counts lines sent); its reply is dropped.
  bool ping(std::string* error);
  // Sends DESCONECTAR and waits for its OK (after the replies still due).
  bool unsubscribe(double timeout_s, std::string* error);

  // A file descriptor (vrelay-probe's signalfd) whose readability interrupts every wait
  // of open(), subscribe() and unsubscribe(): they then fail with interrupted() set.
  void set_interrupt_fd(int fd) { client_.set_interrupt_fd(fd); }
  bool interrupted() const { return client_.interrupted(); }

  int fd() const { return client_.fd(); }
  bool connected() const { return client_.connected(); }

 private:
  // Sends `command` and reads its reply line, skipping events and the replies of PINGs
  // still due; false (with *error) on timeout, close or failure.
  bool command(const std::string& command, double timeout_s, std::string* reply, std::string* error);

  control::Client client_;
  std::string last_event_;  // the last event service() read, for the message when the relay closes
  int pending_replies_ = 0;  // PINGs sent whose reply has not been read
};

}  // namespace vrelay::probe
