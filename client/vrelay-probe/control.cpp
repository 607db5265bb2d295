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

bool ControlSession::open(const std::string& host, const std::string& port, double timeout_s, std::string* error) {
  auto deadline = control::deadline_after(timeout_s);
  std::string why;
  if (!client_.connect(host, port, timeout_s, &why)) {
    *error = interrupted() ? why : "cannot connect to the relay at " + host + ":" + port + ": " + why;
    return false;
  }
  control::Hello hello;
  std::string line;
  switch (client_.read_hello(deadline, &hello, &line, error)) {
    case Read::kLine: return true;
    case Read::kTimeout: *error = "no greeting from the relay within " + seconds_text(timeout_s); break;
    case Read::kClosed: *error = "the relay closed the connection before its greeting"; break;
    case Read::kError: break;  // *error says why (not a vrelay relay, too long a line...)
  }
  client_.close();
  return false;
}

bool ControlSession::command(const std::string& command, double timeout_s, std::string* reply, std::string* error) {
  if (!client_.send_line(command, error)) return false;
  auto deadline = control::deadline_after(timeout_s);
  for (;;) {
    switch (client_.read_reply(deadline, reply, nullptr, error)) {  // events: other sessions' news
      case Read::kLine: break;
      case Read::kTimeout: *error = "no reply to " + command + " within " + seconds_text(timeout_s); return false;
      case Read::kClosed: *error = "the relay closed the connection before replying to " + command; return false;
      case Read::kError: return false;
    }
    if (pending_replies_ == 0) return true;
    --pending_replies_;  // a PING's reply, still due before ours
  }
}

bool ControlSession::subscribe(uint16_t udp_port, double timeout_s, std::string* error) {
  std::string line = "CONECTAR " + std::to_string(udp_port), reply;
  if (!command(line, timeout_s, &reply, error)) return false;
  if (reply == "OK") return true;
  *error = "the relay refused " + line + ": " + reply.substr(0, 200);
  return false;
}

bool ControlSession::service(std::string* error) {
  // Only what has come already: a deadline of now never waits.
  auto note_event = [this](const std::string& event) { last_event_ = event.substr(0, 200); };
  for (;;) {
    std::string reply;
    switch (client_.read_reply(control::Clock::now(), &reply, note_event, error)) {
      case Read::kLine:
        if (pending_replies_ > 0) --pending_replies_;
        continue;
      case Read::kTimeout: return true;
      case Read::kClosed:
        *error = "the relay closed the connection" + (last_event_.empty() ? "" : " (after '" + last_event_ + "')");
        break;
      case Read::kError: break;
    }
    client_.close();
    return false;
  }
}

bool ControlSession::ping(std::string* error) {
  if (!client_.send_line("PING", error)) return false;
  ++pending_replies_;
  return true;
}

bool ControlSession::unsubscribe(double timeout_s, std::string* error) {
  std::string reply;
  if (!command("DESCONECTAR", timeout_s, &reply, error)) return false;
  if (reply != "OK") {
    *error = "the relay answered DESCONECTAR with: " + reply.substr(0, 200);
    return false;
  }
  client_.close();  // the relay closes its side after this OK
  return true;
}

}  // namespace vrelay::probe
