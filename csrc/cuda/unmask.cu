// CUDA launchers of edlm_ext::unmask and edlm_ext::unmask_confident: checks and outputs
// here, the launches in the torch-free edlm/unmask_launch.cuh (also run by the CPU
// simulation).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/unmask_confident_launch.cuh"
#include "edlm/unmask_launch.cuh"
#include "launcher.cuh"

namespace edlm_ext {

at::Tensor unmask_cuda(const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id, const at::Tensor& p,
                       const at::Tensor& rng) {
  check_unmask_args(x_t, x0, mask_id, p, rng);
  const c10::cuda::CUDAGuard guard(x_t.device());
  const int64_t B = x_t.size(0), L = x_t.size(1);
  auto out = at::empty({B, L}, x_t.options());  // [B, L] int64
  auto rng_c = contiguous_rng("unmask", rng, x_t.device());  // [2] {seed, offset}
  const edlm::cuda::UnmaskProblem problem{x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1),
                                          x0.data_ptr<int64_t>(), x0.stride(0), x0.stride(1),
                                          to_dtype(p.scalar_type()), p.data_ptr(), p.stride(0), B, L, mask_id,
                                          rng_c.data_ptr<int64_t>(), out.data_ptr<int64_t>()};
  CudaLauncher launch;
  edlm::cuda::launch_unmask(problem, launch);
  return out;
}

at::Tensor unmask_confident_cuda(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& confidence,
                                 int64_t mask_id, const std::optional<at::Tensor>& n,
                                 std::optional<double> threshold) {
  check_unmask_confident_args(x_t, x0, confidence, mask_id, n, threshold);
  const c10::cuda::CUDAGuard guard(x_t.device());
  const int64_t B = x_t.size(0), L = x_t.size(1);
  auto out = at::empty({B, L}, x_t.options());  // [B, L] int64
  const bool use_threshold = threshold.has_value();
  const edlm::cuda::ConfidentProblem problem{
      x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), x0.data_ptr<int64_t>(), x0.stride(0), x0.stride(1),
      to_dtype(confidence.scalar_type()), confidence.data_ptr(), confidence.stride(0), confidence.stride(1),
      use_threshold ? nullptr : n->data_ptr<int64_t>(), use_threshold ? 0 : n->stride(0), use_threshold,
      use_threshold ? *threshold : 0.0, B, L, mask_id, out.data_ptr<int64_t>()};
  CudaLauncher launch;
  edlm::cuda::launch_unmask_confident(problem, launch);
  return out;
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) {
  m.impl("unmask", &unmask_cuda);
  m.impl("unmask_confident", &unmask_confident_cuda);
}

}  // namespace edlm_ext
