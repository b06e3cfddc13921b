# The two commands: `make demo` and `make test`. Both install missing Debian
# packages (scripts/install-deps.sh), build, and run.
#
# make test = test-fast, test-asan, test-tsan, then a short run of every fuzz
# target; the first failure or sanitizer report stops it. Each part has its own
# build directory (build, build-asan, build-tsan, build-fuzz) and runs alone too.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# Seconds per fuzz target: for `make fuzz`, and for the fuzz part of `make test`.
FUZZ_SECONDS ?= 60
TEST_FUZZ_SECONDS ?= 20

CONFIGURE = cmake -S . -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
CTEST = ctest --output-on-failure -j $(JOBS)
TIMED = ./scripts/timed.sh
ASAN = -DFAULTLINE_SANITIZER=address,undefined
TSAN = -DFAULTLINE_SANITIZER=thread
FUZZ = -DCMAKE_CXX_COMPILER=clang++ -DFAULTLINE_BUILD_TESTS=OFF -DFAULTLINE_BUILD_FUZZERS=ON \
	-DFAULTLINE_SANITIZER=address,undefined,fuzzer-no-link

.PHONY: all deps configure build test test-all test-fast test-asan test-tsan fuzz fuzz-build \
	bench bench-qemu bench-migrate bench-working-set demo format clean

all: build

deps:
	./scripts/install-deps.sh

configure: deps
	$(CONFIGURE) -B $(BUILD) $(CMAKE_FLAGS)

build: configure
	$(TIMED) "build" cmake --build $(BUILD) -j $(JOBS)

test: deps
	$(TIMED) "make test (all parts)" $(MAKE) --no-print-directory test-all

test-all:
	$(MAKE) --no-print-directory test-fast
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)

# The plain build and its tests.
test-fast: build
	$(TIMED) "test-fast tests" $(CTEST) --test-dir $(BUILD) --timeout 300

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (GCC).
test-asan: deps
	$(CONFIGURE) -B build-asan $(ASAN) $(CMAKE_FLAGS)
	$(TIMED) "test-asan build" cmake --build build-asan -j $(JOBS)
	$(TIMED) "test-asan tests" $(CTEST) --test-dir build-asan --timeout 600

# The whole suite under ThreadSanitizer (GCC).
test-tsan: deps
	$(CONFIGURE) -B build-tsan $(TSAN) $(CMAKE_FLAGS)
	$(TIMED) "test-tsan build" cmake --build build-tsan -j $(JOBS)
	$(TIMED) "test-tsan tests" $(CTEST) --test-dir build-tsan --timeout 600

# The libFuzzer targets in fuzz/ (clang), with ASan + UBSan.
fuzz-build: deps
	$(CONFIGURE) -B build-fuzz $(FUZZ) $(CMAKE_FLAGS)
	$(TIMED) "fuzz build" cmake --build build-fuzz -j $(JOBS)

# Every fuzz target for FUZZ_SECONDS, starting from its seeds in fuzz/corpus/.
fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(TIMED) "fuzz, $(FUZZ_SECONDS) s per target" \
	  $(CTEST) --test-dir build-fuzz -L fuzz

# Speed against the baselines, measured in one run; about 6 minutes on 2 cores.
#   faultline-bench: the library's fault server in several settings (BENCH_ARGS, e.g. "--size 1G")
#   faultline-handle-bench: `faultline handle` through the Firecracker protocol, 512 MiB,
#     medians of 3 (HANDLE_BENCH_ARGS, e.g. "--runs 5 --only random")
#   faultline-handle-bench --page-server: the same behind a delaying proxy, 128 MiB
#     (SLOW_LINK_BENCH_ARGS, e.g. "--delays 0.2,2,10 --cap 60")
#   faultline-ws-bench: repeated restores of the KVM guest with and without a working set
#     (WS_BENCH_ARGS; alone: make bench-working-set)
BENCH_ARGS ?= --size 256M
HANDLE_BENCH_ARGS ?=
SLOW_LINK_BENCH_ARGS ?= --runs 1 --cap 30
bench: build
	$(BUILD)/bench/faultline-bench $(BENCH_ARGS)
	$(BUILD)/bench/faultline-handle-bench $(HANDLE_BENCH_ARGS)
	$(BUILD)/bench/faultline-handle-bench --page-server $(SLOW_LINK_BENCH_ARGS)
	$(BUILD)/bench/faultline-ws-bench --dir $(BUILD)/ws-bench $(WS_BENCH_ARGS)

# Baseline: QEMU's own postcopy migration of a 1 GiB TCG guest between two local QEMUs
# (bench/qemu_postcopy/README.md). Fetches QEMU 10 and a guest kernel into
# build/qemu-postcopy first. E.g. BENCH_QEMU_ARGS="--runs 5 --precopy-seconds 0 --json".
BENCH_QEMU_ARGS ?=
bench-qemu:
	./bench/qemu_postcopy/fetch.sh
	python3 ./bench/qemu_postcopy/run.py $(BENCH_QEMU_ARGS)

# Postcopy migration of a 1 GiB guest over loopback, with and without
# compression (MIGRATE_BENCH_ARGS="--with-qemu" adds QEMU's postcopy; run
# `make bench-qemu` once first to fetch QEMU 10).
MIGRATE_BENCH_ARGS ?=
bench-migrate: build
	$(BUILD)/bench/faultline-migrate-bench --dir $(BUILD)/migrate-bench $(MIGRATE_BENCH_ARGS)

# Repeated restores of a 1 GiB KVM guest whose work after the resume touches a
# scattered 15% of its memory, with and without a recorded working set; about
# 40 s, also run by `make bench` (WS_BENCH_ARGS="--ram 256M --runs 5", for instance).
WS_BENCH_ARGS ?=
bench-working-set: build
	$(BUILD)/bench/faultline-ws-bench --dir $(BUILD)/ws-bench $(WS_BENCH_ARGS)

demo: build
	$(BUILD)/faultline demo

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
