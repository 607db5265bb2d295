// Integration tests of ingest's reading of the stream and of fast start: an x264 MPEG-TS
// source sent through vrelayd in VLC's 1316-byte datagrams; ingest finds its key frames
// where ffprobe does (the ring's slot flags, StreamInfo, the counters), keeps its PAT and
// PMT in shared memory, and a restarted ingest knows the stream again from the ring. A
// viewer that joins (or resumes) mid-stream gets the PAT and PMT, the datagrams since the
// last key frame at least a second old, then the live stream, with no gap and no repeat.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "harness.hpp"
#include "mpegts.hpp"
#include "ring.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

constexpr size_t kDatagram = 7 * kTsPacketSize;

// Sends the video in 1316-byte datagrams and waits until ingest took them all.
void send_video(Relay& relay, UdpSource& source, const EncodedVideo& video) {
  uint64_t before = relay.shm().stats().ingest.datagrams.load();
  uint64_t count = video.bytes.size() / kDatagram;
  for (uint64_t i = 0; i < count; ++i)
    source.send(std::string(reinterpret_cast<const char*>(video.bytes.data() + i * kDatagram), kDatagram));
  ASSERT_TRUE(wait_until([&] { return relay.shm().stats().ingest.datagrams.load() == before + count; }));
}

std::vector<uint64_t> flagged_positions(Relay& relay, uint64_t first, uint64_t end) {
  RingView ring = ring_of(relay.shm());
  std::vector<uint64_t> out;
  for (uint64_t p = first; p < end; ++p)
    if (std::atomic_ref<uint32_t>(ring.header(p).flags).load() & kSlotKeyFrame) out.push_back(p);
  return out;
}

std::array<uint8_t, kTsPacketSize> table(const std::atomic<uint64_t>* words) {
  std::array<uint8_t, kTsPacketSize> packet{};
  for (size_t w = 0; w < kTablePacketWords; ++w) {
    uint64_t word = words[w].load();
    std::memcpy(packet.data() + w * 8, &word, std::min<size_t>(8, kTsPacketSize - w * 8));
  }
  return packet;
}

TEST(KeyFrames, IngestMarksWhereFfprobeSeesThemAndKeepsTheTables) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg and ffprobe are needed (scripts/install-deps.sh)";
  EncodedVideo video = encode_video("ingest", "-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -bf 0");
  ASSERT_EQ(video.key_positions.size(), 4u);
  Relay relay;
  UdpSource source(relay.ingest_port());
  send_video(relay, source, video);

  std::vector<uint64_t> expected;
  for (uint64_t p : video.key_positions) expected.push_back(p / kDatagram);
  uint64_t count = video.bytes.size() / kDatagram;
  EXPECT_EQ(flagged_positions(relay, 0, count), expected);
  StreamInfo& info = relay.shm().stream();
  Counters c = relay.counters();  // what ingest counted of the video, at one moment
  EXPECT_EQ(c["ingest.key_frames"], 4u);
  EXPECT_EQ(info.key_frame_position.load(), expected.back());
  EXPECT_EQ(c["ingest.gop_datagrams"], expected[3] - expected[2]);
  EXPECT_EQ(c["ingest.table_changes"], 1u);
  EXPECT_EQ(info.codec.load(), uint32_t(VideoCodec::kH264));
  ASSERT_NE(info.tables_seq.load(), 0u);
  EXPECT_EQ(info.tables_seq.load() % 2, 0u);
  auto pat = table(info.pat), pmt = table(info.pmt);
  EXPECT_EQ(pat[0], kTsSync);
  EXPECT_EQ(((pat[1] & 0x1F) << 8) | pat[2], 0) << "the PAT is on PID 0";
  EXPECT_EQ(pmt[0], kTsSync);
  EXPECT_EQ(pmt[5], 0x02) << "a PMT section follows the pointer field";

  // A restarted ingest knows the stream from the ring: the same video again is counted
  // again, with no new table change.
  pid_t old = relay.child_pid(kIngest);
  ASSERT_EQ(kill(old, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kIngest, old));
  EXPECT_EQ(info.key_frame_position.load(), expected.back());
  send_video(relay, source, video);
  c = relay.counters();
  EXPECT_EQ(c["ingest.key_frames"], 8u);
  EXPECT_EQ(c["ingest.table_changes"], 1u);
  std::vector<uint64_t> second;
  for (uint64_t p : expected) second.push_back(p + count);
  EXPECT_EQ(flagged_positions(relay, count, 2 * count), second);
  EXPECT_EQ(info.key_frame_position.load(), second.back());
}

