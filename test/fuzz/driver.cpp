// Runs the fuzz targets without libFuzzer: the seed inputs, then a bounded number of
// deterministic random mutations of them. A crash or sanitizer report fails the test.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const std::vector<std::string> kSeeds = {
    std::string("\x00", 1) + "CONECTAR 5000\r\nPAUSE\r\n\xff\xf4\xff\xfd\x06RESUME\r\nECHO hola  mundo\r\nQUIT\r\n",
    std::string("\x00", 1) + "\xff\xfa\x18\x00xterm\xff\xf0" "CONNECT 65536\r\n" + std::string(200, 'x') + "\n",
    std::string("\x00", 1) + "ECHO \xc3\xa1\xe2\x82\xac\xf0\x9d\x84\x9e\xc0\xaf\xed\xa0\x80\r\n\x04\x7f\r\n",
    "\x01" "control:\n  listen: 127.0.0.1:7700\n  ports: 2000-3000\ningest:\n  allow: [10.0.0.0/8, \"::1\"]\n",
    "\x01" "log: {level: debug}\nfanout: [1, 2]\n&a x: *a\n",
    "\x02" "[::ffff:1.2.3.4]:0",
    "\x02" "192.168.1.0/25",
    "\x03" "!VRRELY1\x01\x00\x00\x00",
};

// A source's first datagram for the MPEG-TS inspector (target 4): PAT, PMT (H.264 on PID
// 0x100), and a PES packet with an access unit delimiter, an SPS and an IDR slice.
std::string ts_seed() {
  auto packet = [](uint16_t pid, bool unit_start, std::initializer_list<uint8_t> payload) {
    std::string p(188, '\xff');
    p[0] = 0x47;
    p[1] = char((unit_start ? 0x40 : 0) | (pid >> 8));
    p[2] = char(pid & 0xff);
    p[3] = 0x10;
    size_t at = 4;
    for (uint8_t b : payload) p[at++] = char(b);
    return p;
  };
  return "\x04" + packet(0, true, {0, 0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 0, 0, 0, 0}) +
         packet(0x1000, true, {0, 0x02, 0xB0, 18, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xF0, 0x00, 0x1B, 0xE1, 0x00, 0xF0, 0x00, 0, 0, 0, 0}) +
         packet(0x100, true, {0, 0, 1, 0xE0, 0, 0, 0x80, 0, 0, 0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88}) +
         packet(0x100, false, {0, 0, 1, 0x65, 0x88});
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = argc > 1 ? std::atol(argv[1]) : 200000;
  std::mt19937_64 random(12345);
  std::vector<std::string> seeds = kSeeds;
  seeds.push_back(ts_seed());
  for (const auto& seed : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(seed.data()), seed.size());
  for (long i = 0; i < iterations; ++i) {
    std::string input = seeds[random() % seeds.size()];
    int edits = 1 + int(random() % 8);
    for (int e = 0; e < edits; ++e) {
      size_t at = input.empty() ? 0 : 1 + random() % input.size();
      switch (random() % 4) {
        case 0: if (at < input.size()) input[at] = char(random()); break;
        case 1: input.insert(std::min(at, input.size()), 1, char(random())); break;
        case 2: if (at < input.size()) input.erase(at, 1 + random() % 16); break;
        case 3: input.insert(std::min(at, input.size()), input.substr(at < input.size() ? at : 0, random() % 32)); break;
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
  std::printf("fuzz driver: %zu seeds and %ld mutated inputs, no crash\n", seeds.size(), iterations);
  return 0;
}
