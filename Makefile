# Thin wrapper over CMake. `make` builds, `make test` installs dependencies, builds and runs
# every CTest test, `make demo` streams a test video through a live relay.
BUILD     ?= build
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all build deps test demo bench sanitize fuzz soak clean install

all: build

deps:
	@scripts/install-deps.sh --check >/dev/null 2>&1 || scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure $(CTEST_ARGS)

# ASan+UBSan build of everything, then TSan; the e2e tests (real VLC), the 10,000-session
# scale test and the benchmark smoke run in the plain build.
sanitize: deps
	$(MAKE) build BUILD=build-asan CMAKE_ARGS=-DSANITIZE=asan
	cd build-asan && ctest --output-on-failure -LE 'e2e|scale|bench'
	$(MAKE) build BUILD=build-tsan CMAKE_ARGS=-DSANITIZE=tsan
	cd build-tsan && ctest --output-on-failure -LE 'e2e|scale|bench'

# libFuzzer, clang, ASan+UBSan (build-fuzz/): every target of test/fuzz/ for FUZZ_SECONDS over
# its seeds in test/fuzz/corpus/; fails on a crash, kept in build-fuzz/fuzz/<target>/. Not in
# .ci/run: CI runs the seeds and random mutations through fuzz_driver (CTest, label fuzz).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	@scripts/install-deps.sh --fuzz --check >/dev/null 2>&1 || scripts/install-deps.sh --fuzz
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DFUZZ=ON -DSANITIZE=asan
	cmake --build build-fuzz -j $(JOBS) --target fuzzers
	test/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

demo: build
	scripts/demo.sh $(BUILD)/bin

# Benchmarks on loopback, then edges x viewers in network namespaces (as root; see
# docs/scaling.md); record the figures in docs/benchmarks.md and docs/scaling.md with
# machine and date.
bench: build
	$(BUILD)/bin/relay_bench
	$(BUILD)/bin/sessions_bench
	$(BUILD)/bin/tools_bench
	bash bench/fast_start_bench.sh $(BUILD)/bin/vrelayd
	bash test/netns/topology.sh --bench $(BUILD)/bin || [ $$? -eq 77 ]  # 77: not root, no namespaces

# One hour under 1,000 viewers, chat, SIGHUPs and a child killed every minute; prints the
# report (bench/soak.sh; figures to docs/benchmarks.md).
soak: build
	bash bench/soak.sh $(BUILD)/bin

install: build
	cmake --install $(BUILD)

# The Debian package, build-package/vrelay_<version>_<arch>.deb: a Release build for /usr
# without the tests, then cpack -G DEB (packaging/build-deb.sh prints the path last).
# Install it with `apt install ./build-package/vrelay_*.deb`.
.PHONY: package
package: deps
	JOBS=$(JOBS) packaging/build-deb.sh build-package

clean:
	rm -rf build build-asan build-tsan build-fuzz build-package
