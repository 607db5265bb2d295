// The fuzz targets: one per parser of untrusted input, each taking any bytes. libfuzzer_main.cpp
// makes each a libFuzzer binary (bin/fuzz_<name>, make fuzz); driver.cpp runs them all
// under CTest. Their seed inputs are in corpus/<name>/.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vrelay::fuzz {

int control(const uint8_t* data, size_t size);  // a control session's bytes, as the relay reads them
int config(const uint8_t* data, size_t size);   // a vrelay.yaml
int address(const uint8_t* data, size_t size);  // HOST:PORT, ADDRESS/PREFIX, ports
int shm(const uint8_t* data, size_t size);      // a shared-memory segment, as readers map it
int mpegts(const uint8_t* data, size_t size);   // a source's datagrams
int replies(const uint8_t* data, size_t size);  // lines from a relay, as clients read them

struct Target {
  const char* name;
  int (*run)(const uint8_t* data, size_t size);
};
inline constexpr Target kTargets[] = {
    {"control", control}, {"config", config}, {"address", address},
    {"shm", shm},         {"mpegts", mpegts}, {"replies", replies},
};

}  // namespace vrelay::fuzz
