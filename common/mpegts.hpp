// MPEG-TS as vrelay carries it, without I/O: the RTP framing, and an inspector that follows
// a stream datagram by datagram: the PAT and the PMT (kept as packets, to repeat to a new
// viewer), the video PID, and the datagrams where a key frame's access unit begins (a
// random-access point: H.264 IDR or recovery-point SEI, HEVC IRAP, MPEG-2 sequence header +
// I picture). VLC does not set random_access_indicator, so the video's start codes are read,
// across TS packets and datagrams. Nothing here allocates per datagram; every read is
// bounds-checked, so any bytes may be fed (the fuzz driver does).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace vrelay {

constexpr size_t kTsPacketSize = 188;
constexpr uint8_t kTsSync = 0x47;
constexpr uint16_t kTsNullPid = 0x1FFF;
constexpr size_t kTsPidCount = 8192;

// The RTP header fields vrelay uses; false if `data` is not a well-formed RTP (version 2)
// packet: shorter than its header, CSRCs, extension or padding say.
struct RtpPacket {
  uint16_t sequence;
  uint8_t payload_type;
  uint32_t ssrc;
  size_t payload_offset, payload_length;
};
bool parse_rtp(const uint8_t* data, size_t length, RtpPacket* out);

// Whole TS packets starting with a sync byte.
inline bool looks_like_ts(const uint8_t* data, size_t length) {
  return length >= kTsPacketSize && length % kTsPacketSize == 0 && data[0] == kTsSync;
}

// The TS packets of a datagram, raw or carried in RTP: their start, and *length set to
// their bytes; nullptr when the datagram holds no whole TS packets.
const uint8_t* ts_packets(const uint8_t* data, size_t length, size_t* ts_length);

// The PID of a TS packet.
inline uint16_t ts_pid(const uint8_t* packet) { return uint16_t((packet[1] & 0x1F) << 8 | packet[2]); }

enum class VideoCodec : uint8_t { kNone, kH264, kHevc, kMpeg2 };
const char* codec_name(VideoCodec codec);  // "none", "h264", "hevc", "mpeg2"

class TsInspector {
 public:
  using Packet = std::array<uint8_t, kTsPacketSize>;

  // What one datagram held.
  struct Result {
    bool transport_stream = false;  // raw TS, or RTP carrying TS
    bool tables_changed = false;    // a PAT or PMT unlike the last one came
    // A key frame was recognised in this datagram: the index of the datagram where its
    // access unit (its PES packet) began, this one or an earlier one.
    std::optional<uint64_t> key_frame_from;
  };

  // `index` numbers the datagrams (the ring position): key_frame_from refers to it.
  Result inspect(const uint8_t* datagram, size_t datagram_length, uint64_t index);

  bool has_tables() const { return pat_valid_ && pmt_valid_; }
  const Packet& pat() const { return pat_; }
  const Packet& pmt() const { return pmt_; }
  uint16_t video_pid() const { return video_pid_; }
  VideoCodec codec() const { return codec_; }

 private:
  void packet(const uint8_t* p, uint64_t index, Result* result);
  void read_pat(const uint8_t* p, const uint8_t* payload, size_t size, Result* result);
  void read_pmt(const uint8_t* p, const uint8_t* payload, size_t size, Result* result);
  void read_video(const uint8_t* payload, size_t size, bool unit_start, uint64_t index, Result* result);
  void scan(const uint8_t* data, size_t size, Result* result);
  void on_unit(uint8_t first, Result* result);  // the byte after a start code
  void key_frame(Result* result);

  Packet pat_{}, pmt_{};
  bool pat_valid_ = false, pmt_valid_ = false;
  uint8_t pat_version_ = 0, pmt_version_ = 0;
  uint16_t pmt_pid_ = kTsNullPid, video_pid_ = kTsNullPid;
  VideoCodec codec_ = VideoCodec::kNone;

  // The access unit being read: where it began, and what was seen in it so far.
  bool in_unit_ = false;
  uint64_t unit_index_ = 0;
  bool unit_reported_ = false, unit_sequence_header_ = false;
  // Start-code scanner: zero bytes seen in a row, and what the next bytes are.
  unsigned zeros_ = 0;
  enum class Next : uint8_t { kNothing, kUnitHeader, kSeiType, kHevcSecond, kMpeg2Picture0, kMpeg2Picture1 } next_ =
      Next::kNothing;
  unsigned sei_type_ = 0;
};

}  // namespace vrelay
