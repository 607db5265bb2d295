// Writes of the subscriber table by the control process (see subscriber_table.hpp).
// A datagram goes to a subscriber iff from_ns <= its receive time < until_ns, so PAUSE sets
// until_ns = now and RESUME sets from_ns = now, before their OK is sent: exact cut-offs at
// the ingest socket, whatever the lag of ingest or fan-out. Both are monotonic, as the ring's
// receive stamps are (common/clock.hpp): no wall-clock step moves a cut-off.
#include "subscriber_table.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "subscribers.hpp"

namespace vrelay {

constexpr auto kRelaxed = std::memory_order_relaxed;
constexpr auto kPublish = std::memory_order_release;  // slot fields: see subscribers.cpp
constexpr uint64_t kForever = std::numeric_limits<uint64_t>::max();

namespace {

// Under the slot's SubscriberWrite. since_ns is for people to read: the wall clock.
void start_playing(SubscriberSlot& slot) {
  slot.from_ns.store(monotonic_ns(), kPublish);
  slot.until_ns.store(kForever, kPublish);
  slot.since_ns.store(wall_ns(), kPublish);
  slot.state.store(uint32_t(SubscriberState::kPlaying), kPublish);
}
void stop_playing(SubscriberSlot& slot) {
  slot.until_ns.store(monotonic_ns(), kPublish);
  slot.since_ns.store(wall_ns(), kPublish);
  slot.state.store(uint32_t(SubscriberState::kPaused), kPublish);
}

}  // namespace

SubscriberTable::SubscriberTable(Segment& segment, uint64_t orphan_grace_ns, int fanout_wake)
    : segment_(segment), slots_(segment.subscribers()), capacity_(segment.header().max_subscribers),
      orphan_grace_ns_(orphan_grace_ns), next_incarnation_(wall_ns()), fanout_wake_(fanout_wake) {}

void SubscriberTable::wake_fanout() const {
  if (fanout_wake_ < 0) return;
  uint64_t one = 1;
  // It cannot fail but with EAGAIN, when the counter is full: the fan-out wakes anyway.
  ssize_t ignored = write(fanout_wake_, &one, sizeof one);
  (void)ignored;
}

void SubscriberTable::update_gauge() { segment_.stats().control.subscribers.store(used_, kRelaxed); }

void SubscriberTable::orphan_all() {
  std::lock_guard lock(mutex_);
  uint64_t deadline = monotonic_ns() + orphan_grace_ns_;
  used_ = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    SubscriberSlot& slot = slots_[i];
    bool torn = slot.seq.load(kRelaxed) & 1;  // its writer died mid-update: clear it
    if (!torn && slot.state.load(kRelaxed) == uint32_t(SubscriberState::kFree)) continue;
    if (!torn && slot.owner.load(kRelaxed) == kOutputOwner) {  // no session to lose
      ++used_;
      continue;
    }
    SubscriberWrite write(slot, segment_.table());
    if (torn) {
      slot.state.store(uint32_t(SubscriberState::kFree), kPublish);
      continue;
    }
    slot.owner.store(0, kPublish);
    write.set_owner_name({});
    slot.orphan_deadline_ns.store(deadline, kPublish);
    ++used_;
  }
  update_gauge();
}

int SubscriberTable::subscribe(const Endpoint& destination, uint64_t owner, bool* adopted,
                               const std::string& owner_name) {
  std::lock_guard lock(mutex_);
  return subscribe_locked(destination, owner, adopted, owner_name);
}

