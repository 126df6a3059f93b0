# Thin wrapper around CMake. `make` builds build/prunequant; `make check` runs the tests;
# `make demo` runs the main job on the default model. Both install missing Debian packages
# first when run as root.
BUILD ?= build
JOBS ?= $(shell nproc)
DATA ?= $(abspath ../shared/data)

.PHONY: all deps test-deps build check demo asan bench clean format format-check check-includes

all: build

# build dependencies only (compiler, CMake, libraries); the test dependencies come with `make check`
deps:
	@bash scripts/install-deps.sh build

test-deps:
	@bash scripts/install-deps.sh test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Test dependencies first; CMake then looks for Open MPI again (-U: a build configured before
# Open MPI was installed finds it now). scripts/llamacpp.sh sets up real llama.cpp (npm, cached
# per machine) for the GGUF tests; if it cannot, those tests fail and say why.
check: test-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -U 'MPI_*' >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@bash scripts/llamacpp.sh >/dev/null || echo "make check: llama.cpp could not be set up; the GGUF tests will fail"
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# the include rule of README.md's table
check-includes:
	@bash scripts/check-includes.sh

# ASan + UBSan build of the library and every test (the npm reference-tokenizer comparison,
# which only runs the CLI over megabytes of text, is left to the Release build).
asan: test-deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPQ_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j $(JOBS) -E cli_tokref

bench: build
	@for b in $(BUILD)/bench_*; do echo "== $$b"; $$b; done

demo: build
	@bash scripts/demo.sh "$(BUILD)/prunequant" "$(DATA)"

FORMAT_FILES = include/*.h src/*/*.[ch] cli/*.[ch] tests/*.[ch] tests/llamacpp/*.c bench/*.c fuzz/*.c

format:
	@clang-format -i $(FORMAT_FILES)

# fails when a file differs from .clang-format (CI runs it)
format-check:
	@clang-format --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD) build-asan
