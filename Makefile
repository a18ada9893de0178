# The two entry points of the README: `make demo` and `make test`. Both install
# missing Debian packages first (tools/setup-deps.sh, as root), then build.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory
, := ,

.PHONY: all deps program-deps build program demo test test-release test-asan tsan fuzz fuzz-replay bench clean

all: build

deps:
	@tools/setup-deps.sh

program-deps:
	@tools/setup-deps.sh program

# $(call configure,DIR,CMAKE OPTIONS): quiet unless it fails.
configure = cmake -S . -B $(1) $(2) >$(1).configure.log 2>&1 || { cat $(1).configure.log; exit 1; }

build: deps
	@$(call configure,$(BUILD_DIR),-DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON -DTILEDRAW_BUILD_BENCH=ON)
	@cmake --build $(BUILD_DIR) -j$(JOBS)

# The program alone, without tests or benchmarks (and without their packages).
program: program-deps
	@$(call configure,$(BUILD_DIR),-DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DTILEDRAW_BUILD_BENCH=OFF)
	@cmake --build $(BUILD_DIR) -j$(JOBS) --target tiledraw_cli

demo: program
	@tools/demo.sh $(BUILD_DIR)/tiledraw

# Every test: the release build, then the same tests under AddressSanitizer and
# UndefinedBehaviorSanitizer, then the concurrency tests under ThreadSanitizer,
# then every input of the fuzz corpus once (the fuzzers' regression tests).
test: test-release test-asan tsan fuzz-replay

test-release: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

# The accuracy tests (the PyTorch tier, the judged bundled model) are left out
# here: they check numbers, which the release run does.
test-asan: deps
	@$(call configure,build-asan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTILEDRAW_SANITIZE=address$(,)undefined -DTILEDRAW_BUILD_BENCH=OFF)
	@cmake --build build-asan -j$(JOBS)
	@cd build-asan && ctest --output-on-failure -j$(JOBS) -LE accuracy

# libgomp is not instrumented, so its barriers would show as races: each
# generation runs on one OpenMP thread, and the two generations (or the
# server's workers) on threads of their own.
# Nor is oneDNN: tools/tsan.supp leaves its internals to oneDNN. auto's
# remembered choices go to the build tree, as under ctest.
# The server's tests run its program under ThreadSanitizer too: a report ends
# the server with a non-zero status, which the test reports.
TSAN_RUN = OMP_NUM_THREADS=1 TILEDRAW_CACHE_DIR=$(CURDIR)/build-tsan/cache \
  TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tools/tsan.supp"
tsan: deps
	@$(call configure,build-tsan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTILEDRAW_SANITIZE=thread -DTILEDRAW_BUILD_BENCH=OFF)
	@cmake --build build-tsan -j$(JOBS) --target tiledraw_tests tiledraw_cli
	@$(TSAN_RUN) build-tsan/tests/tiledraw_tests --gtest_filter='Generator.*:ProgramCache.*'
	@$(TSAN_RUN) python3 tests/server/api_test.py build-tsan/tiledraw models build-tsan/server-api
	@$(TSAN_RUN) python3 tests/server/load_test.py build-tsan/tiledraw --sanitized

# The libFuzzer targets (clang), FUZZ_SECONDS each (60 by default); see tools/fuzz.sh.
fuzz: deps
	@tools/fuzz.sh

fuzz-replay: deps
	@tools/fuzz.sh --replay

bench: build
	@$(BUILD_DIR)/bench/tiledraw_bench
	@bench/matmul_table.py $(BUILD_DIR)/bench/tiledraw_matmul_bench

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).configure.log build-asan build-asan.configure.log build-tsan build-tsan.configure.log build-fuzz
