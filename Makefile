# Shortcuts around the CMake build. `make demo` and `make test` need only gcc, make and cmake.
#
#   make demo            build into ./build and run the examples against each other
#   make test            build into ./build with -Werror and run every test
#   make test-poll       the same with the portable poll() backend (./build-poll)
#   make test-asan       AddressSanitizer + UndefinedBehaviorSanitizer, Debug (./build-asan)
#   make test-tsan       ThreadSanitizer, the tests labelled "threads" (./build-tsan)
#   make test-valgrind   the tests labelled "core", each under valgrind, Debug (./build-vg)
#   make test-windows    cross-build for Windows with mingw-w64 (./build-windows) and run the
#                        tests and the examples under Wine, in a fresh WINEPREFIX there
#   make bench           build bench/ (Release, ./build-bench) and run lsock against raw syscalls
#                        and libuv; BENCH_SHORT=1 or BENCH_ARGS=--short for the quick CI mode
#   make bench-plot      chart of latency and throughput against message size
#                        (docs/performance.png; installs gnuplot-nox when root)
#   make fuzz            build the libFuzzer harnesses in fuzz/ with clang (./build-fuzz) and run
#                        each for FUZZ_SECONDS (default 60) from its corpus in fuzz/corpus/
#   make format          clang-format the sources in place
#   make format-check    fail if clang-format would change a source
#   make clean           remove the build directories
#
# Variables: JOBS (parallel jobs, default 2), CMAKE, CTEST, CLANG_FORMAT, CMAKE_FLAGS (extra
# configure options for every build), BENCH_ARGS (options of bench/lsock-bench), BENCH_BUILD.

CMAKE ?= cmake
CTEST ?= ctest
CLANG_FORMAT ?= clang-format
JOBS ?= 2
CMAKE_FLAGS ?=

# cmake --build runs make too; keep its output free of "Entering directory" lines.
MAKEFLAGS += --no-print-directory

