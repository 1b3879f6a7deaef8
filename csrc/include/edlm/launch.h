// The launch logic of the CUDA ops, torch-free: grid and block sizes, shared-memory
// budgets, dtype dispatch, and which kernels run in which order. Written once, in
// *_launch.cuh, as function templates over a Launcher, and run by two launchers:
//   csrc/cuda/launcher.cuh  CudaLauncher: kernel<<<grid, block, smem, stream>>>, torch errors
//   csrc/sim/launcher.h     SimLauncher: the CPU simulation of the CUDA execution model
// so the simulation exercises exactly the decisions the real launchers make.
//
// A Launcher provides
//   launch(kernel, dim3 grid, dim3 block, size_t dynamic_smem, args...)  one kernel launch
//   launch.static_smem(kernel, declared)  the kernel's static shared memory in bytes (the
//       CUDA launcher asks the runtime; the simulation returns `declared`, the size of the
//       kernel's EDLM_SHARED variables, and checks it while the kernel runs)
//   launch.fail(message)                  [[noreturn]]: reject the call (ValueError in Python)
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>

#include "edlm/common.h"

namespace edlm {
namespace cuda {

// Shared memory (static + dynamic) a block may use without opting in through
// cudaFuncSetAttribute; the launchers stay inside it on every GPU since sm_70.
constexpr size_t kSharedMemoryLimit = 48 * 1024;

// Grids here are one-dimensional with at most 2^31 - 1 blocks.
constexpr int64_t kMaxGridBlocks = std::numeric_limits<int32_t>::max();

}  // namespace cuda
}  // namespace edlm
