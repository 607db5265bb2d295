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

}  // namespace

int main(int argc, char** argv) {
  long iterations = argc > 1 ? std::atol(argv[1]) : 200000;
  std::mt19937_64 random(12345);
  for (const auto& seed : kSeeds) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(seed.data()), seed.size());
  for (long i = 0; i < iterations; ++i) {
    std::string input = kSeeds[random() % kSeeds.size()];
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
  std::printf("fuzz driver: %zu seeds and %ld mutated inputs, no crash\n", kSeeds.size(), iterations);
  return 0;
}