CTEST_FLAGS = --output-on-failure --no-tests=error -j$(JOBS)
BENCH_BUILD ?= build-bench
BENCH_ARGS ?=
BUILD_DIRS = build build-poll build-asan build-tsan build-vg build-bench build-compare build-fuzz build-windows
FORMAT_FILES = $(sort $(wildcard include/*.h src/*.[ch] src/*/*.[ch] tests/*.[ch] examples/*.c tools/*.c \
	bench/*.c))

# Sanitizer runtimes (gcc 12's among them) can fail to start on kernels with high ASLR entropy
# (vm.mmap_rnd_bits > 28); run the sanitized tests with address randomisation off when allowed.
NO_ASLR := $(shell setarch "$$(uname -m)" -R true >/dev/null 2>&1 && echo setarch "$$(uname -m)" -R)

export ASAN_OPTIONS ?= detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS ?= halt_on_error=1:second_deadlock_stack=1

.PHONY: all build demo test test-poll test-asan test-tsan test-valgrind test-windows fuzz fuzz-build bench bench-build bench-plot bench-compare \
	format format-check clean

all: build

build:
	$(CMAKE) -S . -B build $(CMAKE_FLAGS)
	$(CMAKE) --build build -j $(JOBS)

demo: build
	examples/demo.sh build/examples

test:
	$(CMAKE) -S . -B build -DLSOCK_WERROR=ON $(CMAKE_FLAGS)
	$(CMAKE) --build build -j $(JOBS)
	$(CTEST) --test-dir build $(CTEST_FLAGS)

test-poll:
	$(CMAKE) -S . -B build-poll -DLSOCK_BACKEND=poll -DLSOCK_WERROR=ON $(CMAKE_FLAGS)
	$(CMAKE) --build build-poll -j $(JOBS)
	$(CTEST) --test-dir build-poll $(CTEST_FLAGS)

test-asan:
	$(CMAKE) -S . -B build-asan -DLSOCK_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug \
		$(CMAKE_FLAGS)
	$(CMAKE) --build build-asan -j $(JOBS)
	$(NO_ASLR) $(CTEST) --test-dir build-asan $(CTEST_FLAGS)

test-tsan:
	$(CMAKE) -S . -B build-tsan -DLSOCK_SANITIZE=thread $(CMAKE_FLAGS)
	$(CMAKE) --build build-tsan -j $(JOBS)
	$(NO_ASLR) $(CTEST) --test-dir build-tsan $(CTEST_FLAGS) -L threads

# Each test runs under valgrind --error-exitcode=99 (memory errors and definite leaks fail it),
# with a longer deadline for the test harness (LSOCK_TEST_TIMEOUT).
test-valgrind:
	$(CMAKE) -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	$(CMAKE) --build build-vg -j $(JOBS)
	JOBS=$(JOBS) LSOCK_TEST_TIMEOUT=300 .ci/valgrind-ctest build-vg core

# libFuzzer harnesses (clang; Debian: clang and libclang-rt-dev). Each runs for FUZZ_SECONDS
# from its corpus in fuzz/corpus/NAME (read only); new inputs go to build-fuzz/corpus/NAME and
# crashes to build-fuzz/. A crash, leak or sanitizer report fails the target.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = fuzz_buffer fuzz_name fuzz_message
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
	-DLSOCK_BACKEND_NAME='"epoll"' -Iinclude -Isrc -Wall -Wextra -Wno-unused-parameter
FUZZ_LIB_SOURCES = src/error.c src/buffer.c src/unix/name.c src/loop.c src/socket.c \
	src/socket_io.c src/descriptors.c src/socket_wait.c src/socket_message.c src/server.c \
	src/unix/platform.c src/unix/epoll.c

build-fuzz/%: fuzz/%.c $(FUZZ_LIB_SOURCES) $(wildcard src/*.h) include/lsock.h
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(FUZZ_LIB_SOURCES) -o $@ -lpthread

fuzz-build: $(addprefix build-fuzz/,$(FUZZ_TARGETS))

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p build-fuzz/corpus/$$t; \
		echo "== $$t for $(FUZZ_SECONDS)s"; \
		$(NO_ASLR) build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix=build-fuzz/$$t- \
			build-fuzz/corpus/$$t fuzz/corpus/$$t; \
	done

# Windows: the toolchain file points CMake at x86_64-w64-mingw32-gcc and makes ctest start
# every test .exe through wine. One wineserver stays up for the whole run (-p), so that each
# test does not pay for starting one.
WIN_BUILD = build-windows
test-windows:
	$(CMAKE) -S . -B $(WIN_BUILD) -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/mingw-w64-x86_64.cmake \
		-DLSOCK_WERROR=ON $(CMAKE_FLAGS)
	$(CMAKE) --build $(WIN_BUILD) -j $(JOBS)
	rm -rf $(WIN_BUILD)/wineprefix
	export WINEPREFIX="$(CURDIR)/$(WIN_BUILD)/wineprefix" WINEDEBUG=-all; \
	wineboot -i >/dev/null 2>&1; wineserver -p; status=0; \
	$(CTEST) --test-dir $(WIN_BUILD) $(CTEST_FLAGS) || { \
		echo "== test-windows: rerunning the failed tests once (seen under load: a Wine" \
			"process that ends at start-up with no output)"; \
		$(CTEST) --test-dir $(WIN_BUILD) $(CTEST_FLAGS) --rerun-failed || status=$$?; }; \
	wineserver -k; exit $$status

bench-build:
	$(CMAKE) -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DLSOCK_BUILD_BENCH=ON \
		-DLSOCK_BUILD_TESTS=OFF -DLSOCK_BUILD_EXAMPLES=OFF $(CMAKE_FLAGS)
	$(CMAKE) --build $(BENCH_BUILD) -j $(JOBS)

# Benchmarks, not timed tests: the table says which targets were met; it never fails on them.
bench: bench-build
	$(BENCH_BUILD)/bench/lsock-bench --data $(BENCH_BUILD)/bench-sizes.dat \
		--msg-data $(BENCH_BUILD)/bench-messages.dat \
		--table-data $(BENCH_BUILD)/bench-table.dat $(BENCH_ARGS)
	bench/tool_bench.sh $(BENCH_BUILD)/tools/lsock \
		$(if $(filter-out 0,$(BENCH_SHORT))$(findstring --short,$(BENCH_ARGS)),64 3,1024 5)
	$(BENCH_BUILD)/bench/lsock-share-bench \
		$(if $(filter-out 0,$(BENCH_SHORT))$(findstring --short,$(BENCH_ARGS)),64 3,1024 5)
	@if [ -x $(BENCH_BUILD)/bench/lsock-wait-floor ]; then \
		$(BENCH_BUILD)/bench/lsock-wait-floor \
			$(if $(filter-out 0,$(BENCH_SHORT))$(findstring --short,$(BENCH_ARGS)),1 2000,5 50000); \
	else echo "lsock-wait-floor: skipped: liburing not found when built (install liburing-dev)"; fi

bench-plot: bench-build
	bench/plot.sh $(BENCH_BUILD) docs/performance.png docs/performance-messages.png \
		docs/performance-workloads.png $(BENCH_BEFORE)

# The library of commit BEFORE against the working tree's, in turns within one run:
# make bench-compare BEFORE=REV [ROUNDS=5] [ONLY=pingpong,stream,...] [BENCH_ARGS='--cpus 0,1']
bench-compare:
	@test -n "$(BEFORE)" || { echo "usage: make bench-compare BEFORE=REV [ROUNDS=N] [ONLY=LIST]" >&2; exit 2; }
	BENCH_ARGS="$(BENCH_ARGS)" bench/compare.sh "$(BEFORE)" $(or $(ROUNDS),5) $(or $(ONLY),pingpong,blocking,stream,refill,connrate,fanin)

format:
	$(CLANG_FORMAT) -i $(FORMAT_FILES)

format-check:
	$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD_DIRS)
