# Shortcuts around the CMake build. `make demo` and `make test` need only gcc, make and cmake.
#
#   make demo            build into ./build and run the examples against each other
#   make test            build into ./build with -Werror and run every test
#   make test-poll       the same with the portable poll() backend (./build-poll)
#   make test-asan       AddressSanitizer + UndefinedBehaviorSanitizer, Debug (./build-asan)
#   make test-tsan       ThreadSanitizer, the tests labelled "threads" (./build-tsan)
#   make test-valgrind   the tests labelled "core", each under valgrind, Debug (./build-vg)
#   make format          clang-format the sources in place
#   make format-check    fail if clang-format would change a source
#   make clean           remove the build directories
#
# Variables: JOBS (parallel jobs, default 2), CMAKE, CTEST, CLANG_FORMAT, CMAKE_FLAGS (extra
# configure options for every build).

CMAKE ?= cmake
CTEST ?= ctest
CLANG_FORMAT ?= clang-format
JOBS ?= 2
CMAKE_FLAGS ?=

# cmake --build runs make too; keep its output free of "Entering directory" lines.
MAKEFLAGS += --no-print-directory

CTEST_FLAGS = --output-on-failure --no-tests=error -j$(JOBS)
BUILD_DIRS = build build-poll build-asan build-tsan build-vg
FORMAT_FILES = $(sort $(wildcard include/*.h src/*.[ch] src/*/*.[ch] tests/*.[ch] examples/*.c))

# Sanitizer runtimes (gcc 12's among them) can fail to start on kernels with high ASLR entropy
# (vm.mmap_rnd_bits > 28); run the sanitized tests with address randomisation off when allowed.
NO_ASLR := $(shell setarch "$$(uname -m)" -R true >/dev/null 2>&1 && echo setarch "$$(uname -m)" -R)

export ASAN_OPTIONS ?= detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS ?= halt_on_error=1:second_deadlock_stack=1

.PHONY: all build demo test test-poll test-asan test-tsan test-valgrind format format-check clean

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

format:
	$(CLANG_FORMAT) -i $(FORMAT_FILES)

format-check:
	$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD_DIRS)
