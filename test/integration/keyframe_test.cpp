// Integration tests of ingest's reading of the stream: an x264 MPEG-TS source sent through
// vrelayd in VLC's 1316-byte datagrams; ingest finds its key frames where ffprobe does (the
// ring's slot flags, StreamInfo, the counters), keeps its PAT and PMT in shared memory, and
// a restarted ingest knows the stream again from the ring.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
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
  Stats& stats = relay.shm().stats();
  StreamInfo& info = relay.shm().stream();
  EXPECT_EQ(stats.ingest.key_frames.load(), 4u);
  EXPECT_EQ(info.key_frame_position.load(), expected.back());
  EXPECT_EQ(stats.ingest.gop_datagrams.load(), expected[3] - expected[2]);
  EXPECT_EQ(stats.ingest.table_changes.load(), 1u);
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
  EXPECT_EQ(stats.ingest.key_frames.load(), 8u);
  EXPECT_EQ(stats.ingest.table_changes.load(), 1u);
  std::vector<uint64_t> second;
  for (uint64_t p : expected) second.push_back(p + count);
  EXPECT_EQ(flagged_positions(relay, count, 2 * count), second);
  EXPECT_EQ(info.key_frame_position.load(), second.back());
}

TEST(KeyFrames, ANonTsSourceHasNone) {
  Relay relay("ingest:\n  source: generator\n  interval_ms: 1\n");
  ASSERT_TRUE(wait_until([&] { return relay.shm().stats().ingest.datagrams.load() >= 50; }));
  EXPECT_EQ(relay.shm().stats().ingest.key_frames.load(), 0u);
  EXPECT_EQ(relay.shm().stream().key_frame_position.load(), kNoPosition);
  EXPECT_EQ(relay.shm().stream().tables_seq.load(), 0u);
}

}  // namespace
