// MPEG-TS framing and the stream inspector (see mpegts.hpp). References: ISO/IEC 13818-1
// (TS packets, PAT, PMT, PES), ITU-T H.264 7.3.1 and H.265 7.3.1.2 (NAL unit headers),
// ISO/IEC 13818-2 6.2.3 (MPEG-2 picture header), RFC 3550 (RTP).
#include "mpegts.hpp"

#include <cstring>

namespace vrelay {

bool parse_rtp(const uint8_t* data, size_t length, RtpPacket* out) {
  if (length < 12 || (data[0] >> 6) != 2) return false;
  size_t offset = 12 + 4 * size_t(data[0] & 0x0F);  // fixed header, then the CSRCs
  if (offset > length) return false;
  if (data[0] & 0x10) {  // header extension: 16-bit profile, 16-bit length in words
    if (offset + 4 > length) return false;
    size_t words = size_t(data[offset + 2]) << 8 | data[offset + 3];
    offset += 4 + 4 * words;
    if (offset > length) return false;
  }
  size_t end = length;
  if (data[0] & 0x20) {  // padding: its last byte counts the padding bytes, itself included
    uint8_t padding = data[length - 1];
    if (padding == 0 || padding > length - offset) return false;
    end = length - padding;
  }
  out->sequence = static_cast<uint16_t>(data[2] << 8 | data[3]);
  out->payload_type = data[1] & 0x7F;
  out->ssrc = uint32_t(data[8]) << 24 | uint32_t(data[9]) << 16 | uint32_t(data[10]) << 8 | data[11];
  out->payload_offset = offset;
  out->payload_length = end - offset;
  return true;
}

const char* codec_name(VideoCodec codec) {
  switch (codec) {
    case VideoCodec::kH264: return "h264";
    case VideoCodec::kHevc: return "hevc";
    case VideoCodec::kMpeg2: return "mpeg2";
    default: return "none";
  }
}

namespace {

constexpr uint8_t kPatTable = 0x00, kPmtTable = 0x02;

// A PSI section that starts in this packet's payload and ends in it (pointer_field first),
// with its table_id checked; nullptr otherwise. *length: the section's bytes, CRC included.
const uint8_t* section(const uint8_t* payload, size_t size, uint8_t table_id, size_t* length) {
  if (size < 1 || size_t(payload[0]) + 1 + 3 > size) return nullptr;
  const uint8_t* s = payload + 1 + payload[0];
  size_t room = size - 1 - payload[0];
  size_t total = 3 + (size_t(s[1] & 0x0F) << 8 | s[2]);
  if (s[0] != table_id || total > room || total < 12) return nullptr;  // spans packets, or too short
  *length = total;
  return s;
}

uint16_t pid_at(const uint8_t* b) { return uint16_t((b[0] & 0x1F) << 8 | b[1]); }

VideoCodec codec_of(uint8_t stream_type) {
  switch (stream_type) {
    case 0x1B: return VideoCodec::kH264;
    case 0x24: return VideoCodec::kHevc;
    case 0x01:
    case 0x02: return VideoCodec::kMpeg2;
    default: return VideoCodec::kNone;
  }
}

}  // namespace

const uint8_t* ts_packets(const uint8_t* data, size_t length, size_t* ts_length) {
  *ts_length = length;
  if (looks_like_ts(data, length)) return data;
  RtpPacket rtp;
  if (!parse_rtp(data, length, &rtp) || !looks_like_ts(data + rtp.payload_offset, rtp.payload_length)) return nullptr;
  *ts_length = rtp.payload_length;
  return data + rtp.payload_offset;
}

TsInspector::Result TsInspector::inspect(const uint8_t* datagram, size_t datagram_length, uint64_t index) {
  Result result;
  size_t length;
  const uint8_t* data = ts_packets(datagram, datagram_length, &length);
  if (!data) return result;
  result.transport_stream = true;
  for (size_t at = 0; at + kTsPacketSize <= length; at += kTsPacketSize) packet(data + at, index, &result);
  return result;
}

void TsInspector::packet(const uint8_t* p, uint64_t index, Result* result) {
  if (p[0] != kTsSync || (p[1] & 0x80)) return;  // lost sync, or transport_error_indicator
  uint16_t pid = ts_pid(p);
  bool unit_start = p[1] & 0x40;
  unsigned control = (p[3] >> 4) & 3;  // adaptation_field_control
  if (!(control & 1)) return;          // no payload
  size_t offset = 4 + ((control & 2) ? 1 + size_t(p[4]) : 0);
  if (offset >= kTsPacketSize) return;
  const uint8_t* payload = p + offset;
  size_t size = kTsPacketSize - offset;
  if (pid == 0 && unit_start) read_pat(p, payload, size, result);
  else if (pid == pmt_pid_ && unit_start) read_pmt(p, payload, size, result);
  else if (pid == video_pid_) read_video(payload, size, unit_start, index, result);
}

void TsInspector::read_pat(const uint8_t* p, const uint8_t* payload, size_t size, Result* result) {
  size_t length;
  const uint8_t* s = section(payload, size, kPatTable, &length);
  if (!s) return;
  uint16_t pmt_pid = kTsNullPid;
  for (size_t i = 8; i + 4 <= length - 4; i += 4)  // program loop, before the CRC
    if ((s[i] << 8 | s[i + 1]) != 0) {             // program 0 is the network PID
      pmt_pid = pid_at(s + i + 2);
      break;
    }
  if (pmt_pid == kTsNullPid) return;
  uint8_t version = (s[5] >> 1) & 0x1F;
  bool changed = !pat_valid_ || pmt_pid != pmt_pid_ || version != pat_version_;
  pat_version_ = version;
  std::memcpy(pat_.data(), p, kTsPacketSize);
  pat_valid_ = true;
  if (!changed) return;
  result->tables_changed = true;
  if (pmt_pid != pmt_pid_) {  // another program: its PMT, and its video, are to be found again
    pmt_pid_ = pmt_pid;
    pmt_valid_ = false;
    video_pid_ = kTsNullPid;
    codec_ = VideoCodec::kNone;
    in_unit_ = false;
  }
}

void TsInspector::read_pmt(const uint8_t* p, const uint8_t* payload, size_t size, Result* result) {
  size_t length;
  const uint8_t* s = section(payload, size, kPmtTable, &length);
  if (!s) return;
  size_t i = 12 + (size_t(s[10] & 0x0F) << 8 | s[11]);  // after program_info
  uint16_t video = kTsNullPid;
  VideoCodec codec = VideoCodec::kNone;
  while (i + 5 <= length - 4 && codec == VideoCodec::kNone) {  // elementary streams, before the CRC
    codec = codec_of(s[i]);
    if (codec != VideoCodec::kNone) video = pid_at(s + i + 1);
    i += 5 + (size_t(s[i + 3] & 0x0F) << 8 | s[i + 4]);
  }
  uint8_t version = (s[5] >> 1) & 0x1F;
  bool changed = !pmt_valid_ || video != video_pid_ || codec != codec_ || version != pmt_version_;
  pmt_version_ = version;
  std::memcpy(pmt_.data(), p, kTsPacketSize);
  pmt_valid_ = true;
  if (!changed) return;
  result->tables_changed = true;
  video_pid_ = video;
  codec_ = codec;
  in_unit_ = false;
}

// A PES packet begins an access unit (VLC and ffmpeg put one picture in each): its header
// is skipped and the elementary stream scanned for start codes.
void TsInspector::read_video(const uint8_t* payload, size_t size, bool unit_start, uint64_t index, Result* result) {
  if (unit_start) {
    in_unit_ = false;
    if (size < 9 || payload[0] != 0 || payload[1] != 0 || payload[2] != 1) return;
    size_t header = 9 + size_t(payload[8]);
    if (header > size) return;
    in_unit_ = true;
    unit_index_ = index;
    unit_reported_ = unit_sequence_header_ = false;
    zeros_ = 0;
    next_ = Next::kNothing;
    payload += header;
    size -= header;
  }
  if (in_unit_) scan(payload, size, result);
}

void TsInspector::scan(const uint8_t* data, size_t size, Result* result) {
  for (size_t i = 0; i < size; ++i) {
    uint8_t b = data[i];
    switch (next_) {
      case Next::kUnitHeader:
        next_ = Next::kNothing;
        on_unit(b, result);
        break;
      case Next::kSeiType:  // payloadType: 0xFF bytes add 255 each, the last one ends it
        sei_type_ += b;
        if (b != 0xFF) {
          next_ = Next::kNothing;
          if (sei_type_ == 6 && unit_sequence_header_) key_frame(result);  // recovery point, after an SPS
        }
        break;
      case Next::kMpeg2Picture0:
        next_ = Next::kMpeg2Picture1;
        break;
      case Next::kMpeg2Picture1:  // temporal_reference (10 bits), then picture_coding_type
        next_ = Next::kNothing;
        if (((b >> 3) & 7) == 1 && unit_sequence_header_) key_frame(result);  // I, after a sequence header
        break;
      default:
        break;
    }
    if (b == 0) {
      ++zeros_;
    } else {
      if (b == 1 && zeros_ >= 2) next_ = Next::kUnitHeader;
      zeros_ = 0;
    }
  }
}

void TsInspector::on_unit(uint8_t first, Result* result) {
  switch (codec_) {
    case VideoCodec::kH264: {
      unsigned type = first & 0x1F;
      if (type == 5) key_frame(result);  // IDR slice
      if (type == 7) unit_sequence_header_ = true;
      if (type == 6) {
        next_ = Next::kSeiType;
        sei_type_ = 0;
      }
      break;
    }
    case VideoCodec::kHevc: {
      unsigned type = (first >> 1) & 0x3F;
      if (type >= 16 && type <= 23) key_frame(result);  // IRAP: BLA, IDR, CRA
      break;
    }
    case VideoCodec::kMpeg2:
      if (first == 0xB3) unit_sequence_header_ = true;
      if (first == 0x00) next_ = Next::kMpeg2Picture0;
      break;
    default:
      break;
  }
}

void TsInspector::key_frame(Result* result) {
  if (!in_unit_ || unit_reported_) return;
  unit_reported_ = true;
  result->key_frame_from = unit_index_;
}

}  // namespace vrelay
