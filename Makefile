# Thin wrapper over CMake for people who type make.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all test bench check clean
all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

test: all
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

bench: all
	$(BUILD)/padec bench bench/workloads.txt

check: all
	$(BUILD)/padec check bench/workloads.txt

clean:
	rm -rf $(BUILD)
