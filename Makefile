# Thin front over CMake + Ninja. `make` builds build/xent, `make test` installs what is missing,
# builds and runs every test, `make run` runs the main job.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps configure build python test run bench fuzz test-asan test-tsan clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The Python package in the build tree: PYTHONPATH=$(BUILD)/python /usr/bin/python3 -c 'import xent'
python: configure
	cmake --build $(BUILD) -j $(JOBS) --target xent_python

test: deps
	$(MAKE) build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# DATA=dir picks the dataset, TRAIN_FLAGS adds `xent train` options (see scripts/run-main.sh).
run: build
	DATA="$(DATA)" TRAIN_FLAGS="$(TRAIN_FLAGS)" bash scripts/run-main.sh $(BUILD)

# Throughput against PyTorch (not a test; prints a table).
bench: build
	bash scripts/bench.sh $(BUILD)

# Hardening: fuzz every parser for FUZZ_SECONDS each; the suite under sanitizers.
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)
test-asan: deps
	bash scripts/test-sanitized.sh address,undefined
test-tsan: deps
	bash scripts/test-sanitized.sh thread

clean:
	rm -rf $(BUILD)
