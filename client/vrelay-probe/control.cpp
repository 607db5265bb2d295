// vrelay-probe's control session (see control.hpp), on the shared control::Client.
#include "control.hpp"

#include <cstdio>

namespace vrelay::probe {

namespace {

using Read = control::Client::Read;

std::string seconds_text(double s) {
  char buf[32];
  snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

}  // namespace

Status ControlSession::open(const std::string& host, const std::string& port, double timeout_s) {
  auto deadline = control::deadline_after(timeout_s);
  if (Status connected = client_.connect(host, port, timeout_s); !connected) {
    if (interrupted()) return connected;
    return Failure{"cannot connect to the relay at " + host + ":" + port + ": " + connected.error()};
  }
  control::Hello hello;
  std::string line, error;
  switch (client_.read_hello(deadline, &hello, &line, &error)) {
    case Read::kLine: return {};
    case Read::kTimeout: error = "no greeting from the relay within " + seconds_text(timeout_s); break;
    case Read::kClosed: error = "the relay closed the connection before its greeting"; break;
    case Read::kError: break;  // error says why (not a vrelay relay, too long a line...)
  }
  client_.close();
  return Failure{error};
}

Result<std::string> ControlSession::command(const std::string& command, double timeout_s) {
  if (Status sent = client_.send_line(command); !sent) return Failure{sent.error()};
  auto deadline = control::deadline_after(timeout_s);
  for (;;) {
    std::string reply, error;
    switch (client_.read_reply(deadline, &reply, nullptr, &error)) {  // events: other sessions' news
      case Read::kLine: break;
      case Read::kTimeout: return Failure{"no reply to " + command + " within " + seconds_text(timeout_s)};
      case Read::kClosed: return Failure{"the relay closed the connection before replying to " + command};
      case Read::kError: return Failure{error};
    }
    if (pending_replies_ == 0) return reply;
    --pending_replies_;  // a PING's reply, still due before ours
  }
}

Status ControlSession::subscribe(uint16_t udp_port, double timeout_s) {
  std::string line = "CONECTAR " + std::to_string(udp_port);
  auto reply = command(line, timeout_s);
  if (!reply) return Failure{reply.error()};
  if (*reply == "OK") return {};
  return Failure{"the relay refused " + line + ": " + reply->substr(0, 200)};
}

Status ControlSession::service() {
  // Only what has come already: a deadline of now never waits.
  auto note_event = [this](const std::string& event) { last_event_ = event.substr(0, 200); };
  for (;;) {
    std::string reply, error;
    switch (client_.read_reply(control::Clock::now(), &reply, note_event, &error)) {
      case Read::kLine:
        if (pending_replies_ > 0) --pending_replies_;
        continue;
      case Read::kTimeout: return {};
      case Read::kClosed:
        error = "the relay closed the connection" + (last_event_.empty() ? "" : " (after '" + last_event_ + "')");
        break;
      case Read::kError: break;
    }
    client_.close();
    return Failure{error};
  }
}

Status ControlSession::ping() {
  if (Status sent = client_.send_line("PING"); !sent) return sent;
  ++pending_replies_;
  return {};
}

Status ControlSession::unsubscribe(double timeout_s) {
  auto reply = command("DESCONECTAR", timeout_s);
  if (!reply) return Failure{reply.error()};
  if (*reply != "OK") return Failure{"the relay answered DESCONECTAR with: " + reply->substr(0, 200)};
  client_.close();  // the relay closes its side after this OK
  return {};
}

}  // namespace vrelay::probe