// The video's datagrams [first, end), sent one after the other; waits until the fan-out took them.
void send_range(Relay& relay, UdpSource& source, const EncodedVideo& video, uint64_t first, uint64_t end) {
  for (uint64_t i = first; i < end; ++i)
    source.send(std::string(reinterpret_cast<const char*>(video.bytes.data() + i * kDatagram), kDatagram));
  ASSERT_TRUE(wait_until([&] { return relay.shm().stats().fanout.datagrams.load() == end; }));
}

std::string datagram(const EncodedVideo& video, uint64_t i) {
  return std::string(reinterpret_cast<const char*>(video.bytes.data() + i * kDatagram), kDatagram);
}

struct FastStartCase {
  EncodedVideo video;
  std::vector<uint64_t> keys;  // datagram indexes of the key frames
  uint64_t count = 0, join = 0;
};

// The video, encoded once for all the fast-start tests.
const FastStartCase& fast_start_case() {
  static const FastStartCase c = [] {
    FastStartCase c;
    c.video = encode_video("fast-start", "-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -bf 0");
    for (uint64_t p : c.video.key_positions) c.keys.push_back(p / kDatagram);
    c.count = c.video.bytes.size() / kDatagram;
    if (c.keys.size() == 4) c.join = (c.keys[2] + c.keys[3]) / 2;  // between the 3rd and the 4th
    return c;
  }();
  return c;
}

class FastStart : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg and ffprobe are needed (scripts/install-deps.sh)";
    ASSERT_EQ(c.keys.size(), 4u) << "ffprobe should see a key frame every second";
  }
  const FastStartCase& c = fast_start_case();
};

// The viewer's next datagrams are exactly the video's [first, end), and (unless more is to
// be read) nothing follows.
void expect_video(UdpSink& sink, const EncodedVideo& video, uint64_t first, uint64_t end, bool last = true) {
  for (uint64_t i = first; i < end; ++i) {
    auto got = sink.receive();
    ASSERT_TRUE(got) << "datagram " << i << " never came";
    ASSERT_TRUE(*got == datagram(video, i)) << "datagram " << i << " differs or is out of order";
  }
  if (last) {
    EXPECT_EQ(sink.drain(), 0u);
  }
}

