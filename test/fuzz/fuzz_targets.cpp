// Fuzz targets for every parser that reads untrusted input: control-protocol bytes (line
// reader + parser), the YAML configuration, addresses, shared-memory headers, and the
// MPEG-TS inspector (datagrams of a source).
// Built as libFuzzer targets with clang (-DFUZZ=ON), or with driver.cpp as a bounded
// random-input test that CTest runs in every build (and so under ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "config.hpp"
#include "mpegts.hpp"
#include "net.hpp"
#include "protocol.hpp"
#include "shm.hpp"

namespace {

struct Sink : vrelay::protocol::LineReader::Sink {
  size_t lines = 0;
  void on_line(std::string_view line) override {
    ++lines;
    vrelay::protocol::Parsed p = vrelay::protocol::parse(line);
    if (p.ok) {
      for (auto arg : p.args) (void)vrelay::parse_port(arg, 1025, 65535);
    }
  }
  void on_line_too_long() override {}
  void on_telnet_reply(std::string_view bytes) override {
    if (bytes.size() != 3) __builtin_trap();  // always IAC WONT/DONT option
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the target, so one corpus drives all of them.
  uint8_t target = data[0] % 5;
  const char* text = reinterpret_cast<const char*>(data + 1);
  size_t length = size - 1;
  switch (target) {
    case 0: {  // a session's byte stream, cut into reads at arbitrary points
      vrelay::protocol::LineReader reader(64);
      Sink sink;
      size_t at = 0;
      while (at < length) {
        size_t chunk = 1 + (static_cast<unsigned char>(text[at]) % 7);
        chunk = std::min(chunk, length - at);
        reader.feed(text + at, chunk, sink);
        at += chunk;
      }
      break;
    }
    case 1:
      try {
        vrelay::load_config_text(std::string(text, length), "fuzz.yaml");
      } catch (const vrelay::ConfigError&) {
      }
      break;
    case 2: {
      std::string error;
      std::string s(text, length);
      if (auto ep = vrelay::parse_endpoint(s, &error)) (void)ep->to_string();
      if (auto cidr = vrelay::parse_cidr(s, &error)) (void)cidr->to_string();
      break;
    }
    case 3: {
      std::vector<char> aligned(length);  // a segment is page-aligned; copy to align
      if (length) std::memcpy(aligned.data(), text, length);
      bool starting = false;
      (void)vrelay::check_header(aligned.data(), aligned.size(), &starting);
      break;
    }
    case 4: {  // a source's datagrams: cut where the next byte says, kept whole TS-sized or not
      vrelay::TsInspector inspector;
      const uint8_t* bytes = data + 1;
      size_t at = 0;
      for (uint64_t index = 0; at < length; ++index) {
        size_t chunk = std::min(length - at, (size_t(bytes[at]) % 8) * vrelay::kTsPacketSize + bytes[at] % 3);
        if (chunk == 0) chunk = std::min(length - at, vrelay::kTsPacketSize);
        auto r = inspector.inspect(bytes + at, chunk, index);
        if (r.key_frame_from && *r.key_frame_from > index) __builtin_trap();
        at += chunk;
      }
      break;
    }
  }
  return 0;
}