int SubscriberTable::subscribe_locked(const Endpoint& destination, uint64_t owner, bool* adopted,
                                      const std::string& owner_name, uint32_t multicast_ifindex,
                                      uint32_t multicast_ttl) {
  *adopted = false;
  int free_slot = -1;
  for (uint32_t i = 0; i < capacity_; ++i) {
    SubscriberSlot& slot = slots_[i];
    auto state = SubscriberState(slot.state.load(kRelaxed));
    if (state == SubscriberState::kFree) {
      if (free_slot < 0) free_slot = int(i);
      continue;
    }
    SubscriberSnapshot s;
    if (!read_subscriber(slot, &s) || s.destination.length != destination.length ||
        std::memcmp(&s.destination.storage, &destination.storage, destination.length) != 0)
      continue;
    // One subscription per destination: two would send every datagram twice to one player.
    if (s.owner != 0) return kTaken;
    {
      SubscriberWrite write(slot, segment_.table());
      slot.owner.store(owner, kPublish);
      write.set_owner_name(owner_name);
      write.set_multicast(multicast_ifindex, multicast_ttl);
      slot.orphan_deadline_ns.store(0, kPublish);
      if (s.state == SubscriberState::kPaused) start_playing(slot);  // CONECTAR means play, from now on
    }
    *adopted = true;
    segment_.stats().control.orphans_adopted.fetch_add(1, kRelaxed);
    wake_fanout();
    return int(i);
  }
  if (free_slot < 0) return kFull;
  SubscriberSlot& slot = slots_[free_slot];
  {
    SubscriberWrite write(slot, segment_.table());
    write.set_destination(destination);
    slot.incarnation.store(++next_incarnation_, kPublish);
    slot.owner.store(owner, kPublish);
    write.set_owner_name(owner_name);
    write.set_multicast(multicast_ifindex, multicast_ttl);
    slot.orphan_deadline_ns.store(0, kPublish);
    start_playing(slot);
  }
  ++used_;
  update_gauge();
  wake_fanout();
  return free_slot;
}

void SubscriberTable::rename_owner(int index, uint64_t owner, const std::string& owner_name) {
  std::lock_guard lock(mutex_);
  SubscriberSlot& slot = slots_[index];
  if (slot.state.load(kRelaxed) == uint32_t(SubscriberState::kFree) || slot.owner.load(kRelaxed) != owner) return;
  SubscriberWrite write(slot, segment_.table());
  write.set_owner_name(owner_name);
}

void SubscriberTable::pause(int index) {
  std::lock_guard lock(mutex_);
  SubscriberSlot& slot = slots_[index];
  if (slot.state.load(kRelaxed) != uint32_t(SubscriberState::kPlaying)) return;
  SubscriberWrite write(slot, segment_.table());
  stop_playing(slot);
}

void SubscriberTable::resume(int index) {
  std::lock_guard lock(mutex_);
  SubscriberSlot& slot = slots_[index];
  if (slot.state.load(kRelaxed) != uint32_t(SubscriberState::kPaused)) return;
  SubscriberWrite write(slot, segment_.table());
  start_playing(slot);
  wake_fanout();
}

void SubscriberTable::release(int index) {
  std::lock_guard lock(mutex_);
  SubscriberSlot& slot = slots_[index];
  if (slot.state.load(kRelaxed) == uint32_t(SubscriberState::kFree)) return;
  free_locked(slot);
}

void SubscriberTable::free_locked(SubscriberSlot& slot) {
  {
    SubscriberWrite write(slot, segment_.table());
    slot.state.store(uint32_t(SubscriberState::kFree), kPublish);
    slot.until_ns.store(0, kPublish);
    slot.owner.store(0, kPublish);
    write.set_owner_name({});
    write.set_multicast(0, 0);
  }
  --used_;
  update_gauge();
}

