// The entry point of one libFuzzer binary, bin/fuzz_<name> (make fuzz): CMake compiles this
// file once per target with VRELAY_FUZZ_TARGET naming it.
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vrelay::fuzz::VRELAY_FUZZ_TARGET(data, size);
}
