// Unit tests of vrelay-probe's analysis and reports (client/vrelay-probe/analysis.cpp,
// report.cpp): exact counts for the counter stream, RTP (with sequence wrap-around) and
// MPEG-TS continuity, and garbage that must be counted, never crash.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "analysis.hpp"
#include "counter_stream.hpp"
#include "report.hpp"

using namespace vrelay;
using namespace vrelay::probe;

// Counts the allocations of this test program, to hold the analysis to "nothing allocated
// per datagram" (replacing the global operator new is allowed; sanitizers still see malloc).
static std::atomic<uint64_t> g_allocations{0};
void* operator new(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
// GCC 12 takes free() in a replaced operator delete for a mismatch once it inlines both.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

using Bytes = std::vector<uint8_t>;

Bytes counter(uint64_t index, uint64_t value) {
  Bytes b(kCounterDatagramSize);
  encode_counter(index, reinterpret_cast<char*>(b.data()));
  uint64_t be = htobe64(value);
  std::memcpy(b.data() + 16, &be, 8);
  return b;
}
Bytes counter(uint64_t index) { return counter(index, counter_value(index)); }

void feed(Analyzer& a, const Bytes& b, uint64_t at_ns = 0) { a.feed(b.data(), b.size(), at_ns); }

// One TS packet: adaptation_field_control `afc` (1 payload, 2 adaptation only, 3 both).
Bytes ts_packet(uint16_t pid, uint8_t cc, unsigned afc = 1, bool discontinuity = false) {
  Bytes p(kTsPacketSize, 0xFF);
  p[0] = kTsSync;
  p[1] = static_cast<uint8_t>(pid >> 8 & 0x1F);
  p[2] = static_cast<uint8_t>(pid & 0xFF);
  p[3] = static_cast<uint8_t>(afc << 4 | (cc & 0x0F));
  if (afc & 2) {
    p[4] = afc == 2 ? 183 : 7;                   // adaptation_field_length
    p[5] = discontinuity ? 0x80 : 0x00;          // flags
  }
  return p;
}

Bytes concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes rtp(uint16_t sequence, const Bytes& payload = Bytes(100, 0xAB), uint8_t pt = 96, uint32_t ssrc = 0x11223344) {
  Bytes b = {0x80, pt, uint8_t(sequence >> 8), uint8_t(sequence), 0, 0, 0, 0,
             uint8_t(ssrc >> 24), uint8_t(ssrc >> 16), uint8_t(ssrc >> 8), uint8_t(ssrc)};
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// The definitions of man/vrelay-probe.1, written the plain way (unbounded memory).
struct ReferenceSequence {
  std::set<uint64_t> seen;
  uint64_t received = 0, duplicates = 0, out_of_order = 0, highest = 0;
  void add(uint64_t i) {
    ++received;
    if (seen.count(i)) {
      ++duplicates;
      return;
    }
    if (!seen.empty() && i < highest) ++out_of_order;
    if (seen.empty() || i > highest) highest = i;
    seen.insert(i);
  }
  uint64_t lost() const { return seen.empty() ? 0 : *seen.rbegin() - *seen.begin() + 1 - seen.size(); }
};

}  // namespace

// ---- Counter stream ----

TEST(ProbeCounter, GapReorderAndDuplicatesAreCountedExactly) {
  Analyzer a;
  for (uint64_t i : {1, 2, 3, 5, 4, 4, 6, 8, 2, 10}) feed(a, counter(i));
  ASSERT_EQ(a.kind(), StreamKind::kCounter);
  const SequenceTracker& s = a.sequence();
  EXPECT_EQ(s.received(), 10u);
  EXPECT_EQ(s.duplicates(), 2u);    // the second 4, the second 2
  EXPECT_EQ(s.out_of_order(), 1u);  // 4 after 5 (the late 2 is a duplicate)
  EXPECT_EQ(s.lost(), 2u);          // 7 and 9
  EXPECT_EQ(s.too_old(), 0u);
  EXPECT_EQ(s.lowest(), 1u);
  EXPECT_EQ(s.highest(), 10u);
  EXPECT_EQ(a.counter_sum(), 2u * (1 + 2 + 3 + 5 + 4 + 4 + 6 + 8 + 2 + 10));
  EXPECT_EQ(a.counter_corrupt(), 0u);
  EXPECT_EQ(a.totals().datagrams, 10u);
  EXPECT_EQ(a.totals().bytes, 240u);
  EXPECT_EQ(a.totals().other, 0u);
}

TEST(ProbeCounter, ALateDatagramFillsItsGapAndAStreamMayStartMidway) {
  Analyzer a;
  for (uint64_t i : {1000, 1002, 1003, 1001, 999}) feed(a, counter(i));
  EXPECT_EQ(a.sequence().lost(), 0u);
  EXPECT_EQ(a.sequence().out_of_order(), 2u);  // 1001 and 999
  EXPECT_EQ(a.sequence().lowest(), 999u);
  EXPECT_EQ(a.sequence().received(), 5u);
}

TEST(ProbeCounter, CorruptValuesAreCountedAndSummedAsReceived) {
  Analyzer a;
  feed(a, counter(1));
  feed(a, counter(2, 5));
  feed(a, counter(3, 0));
  EXPECT_EQ(a.counter_corrupt(), 2u);
  EXPECT_EQ(a.counter_sum(), 2u + 5u + 0u);
  EXPECT_EQ(a.sequence().received(), 3u);
  EXPECT_EQ(a.sequence().lost(), 0u);
}

TEST(ProbeCounter, IndexesBeyondTheWindowAreTooOldNeverDuplicatesAndStayLost) {
  Analyzer a;
  for (uint64_t i = 1; i <= 10; ++i) feed(a, counter(i));
  uint64_t far = 10 + kSequenceWindow - 4;  // 65542: the window is now (6, 65542]
  feed(a, counter(far));
  feed(a, counter(far));  // duplicate of the new highest
  feed(a, counter(7));    // in the window, received before: a duplicate
  feed(a, counter(10));   // likewise
  feed(a, counter(6));    // 65536 below the highest: too old
  feed(a, counter(11));   // in the window, never received: fills one lost index
  const SequenceTracker& s = a.sequence();
  EXPECT_EQ(s.received(), 16u);
  EXPECT_EQ(s.duplicates(), 3u);
  EXPECT_EQ(s.too_old(), 1u);
  EXPECT_EQ(s.out_of_order(), 2u);  // 6 (too old) and 11
  EXPECT_EQ(s.distinct(), 12u);
  EXPECT_EQ(s.lost(), far - 12u);
}

TEST(ProbeCounter, AJumpOfAWholeWindowForgetsEverything) {
  SequenceTracker s;
  s.add(5);
  s.add(5 + kSequenceWindow);       // position 5 again: its bit must be the new index's
  s.add(5 + kSequenceWindow);
  s.add(5 + kSequenceWindow - 10);  // in the window, not received
  EXPECT_EQ(s.duplicates(), 1u);
  EXPECT_EQ(s.out_of_order(), 1u);
  EXPECT_EQ(s.lost(), kSequenceWindow + 1 - 3);
}

TEST(ProbeCounter, RandomReorderingLossAndDuplicationMatchTheDefinitions) {
  std::mt19937_64 random(20261122);
  for (int round = 0; round < 20; ++round) {
    SequenceTracker s;
    ReferenceSequence ref;
    uint64_t next = 1 + random() % 1000000;
    for (int i = 0; i < 20000; ++i) {
      uint64_t index;
      switch (random() % 10) {
        case 0: index = next - std::min<uint64_t>(next - 1, random() % 60000); break;  // late or repeat
        case 1: next += random() % 50; index = next; break;                           // gap
        default: index = next++; break;
      }
      s.add(index);
      ref.add(index);
    }
    ASSERT_EQ(s.too_old(), 0u);  // the draw stays inside the window
    EXPECT_EQ(s.received(), ref.received);
    EXPECT_EQ(s.duplicates(), ref.duplicates) << "round " << round;
    EXPECT_EQ(s.out_of_order(), ref.out_of_order) << "round " << round;
    EXPECT_EQ(s.lost(), ref.lost()) << "round " << round;
    EXPECT_EQ(s.distinct(), ref.seen.size());
  }
}

TEST(ProbeCounter, ExtremeIndexesDoNotOverflow) {
  SequenceTracker s;
  s.add(0);
  s.add(UINT64_MAX);
  EXPECT_EQ(s.lost(), UINT64_MAX - 1);
  s.add(UINT64_MAX - 1);
  EXPECT_EQ(s.lost(), UINT64_MAX - 2);
}

// ---- RTP ----

TEST(ProbeRtp, SequenceWrapAroundWithLossReorderAndDuplicate) {
  Analyzer a;
  for (uint16_t seq : {65533, 65535, 0, 2, 1, 1, 65534, 4}) feed(a, rtp(seq));
  ASSERT_EQ(a.kind(), StreamKind::kRtp);
  const SequenceTracker& s = a.sequence();
  EXPECT_EQ(s.received(), 8u);
  EXPECT_EQ(s.duplicates(), 1u);    // the second 1
  EXPECT_EQ(s.out_of_order(), 2u);  // 1 after 2, 65534 after 2
  EXPECT_EQ(s.lost(), 1u);          // 3
  EXPECT_EQ(a.rtp_payload_type(), 96);
  EXPECT_EQ(a.rtp_ts_payloads(), 0u);
}

TEST(ProbeRtp, ManyCyclesInOrderLoseNothing) {
  Analyzer a;
  Bytes packet = rtp(0);
  for (uint32_t i = 0; i < 200000; ++i) {
    uint16_t seq = static_cast<uint16_t>(40000 + i);
    packet[2] = uint8_t(seq >> 8);
    packet[3] = uint8_t(seq);
    feed(a, packet);
  }
  EXPECT_EQ(a.sequence().received(), 200000u);
  EXPECT_EQ(a.sequence().lost(), 0u);
  EXPECT_EQ(a.sequence().out_of_order(), 0u);
  EXPECT_EQ(a.sequence().highest() - a.sequence().lowest(), 199999u);
}

TEST(ProbeRtp, ExtenderTakesTheNearestNumber) {
  RtpSequenceExtender e;
  uint64_t first = e.extend(100);
  EXPECT_EQ(e.extend(101), first + 1);
  EXPECT_EQ(e.extend(99), first - 1);
  EXPECT_EQ(e.extend(static_cast<uint16_t>(101 + 32767)), first + 1 + 32767);  // ahead
  uint64_t high = first + 1 + 32767;
  EXPECT_EQ(e.extend(static_cast<uint16_t>(high - 32768)), high - 32768);  // at most 32768 behind
}

TEST(ProbeRtp, MpegTsPayloadIsAnalysed) {
  Analyzer a;
  for (uint8_t i = 0; i < 4; ++i) {
    Bytes ts = concat({ts_packet(0x100, i), ts_packet(0x101, static_cast<uint8_t>(i * 2))});  // 0x101 skips
    feed(a, rtp(static_cast<uint16_t>(7 + i), ts, 33));
  }
  EXPECT_EQ(a.rtp_ts_payloads(), 4u);
  EXPECT_EQ(a.ts().packets(), 8u);
  EXPECT_EQ(a.ts().pid(0x100).cc_errors, 0u);
  EXPECT_EQ(a.ts().pid(0x101).cc_errors, 3u);
  EXPECT_EQ(a.ts().cc_errors(), 3u);
  EXPECT_EQ(a.sequence().lost(), 0u);
  auto j = report_json(a, RunInfo{});
  EXPECT_EQ(j["kind"], "rtp");
  EXPECT_EQ(j["rtp"]["payload_type"], 33);
  EXPECT_EQ(j["ts"]["cc_errors"], 3);
}

TEST(ProbeRtp, HeaderFieldsAreBoundedByTheLength) {
  RtpPacket r;
  Bytes base = rtp(1, Bytes(8, 0));
  ASSERT_TRUE(parse_rtp(base.data(), base.size(), &r));
  EXPECT_EQ(r.payload_offset, 12u);
  EXPECT_EQ(r.payload_length, 8u);
  EXPECT_EQ(r.ssrc, 0x11223344u);

  Bytes csrc = base;
  csrc[0] = 0x83;  // 3 CSRCs = 12 bytes, only 8 there
  EXPECT_FALSE(parse_rtp(csrc.data(), csrc.size(), &r));
  csrc[0] = 0x82;  // 2 CSRCs = exactly the 8 bytes
  ASSERT_TRUE(parse_rtp(csrc.data(), csrc.size(), &r));
  EXPECT_EQ(r.payload_length, 0u);

  Bytes extension = base;
  extension[0] = 0x90;
  extension[14] = 0;
  extension[15] = 2;  // 2 words = 8 bytes after the 4-byte extension header: too long
  EXPECT_FALSE(parse_rtp(extension.data(), extension.size(), &r));
  extension[15] = 1;  // 4 + 4 = the 8 bytes
  ASSERT_TRUE(parse_rtp(extension.data(), extension.size(), &r));
  EXPECT_EQ(r.payload_length, 0u);

  Bytes padding = base;
  padding[0] = 0xA0;
  padding.back() = 0;
  EXPECT_FALSE(parse_rtp(padding.data(), padding.size(), &r));
  padding.back() = 9;  // more than the 8 bytes after the header
  EXPECT_FALSE(parse_rtp(padding.data(), padding.size(), &r));
  padding.back() = 3;
  ASSERT_TRUE(parse_rtp(padding.data(), padding.size(), &r));
  EXPECT_EQ(r.payload_length, 5u);

  Bytes version1 = base;
  version1[0] = 0x40;
  EXPECT_FALSE(parse_rtp(version1.data(), version1.size(), &r));
  EXPECT_FALSE(parse_rtp(base.data(), 11, &r));
}

// ---- MPEG-TS ----

TEST(ProbeTs, ContinuityRulesPerPid) {
  Analyzer a;
  std::vector<Bytes> packets = {
      // 0x100: 0 1 2 4 -> one skipped counter
      ts_packet(0x100, 0), ts_packet(0x100, 1), ts_packet(0x100, 2), ts_packet(0x100, 4),
      // 0x101: 14 15 0 0 (one duplicate allowed) 1 1 1 (the third 1 is an error)
      ts_packet(0x101, 14), ts_packet(0x101, 15), ts_packet(0x101, 0), ts_packet(0x101, 0),
      ts_packet(0x101, 1), ts_packet(0x101, 1), ts_packet(0x101, 1),
      // 0x102: 0 1, then 9 with discontinuity_indicator (no error), 10; 3 with an adaptation
      // field but no discontinuity flag: an error
      ts_packet(0x102, 0), ts_packet(0x102, 1), ts_packet(0x102, 9, 3, true), ts_packet(0x102, 10),
      ts_packet(0x102, 3, 3, false),
      // 0x103: adaptation-only packets keep the counter: 5, 5 (no payload), 6; 6 (no payload),
      // then 6 with payload after an adaptation-only packet is an error; 8 without payload
      // (the counter moved without payload) is an error
      ts_packet(0x103, 5), ts_packet(0x103, 5, 2), ts_packet(0x103, 6), ts_packet(0x103, 6, 2),
      ts_packet(0x103, 6), ts_packet(0x103, 8, 2),
      // null packets: any counter
      ts_packet(kTsNullPid, 3), ts_packet(kTsNullPid, 11), ts_packet(kTsNullPid, 0)};
  for (size_t i = 0; i < packets.size(); i += 7)  // 7 packets per datagram, as VLC sends
    feed(a, concat(std::vector<Bytes>(packets.begin() + long(i), packets.begin() + long(std::min(i + 7, packets.size())))));
  ASSERT_EQ(a.kind(), StreamKind::kMpegTs);
  const TsAnalyzer& ts = a.ts();
  EXPECT_EQ(ts.pid(0x100).cc_errors, 1u);
  EXPECT_EQ(ts.pid(0x101).cc_errors, 1u);
  EXPECT_EQ(ts.pid(0x102).cc_errors, 1u);
  EXPECT_EQ(ts.pid(0x102).discontinuities, 1u);
  EXPECT_EQ(ts.pid(0x103).cc_errors, 2u);
  EXPECT_EQ(ts.pid(kTsNullPid).cc_errors, 0u);
  EXPECT_EQ(ts.cc_errors(), 5u);
  EXPECT_EQ(ts.pid(0x100).packets, 4u);
  EXPECT_EQ(ts.pid(0x101).packets, 7u);
  EXPECT_EQ(ts.pid(0x102).packets, 5u);
  EXPECT_EQ(ts.pid(0x103).packets, 6u);
  EXPECT_EQ(ts.pid(kTsNullPid).packets, 3u);
  EXPECT_EQ(ts.pid_count(), 5u);
  EXPECT_EQ(ts.packets(), packets.size());
  EXPECT_EQ(ts.sync_errors(), 0u);
  EXPECT_EQ(a.totals().other, 0u);

  auto j = report_json(a, RunInfo{1.5, "count"});
  EXPECT_EQ(j["kind"], "mpegts");
  EXPECT_EQ(j["ts"]["cc_errors"], 5);
  ASSERT_EQ(j["ts"]["pids"].size(), 5u);
  EXPECT_EQ(j["ts"]["pids"][0]["pid"], 0x100);
  EXPECT_EQ(j["ts"]["pids"][0]["cc_errors"], 1);
  EXPECT_EQ(j["ts"]["pids"][4]["pid"], kTsNullPid);
  EXPECT_FALSE(j.contains("sequence"));
}

TEST(ProbeTs, BadSyncBytesShortTailsAndTransportErrorsAreCounted) {
  Analyzer a;
  feed(a, concat({ts_packet(0x100, 0), ts_packet(0x100, 1)}));
  Bytes bad_sync = concat({ts_packet(0x100, 2), ts_packet(0x100, 3)});
  bad_sync[kTsPacketSize] = 0x46;  // the second packet
  feed(a, bad_sync);
  Bytes tail = concat({ts_packet(0x100, 3), ts_packet(0x100, 4)});
  tail.resize(tail.size() + 5, 0x47);  // 5 stray bytes
  feed(a, tail);
  feed(a, Bytes{0x47});  // a datagram shorter than a packet
  Bytes tei = ts_packet(0x100, 9);
  tei[1] |= 0x80;  // transport_error_indicator: not checked
  feed(a, tei);
  feed(a, ts_packet(0x100, 5));
  const TsAnalyzer& ts = a.ts();
  EXPECT_EQ(ts.sync_errors(), 3u);
  EXPECT_EQ(ts.transport_errors(), 1u);
  EXPECT_EQ(ts.cc_errors(), 0u);  // 0 1 2 (3 lost to its sync byte) 3 4 5
  EXPECT_EQ(ts.pid(0x100).packets, 6u);
  EXPECT_EQ(ts.packets(), 8u);
  EXPECT_EQ(a.totals().datagrams, 6u);
}

// ---- Kinds, garbage, reports ----

TEST(ProbeKinds, FeedingDatagramsAllocatesNothing) {
  std::vector<std::vector<Bytes>> streams = {
      {counter(1), counter(3), counter(2), counter(2), counter(70000), Bytes(5, 0)},
      {rtp(65535), rtp(1), rtp(0), rtp(0), rtp(9, concat({ts_packet(0x30, 0), ts_packet(0x31, 5)}), 33)},
      {concat({ts_packet(0x100, 0), ts_packet(0x101, 0)}), concat({ts_packet(0x100, 5), ts_packet(kTsNullPid, 2)}),
       Bytes(200, 0x47), Bytes(3, 1)},
      {Bytes(40, 7), Bytes(0)}};
  for (const auto& stream : streams) {
    Analyzer a;  // the PID table is allocated here, once
    uint64_t before = g_allocations.load();
    for (int round = 0; round < 1000; ++round)
      for (const Bytes& d : stream) a.feed(d.data(), d.size(), uint64_t(round));
    EXPECT_EQ(g_allocations.load(), before) << kind_name(a.kind());
    EXPECT_EQ(a.totals().datagrams, 1000 * stream.size());
  }
}

TEST(ProbeKinds, TheFirstRecognisedDatagramSetsTheKind) {
  Analyzer a;
  feed(a, Bytes{1, 2, 3});  // unknown
  EXPECT_EQ(a.kind(), StreamKind::kUnknown);
  feed(a, counter(1));
  EXPECT_EQ(a.kind(), StreamKind::kCounter);
  feed(a, ts_packet(0x100, 0));  // of another kind now
  feed(a, rtp(5));
  feed(a, counter(2));
  EXPECT_EQ(a.kind(), StreamKind::kCounter);
  EXPECT_EQ(a.totals().datagrams, 5u);
  EXPECT_EQ(a.totals().other, 3u);
  EXPECT_EQ(a.sequence().received(), 2u);

  EXPECT_EQ(classify(nullptr, 0), StreamKind::kUnknown);
  Bytes b = counter(1);
  b[7] = '2';
  EXPECT_EQ(classify(b.data(), b.size()), StreamKind::kUnknown);  // wrong magic: not RTP either ('V')
  Bytes ts = ts_packet(1, 0);
  EXPECT_EQ(classify(ts.data(), ts.size()), StreamKind::kMpegTs);
  EXPECT_EQ(classify(ts.data(), 187), StreamKind::kUnknown);
}

TEST(ProbeKinds, UnknownStreamCountsDatagramsBytesAndBitrate) {
  Analyzer a;
  feed(a, Bytes(100, 1), 1000000000);
  feed(a, Bytes(200, 1), 1500000000);
  feed(a, Bytes(300, 1), 2000000000);
  EXPECT_EQ(a.kind(), StreamKind::kUnknown);
  EXPECT_EQ(a.totals().bytes, 600u);
  EXPECT_EQ(a.totals().other, 3u);
  EXPECT_EQ(a.totals().max_gap_ns, 500000000u);
  EXPECT_DOUBLE_EQ(a.bitrate_bps(), 8.0 * 500);  // 500 bytes after the first, in 1 s
  auto j = report_json(a, RunInfo{2, "idle"});
  EXPECT_EQ(j["kind"], "unknown");
  EXPECT_EQ(j["bitrate_bps"], 4000);
  EXPECT_EQ(j["max_gap_ms"], 500.0);
  EXPECT_EQ(j["end"], "idle");
  EXPECT_FALSE(j.contains("sequence"));
  EXPECT_FALSE(j.contains("ts"));
}

TEST(ProbeKinds, RandomBytesNeverCrashAnyKind) {
  std::mt19937_64 random(7);
  Bytes buffer(3000);
  std::vector<Bytes> seeds = {counter(1), ts_packet(0x44, 0), rtp(1, concat({ts_packet(0x44, 0)}), 33), Bytes{9}};
  for (const Bytes& seed : seeds) {
    Analyzer a;
    feed(a, seed);
    for (int i = 0; i < 20000; ++i) {
      size_t length = random() % 4 == 0 ? size_t(random() % 6) * kTsPacketSize + random() % 3 : random() % buffer.size();
      for (size_t k = 0; k < length; ++k) buffer[k] = static_cast<uint8_t>(random());
      if (length > 0 && random() % 2) buffer[0] = random() % 2 ? kTsSync : 0x80;  // look like TS or RTP
      a.feed(buffer.data(), length, uint64_t(i));
    }
    EXPECT_EQ(a.totals().datagrams, 20001u);
    report_json(a, RunInfo{});
    report_text(a, RunInfo{});
    live_line(a, Totals{}, 1, 1);
  }
}

TEST(ProbeReport, CounterReportJsonTextAndLiveLine) {
  Analyzer a;
  for (uint64_t i : {1, 2, 4, 3, 3}) feed(a, counter(i), i * 1000000);
  auto j = report_json(a, RunInfo{0.25, "count"});
  EXPECT_EQ(j["kind"], "counter");
  EXPECT_EQ(j["datagrams"], 5);
  EXPECT_EQ(j["bytes"], 120);
  EXPECT_EQ(j["duration_s"], 0.25);
  EXPECT_EQ(j["sequence"]["received"], 5);
  EXPECT_EQ(j["sequence"]["lost"], 0);
  EXPECT_EQ(j["sequence"]["out_of_order"], 1);
  EXPECT_EQ(j["sequence"]["duplicates"], 1);
  EXPECT_EQ(j["counter"]["sum"], 26);
  EXPECT_EQ(j["counter"]["lowest_index"], 1);
  EXPECT_EQ(j["counter"]["highest_index"], 4);

  std::string text = report_text(a, RunInfo{0.25, "count"});
  EXPECT_NE(text.find("kind: counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sequence.duplicates: 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("counter.sum: 26\n"), std::string::npos) << text;

  Totals before;
  before.datagrams = 1;
  before.bytes = 24;
  std::string line = live_line(a, before, 2, 10);
  EXPECT_EQ(line, "vrelay-probe: 10s counter 2 datagrams/s 0.000 Mbit/s datagrams 5 | received 5 lost 0 "
                  "out_of_order 1 duplicates 1 corrupt 0");
}
