// CUDA launcher of edlm_ext::importance_resample: checks and outputs here, the launch
// itself in the torch-free edlm/importance_resample_launch.cuh (also run by the CPU simulation).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/importance_resample_launch.cuh"
#include "launcher.cuh"

namespace edlm_ext {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> importance_resample_cuda(
    const at::Tensor& log_w, const at::Tensor& proposals, const at::Tensor& rng) {
  check_importance_resample_args(log_w, proposals, rng);
  const c10::cuda::CUDAGuard guard(log_w.device());
  const int64_t B = proposals.size(0), k = proposals.size(1), L = proposals.size(2);
  auto lw = log_w.contiguous();                              // [B, k]
  auto weights = at::empty({B, k}, lw.options());            // [B, k]
  auto log_z = at::empty({B}, lw.options());                 // [B]
  auto ess = at::empty({B}, lw.options());                   // [B]
  auto index = at::empty({B}, proposals.options());          // [B] int64
  auto chosen = at::empty({B, L}, proposals.options());      // [B, L] int64
  auto rng_c = contiguous_rng("importance_resample", rng, log_w.device());  // [2] {seed, offset}
  const edlm::cuda::ResampleProblem problem{
      to_dtype(lw.scalar_type()), lw.data_ptr(), proposals.data_ptr<int64_t>(), proposals.stride(0),
      proposals.stride(1), proposals.stride(2), B, k, L, rng_c.data_ptr<int64_t>(), weights.data_ptr(),
      log_z.data_ptr(), ess.data_ptr(), index.data_ptr<int64_t>(), chosen.data_ptr<int64_t>()};
  CudaLauncher launch;
  edlm::cuda::launch_importance_resample(problem, launch);
  return {weights, log_z, ess, index, chosen};
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) { m.impl("importance_resample", &importance_resample_cuda); }

}  // namespace edlm_ext
