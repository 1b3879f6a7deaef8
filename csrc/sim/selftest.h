// The simulation's self-test (selftest.cpp): planted-bug kernels and correct controls.
#pragma once
#include <string>

#include "shim/cuda_sim.h"

namespace edlm_sim {
// Runs one self-test: 0 when its kernel ran and gave the right result, 4 when the result
// was wrong; a bug the runtime or a sanitizer catches ends the process before that.
int run_selftest(const std::string& name);
// Prints "name detectors" per line (detectors: sim, asan, tsan, order, none).
void list_selftests();
}  // namespace edlm_sim
