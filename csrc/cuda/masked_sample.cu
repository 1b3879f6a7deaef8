// CUDA launchers of edlm_ext::masked_sample and ::sample_proposals
// (kernel: edlm/masked_sample_cuda.cuh).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/masked_sample_cuda.cuh"

namespace edlm_ext {

// k draws per masked row -> (tokens [B, k, L] int64, logp [B, k, L] float32).
std::tuple<at::Tensor, at::Tensor> sample_cuda(const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id,
                                               int64_t k, double temperature, const at::Tensor& rng) {
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t B = logits.size(0), L = logits.size(1), V = logits.size(2);
  auto tokens = at::empty({B, k, L}, x_t.options());                      // [B, k, L] int64
  auto logp = at::empty({B, k, L}, logits.options().dtype(at::kFloat));   // [B, k, L] float32
  const int64_t rows = B * L;
  if (rows * k == 0) return {tokens, logp};
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "sample: B*L too large for one launch");
  auto rng_c = rng.contiguous();  // [2] int64 {seed, offset}
  const bool greedy = is_greedy(temperature);
  const float c = greedy ? 0.0f : static_cast<float>(1.4426950408889634 / temperature);
  const double inv_t = greedy ? 0.0 : 1.0 / temperature;
  constexpr int kThreads = 256;
  const dim3 grid(static_cast<unsigned>(rows));
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    // Per-tile (max, sum) pairs; a row has at most V / kVec + 2 items (head and tail).
    const int64_t smem = edlm::cuda::num_tiles(V / edlm::cuda::VecTraits<T>::kVec + 2) *
                         static_cast<int64_t>(sizeof(float2));
    TORCH_CHECK(smem <= 48 * 1024, "sample: V = ", V, " is too large for the CUDA kernel");
    edlm::cuda::sample_kernel<T, kThreads><<<grid, kThreads, smem, stream>>>(
        reinterpret_cast<const T*>(logits.data_ptr()), logits.stride(0), logits.stride(1),
        x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), L, V, mask_id, k, c, inv_t, greedy,
        rng_c.data_ptr<int64_t>(), tokens.data_ptr<int64_t>(), logp.data_ptr<float>());
  };
  switch (logits.scalar_type()) {
    case at::kFloat: launch(float{}); break;
    case at::kBFloat16: launch(edlm::cuda::Bf16{}); break;
    case at::kHalf: launch(edlm::cuda::F16{}); break;
    default: TORCH_CHECK(false, "sample: unsupported dtype");
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {tokens, logp};
}

std::tuple<at::Tensor, at::Tensor> masked_sample_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                      int64_t mask_id, double temperature, const at::Tensor& rng) {
  check_masked_sample_args("masked_sample", logits, x_t, mask_id, temperature, rng);
  auto [tokens, logp] = sample_cuda(logits, x_t, mask_id, 1, temperature, rng);
  return {tokens.squeeze(1), logp.squeeze(1)};
}

std::tuple<at::Tensor, at::Tensor> sample_proposals_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                         int64_t mask_id, int64_t k, double temperature,
                                                         const at::Tensor& rng) {
  check_masked_sample_args("sample_proposals", logits, x_t, mask_id, temperature, rng);
  TORCH_CHECK(k >= 1, "sample_proposals: k must be >= 1, got ", k);
  return sample_cuda(logits, x_t, mask_id, k, temperature, rng);
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) {
  m.impl("masked_sample", &masked_sample_cuda);
  m.impl("sample_proposals", &sample_proposals_cuda);
}

}  // namespace edlm_ext
