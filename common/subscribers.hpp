// The subscriber table in shared memory: a seqlock-protected snapshot for readers (fan-out,
// tests, vrelaystat) and the writer's bracket for the control process (its only writer).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "net.hpp"
#include "shm.hpp"

namespace vrelay {

struct SubscriberSnapshot {
  SubscriberState state = SubscriberState::kFree;
  uint64_t incarnation = 0;
  uint64_t from_ns = 0, until_ns = 0;
  Endpoint destination;
  uint64_t since_ns = 0;
  uint64_t owner = 0;
  uint64_t orphan_deadline_ns = 0;
  std::string owner_name;  // "" for an orphan; as stored, up to kOwnerNameWords * 8 bytes
  uint32_t multicast_ifindex = 0, multicast_ttl = 0;  // a multicast output's
  bool is_output() const { return owner == kOutputOwner; }
};

// Reads one slot consistently. Returns false if the slot stayed mid-write for `max_tries`
// reads (its writer may have died mid-update): the caller treats it as absent for now.
bool read_subscriber(const SubscriberSlot& slot, SubscriberSnapshot* out, int max_tries = 1000);

// Writes one slot under its seqlock; the caller serializes writers within the control
// process and stores every field with memory_order_release. The destructor publishes the change and bumps the table generation.
class SubscriberWrite {
 public:
  SubscriberWrite(SubscriberSlot& slot, TableControl& table);
  ~SubscriberWrite();
  SubscriberWrite(const SubscriberWrite&) = delete;
  SubscriberWrite& operator=(const SubscriberWrite&) = delete;
  void set_destination(const Endpoint& ep);
  // The owner session's name, cut to kOwnerNameWords * 8 bytes; "" for none.
  void set_owner_name(std::string_view name);
  void set_multicast(uint32_t ifindex, uint32_t ttl);
  SubscriberSlot& slot;

 private:
  TableControl& table_;
  uint32_t seq_;
};

}  // namespace vrelay