std::vector<std::string> SubscriberTable::set_outputs(const std::vector<Config::Output>& outputs) {
  std::lock_guard lock(mutex_);
  std::vector<std::string> problems;
  std::vector<uint32_t> ifindex(outputs.size());
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (outputs[k].interface.empty()) continue;
    auto found = find_interface(outputs[k].interface);  // gone since the file was read?
    if (found) ifindex[k] = found->index;
    else problems.push_back("output " + outputs[k].name + ": " + found.error() + " now: the routing table chooses");
  }
  std::vector<bool> placed(outputs.size());
  for (uint32_t i = 0; i < capacity_; ++i) {
    SubscriberSlot& slot = slots_[i];
    SubscriberSnapshot s;
    if (slot.state.load(kRelaxed) == uint32_t(SubscriberState::kFree) || slot.owner.load(kRelaxed) != kOutputOwner ||
        !read_subscriber(slot, &s))
      continue;
    auto same_name = [&](const Config::Output& o) { return o.name == s.owner_name; };
    size_t k = size_t(std::find_if(outputs.begin(), outputs.end(), same_name) - outputs.begin());
    if (k == outputs.size() || placed[k] || !(outputs[k].to == s.destination)) {
      free_locked(slot);  // gone, or moved: placed anew below
      continue;
    }
    placed[k] = true;
    if (s.multicast_ifindex != ifindex[k] || s.multicast_ttl != outputs[k].ttl) {
      SubscriberWrite write(slot, segment_.table());
      write.set_multicast(ifindex[k], outputs[k].ttl);
    }
  }
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (placed[k]) continue;
    const Config::Output& o = outputs[k];
    bool adopted = false;
    int slot = subscribe_locked(o.to, kOutputOwner, &adopted, o.name, ifindex[k], o.ttl);
    if (slot == kTaken)
      problems.push_back("output " + o.name + ": a viewer's subscription sends to " + o.to.to_string() + " already");
    else if (slot == kFull)
      problems.push_back("output " + o.name + ": the subscriber table is full (fanout.max_subscribers)");
  }
  return problems;
}

int SubscriberTable::expire_orphans(uint64_t now) {
  std::lock_guard lock(mutex_);
  int removed = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    SubscriberSlot& slot = slots_[i];
    if (slot.state.load(kRelaxed) == uint32_t(SubscriberState::kFree) || slot.owner.load(kRelaxed) != 0) continue;
    uint64_t deadline = slot.orphan_deadline_ns.load(kRelaxed);
    if (deadline == 0 || deadline > now) continue;
    SubscriberWrite write(slot, segment_.table());
    slot.state.store(uint32_t(SubscriberState::kFree), kPublish);
    slot.until_ns.store(0, kPublish);
    --used_;
    ++removed;
  }
  if (removed) {
    segment_.stats().control.orphans_expired.fetch_add(uint64_t(removed), kRelaxed);
    update_gauge();
  }
  return removed;
}

std::vector<SubscriberTable::Unreachable> SubscriberTable::pause_unreachable() {
  std::lock_guard lock(mutex_);
  std::vector<Unreachable> paused;
  for (uint32_t i = 0; i < capacity_; ++i) {
    SubscriberSlot& slot = slots_[i];
    if (slot.state.load(kRelaxed) != uint32_t(SubscriberState::kPlaying) || slot.owner.load(kRelaxed) == kOutputOwner)
      continue;  // an output is never paused: nobody could resume it
    uint64_t marked = slot.unreachable_from_ns.load(std::memory_order_acquire);
    if (marked == 0 || marked != slot.from_ns.load(kRelaxed)) continue;  // a later period is not marked
    SubscriberWrite write(slot, segment_.table());
    stop_playing(slot);
    paused.push_back({int(i), slot.owner.load(kRelaxed), uint16_t(slot.port.load(kRelaxed))});
  }
  return paused;
}

std::vector<SubscriberSnapshot> SubscriberTable::outputs() {
  std::lock_guard lock(mutex_);
  std::vector<SubscriberSnapshot> found;
  for (uint32_t i = 0; i < capacity_; ++i) {
    SubscriberSnapshot s;
    if (slots_[i].owner.load(kRelaxed) == kOutputOwner && read_subscriber(slots_[i], &s) &&
        s.state != SubscriberState::kFree)
      found.push_back(std::move(s));
  }
  return found;
}

uint64_t SubscriberTable::count_playing() {
  std::lock_guard lock(mutex_);
  uint64_t playing = 0;
  for (uint32_t i = 0; i < capacity_; ++i)
    playing += slots_[i].state.load(kRelaxed) == uint32_t(SubscriberState::kPlaying);
  return playing;
}

}  // namespace vrelay
