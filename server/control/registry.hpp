// Who is connected to the control process, by what name, who calls whom, and how often an
// address failed AUTH: the state every session thread consults, behind one lock of its
// own. Each method is safe from any thread, holds the lock only for itself and returns
// plain results; the command handlers (commands.cpp) word the replies and post the events.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "net.hpp"

namespace vrelay {

class Session;
using SessionPtr = std::shared_ptr<Session>;

class Registry {
 public:
  Registry(uint32_t max_sessions, uint32_t max_per_address)
      : max_sessions_(max_sessions), max_per_address_(max_per_address) {}
  // A reload: sessions over a lowered limit stay; new ones wait for room.
  void set_limits(uint32_t max_sessions, uint32_t max_per_address);

  // A new session from `peer`, made by `make(id)` and named guest-<id>, unless the relay or
  // that address has all the sessions it may.
  enum class Admission { kAdmitted, kRelayFull, kAddressFull };
  Admission admit(const Endpoint& peer, const std::function<SessionPtr(uint64_t id)>& make, SessionPtr* admitted);
  // The session leaves: its name is free, its calls end. False if it was not registered.
  struct Removal {
    std::string name;
    std::vector<SessionPtr> hung_up;  // the other side of each of its calls
  };
  bool remove(const Session& session, Removal* removal);
  // Until no session is left, at most `limit`.
  bool wait_until_empty(std::chrono::milliseconds limit);

  std::string name_of(const Session& session);
  // The name taken, or why not; *old is the name it had.
  enum class Renaming { kRenamed, kUnchanged, kTaken };
  Renaming rename(Session& session, const std::string& wanted, std::string* old);
  std::vector<std::string> names();  // in join order
  SessionPtr find(const std::string& name);  // any case
  SessionPtr by_id(uint64_t id);
  size_t count();

  // The sessions to tell something: all of them or (named_only) those that took a NAME,
  // but `except`; with `before`, only those that joined before it.
  std::vector<SessionPtr> audience(const Session* except, bool named_only, const Session* before = nullptr);

  // Direct calls. A new CALL to the same session replaces a pending one; ANSWER needs a
  // pending call from `caller`; HANGUP ends or refuses a call either way.
  void call(const Session& from, const Session& to);
  bool answer(const Session& from, const Session& caller);
  bool hang_up(const Session& from, const Session& other);

  // AUTH from one address is judged one attempt at a time, each waiting out the delay of
  // the failures before it (1 s, doubling up to 8 s): parallel sessions from one address
  // guess no faster than one session. auth_turn books the next turn of `address`: *turn_ns
  // (monotonic) is when this attempt may be judged; it returns the attempt's rank among
  // the consecutive failed ones (1 for the first), as if it failed too. A success forgets
  // the address.
  uint32_t auth_turn(const std::string& address, uint64_t* turn_ns);
  void auth_succeeded(const std::string& address);
  static uint64_t auth_delay_ns(uint32_t failures);  // after that many failures

 private:
  struct Call {
    uint64_t caller, callee;
    bool answered = false;
  };
  struct Failures {
    uint32_t count = 0;
    uint64_t last_ns = 0, next_ns = 0;  // the last attempt's turn; when the next may be judged
  };

  std::mutex mutex_;  // guards everything below and every Session::name_
  std::condition_variable emptied_;
  std::map<uint64_t, SessionPtr> sessions_;        // by id: join order
  std::map<uint64_t, SessionPtr> named_sessions_;  // those that took a NAME
  std::unordered_map<std::string, uint64_t> names_;  // lower-case name -> id
  std::unordered_map<std::string, uint32_t> per_address_;
  std::unordered_map<std::string, Failures> auth_failures_;
  std::vector<Call> calls_;
  uint64_t next_id_ = 1;
  uint32_t max_sessions_, max_per_address_;
};

std::string lower(std::string_view text);

}  // namespace vrelay
