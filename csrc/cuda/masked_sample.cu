// CUDA launcher of edlm_ext::masked_sample (kernel: edlm/masked_sample_cuda.cuh).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/masked_sample_cuda.cuh"

namespace edlm_ext {

std::tuple<at::Tensor, at::Tensor> masked_sample_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                      int64_t mask_id, double temperature, const at::Tensor& rng) {
  check_masked_sample_args(logits, x_t, mask_id, temperature, rng);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t B = logits.size(0), L = logits.size(1), V = logits.size(2);
  auto x0 = at::empty({B, L}, x_t.options());                            // [B, L] int64
  auto logp = at::empty({B, L}, logits.options().dtype(at::kFloat));     // [B, L] float32
  const int64_t rows = B * L;
  if (rows == 0) return {x0, logp};
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "masked_sample: B*L too large for one launch");
  auto rng_c = rng.contiguous();
  const bool greedy = is_greedy(temperature);
  const float c = greedy ? 0.0f : static_cast<float>(1.4426950408889634 / temperature);
  const double inv_t = greedy ? 0.0 : 1.0 / temperature;
  constexpr int kThreads = 256;
  const dim3 grid(static_cast<unsigned>(rows));
  // Per-tile (max, sum) pairs; the row's item count is at most V / kVec + 2
  // (head and tail), whatever its alignment.
  auto smem_for = [&](int vec) { return edlm::cuda::num_tiles(V / vec + 2) * static_cast<int64_t>(sizeof(float2)); };
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    const int64_t smem = smem_for(edlm::cuda::VecTraits<T>::kVec);
    TORCH_CHECK(smem <= 48 * 1024, "masked_sample: V = ", V, " is too large for the CUDA kernel");
    edlm::cuda::masked_sample_kernel<T, kThreads><<<grid, kThreads, smem, stream>>>(
        reinterpret_cast<const T*>(logits.data_ptr()), logits.stride(0), logits.stride(1),
        x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), L, V, mask_id, c, inv_t, greedy,
        rng_c.data_ptr<int64_t>(), x0.data_ptr<int64_t>(), logp.data_ptr<float>());
  };
  switch (logits.scalar_type()) {
    case at::kFloat: launch(float{}); break;
    case at::kBFloat16: launch(edlm::cuda::Bf16{}); break;
    case at::kHalf: launch(edlm::cuda::F16{}); break;
    default: TORCH_CHECK(false, "masked_sample: unsupported dtype");
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {x0, logp};
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) { m.impl("masked_sample", &masked_sample_cuda); }

}  // namespace edlm_ext
