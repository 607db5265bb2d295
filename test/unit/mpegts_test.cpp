// Unit tests of the MPEG-TS inspector (common/mpegts.hpp) on real encoder output: ffmpeg
// makes 4 s of video with a key frame every second (x264, x265, MPEG-2), and ffprobe says
// where each key frame's packet begins in the file. The inspector, fed the file cut into
// datagrams as VLC sends them (7 TS packets), one packet at a time (start codes straddle
// datagrams) or wrapped in RTP, must find the same key frames at the same datagrams.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"  // encode_video
#include "mpegts.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

struct Found {
  std::vector<uint64_t> key_frames;  // datagram indexes where key frames' units begin
  uint64_t tables_changed = 0;
  bool all_transport_stream = true;
};

// Feeds `bytes` in datagrams of `packets` TS packets each, with `rtp_header` bytes in front.
Found feed(TsInspector& inspector, const std::vector<uint8_t>& bytes, size_t packets,
           const std::vector<uint8_t>& rtp_header = {}) {
  Found found;
  std::vector<uint8_t> datagram;
  size_t step = packets * kTsPacketSize;
  for (size_t at = 0, index = 0; at + step <= bytes.size(); at += step, ++index) {
    datagram.assign(rtp_header.begin(), rtp_header.end());
    datagram.insert(datagram.end(), bytes.begin() + long(at), bytes.begin() + long(at + step));
    TsInspector::Result r = inspector.inspect(datagram.data(), datagram.size(), index);
    found.all_transport_stream = found.all_transport_stream && r.transport_stream;
    found.tables_changed += r.tables_changed;
    if (r.key_frame_from) {
      EXPECT_LE(*r.key_frame_from, index);
      found.key_frames.push_back(*r.key_frame_from);
    }
  }
  return found;
}

std::vector<uint64_t> datagrams_of(const std::vector<uint64_t>& positions, size_t packets) {
  std::vector<uint64_t> out;
  for (uint64_t p : positions) out.push_back(p / (packets * kTsPacketSize));
  return out;
}

struct Case {
  const char* name;
  const char* codec_args;
  VideoCodec codec;
};

class RealEncoder : public ::testing::TestWithParam<Case> {};

TEST_P(RealEncoder, FindsEveryKeyFrameWhereFfprobeDoes) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg and ffprobe are needed (scripts/install-deps.sh)";
  const Case& c = GetParam();
  EncodedVideo e = encode_video(c.name, c.codec_args);
  ASSERT_GT(e.bytes.size(), 100 * kTsPacketSize) << "ffmpeg made no stream for " << c.name;
  ASSERT_EQ(e.key_positions.size(), 4u) << "ffprobe should see a key frame every second";

  for (size_t packets : {7, 1, 3}) {
    TsInspector inspector;
    Found found = feed(inspector, e.bytes, packets);
    EXPECT_TRUE(found.all_transport_stream);
    EXPECT_EQ(found.key_frames, datagrams_of(e.key_positions, packets)) << packets << " packets a datagram";
    EXPECT_TRUE(inspector.has_tables());
    EXPECT_EQ(inspector.codec(), c.codec);
    // The first PAT and PMT (in one datagram or two); their repetitions change nothing.
    EXPECT_GE(found.tables_changed, 1u);
    EXPECT_LE(found.tables_changed, 2u);
    EXPECT_EQ(inspector.pat()[0], kTsSync);
    EXPECT_EQ(inspector.pmt()[0], kTsSync);
  }
  // In RTP, with and without a header extension (RFC 3550 5.3.1; VLC sends none, others do).
  std::vector<uint8_t> plain = {0x80, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42};
  std::vector<uint8_t> extended = {0x90, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42, 0xBE, 0xDE, 0, 1, 1, 2, 3, 4};
  for (const auto& header : {plain, extended}) {
    TsInspector inspector;
    Found found = feed(inspector, e.bytes, 7, header);
    EXPECT_TRUE(found.all_transport_stream);
    EXPECT_EQ(found.key_frames, datagrams_of(e.key_positions, 7)) << "RTP, header of " << header.size();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Mpegts, RealEncoder,
    ::testing::Values(
        Case{"h264", "-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -bf 0", VideoCodec::kH264},
        Case{"hevc", "-c:v libx265 -preset ultrafast -x265-params keyint=25:min-keyint=25:scenecut=0:log-level=error",
             VideoCodec::kHevc},
        Case{"mpeg2", "-c:v mpeg2video -g 25 -bf 0", VideoCodec::kMpeg2}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Mpegts, OpenGopIFramesCountByTheirRecoveryPointSei) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg and ffprobe are needed (scripts/install-deps.sh)";
  // x264's open GOP: one IDR, then I frames that are not IDR, each with SPS, PPS and a
  // recovery point SEI: a decoder can start at each.
  EncodedVideo e = encode_video("open-gop", "-c:v libx264 -preset ultrafast -x264-params keyint=25:min-keyint=25:scenecut=0:open-gop=1 -bf 2");
  ASSERT_GT(e.bytes.size(), 100 * kTsPacketSize);
  TsInspector inspector;
  Found found = feed(inspector, e.bytes, 7);
  EXPECT_EQ(found.key_frames.size(), 4u);
}

