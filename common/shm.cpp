// The shared-memory segment: layout arithmetic, header checks, and the Boost.Interprocess
// mapping (a plain shared_memory_object + mapped_region: no managed segment, whose
// allocator takes a lock).
#include "shm.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <ctime>

#include "ring.hpp"
#include "version.hpp"

namespace bip = boost::interprocess;

namespace vrelay {

const char* role_name(Role role) {
  switch (role) {
    case kIngest: return "ingest";
    case kFanout: return "fanout";
    case kControl: return "control";
    case kHttp: return "http";
    default: return "?";
  }
}

const char* subscriber_state_name(SubscriberState state) {
  switch (state) {
    case SubscriberState::kPlaying: return "playing";
    case SubscriberState::kPaused: return "paused";
    default: return "free";
  }
}

#define VRELAY_GROUP_BEGIN(group, help)
#define VRELAY_COUNTER(group, name, kind, help) \
  {#group, #name, CounterKind::kind, help, offsetof(Stats, group) + offsetof(group##_stats, name)},
#define VRELAY_GROUP_END(group)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
const CounterInfo kCounters[] = {
#include "counters.def"
};
#pragma GCC diagnostic pop
#undef VRELAY_GROUP_BEGIN
#undef VRELAY_COUNTER
#undef VRELAY_GROUP_END
const size_t kCounterCount = sizeof kCounters / sizeof kCounters[0];

namespace {
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

Layout Layout::compute(const LayoutParams& p) {
  Layout l{};
  l.processes = align_up(sizeof(Header), kCacheLine);
  l.stats = align_up(l.processes + kRoleCount * sizeof(ProcessSlot), kCacheLine);
  l.table = align_up(l.stats + sizeof(Stats), kCacheLine);
  l.stream = align_up(l.table + sizeof(TableControl), kCacheLine);
  l.subscribers = align_up(l.stream + sizeof(StreamInfo), kCacheLine);
  l.ring = align_up(l.subscribers + uint64_t(p.max_subscribers) * sizeof(SubscriberSlot), kCacheLine);
  l.slot_stride = uint32_t(align_up(kRingDataOffset + p.max_datagram, kCacheLine));
  l.total = align_up(l.ring + sizeof(RingControl) + uint64_t(p.ring_slots) * l.slot_stride, 4096);
  return l;
}

// Both sit right before the subscriber table (their sizes are whole cache lines).
StreamInfo& Segment::stream() const {
  return *reinterpret_cast<StreamInfo*>(base_ + header().subscribers_offset - sizeof(StreamInfo));
}

TableControl& Segment::table() const {
  return *reinterpret_cast<TableControl*>(base_ + header().subscribers_offset - sizeof(StreamInfo) -
                                          sizeof(TableControl));
}

Status check_header(const void* base, size_t mapped_size, bool* starting, bool* other_version) {
  if (starting) *starting = false;
  if (other_version) *other_version = false;
  if (mapped_size < sizeof(Header))
    return Failure{"segment is truncated (" + std::to_string(mapped_size) + " bytes, the header alone needs " +
                   std::to_string(sizeof(Header)) + ")"};
  auto* h = static_cast<const Header*>(base);
  if (h->magic != kShmMagic) return Failure{"not a vrelay segment (bad magic number)"};
  uint32_t version = h->version.load(std::memory_order_acquire);
  if (version == 0) {
    if (starting) *starting = true;
    return Failure{"segment is being created (vrelayd is starting)"};
  }
  if (version >> 16 != kLayoutMajor) {
    if (other_version) *other_version = true;
    return Failure{"segment layout version " + std::to_string(version >> 16) + "." + std::to_string(version & 0xFFFF) +
                   " is not the version this program reads (" + std::to_string(kLayoutMajor) + "." +
                   std::to_string(kLayoutMinor) + "): use the tools of the same vrelay release as the running vrelayd"};
  }
  if (h->header_size != sizeof(Header))
    return Failure{"its header has " + std::to_string(h->header_size) + " bytes, not the " +
                   std::to_string(sizeof(Header)) +
                   " of this release's (corrupt segment, or vrelayd and this tool come from different builds)"};
  if (h->total_size > mapped_size)
    return Failure{"segment is truncated (header says " + std::to_string(h->total_size) + " bytes, " +
                   std::to_string(mapped_size) + " are mapped)"};
  if (h->max_datagram == 0 || h->max_datagram > 65535)  // a UDP payload; also keeps the stride in 32 bits
    return Failure{"segment says datagrams of " + std::to_string(h->max_datagram) + " bytes (corrupt segment)"};
  Layout l = Layout::compute({h->max_subscribers, h->ring_slots, h->max_datagram});
  if (h->ring_slots == 0 || (h->ring_slots & (h->ring_slots - 1)) || l.total != h->total_size ||
      l.processes != h->processes_offset || l.stats != h->stats_offset || l.subscribers != h->subscribers_offset ||
      l.ring != h->ring_offset || l.slot_stride != h->ring_slot_stride)
    return Failure{"segment offsets do not match its sizes (corrupt segment)"};
  return {};
}

struct Segment::Impl {
  std::string name;  // "vrelay.<instance>"
  bip::shared_memory_object object;
  bip::mapped_region region;
};

Segment::~Segment() = default;

namespace {
// True if `pid` is a running vrelayd that owns the segment file `file_uid` made: the same
// program as this one, run by the file's owner. Not a process that reused the pid, merely
// calls itself vrelayd, or is a real relay named by a file someone else planted (anyone can
// write /dev/shm). Only a hint for relays whose locks differ (see InstanceLock).
bool is_live_vrelayd(int pid, uid_t file_uid) {
  if (pid <= 0 || pid == getpid() || kill(pid, 0) != 0) return false;  // our own: we replace it
  std::string proc = "/proc/" + std::to_string(pid);
  struct stat st;
  if (stat(proc.c_str(), &st) != 0 || st.st_uid != file_uid) return false;
  std::error_code error;
  auto theirs = std::filesystem::read_symlink(proc + "/exe", error);
  if (error) return false;
  auto ours = std::filesystem::read_symlink("/proc/self/exe", error);
  return !error && theirs == ours;
}

// Where the instance locks live: a directory no other user may write, so none can hold or
// plant a lock. systemd's RuntimeDirectory= first, then /run/vrelay for root, the user's
// runtime directory, and last a private directory in /tmp.
std::string lock_directory() {
  if (const char* runtime = getenv("RUNTIME_DIRECTORY"); runtime && *runtime == '/')
    return std::string(runtime).substr(0, std::string(runtime).find(':'));
  std::string dir;
  if (geteuid() == 0) dir = "/run/vrelay";
  else if (const char* xdg = getenv("XDG_RUNTIME_DIR"); xdg && *xdg == '/') return xdg;
  else dir = "/tmp/vrelay-" + std::to_string(geteuid());
  if (mkdir(dir.c_str(), geteuid() == 0 ? 0755 : 0700) != 0 && errno != EEXIST)
    throw SegmentError(SegmentProblem::kOther, "cannot create " + dir + ": " + strerror(errno));
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
    throw SegmentError(SegmentProblem::kOther, dir + " is not a directory of this user's that only it may write: remove it");
  return dir;
}

// A segment file that another user made is not ours to trust: root replaces it, anyone
// else is told whose it is.
void refuse_foreign(const std::string& name) {
  struct stat st;
  if (stat(("/dev/shm/" + name).c_str(), &st) != 0 || st.st_uid == geteuid() || geteuid() == 0) return;
  throw SegmentError(SegmentProblem::kOther, "/dev/shm/" + name + " belongs to uid " + std::to_string(st.st_uid) +
                                                 ", not to this user: remove it, or choose another --instance");
}

// The supervisor a segment names, if it is a live relay (is_live_vrelayd); 0 otherwise.
int live_owner(const std::string& name) {
  try {  // whatever its layout version: magic and supervisor_pid never move
    bip::shared_memory_object old(bip::open_only, name.c_str(), bip::read_only);
    bip::offset_t size = 0;
    struct stat st;
    if (old.get_size(size) && size_t(size) >= sizeof(Header) && fstat(old.get_mapping_handle().handle, &st) == 0) {
      bip::mapped_region region(old, bip::read_only, 0, sizeof(Header));
      auto* h = static_cast<const Header*>(region.get_address());
      if (h->magic == kShmMagic && is_live_vrelayd(h->supervisor_pid, st.st_uid)) return h->supervisor_pid;
    }
  } catch (const bip::interprocess_exception&) {
  }
  return 0;
}
}  // namespace

InstanceLock::InstanceLock(const std::string& instance) {
  path_ = lock_directory() + "/" + Segment::shm_name(instance) + ".lock";
  fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) throw SegmentError(SegmentProblem::kOther, "cannot open the lock " + path_ + ": " + strerror(errno));
  // The processes of a relay whose supervisor was killed exit within moments (their
  // parent-death signal): wait for them, but not for a live relay.
  for (int tries = 0; flock(fd_, LOCK_EX | LOCK_NB) != 0; ++tries) {
    bool held = errno == EWOULDBLOCK;
    int holder = live_owner(Segment::shm_name(instance));
    if (!held || holder || tries == 50) {
      close(fd_);
      throw SegmentError(SegmentProblem::kRunning, "instance '" + instance + "' is already running (" +
                                                       (holder ? "vrelayd pid " + std::to_string(holder) + ", " : "") +
                                                       "lock " + path_ + "); choose another with --instance");
    }
    usleep(100'000);
  }
  // The pid, for people: the lock is the truth, so a failure to write it changes nothing.
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd_, 0) == 0) {
    ssize_t ignored = write(fd_, pid.data(), pid.size());
    (void)ignored;
  }
}

InstanceLock::~InstanceLock() {
  if (fd_ >= 0) close(fd_);
}

std::unique_ptr<Segment> Segment::create(const std::string& instance, const LayoutParams& params) {
  const std::string name = shm_name(instance);
  refuse_foreign(name);
  if (int owner = live_owner(name))  // a relay whose lock lies elsewhere (another user's)
    throw SegmentError(SegmentProblem::kRunning, "instance '" + instance + "' is already running (vrelayd pid " +
                                                     std::to_string(owner) + "); choose another with --instance");
  bip::shared_memory_object::remove(name.c_str());  // stale, or planted: never used

  Layout l = Layout::compute(params);
  auto seg = std::unique_ptr<Segment>(new Segment);
  seg->impl_ = std::make_unique<Impl>();
  seg->impl_->name = name;
  try {
    bip::permissions perm(0640);
    seg->impl_->object = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, perm);
    seg->impl_->object.truncate(bip::offset_t(l.total));
    seg->impl_->region = bip::mapped_region(seg->impl_->object, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    throw std::runtime_error("cannot create shared memory /" + name + ": " + e.what());
  }
  seg->base_ = static_cast<char*>(seg->impl_->region.get_address());
  seg->size_ = seg->impl_->region.get_size();
  std::memset(seg->base_, 0, seg->size_);

  Header& h = seg->header();
  h.magic = kShmMagic;
  h.header_size = sizeof(Header);
  h.total_size = l.total;
  h.created_ns = wall_ns();
  h.supervisor_pid = getpid();
  h.max_subscribers = params.max_subscribers;
  h.processes_offset = l.processes;
  h.stats_offset = l.stats;
  h.subscribers_offset = l.subscribers;
  h.ring_offset = l.ring;
  h.ring_slots = params.ring_slots;
  h.ring_slot_stride = l.slot_stride;
  h.max_datagram = params.max_datagram;
  std::strncpy(h.instance, instance.c_str(), sizeof h.instance - 1);
  std::strncpy(h.software_version, VRELAY_VERSION, sizeof h.software_version - 1);
  seg->stream().key_frame_position.store(kNoPosition, std::memory_order_relaxed);
  return seg;
}

Segment::CarriedOver Segment::carry_over_from(const Segment& old) {
  CarriedOver carried;
  const Header& from = old.header();
  Header& to = header();
  for (auto field : {&Header::control_address, &Header::ingest_address, &Header::http_address,
                     &Header::fanout_address, &Header::upstream_address})
    std::memcpy(to.*field, from.*field, sizeof(to.*field));
  std::memcpy(to.reload_error, from.reload_error, sizeof to.reload_error);
  // Process slots, counters, the table's generation and the stream facts lie at the same
  // offsets whatever the sizes (they come before the table and the ring).
  std::memcpy(base_ + to.processes_offset, old.base_ + from.processes_offset, to.subscribers_offset - to.processes_offset);
  table().generation.fetch_add(1, std::memory_order_relaxed);  // every reader looks at the table again

  for (uint32_t i = 0; i < from.max_subscribers; ++i) {
    const SubscriberSlot& slot = old.subscribers()[i];
    if (slot.state.load(std::memory_order_relaxed) == uint32_t(SubscriberState::kFree)) continue;
    if (carried.subscriptions == to.max_subscribers) {
      ++carried.left_out;
      continue;
    }
    std::memcpy(static_cast<void*>(&subscribers()[carried.subscriptions++]), &slot, sizeof slot);
  }

  // The ring: its positions go on; the newest datagrams that fit both the new slot count and
  // the new slot size are copied, so the fan-out loses none it had not sent unless the ring
  // shrank below its backlog, and fast starts still find their key frame.
  RingView source = ring_of(old), target = ring_of(*this);
  uint64_t head = old.ring_control().head.load(std::memory_order_acquire);
  uint64_t tail = old.ring_control().tail.load(std::memory_order_acquire);
  uint64_t first = head - std::min<uint64_t>(head, std::min(source.capacity(), target.capacity()));
  for (uint64_t p = head; p > first; --p) {
    const RingSlotHeader& slot = source.header(p - 1);
    if (slot.position != p - 1 || slot.length > target.max_payload()) {
      first = p;
      break;
    }
  }
  for (uint64_t p = first; p < head; ++p) {
    std::memcpy(&target.header(p), &source.header(p), sizeof(RingSlotHeader));
    std::memcpy(target.data(p), source.data(p), source.header(p).length);
  }
  ring_control().head.store(head, std::memory_order_relaxed);
  ring_control().tail.store(std::max(tail, first), std::memory_order_relaxed);
  carried.datagrams = head - first;
  carried.unsent = first > tail ? first - tail : 0;
  return carried;
}

void Segment::publish() {
  header().version.store(layout_version(kLayoutMajor, kLayoutMinor), std::memory_order_release);
}

std::unique_ptr<Segment> Segment::open(const std::string& instance, bool read_only) {
  const std::string name = shm_name(instance);
  auto seg = std::unique_ptr<Segment>(new Segment);
  seg->impl_ = std::make_unique<Impl>();
  seg->impl_->name = name;
  auto mode = read_only ? bip::read_only : bip::read_write;
  try {
    seg->impl_->object = bip::shared_memory_object(bip::open_only, name.c_str(), mode);
    bip::offset_t size = 0;
    if (!seg->impl_->object.get_size(size) || size == 0)
      throw SegmentError(SegmentProblem::kDamaged, "/" + name, "segment is empty (truncated segment)");
    seg->impl_->region = bip::mapped_region(seg->impl_->object, mode);
  } catch (const bip::interprocess_exception& e) {
    SegmentProblem problem = e.get_error_code() == bip::not_found_error  ? SegmentProblem::kMissing
                             : e.get_error_code() == bip::security_error ? SegmentProblem::kDenied
                                                                         : SegmentProblem::kOther;
    throw SegmentError(problem, "cannot open shared memory /" + name + ": " + e.what() +
                                    " (is vrelayd running with --instance " + instance + "?)");
  }
  seg->base_ = static_cast<char*>(seg->impl_->region.get_address());
  seg->size_ = seg->impl_->region.get_size();
  bool starting = false, other_version = false;
  if (Status usable = check_header(seg->base_, seg->size_, &starting, &other_version); !usable)
    throw SegmentError(starting ? SegmentProblem::kStarting : other_version ? SegmentProblem::kOtherVersion
                                                                            : SegmentProblem::kDamaged,
                       "/" + name, usable.error());
  return seg;
}

void Segment::give_to(uid_t uid, gid_t gid) {
  if (fchown(impl_->object.get_mapping_handle().handle, uid, gid) != 0)
    throw std::runtime_error("cannot give the shared memory to uid " + std::to_string(uid) + ": " + strerror(errno));
}

bool Segment::replaced() const {
  struct stat named, mapped;
  return stat(("/dev/shm/" + impl_->name).c_str(), &named) != 0 ||
         fstat(impl_->object.get_mapping_handle().handle, &mapped) != 0 || named.st_ino != mapped.st_ino ||
         named.st_dev != mapped.st_dev;
}

bool Segment::shrunk() const {
  bip::offset_t size = 0;
  return !impl_->object.get_size(size) || size_t(size) < size_;
}

Status Segment::valid_instance_name(const std::string& instance) {
  bool ok = !instance.empty() && instance.size() <= 32;
  for (char c : instance) ok = ok && (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  if (!ok) return Failure{"expected 1 to 32 letters, digits, '-' or '_'"};
  return {};
}

bool Segment::remove(const std::string& instance) {
  return bip::shared_memory_object::remove(shm_name(instance).c_str());
}

}  // namespace vrelay
