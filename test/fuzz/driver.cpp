// Runs the fuzz targets without libFuzzer, so that every build tests them (and make sanitize
// under ASan, UBSan and TSan): every seed of the corpus once through its target, then a
// bounded number of deterministic random mutations of them. A crash, a sanitizer report or
// a broken property fails the test.
//
//   fuzz_driver CORPUS_DIR [MUTATIONS]    CORPUS_DIR/<target>/ holds each target's seeds
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "fuzz_targets.hpp"

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run(const vrelay::fuzz::Target& target, const std::string& input) {
  return target.run(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fuzz_driver CORPUS_DIR [MUTATIONS]\n");
    return 2;
  }
  const std::filesystem::path corpus = argv[1];
  long mutations = argc > 2 ? std::atol(argv[2]) : 100000;

  struct Seeds {
    const vrelay::fuzz::Target* target;
    std::vector<std::string> inputs;
  };
  std::vector<Seeds> all;
  size_t seed_count = 0;
  for (const auto& target : vrelay::fuzz::kTargets) {
    std::filesystem::path dir = corpus / target.name;
    std::vector<std::filesystem::path> files;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error))
      if (entry.is_regular_file()) files.push_back(entry.path());
    if (files.empty()) {  // every target keeps seeds in the repository (make fuzz reads them)
      std::fprintf(stderr, "fuzz driver: no seeds in %s\n", dir.c_str());
      return 1;
    }
    std::sort(files.begin(), files.end());  // the same order, so the same mutations, every run
    Seeds seeds{&target, {}};
    for (const auto& file : files) {
      seeds.inputs.push_back(read_file(file));
      run(target, seeds.inputs.back());
    }
    seed_count += files.size();
    all.push_back(std::move(seeds));
  }

  std::mt19937_64 random(12345);
  for (long i = 0; i < mutations; ++i) {
    const Seeds& seeds = all[random() % all.size()];
    std::string input = seeds.inputs[random() % seeds.inputs.size()];
    int edits = 1 + int(random() % 8);
    for (int e = 0; e < edits; ++e) {
      size_t at = input.empty() ? 0 : random() % input.size();
      switch (random() % 4) {
        case 0: if (at < input.size()) input[at] = char(random()); break;
        case 1: input.insert(at, 1, char(random())); break;
        case 2: if (at < input.size()) input.erase(at, 1 + random() % 16); break;
        case 3: input.insert(at, input.substr(at < input.size() ? at : 0, random() % 32)); break;
      }
    }
    run(*seeds.target, input);
  }
  std::printf("fuzz driver: %zu seeds of %zu targets and %ld mutated inputs, no crash\n", seed_count, all.size(),
              mutations);
  return 0;
}