TEST(Mpegts, NewTablesFromARestartedSourceAreTakenAndItsKeyFramesFound) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg and ffprobe are needed (scripts/install-deps.sh)";
  const char* args = "-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -bf 0";
  EncodedVideo first = encode_video("first", std::string(args) + " -mpegts_pmt_start_pid 0x1000 -mpegts_start_pid 0x100");
  EncodedVideo second = encode_video("second", std::string(args) + " -mpegts_pmt_start_pid 0x1100 -mpegts_start_pid 0x200");
  TsInspector inspector;
  Found a = feed(inspector, first.bytes, 7);
  uint16_t first_video = inspector.video_pid();
  EXPECT_EQ(a.key_frames.size(), 4u);
  Found b = feed(inspector, second.bytes, 7);
  EXPECT_NE(inspector.video_pid(), first_video);
  EXPECT_EQ(inspector.video_pid(), 0x200);
  EXPECT_GE(b.tables_changed, 1u);
  EXPECT_LE(b.tables_changed, 2u);
  EXPECT_EQ(b.key_frames, datagrams_of(second.key_positions, 7));
}

// A TS packet: header with this PID, unit start flag and payload.
std::vector<uint8_t> ts_packet(uint16_t pid, bool unit_start, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> p(kTsPacketSize, 0xFF);
  p[0] = kTsSync;
  p[1] = uint8_t((unit_start ? 0x40 : 0) | (pid >> 8));
  p[2] = uint8_t(pid);
  p[3] = 0x10;
  std::copy(payload.begin(), payload.begin() + long(std::min(payload.size(), kTsPacketSize - 4)), p.begin() + 4);
  return p;
}

TEST(Mpegts, HostileBytesNeverCrashNorMakeAKeyFrame) {
  TsInspector inspector;
  std::mt19937 random(42);
  std::vector<uint8_t> junk(1316);
  for (int i = 0; i < 2000; ++i) {
    for (auto& b : junk) b = uint8_t(random());
    if (i % 2) junk[0] = kTsSync;  // looks like TS, is not
    size_t size = 1 + random() % junk.size();
    auto r = inspector.inspect(junk.data(), size, uint64_t(i));
    EXPECT_FALSE(r.key_frame_from);
  }
  // A PAT, then a PMT that claims as many streams as fit, all of an unknown type, then one
  // whose sections lengths point past the packet: no video found, nothing read beyond.
  std::vector<uint8_t> pat = {0, 0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 0, 0, 0, 0};
  std::vector<uint8_t> pmt = {0, 0x02, 0xB0, 0xB0, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xF0, 0x00};
  for (int k = 0; k < 33; ++k) pmt.insert(pmt.end(), {0x99, 0xE1, uint8_t(k), 0xF0, 0x00});
  auto p = ts_packet(0, true, pat);
  auto m = ts_packet(0x1000, true, pmt);
  EXPECT_FALSE(inspector.inspect(p.data(), p.size(), 1).key_frame_from);
  EXPECT_FALSE(inspector.inspect(m.data(), m.size(), 2).key_frame_from);
  EXPECT_EQ(inspector.codec(), VideoCodec::kNone);
  std::vector<uint8_t> long_pmt = {0, 0x02, 0xB3, 0xFF, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xFF, 0xFF};
  auto l = ts_packet(0x1000, true, long_pmt);
  EXPECT_FALSE(inspector.inspect(l.data(), l.size(), 3).key_frame_from);
  // A truncated datagram and an empty one.
  EXPECT_FALSE(inspector.inspect(p.data(), 100, 4).transport_stream);
  EXPECT_FALSE(inspector.inspect(p.data(), 0, 5).transport_stream);
}

TEST(Mpegts, AnIdrNeedsItsPesStartAndPicksTheDatagramItBeganIn) {
  TsInspector inspector;
  std::vector<uint8_t> pat = {0, 0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 0, 0, 0, 0};
  std::vector<uint8_t> pmt = {0, 0x02, 0xB0, 18, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xF0, 0x00,
                              0x1B, 0xE1, 0x00, 0xF0, 0x00, 0, 0, 0, 0};
  auto p = ts_packet(0, true, pat), m = ts_packet(0x1000, true, pmt);
  inspector.inspect(p.data(), p.size(), 0);
  inspector.inspect(m.data(), m.size(), 1);
  ASSERT_EQ(inspector.codec(), VideoCodec::kH264);
  ASSERT_EQ(inspector.video_pid(), 0x100);
  // A continuation packet with an IDR start code but no PES start before it: not a key frame.
  auto orphan = ts_packet(0x100, false, {0, 0, 0, 1, 0x65, 0x88});
  EXPECT_FALSE(inspector.inspect(orphan.data(), orphan.size(), 2).key_frame_from);
  // A PES start (an access unit delimiter), then the IDR's start code split over two datagrams.
  std::vector<uint8_t> pes = {0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1, 0, 0, 0, 1, 0x09, 0xF0};
  auto start = ts_packet(0x100, true, pes);
  start[kTsPacketSize - 2] = 0;  // the payload ends with 00 00
  start[kTsPacketSize - 1] = 0;
  EXPECT_FALSE(inspector.inspect(start.data(), start.size(), 3).key_frame_from);
  auto rest = ts_packet(0x100, false, {1, 0x65, 0x88});
  auto r = inspector.inspect(rest.data(), rest.size(), 4);
  ASSERT_TRUE(r.key_frame_from);
  EXPECT_EQ(*r.key_frame_from, 3u);
  // Once per access unit.
  auto again = ts_packet(0x100, false, {0, 0, 1, 0x65, 0x88});
  EXPECT_FALSE(inspector.inspect(again.data(), again.size(), 5).key_frame_from);
}

}  // namespace