// The datagrams go faster than real time: every key frame is less than a second old when the
// viewer joins, so the burst starts at the one before the last (a player reads about half a
// second of stream before its first picture).
TEST_F(FastStart, AViewerJoiningMidStreamGetsTheTablesThenEverythingSinceTheKeyFrameBeforeTheLast) {
  Relay relay;
  UdpSource source(relay.ingest_port());
  send_range(relay, source, c.video, 0, c.join);
  Viewer viewer(relay);
  send_range(relay, source, c.video, c.join, c.count);

  auto tables = viewer.sink.receive();
  ASSERT_TRUE(tables);
  ASSERT_EQ(tables->size(), 2 * kTsPacketSize) << "first the PAT and the PMT, as one datagram";
  // The stream's PAT and PMT, but for their continuity counters (byte 3, low half): those
  // come just before the next PAT and PMT of the stream, so the player sees no CC error.
  std::array<uint8_t, kTsPacketSize> pat = table(relay.shm().stream().pat), pmt = table(relay.shm().stream().pmt);
  std::string sent_pat = tables->substr(0, kTsPacketSize), sent_pmt = tables->substr(kTsPacketSize);
  uint8_t pat_cc = sent_pat[3] & 0x0F, pmt_cc = sent_pmt[3] & 0x0F;
  sent_pat[3] = char(pat[3]);
  sent_pmt[3] = char(pmt[3]);
  EXPECT_EQ(sent_pat, std::string(pat.begin(), pat.end()));
  EXPECT_EQ(sent_pmt, std::string(pmt.begin(), pmt.end()));
  auto next_cc = [&](uint16_t pid) {  // of the first packet of that PID from the key frame on
    for (size_t at = c.keys[1] * kDatagram; at < c.video.bytes.size(); at += kTsPacketSize)
      if (ts_pid(c.video.bytes.data() + at) == pid) return c.video.bytes[at + 3] & 0x0F;
    return -1;
  };
  EXPECT_EQ((pat_cc + 1) & 0x0F, next_cc(0));
  EXPECT_EQ((pmt_cc + 1) & 0x0F, next_cc(ts_pid(pmt.data())));
  expect_video(viewer.sink, c.video, c.keys[1], c.count);  // the burst, then live: no gap, no repeat
  Counters counters = relay.counters();  // the fast start and its burst, at one moment
  EXPECT_EQ(counters["fanout.fast_starts"], 1u);
  // Sent while it caught up: at least what came before it joined.
  EXPECT_GE(counters["fanout.burst_datagrams"], c.join - c.keys[1]);
  EXPECT_LE(counters["fanout.burst_datagrams"], c.count - c.keys[1]);
}

TEST_F(FastStart, ALastKeyFrameOverASecondOldIsWhereTheBurstStarts) {
  Relay relay;
  UdpSource source(relay.ingest_port());
  send_range(relay, source, c.video, 0, c.join);
  // What is tested is the key frame's age: wait (bounded) until the last one ingest saw is
  // more than a second old by the clock that stamped it.
  const StreamInfo& stream = relay.shm().stream();
  ASSERT_TRUE(wait_until([&] { return monotonic_ns() > stream.key_frame_ns.load() + kNsPerSecond + 50 * kNsPerMs; },
                         3000ms));
  Viewer viewer(relay);
  send_range(relay, source, c.video, c.join, c.count);
  auto tables = viewer.sink.receive();
  ASSERT_TRUE(tables);
  ASSERT_EQ(tables->size(), 2 * kTsPacketSize);
  expect_video(viewer.sink, c.video, c.keys[2], c.count);
}

TEST_F(FastStart, OffTheViewerGetsOnlyWhatComesAfterItJoined) {
  Relay relay("fanout:\n  fast_start: off\n");
  UdpSource source(relay.ingest_port());
  send_range(relay, source, c.video, 0, c.join);
  Viewer viewer(relay);
  send_range(relay, source, c.video, c.join, c.count);
  expect_video(viewer.sink, c.video, c.join, c.count);
  EXPECT_EQ(relay.shm().stats().fanout.fast_starts.load(), 0u);
}

TEST_F(FastStart, AResumedViewerStartsAgainFromAKeyFrame) {
  Relay relay;
  UdpSource source(relay.ingest_port());
  Viewer viewer(relay);  // from the start: no key frame yet, no fast start
  uint64_t pause_at = c.keys[1] + 3, resume_at = c.join;
  send_range(relay, source, c.video, 0, pause_at);
  ASSERT_EQ(viewer.session.command("INTERRUMPIR"), "OK");
  send_range(relay, source, c.video, pause_at, resume_at);
  ASSERT_EQ(viewer.session.command("CONTINUAR"), "OK");
  send_range(relay, source, c.video, resume_at, c.count);
  expect_video(viewer.sink, c.video, 0, pause_at, false);
  auto tables = viewer.sink.receive();
  ASSERT_TRUE(tables);
  EXPECT_EQ(tables->size(), 2 * kTsPacketSize);
  // Live resumes with the next datagram, as INTERRUMPIR/CONTINUAR always did, after a burst
  // from a key frame (the one before the last, see above) so that the player can decode it.
  expect_video(viewer.sink, c.video, c.keys[1], c.count);
  EXPECT_EQ(relay.shm().stats().fanout.fast_starts.load(), 1u);
}

