// Seqlock reads and writes of subscriber slots (see subscribers.hpp).
#include "subscribers.hpp"

#include <algorithm>
#include <cstring>

namespace vrelay {

constexpr auto kRelaxed = std::memory_order_relaxed;
constexpr auto kAcquire = std::memory_order_acquire;
constexpr auto kRelease = std::memory_order_release;

// The seqlock without fences (which TSan cannot check): the writer stores every field with
// release after making `seq` odd, so a reader's acquire load of any new field value orders
// its final `seq` load after the odd store and the torn read is detected.

bool read_subscriber(const SubscriberSlot& slot, SubscriberSnapshot* out, int max_tries) {
  for (int attempt = 0; attempt < max_tries; ++attempt) {
    uint32_t before = slot.seq.load(std::memory_order_acquire);
    if (before & 1) continue;
    SubscriberSnapshot s;
    s.state = SubscriberState(slot.state.load(kAcquire));
    s.incarnation = slot.incarnation.load(kAcquire);
    s.from_ns = slot.from_ns.load(kAcquire);
    s.until_ns = slot.until_ns.load(kAcquire);
    s.since_ns = slot.since_ns.load(kAcquire);
    s.owner = slot.owner.load(kAcquire);
    s.orphan_deadline_ns = slot.orphan_deadline_ns.load(kAcquire);
    s.multicast_ifindex = slot.multicast_ifindex.load(kAcquire);
    s.multicast_ttl = slot.multicast_ttl.load(kAcquire);
    uint32_t family = slot.family.load(kAcquire);
    uint16_t port = uint16_t(slot.port.load(kAcquire));
    uint32_t ip[4];
    for (int i = 0; i < 4; ++i) ip[i] = slot.ip[i].load(kAcquire);
    uint64_t name[kOwnerNameWords];
    for (size_t i = 0; i < kOwnerNameWords; ++i) name[i] = slot.owner_name[i].load(kAcquire);
    if (slot.seq.load(kRelaxed) != before) continue;

    if (family == AF_INET) {
      sockaddr_in in{};
      in.sin_family = AF_INET;
      in.sin_port = htons(port);
      std::memcpy(&in.sin_addr, &ip[0], 4);
      std::memcpy(&s.destination.storage, &in, sizeof in);
      s.destination.length = sizeof in;
    } else if (family == AF_INET6) {
      sockaddr_in6 in6{};
      in6.sin6_family = AF_INET6;
      in6.sin6_port = htons(port);
      std::memcpy(&in6.sin6_addr, ip, 16);
      std::memcpy(&s.destination.storage, &in6, sizeof in6);
      s.destination.length = sizeof in6;
    }
    const char* name_bytes = reinterpret_cast<const char*>(name);
    s.owner_name.assign(name_bytes, strnlen(name_bytes, sizeof name));
    *out = std::move(s);
    return true;
  }
  return false;
}

SubscriberWrite::SubscriberWrite(SubscriberSlot& s, TableControl& table) : slot(s), table_(table) {
  seq_ = slot.seq.load(kRelaxed);
  if (seq_ & 1) ++seq_;  // left odd by a writer that died: start clean
  slot.seq.store(seq_ + 1, kRelaxed);
}

SubscriberWrite::~SubscriberWrite() {
  slot.seq.store(seq_ + 2, std::memory_order_release);
  table_.generation.fetch_add(1, std::memory_order_seq_cst);
}

void SubscriberWrite::set_destination(const Endpoint& ep) {
  uint32_t ip[4] = {0, 0, 0, 0};
  if (ep.family() == AF_INET)
    std::memcpy(ip, &reinterpret_cast<const sockaddr_in*>(&ep.storage)->sin_addr, 4);
  else
    std::memcpy(ip, &reinterpret_cast<const sockaddr_in6*>(&ep.storage)->sin6_addr, 16);
  slot.family.store(uint32_t(ep.family()), kRelease);
  slot.port.store(ep.port(), kRelease);
  for (int i = 0; i < 4; ++i) slot.ip[i].store(ip[i], kRelease);
}

void SubscriberWrite::set_owner_name(std::string_view name) {
  uint64_t words[kOwnerNameWords] = {};
  if (!name.empty()) std::memcpy(words, name.data(), std::min(name.size(), sizeof words));  // "" may have no data()
  for (size_t i = 0; i < kOwnerNameWords; ++i) slot.owner_name[i].store(words[i], kRelease);
}

void SubscriberWrite::set_multicast(uint32_t ifindex, uint32_t ttl) {
  slot.multicast_ifindex.store(ifindex, kRelease);
  slot.multicast_ttl.store(ttl, kRelease);
}

}  // namespace vrelay
