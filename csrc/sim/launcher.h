// The simulation's Launcher of the torch-free launch logic (edlm/launch.h): every launch
// runs on the fiber runtime; a rejected call throws LaunchRejected (the CUDA launcher
// raises a ValueError there), which the driver reports for that case.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>

#include "runtime.h"

namespace edlm_sim {

struct LaunchRejected : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SimLauncher {
  int launches = 0;
  template <typename... P, typename... A>
  void operator()(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
    ++launches;
    launch(kernel, grid, block, smem, std::forward<A>(args)...);
  }
  // The declared size of the kernel's EDLM_SHARED variables; run_grid checks the real
  // use against the per-block limit while the kernel runs.
  template <typename K>
  size_t static_smem(K, size_t declared) const {
    return declared;
  }
  [[noreturn]] void fail(const std::string& msg) const { throw LaunchRejected(msg); }
};

}  // namespace edlm_sim