TEST_F(FastStart, ASourceThatRestartsWithNewTablesIsNeverBurstFromTheOldStream) {
  EncodedVideo other = encode_video("fast-start-other", "-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 "
                                    "-sc_threshold 0 -bf 0 -mpegts_pmt_start_pid 0x1100 -mpegts_start_pid 0x300");
  ASSERT_GE(other.key_positions.size(), 2u);
  uint64_t other_count = other.bytes.size() / kDatagram, before_second_key = other.key_positions[1] / kDatagram - 1;
  Relay relay;
  UdpSource source(relay.ingest_port());
  send_range(relay, source, c.video, 0, c.join);  // the old stream, with three key frames
  auto send_other = [&](uint64_t first, uint64_t end) {
    for (uint64_t i = first; i < end; ++i) source.send(datagram(other, i));
    ASSERT_TRUE(wait_until([&] { return relay.shm().stats().fanout.datagrams.load() == c.join + end; }));
  };
  send_other(0, before_second_key);  // the new one: new PIDs, one key frame so far
  ASSERT_EQ(relay.shm().stats().ingest.table_changes.load(), 2u);
  Viewer viewer(relay);
  send_other(before_second_key, other_count);

  auto tables = viewer.sink.receive();
  ASSERT_TRUE(tables);
  ASSERT_EQ(tables->size(), 2 * kTsPacketSize);
  EXPECT_EQ(ts_pid(reinterpret_cast<const uint8_t*>(tables->data()) + kTsPacketSize), 0x1100) << "the new PMT";
  expect_video(viewer.sink, other, 0, other_count);  // from the new stream's key frame, none of the old
}

TEST_F(FastStart, AGopLongerThanTheRingCanHoldIsCountedAndSaid) {
  Relay relay("ingest:\n  ring_slots: 16\n  ring_bytes: 0\n");  // 12 usable slots, GOPs of ~30 datagrams
  UdpSource source(relay.ingest_port());
  Stats& stats = relay.shm().stats();
  for (uint64_t i = 0; i < c.join; ++i) {  // one at a time: the small ring never overflows
    source.send(datagram(c.video, i));
    ASSERT_TRUE(wait_until([&] { return stats.fanout.datagrams.load() == i + 1; }));
  }
  Counters counters = relay.counters();  // GOPs found and GOPs too long, at one moment
  EXPECT_EQ(counters["ingest.key_frames"], 3u);
  EXPECT_EQ(counters["ingest.gops_too_long"], 2u);
  EXPECT_NE(relay.log().find("set ingest.ring_bytes to"), std::string::npos) << relay.log();
  Viewer viewer(relay);  // late in the GOP: its key frame is no longer in reach
  source.send(datagram(c.video, c.join));
  auto got = viewer.sink.receive();
  ASSERT_TRUE(got);
  EXPECT_TRUE(*got == datagram(c.video, c.join)) << "live at once, no tables, no burst";
  EXPECT_EQ(stats.fanout.fast_starts.load(), 0u);
}

TEST(KeyFrames, ANonTsSourceHasNone) {
  Relay relay("ingest:\n  source: generator\n  interval_ms: 1\n");
  ASSERT_TRUE(wait_until([&] { return relay.shm().stats().ingest.datagrams.load() >= 50; }));
  EXPECT_EQ(relay.shm().stats().ingest.key_frames.load(), 0u);
  EXPECT_EQ(relay.shm().stream().key_frame_position.load(), kNoPosition);
  EXPECT_EQ(relay.shm().stream().tables_seq.load(), 0u);
}

}  // namespace
