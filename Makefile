# The two entry points of the README: `make demo` and `make test`. Both install
# missing Debian packages first (tools/setup-deps.sh, as root), then build.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory

.PHONY: all deps build demo test bench clean

all: build

deps:
	@tools/setup-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release >$(BUILD_DIR).configure.log 2>&1 || { cat $(BUILD_DIR).configure.log; exit 1; }
	@cmake --build $(BUILD_DIR) -j$(JOBS)

demo: build
	@tools/demo.sh $(BUILD_DIR)/tiledraw

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

bench: build
	@$(BUILD_DIR)/bench/tiledraw_bench
	@bench/matmul_table.py $(BUILD_DIR)/bench/tiledraw_matmul_bench

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).configure.log
