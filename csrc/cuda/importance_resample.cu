// CUDA launcher of edlm_ext::importance_resample (kernel: edlm/resample_cuda.cuh).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/resample_cuda.cuh"

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
  if (B == 0) return {weights, log_z, ess, index, chosen};
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "importance_resample: B too large for one launch");
  auto rng_c = rng.contiguous();  // [2] {seed, offset}
  constexpr int kThreads = 128;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(lw.scalar_type(), "importance_resample_cuda", [&] {
    edlm::cuda::importance_resample_kernel<scalar_t, kThreads><<<static_cast<unsigned>(B), kThreads, 0, stream>>>(
        lw.data_ptr<scalar_t>(), k, proposals.data_ptr<int64_t>(), proposals.stride(0), proposals.stride(1),
        proposals.stride(2), L, rng_c.data_ptr<int64_t>(), weights.data_ptr<scalar_t>(), log_z.data_ptr<scalar_t>(),
        ess.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), chosen.data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {weights, log_z, ess, index, chosen};
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) { m.impl("importance_resample", &importance_resample_cuda); }

}  // namespace edlm_ext
