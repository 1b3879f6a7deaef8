// Launch logic of importance_resample (kernel: importance_resample_cuda.cuh), torch-free, shared
// by csrc/cuda/importance_resample.cu and the CPU simulation (edlm/launch.h says how).
#pragma once
#include <string>

#include "edlm/launch.h"
#include "edlm/importance_resample_cuda.cuh"

namespace edlm {
namespace cuda {

// One importance_resample call. W = the dtype of log_w and of the statistics.
struct ResampleProblem {
  DType dtype;             // kFloat32 or kFloat64
  const void* log_w;       // [B, k] contiguous
  const int64_t* props;    // [B, k, L], (b, j, l) at b*ps0 + j*ps1 + l*ps2
  int64_t ps0, ps1, ps2;
  int64_t B, k, L;
  const int64_t* rng;      // [2] {seed, offset}
  void* weights;           // [B, k] W
  void* log_z;             // [B] W
  void* ess;               // [B] W
  int64_t* index;          // [B]
  int64_t* chosen;         // [B, L] contiguous
};

constexpr int kResampleThreads = 128;

template <typename Launcher>
void launch_importance_resample(const ResampleProblem& p, Launcher& launch) {
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat64)
    launch.fail("importance_resample: log_w must be float32 or float64");
  if (p.B == 0) return;
  if (p.B > kMaxGridBlocks) launch.fail("importance_resample: B = " + std::to_string(p.B) + " is too large for one launch");
  auto go = [&](auto tag) {
    using W = decltype(tag);
    launch(importance_resample_kernel<W, kResampleThreads>, dim3(static_cast<unsigned>(p.B)), dim3(kResampleThreads),
           0, static_cast<const W*>(p.log_w), p.k, p.props, p.ps0, p.ps1, p.ps2, p.L, p.rng,
           static_cast<W*>(p.weights), static_cast<W*>(p.log_z), static_cast<W*>(p.ess), p.index, p.chosen);
  };
  if (p.dtype == DType::kFloat64) go(double{});
  else go(float{});
}

}  // namespace cuda
}  // namespace edlm
