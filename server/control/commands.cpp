// The commands of a control session (vrelay-protocol(7)). Checks run in the contract's order:
// syntax (the parser, then argument values), permission, then state.
#include <algorithm>
#include <ctime>
#include <thread>

#include "control.hpp"
#include "log.hpp"
#include "subscribers.hpp"

namespace vrelay {

using protocol::CommandId;
using protocol::ErrorCode;
using protocol::Event;
using protocol::Fields;
using protocol::Reply;

namespace {

std::string iso8601(uint64_t ns) {
  time_t seconds = time_t(ns / kNsPerSecond);
  tm utc{};
  gmtime_r(&seconds, &utc);
  char out[32];
  strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return out;
}

// Compares without an early exit on content, so the time taken tells nothing about the
// token but its length.
bool same_secret(std::string_view given, std::string_view secret) {
  unsigned char diff = given.size() != secret.size();
  size_t n = std::max(given.size(), secret.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    unsigned char b = i < secret.size() ? static_cast<unsigned char>(secret[i]) : 0;
    diff = static_cast<unsigned char>(diff | (a ^ b));
  }
  return diff == 0;
}

Reply bad_port(const Config& config) {
  return protocol::err(ErrorCode::kBadPort, "the port must be a number from " + std::to_string(config.control.port_min) +
                                                " to " + std::to_string(config.control.port_max));
}

}  // namespace

Reply Session::authenticate(std::string_view token) {
  bool match = false;
  for (const auto& secret : control_.ctx.config.moderators.tokens) match = same_secret(token, secret) || match;
  if (match) {
    moderator_ = true;
    control_.auth_succeeded(peer_);
    LOG_NOTICE("%s (%s) is a moderator", name().c_str(), peer_.to_string().c_str());
    return protocol::ok();
  }
  // A failed AUTH ends moderation too: the session is what its last AUTH said. Each failure
  // from the same address doubles the delay, 1 s up to 8 s. Only this session's thread
  // waits; the wait ends early if the relay stops.
  moderator_ = false;
  uint32_t failures = control_.auth_failed(peer_);
  control_.stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
  LOG_WARN("%s (%s): AUTH failed (%u in a row from this address)", name().c_str(), peer_.to_string().c_str(), failures);
  auto delay = std::chrono::seconds(1u << std::min(failures - 1, 3u));
  auto until = std::chrono::steady_clock::now() + delay;
  while (std::chrono::steady_clock::now() < until && !control_.stopping.load())
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the delay itself
  return protocol::err(ErrorCode::kForbidden, "wrong token");
}

Reply Session::execute(const protocol::Parsed& command) {
  const Config& config = control_.ctx.config;
  const auto& args = command.args;
  if (command.spec->access == protocol::Access::kModerator && !moderator_) {
    // Syntax was checked by the parser; permission comes before state.
    return protocol::err(ErrorCode::kForbidden, "moderators only: AUTH first");
  }
  switch (command.spec->id) {
    case CommandId::kConnect: {
      auto port = parse_port(args[0], config.control.port_min, config.control.port_max);
      if (!port) return bad_port(config);
      if (subscription() >= 0) return protocol::err(ErrorCode::kAlreadyConnected, "this session already receives the stream");
      Endpoint destination = peer_;  // always the peer's own address: never another host
      destination.set_port(*port);
      bool adopted = false;
      int slot = control_.table.subscribe(destination, id_, &adopted);
      if (slot == SubscriberTable::kTaken)
        return protocol::err(ErrorCode::kBusy, destination.to_string() + " already receives the stream for another session");
      if (slot < 0) return protocol::err(ErrorCode::kBusy, "the subscriber table is full");
      subscription_.store(slot, std::memory_order_release);
      LOG_INFO("%s (%s): %s the stream to %s", name().c_str(), peer_.to_string().c_str(),
               adopted ? "took over" : "subscribed", destination.to_string().c_str());
      return protocol::ok();
    }
    case CommandId::kPause:
      if (subscription() < 0) return protocol::err(ErrorCode::kNotConnected, "CONECTAR first");
      control_.table.pause(subscription());
      return protocol::ok();
    case CommandId::kResume:
      if (subscription() < 0) return protocol::err(ErrorCode::kNotConnected, "CONECTAR first");
      control_.table.resume(subscription());
      return protocol::ok();
    case CommandId::kDisconnect:
      end_subscription();
      closing_ = true;
      arm_timer();
      close_with_reply_ = true;  // OK is the last line: no event from others follows it
      return protocol::ok();
    case CommandId::kName:
      return control_.rename(*this, std::string(args[0]));
    case CommandId::kList: {
      auto names = control_.names();
      std::string text = std::to_string(names.size());
      for (const auto& n : names) text += " " + n;
      return protocol::ok(text, Fields{{"count", names.size()}, {"names", names}});
    }
    case CommandId::kInfo: {
      auto target = control_.find(std::string(args[0]));
      if (!target) return protocol::err(ErrorCode::kNoSuchUser, "nobody is called '" + std::string(args[0]) + "'");
      std::string state = "idle", udp = "-";
      uint64_t since = target->started_ns();
      int slot = target->subscription();
      SubscriberSnapshot s;
      if (slot >= 0 && read_subscriber(control_.ctx.segment.subscribers()[slot], &s) &&
          s.state != SubscriberState::kFree) {
        state = subscriber_state_name(s.state);
        udp = std::to_string(s.destination.port());
        since = s.since_ns;
      }
      std::string name = control_.name_of(*target);
      std::string addr = target->peer().to_string();
      Fields fields{{"name", name}, {"addr", addr}, {"udp", udp == "-" ? Fields(nullptr) : Fields(std::stoi(udp))},
                    {"state", state}, {"since", iso8601(since)}};
      return protocol::ok("name=" + name + " addr=" + addr + " udp=" + udp + " state=" + state + " since=" + iso8601(since),
                          fields);
    }
    case CommandId::kMsg: {
      auto target = control_.find(std::string(args[0]));
      if (!target) return protocol::err(ErrorCode::kNoSuchUser, "nobody is called '" + std::string(args[0]) + "'");
      std::string from = name(), text(args[1]);
      after_reply([target, from, text] { target->post(Event{"MSG", from + " " + text, Fields{{"from", from}, {"text", text}}}); });
      control_.stats.messages.fetch_add(1, std::memory_order_relaxed);
      return protocol::ok();
    }
    case CommandId::kBroadcast: {
      std::string from = name(), text(args[0]);
      size_t recipients = control_.send_to_others(*this, Event{"BROADCAST", from + " " + text,
                                                               Fields{{"from", from}, {"text", text}}});
      control_.stats.messages.fetch_add(1, std::memory_order_relaxed);
      return protocol::ok(std::to_string(recipients), Fields{{"recipients", recipients}});
    }
    case CommandId::kEcho:
      return protocol::ok(args.empty() ? std::string() : std::string(args[0]));
    case CommandId::kPing:
      return protocol::ok("PONG");
    case CommandId::kStats: {
      const Stats& st = control_.ctx.segment.stats();
      uint64_t now = wall_ns();
      bool live = !st.ingest.stalled.load(std::memory_order_relaxed);  // as EVENT SOURCE told
      Fields f{{"sessions", control_.session_count()},
               {"subscribers", st.control.subscribers.load(std::memory_order_relaxed)},
               {"playing", control_.table.count_playing()},  // as of now, not as of the last datagram
               {"ingest_datagrams", st.ingest.datagrams.load(std::memory_order_relaxed)},
               {"ingest_bytes", st.ingest.bytes.load(std::memory_order_relaxed)},
               {"sent_datagrams", st.fanout.sent_datagrams.load(std::memory_order_relaxed)},
               {"uptime_s", (now - st.supervisor.started_ns.load(std::memory_order_relaxed)) / kNsPerSecond},
               {"source", live ? "live" : "stalled"},
               {"ingest_bitrate", 8 * st.ingest.rate_bytes.load(std::memory_order_relaxed)},
               {"send_errors", st.fanout.send_errors.load(std::memory_order_relaxed)},
               {"refusals", st.fanout.refusals.load(std::memory_order_relaxed)}};
      std::string text;
      for (const auto& [key, value] : f.items())
        text += (text.empty() ? "" : " ") + key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
      return protocol::ok(text, f);
    }
    case CommandId::kHelp: {
      if (args.empty()) return protocol::ok(protocol::help_text());
      const protocol::CommandSpec* spec = protocol::find_command(args[0]);
      if (!spec) return protocol::err(ErrorCode::kBadArgument, "no such command; HELP lists them");
      return protocol::ok(std::string(spec->usage) + " - " + spec->help,
                          Fields{{"usage", spec->usage}, {"help", spec->help}});
    }
    case CommandId::kFormat: {
      std::string wanted = lower(args[0]);
      if (wanted != "json" && wanted != "text") return protocol::err(ErrorCode::kBadArgument, "usage: FORMAT JSON|TEXT");
      format_change_ = wanted == "json";  // applied with the reply (Session::reply)
      return protocol::ok();
    }
    case CommandId::kAuth:
      return authenticate(args[0]);
    case CommandId::kKick: {
      auto target = control_.find(std::string(args[0]));
      if (!target) return protocol::err(ErrorCode::kNoSuchUser, "nobody is called '" + std::string(args[0]) + "'");
      std::string by = name();
      LOG_NOTICE("%s kicked %s", by.c_str(), control_.name_of(*target).c_str());
      control_.stats.kicks.fetch_add(1, std::memory_order_relaxed);
      after_reply([target, by] { target->post(Event{"KICKED", by, Fields{{"by", by}}}, true); });
      return protocol::ok();
    }
    case CommandId::kShutdown: {
      std::string by = name();
      after_reply([this, by] { control_.request_shutdown(by); });
      return protocol::ok();
    }
    case CommandId::kCall:
    case CommandId::kAnswer: {
      auto port = parse_port(args[1], config.control.port_min, config.control.port_max);
      if (!port) return bad_port(config);
      std::string other(args[0]);
      return command.spec->id == CommandId::kCall ? control_.call(*this, other, *port)
                                                   : control_.answer(*this, other, *port);
    }
    case CommandId::kHangup:
      return control_.hangup(*this, std::string(args[0]));
  }
  return protocol::err(ErrorCode::kUnknownCommand, "not implemented");
}

}  // namespace vrelay
