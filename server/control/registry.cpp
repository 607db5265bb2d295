// The control process's registry (see registry.hpp).
#include "registry.hpp"

#include <algorithm>

#include "clock.hpp"
#include "control.hpp"

namespace vrelay {

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = char(tolower(static_cast<unsigned char>(c)));
  return out;
}

void Registry::set_limits(uint32_t max_sessions, uint32_t max_per_address) {
  std::lock_guard lock(mutex_);
  max_sessions_ = max_sessions;
  max_per_address_ = max_per_address;
}

Registry::Admission Registry::admit(const Endpoint& peer, const std::function<SessionPtr(uint64_t)>& make,
                                    SessionPtr* admitted) {
  std::lock_guard lock(mutex_);
  if (sessions_.size() >= max_sessions_) return Admission::kRelayFull;
  std::string address = peer.host();
  auto from = per_address_.find(address);
  if (from != per_address_.end() && from->second >= max_per_address_) return Admission::kAddressFull;
  uint64_t id = next_id_++;
  SessionPtr session = make(id);
  session->name_ = "guest-" + std::to_string(id);
  names_[session->name_] = id;
  sessions_[id] = session;
  ++per_address_[address];
  *admitted = std::move(session);
  return Admission::kAdmitted;
}

bool Registry::remove(const Session& session, Removal* removal) {
  std::lock_guard lock(mutex_);
  if (!sessions_.erase(session.id())) return false;
  named_sessions_.erase(session.id());
  removal->name = session.name_;
  names_.erase(lower(session.name_));
  auto it = per_address_.find(session.peer().host());
  if (it != per_address_.end() && --it->second == 0) per_address_.erase(it);
  for (auto c = calls_.begin(); c != calls_.end();) {
    if (c->caller == session.id() || c->callee == session.id()) {
      uint64_t other = c->caller == session.id() ? c->callee : c->caller;
      if (auto peer = sessions_.find(other); peer != sessions_.end()) removal->hung_up.push_back(peer->second);
      c = calls_.erase(c);
    } else {
      ++c;
    }
  }
  if (sessions_.empty()) emptied_.notify_all();
  return true;
}

bool Registry::wait_until_empty(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  return emptied_.wait_for(lock, limit, [&] { return sessions_.empty(); });
}

std::string Registry::name_of(const Session& session) {
  std::lock_guard lock(mutex_);
  return session.name_;
}

Registry::Renaming Registry::rename(Session& session, const std::string& wanted, std::string* old) {
  std::lock_guard lock(mutex_);
  *old = session.name_;
  if (*old == wanted) return Renaming::kUnchanged;
  auto it = names_.find(lower(wanted));
  if (it != names_.end() && it->second != session.id()) return Renaming::kTaken;
  names_.erase(lower(*old));
  names_[lower(wanted)] = session.id();  // the check and the claim under one lock: one winner
  session.name_ = wanted;
  if (auto s = sessions_.find(session.id()); s != sessions_.end()) named_sessions_[session.id()] = s->second;
  return Renaming::kRenamed;
}

std::vector<std::string> Registry::names() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  out.reserve(sessions_.size());
  for (auto& [id, s] : sessions_) out.push_back(s->name_);
  return out;
}

SessionPtr Registry::find(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = names_.find(lower(name));
  if (it == names_.end()) return nullptr;
  auto s = sessions_.find(it->second);
  return s == sessions_.end() ? nullptr : s->second;
}

SessionPtr Registry::by_id(uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

size_t Registry::count() {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::vector<SessionPtr> Registry::audience(const Session* except, bool named_only, const Session* before) {
  std::lock_guard lock(mutex_);
  // With presence to named sessions only, the walk is over those: a storm of anonymous
  // connections costs each one nothing here.
  const auto& candidates = named_only ? named_sessions_ : sessions_;
  std::vector<SessionPtr> out;
  out.reserve(before ? 0 : candidates.size());
  for (auto& [id, s] : candidates) {
    if (before && id >= before->id()) break;
    if (!except || id != except->id()) out.push_back(s);
  }
  return out;
}

void Registry::call(const Session& from, const Session& to) {
  std::lock_guard lock(mutex_);
  std::erase_if(calls_, [&](const Call& c) { return c.caller == from.id() && c.callee == to.id(); });
  calls_.push_back({from.id(), to.id(), false});
}

bool Registry::answer(const Session& from, const Session& caller) {
  std::lock_guard lock(mutex_);
  auto c = std::find_if(calls_.begin(), calls_.end(), [&](const Call& call) {
    return call.caller == caller.id() && call.callee == from.id() && !call.answered;
  });
  if (c == calls_.end()) return false;
  c->answered = true;
  return true;
}

bool Registry::hang_up(const Session& from, const Session& other) {
  std::lock_guard lock(mutex_);
  auto c = std::find_if(calls_.begin(), calls_.end(), [&](const Call& call) {
    return (call.caller == from.id() && call.callee == other.id()) || (call.callee == from.id() && call.caller == other.id());
  });
  if (c == calls_.end()) return false;
  calls_.erase(c);
  return true;
}

uint64_t Registry::auth_delay_ns(uint32_t failures) {
  return (uint64_t(1) << std::min(failures == 0 ? 0u : failures - 1, 3u)) * kNsPerSecond;
}

uint32_t Registry::auth_turn(const std::string& address, uint64_t* turn_ns) {
  std::lock_guard lock(mutex_);
  constexpr uint64_t kForgetNs = 600 * kNsPerSecond;  // ten quiet minutes wipe the slate
  if (auth_failures_.size() > 100000) auth_failures_.clear();  // bounded memory under a flood
  uint64_t now = monotonic_ns();
  Failures& f = auth_failures_[address];
  if (f.count && now > f.next_ns && now - f.next_ns > kForgetNs) f = Failures{};
  uint64_t turn = std::max(now, f.next_ns);
  ++f.count;
  f.last_ns = turn;
  f.next_ns = turn + auth_delay_ns(f.count);
  *turn_ns = turn;
  return f.count;
}

void Registry::auth_succeeded(const std::string& address) {
  std::lock_guard lock(mutex_);
  auth_failures_.erase(address);
}

}  // namespace vrelay
