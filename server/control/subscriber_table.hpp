// The control process's side of the shared subscriber table: it alone writes the slots,
// serializing its session threads with a process-local mutex (never one in shared memory).
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "config.hpp"
#include "net.hpp"
#include "shm.hpp"
#include "subscribers.hpp"

namespace vrelay {

class SubscriberTable {
 public:
  // fanout_wake: the eventfd that wakes the fan-out (-1: none), written when a viewer starts
  // or resumes, so that its fast start begins now rather than with the next datagram.
  SubscriberTable(Segment& segment, uint64_t orphan_grace_ns, int fanout_wake = -1);

  // Subscriptions left by a control process that died become orphans: they keep playing
  // until a client takes them over or the grace period ends. Outputs stay outputs.
  void orphan_all();
  // Makes the table's outputs (slots owned by kOutputOwner) those of the configuration: a
  // new one plays from now, a gone or moved one is removed, a changed interface or TTL
  // applies in place. Returns why an output could not be placed, one line each.
  std::vector<std::string> set_outputs(const std::vector<Config::Output>& outputs);
  // A new subscription, or an orphan with the same destination taken over (and playing).
  // Returns the slot, kFull, or kTaken when another session's subscription already sends
  // to that destination.
  static constexpr int kFull = -1, kTaken = -2;
  // owner_name: the session's name, shown to readers of the table (status page, vrelaystat).
  int subscribe(const Endpoint& destination, uint64_t owner, bool* adopted, const std::string& owner_name = {});
  // The owner of `slot` took a new name (NAME); nothing if the slot is no longer its own.
  void rename_owner(int slot, uint64_t owner, const std::string& owner_name);
  void pause(int slot);
  void resume(int slot);
  void release(int slot);
  int expire_orphans(uint64_t now);  // returns how many were removed
  // Pauses the playing subscriptions the fan-out marked unreachable (only refusals for
  // fanout.unreachable_pause), as INTERRUMPIR would; returns them.
  struct Unreachable {
    int slot;
    uint64_t owner;  // session id, 0 for an orphan
    uint16_t port;
  };
  std::vector<Unreachable> pause_unreachable();
  uint64_t count_playing();
  // The outputs in the table, in slot order (for LIST, INFO and STATS).
  std::vector<SubscriberSnapshot> outputs();

 private:
  int subscribe_locked(const Endpoint& destination, uint64_t owner, bool* adopted, const std::string& owner_name,
                       uint32_t multicast_ifindex = 0, uint32_t multicast_ttl = 0);
  void free_locked(SubscriberSlot& slot);
  void wake_fanout() const;
  void update_gauge();

  Segment& segment_;
  SubscriberSlot* slots_;
  uint32_t capacity_;
  uint64_t orphan_grace_ns_;
  std::mutex mutex_;
  uint64_t next_incarnation_;
  uint64_t used_ = 0;
  int fanout_wake_;
};

}  // namespace vrelay
