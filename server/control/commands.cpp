// A session's Conversation (control.hpp): the commands of vrelay-protocol(7), one handler
// per entry of common/commands.def. Checks run in the contract's order: syntax (the parser,
// then argument values), permission (execute), then state. Replies are worded here; the
// Registry answers in plain results.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <thread>

#include "control.hpp"
#include "log.hpp"
#include "stats_view.hpp"
#include "subscribers.hpp"

namespace vrelay {

using protocol::CommandId;
using protocol::ErrorCode;
using protocol::Event;
using protocol::Fields;
using protocol::Reply;

namespace {

constexpr uint64_t kReloadAnswerNs = 10 * kNsPerSecond;  // the supervisor reads and binds, no more

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

// A NAME: 1 to 32 of [A-Za-z0-9_.-], not guest-* (given at connect) nor "server".
bool valid_name(const std::string& name) {
  if (!protocol::is_name(name)) return false;
  std::string l = lower(name);
  return l.rfind("guest-", 0) != 0 && l != "server";
}

Reply bad_port(const Config& config) {
  return protocol::err(ErrorCode::kBadPort, "the port must be a number from " + std::to_string(config.control.port_min) +
                                                " to " + std::to_string(config.control.port_max));
}

}  // namespace

Reply no_such_user(std::string_view name) {
  return protocol::err(ErrorCode::kNoSuchUser, "nobody is called '" + std::string(name) + "'");
}

Reply Conversation::execute(const protocol::Parsed& command) {
  if (command.spec->access == protocol::Access::kModerator && !moderator_) {
    // Syntax was checked by the parser; permission comes before state.
    return protocol::err(ErrorCode::kForbidden, "moderators only: AUTH first");
  }
  switch (command.spec->id) {
#define VRELAY_COMMAND(id, ...) \
  case CommandId::k##id:        \
    return command_##id(command);
#include "commands.def"
#undef VRELAY_COMMAND
  }
  return protocol::err(ErrorCode::kUnknownCommand, "not implemented");
}

// ---- the stream ----------------------------------------------------------------------

bool Conversation::watching() const {
  int slot = subscription();
  return slot >= 0 && control_.ctx.segment.subscribers()[slot].state.load(std::memory_order_relaxed) ==
                          uint32_t(SubscriberState::kPlaying);
}

void Conversation::end_subscription() {
  int slot = subscription_.exchange(-1);
  if (slot < 0) return;
  control_.table.release(slot);
  LOG_INFO("%s (%s): subscription ended", session_.name().c_str(), session_.peer().to_string().c_str());
}

Reply Conversation::command_Connect(const protocol::Parsed& command) {
  const Config& config = session_.config();
  auto port = parse_port(command.args[0], config.control.port_min, config.control.port_max);
  if (!port) return bad_port(config);
  if (subscription() >= 0) return protocol::err(ErrorCode::kAlreadyConnected, "this session already receives the stream");
  Endpoint destination = session_.peer();  // always the peer's own address: never another host
  destination.set_port(*port);
  bool adopted = false;
  int slot = control_.table.subscribe(destination, session_.id(), &adopted, session_.name());
  if (slot == SubscriberTable::kTaken)
    return protocol::err(ErrorCode::kBusy, destination.to_string() + " already receives the stream for another session");
  if (slot < 0) return protocol::err(ErrorCode::kBusy, "the subscriber table is full");
  subscription_.store(slot, std::memory_order_release);
  LOG_INFO("%s (%s): %s the stream to %s", session_.name().c_str(), session_.peer().to_string().c_str(),
           adopted ? "took over" : "subscribed", destination.to_string().c_str());
  return protocol::ok();
}

Reply Conversation::command_Pause(const protocol::Parsed&) {
  if (subscription() < 0) return protocol::err(ErrorCode::kNotConnected, "CONECTAR first");
  control_.table.pause(subscription());
  return protocol::ok();
}

Reply Conversation::command_Resume(const protocol::Parsed&) {
  if (subscription() < 0) return protocol::err(ErrorCode::kNotConnected, "CONECTAR first");
  control_.table.resume(subscription());
  return protocol::ok();
}

Reply Conversation::command_Disconnect(const protocol::Parsed&) {
  end_subscription();
  session_.close_after_reply();
  return protocol::ok();
}

// ---- people and messages ---------------------------------------------------------------

Reply Conversation::command_Name(const protocol::Parsed& command) {
  std::string wanted(command.args[0]), old;
  if (!valid_name(wanted))
    return protocol::err(ErrorCode::kBadArgument, "a name is 1 to 32 of A-Z a-z 0-9 _ . - and not guest-* or server");
  switch (control_.registry.rename(session_, wanted, &old)) {
    case Registry::Renaming::kTaken: return protocol::err(ErrorCode::kNameTaken, "'" + wanted + "' is taken");
    case Registry::Renaming::kUnchanged: return protocol::ok();
    case Registry::Renaming::kRenamed: break;
  }
  LOG_INFO("%s (%s) is now %s", old.c_str(), session_.peer().to_string().c_str(), wanted.c_str());
  if (int slot = subscription(); slot >= 0) control_.table.rename_owner(slot, session_.id(), wanted);
  session_.after_reply([this, old, wanted] {
    control_.send_to_others(session_, Event{"RENAME", old + " " + wanted, Fields{{"old", old}, {"new", wanted}}}, true);
  });
  return protocol::ok();
}

Reply Conversation::command_List(const protocol::Parsed&) {
  auto names = control_.registry.names();
  for (const SubscriberSnapshot& output : control_.table.outputs()) names.push_back(std::string(kOutputPrefix) + output.owner_name);
  std::string text = std::to_string(names.size());
  for (const auto& n : names) text += " " + n;
  return protocol::ok(text, Fields{{"count", names.size()}, {"names", names}});
}

Reply Conversation::command_Info(const protocol::Parsed& command) {
  std::string_view wanted = command.args[0];
  if (wanted.starts_with(kOutputPrefix)) return output_info(wanted.substr(kOutputPrefix.size()));
  auto target = control_.registry.find(std::string(command.args[0]));
  if (!target) return no_such_user(command.args[0]);
  std::string state = "idle", udp = "-";
  uint64_t since = target->started_ns();
  int slot = target->subscription();
  SubscriberSnapshot s;
  if (slot >= 0 && read_subscriber(control_.ctx.segment.subscribers()[slot], &s) && s.state != SubscriberState::kFree) {
    state = subscriber_state_name(s.state);
    udp = std::to_string(s.destination.port());
    since = s.since_ns;
  }
  std::string name = control_.registry.name_of(*target);
  std::string addr = target->peer().to_string();
  Fields fields{{"name", name}, {"addr", addr}, {"udp", udp == "-" ? Fields(nullptr) : Fields(std::stoi(udp))},
                {"state", state}, {"since", iso8601(since)}};
  return protocol::ok("name=" + name + " addr=" + addr + " udp=" + udp + " state=" + state + " since=" + iso8601(since),
                      fields);
}

// INFO output:NAME: the session fields that mean something for an output; addr is where it
// sends.
Reply Conversation::output_info(std::string_view name) {
  for (const SubscriberSnapshot& s : control_.table.outputs()) {
    if (s.owner_name != name) continue;
    std::string shown = std::string(kOutputPrefix) + s.owner_name, addr = s.destination.to_string(), state = subscriber_state_name(s.state);
    Fields fields{{"name", shown}, {"addr", addr}, {"udp", s.destination.port()}, {"state", state}, {"since", iso8601(s.since_ns)}};
    return protocol::ok("name=" + shown + " addr=" + addr + " udp=" + std::to_string(s.destination.port()) +
                            " state=" + state + " since=" + iso8601(s.since_ns),
                        fields);
  }
  return no_such_user(std::string(kOutputPrefix) + std::string(name));
}

Reply Conversation::command_Msg(const protocol::Parsed& command) {
  auto target = control_.registry.find(std::string(command.args[0]));
  if (!target) return no_such_user(command.args[0]);
  std::string from = session_.name(), text(command.args[1]);
  session_.after_reply([target, from, text] { target->post(Event{"MSG", from + " " + text, Fields{{"from", from}, {"text", text}}}); });
  control_.stats.messages.fetch_add(1, std::memory_order_relaxed);
  return protocol::ok();
}

Reply Conversation::command_Broadcast(const protocol::Parsed& command) {
  std::string from = session_.name(), text(command.args[0]);
  size_t recipients =
      control_.send_to_others(session_, Event{"BROADCAST", from + " " + text, Fields{{"from", from}, {"text", text}}});
  control_.stats.messages.fetch_add(1, std::memory_order_relaxed);
  return protocol::ok(std::to_string(recipients), Fields{{"recipients", recipients}});
}

// ---- the session itself ----------------------------------------------------------------

Reply Conversation::command_Echo(const protocol::Parsed& command) {
  return protocol::ok(command.args.empty() ? std::string() : std::string(command.args[0]));
}

Reply Conversation::command_Ping(const protocol::Parsed&) { return protocol::ok("PONG"); }

Reply Conversation::command_Stats(const protocol::Parsed&) {
  const Stats& st = control_.ctx.segment.stats();
  uint64_t now = wall_ns();
  bool live = !st.ingest.stalled.load(std::memory_order_relaxed);  // as EVENT SOURCE told
  Fields f{{"sessions", control_.registry.count()},
           {"subscribers", st.control.subscribers.load(std::memory_order_relaxed)},
           {"playing", control_.table.count_playing()},  // as of now, not as of the last datagram
           {"ingest_datagrams", st.ingest.datagrams.load(std::memory_order_relaxed)},
           {"ingest_bytes", st.ingest.bytes.load(std::memory_order_relaxed)},
           {"sent_datagrams", st.fanout.sent_datagrams.load(std::memory_order_relaxed)},
           {"uptime_s", (now - st.supervisor.started_ns.load(std::memory_order_relaxed)) / kNsPerSecond},
           {"source", live ? "live" : "stalled"},
           {"ingest_bitrate", 8 * st.ingest.rate_bytes.load(std::memory_order_relaxed)},
           {"send_errors", st.fanout.send_errors.load(std::memory_order_relaxed)},
           {"refusals", st.fanout.refusals.load(std::memory_order_relaxed)},
           {"outputs", control_.table.outputs().size()},
           {"upstream", upstream_state_name(st.ingest.upstream_state.load(std::memory_order_relaxed))}};
  std::string text;
  for (const auto& [key, value] : f.items())
    text += (text.empty() ? "" : " ") + key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  return protocol::ok(text, f);
}

Reply Conversation::command_Help(const protocol::Parsed& command) {
  if (command.args.empty()) return protocol::ok(protocol::help_text());
  const protocol::CommandSpec* spec = protocol::find_command(command.args[0]);
  if (!spec) return protocol::err(ErrorCode::kBadArgument, "no such command; HELP lists them");
  return protocol::ok(std::string(spec->usage) + " - " + spec->help, Fields{{"usage", spec->usage}, {"help", spec->help}});
}

Reply Conversation::command_Format(const protocol::Parsed& command) {
  std::string wanted = lower(command.args[0]);
  if (wanted != "json" && wanted != "text") return protocol::err(ErrorCode::kBadArgument, "usage: FORMAT JSON|TEXT");
  session_.change_format(wanted == "json");  // applied with the reply (Session::reply)
  return protocol::ok();
}

// ---- moderation --------------------------------------------------------------------------

// A failed AUTH ends moderation too: the session is what its last AUTH said. Attempts from
// one address are judged one at a time (Registry::auth_turn), and a failure is answered
// after its delay, 1 s up to 8 s. Only this session's thread waits; the waits end early if
// the relay stops.
Reply Conversation::command_Auth(const protocol::Parsed& command) {
  std::string address = session_.peer().host();
  uint64_t turn = 0;
  uint32_t failures = control_.registry.auth_turn(address, &turn);
  wait_unless_stopping(turn);
  std::string_view token = command.args[0];
  bool match = false;
  for (const auto& secret : session_.config().moderators.tokens) match = same_secret(token, secret) || match;
  if (match) {
    moderator_ = true;
    control_.registry.auth_succeeded(address);
    LOG_NOTICE("%s (%s) is a moderator", session_.name().c_str(), session_.peer().to_string().c_str());
    return protocol::ok();
  }
  moderator_ = false;
  control_.stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
  LOG_WARN("%s (%s): AUTH failed (%u in a row from this address)", session_.name().c_str(),
           session_.peer().to_string().c_str(), failures);
  wait_unless_stopping(monotonic_ns() + Registry::auth_delay_ns(failures));
  return protocol::err(ErrorCode::kForbidden, "wrong token");
}

// Sleeps until `until_ns` (monotonic), or until the relay stops.
void Conversation::wait_unless_stopping(uint64_t until_ns) const {
  while (monotonic_ns() < until_ns && !control_.stopping.load())
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the delay itself
}

Reply Conversation::command_Kick(const protocol::Parsed& command) {
  auto target = control_.registry.find(std::string(command.args[0]));
  if (!target) return no_such_user(command.args[0]);
  std::string by = session_.name();
  LOG_NOTICE("%s kicked %s", by.c_str(), control_.registry.name_of(*target).c_str());
  control_.stats.kicks.fetch_add(1, std::memory_order_relaxed);
  session_.after_reply([target, by] { target->post(Event{"KICKED", by, Fields{{"by", by}}}, true); });
  return protocol::ok();
}

Reply Conversation::command_Shutdown(const protocol::Parsed&) {
  std::string by = session_.name();
  session_.after_reply([this, by] { control_.request_shutdown(by); });
  return protocol::ok();
}

// The supervisor reloads (as on SIGHUP) and answers in its counters: put in force, or
// refused with the reason. The session waits for it, bounded.
Reply Conversation::command_Reload(const protocol::Parsed&) {
  supervisor_stats& supervisor = control_.ctx.segment.stats().supervisor;
  uint64_t done = supervisor.reloads.load(std::memory_order_acquire);
  uint64_t refused = supervisor.reload_failures.load(std::memory_order_acquire);
  LOG_NOTICE("RELOAD requested by moderator %s", session_.name().c_str());
  kill(getppid(), SIGHUP);
  uint64_t deadline = monotonic_ns() + kReloadAnswerNs;
  while (monotonic_ns() < deadline && !control_.stopping.load()) {
    if (supervisor.reloads.load(std::memory_order_acquire) != done) return protocol::ok();
    if (supervisor.reload_failures.load(std::memory_order_acquire) != refused) {
      std::string why(control_.ctx.segment.header().reload_error, sizeof(Header::reload_error));
      return protocol::err(ErrorCode::kReloadFailed, why.c_str());
    }
    wait_unless_stopping(monotonic_ns() + 10 * kNsPerMs);
  }
  return protocol::err(ErrorCode::kBusy, "the supervisor did not answer; see the log");
}

// ---- direct calls ------------------------------------------------------------------------

// The port a CALL or ANSWER gives (its second argument), checked like CONECTAR's.
std::optional<uint16_t> Conversation::call_port(const protocol::Parsed& command) const {
  const Config& config = session_.config();
  return parse_port(command.args[1], config.control.port_min, config.control.port_max);
}

Reply Conversation::command_Call(const protocol::Parsed& command) {
  auto port = call_port(command);
  if (!port) return bad_port(session_.config());
  auto callee = control_.registry.find(std::string(command.args[0]));
  if (!callee) return no_such_user(command.args[0]);
  if (callee.get() == &session_) return protocol::err(ErrorCode::kBadArgument, "you cannot call yourself");
  control_.registry.call(session_, *callee);
  std::string me = session_.name(), ip = session_.peer().host();
  session_.after_reply([callee, me, ip, port = *port] {
    callee->post(Event{"CALL", me + " " + ip + " " + std::to_string(port), Fields{{"from", me}, {"ip", ip}, {"port", port}}});
  });
  return protocol::ok();
}

Reply Conversation::command_Answer(const protocol::Parsed& command) {
  auto port = call_port(command);
  if (!port) return bad_port(session_.config());
  std::string caller_name(command.args[0]);
  auto caller = control_.registry.find(caller_name);
  if (!caller || !control_.registry.answer(session_, *caller))
    return protocol::err(ErrorCode::kNoSuchCall, "no pending call from '" + caller_name + "'");
  std::string me = session_.name(), ip = session_.peer().host();
  session_.after_reply([caller, me, ip, port = *port] {
    caller->post(Event{"ANSWER", me + " " + ip + " " + std::to_string(port), Fields{{"from", me}, {"ip", ip}, {"port", port}}});
  });
  return protocol::ok();
}

Reply Conversation::command_Hangup(const protocol::Parsed& command) {
  std::string other_name(command.args[0]);
  auto other = control_.registry.find(other_name);
  if (!other || !control_.registry.hang_up(session_, *other))
    return protocol::err(ErrorCode::kNoSuchCall, "no call with '" + other_name + "'");
  std::string me = session_.name();
  session_.after_reply([other, me] { other->post(Event{"HANGUP", me, Fields{{"from", me}}}); });
  return protocol::ok();
}

}  // namespace vrelay
