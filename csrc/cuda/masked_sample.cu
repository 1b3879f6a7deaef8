// CUDA launchers of edlm_ext::masked_sample and ::sample_proposals
// (kernel: edlm/masked_sample_cuda.cuh).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/filter_cuda.cuh"
#include "edlm/masked_sample_cuda.cuh"

namespace edlm_ext {

namespace {

template <typename T>
int64_t tile_smem_bytes(int64_t V) {
  // Per-tile stats; a row has at most V / kVec + 2 items (head and tail).
  return edlm::cuda::num_tiles(V / edlm::cuda::VecTraits<T>::kVec + 2) * static_cast<int64_t>(sizeof(float4));
}

template <typename F>
void dispatch_logits(at::ScalarType dtype, const F& f) {
  switch (dtype) {
    case at::kFloat: f(float{}); break;
    case at::kBFloat16: f(edlm::cuda::Bf16{}); break;
    case at::kHalf: f(edlm::cuda::F16{}); break;
    default: TORCH_CHECK(false, "sample: unsupported dtype ", dtype);
  }
}

}  // namespace

// k draws per masked row -> (tokens [B, k, L] int64, logp [B, k, L] float32,
// entropy [B, L] float32 or [0, L] when not asked for).
std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                           int64_t mask_id, int64_t k, double temperature,
                                                           const edlm::Filter& filter, bool want_entropy,
                                                           const at::Tensor& rng) {
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t B = logits.size(0), L = logits.size(1), V = logits.size(2);
  auto tokens = at::empty({B, k, L}, x_t.options());                                        // [B, k, L] int64
  auto logp = at::empty({B, k, L}, logits.options().dtype(at::kFloat));                     // [B, k, L] float32
  auto entropy = at::empty({want_entropy ? B : 0, L}, logits.options().dtype(at::kFloat));  // [B, L] or [0, L]
  const int64_t rows = B * L;
  if (rows * k == 0) return {tokens, logp, entropy};
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "sample: B*L too large for one launch");
  auto rng_c = rng.contiguous();  // [2] int64 {seed, offset}
  const bool greedy = is_greedy(temperature);
  const double inv_t = greedy ? 1.0 : 1.0 / temperature;  // greedy: statistics at T = 1
  const float c = static_cast<float>(1.4426950408889634 * inv_t);
  constexpr int kThreads = 256;
  const dim3 grid(static_cast<unsigned>(rows));
  auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor thresh;  // [B*L] float32 per-row filter thresholds, only with filters
  if (filter.active()) {
    thresh = at::empty({rows}, logits.options().dtype(at::kFloat));
    dispatch_logits(logits.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      edlm::cuda::filter_threshold_kernel<T, kThreads><<<grid, kThreads, 0, stream>>>(
          reinterpret_cast<const T*>(logits.data_ptr()), logits.stride(0), logits.stride(1),
          x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), L, V, mask_id, filter, inv_t,
          thresh.data_ptr<float>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  dispatch_logits(logits.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const int64_t smem = tile_smem_bytes<T>(V);
    TORCH_CHECK(smem <= 48 * 1024, "sample: V = ", V, " is too large for the CUDA kernel");
    auto kernel = greedy ? edlm::cuda::sample_kernel<T, kThreads, true> : edlm::cuda::sample_kernel<T, kThreads, false>;
    kernel<<<grid, kThreads, smem, stream>>>(
        reinterpret_cast<const T*>(logits.data_ptr()), logits.stride(0), logits.stride(1),
        x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), L, V, mask_id, k, c, inv_t,
        filter.active() ? thresh.data_ptr<float>() : nullptr, rng_c.data_ptr<int64_t>(),
        tokens.data_ptr<int64_t>(), logp.data_ptr<float>(), want_entropy ? entropy.data_ptr<float>() : nullptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {tokens, logp, entropy};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_sample_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                                  int64_t mask_id, double temperature, int64_t top_k,
                                                                  double top_p, double min_p, bool want_entropy,
                                                                  const at::Tensor& rng) {
  check_masked_sample_args("masked_sample", logits, x_t, mask_id, temperature, rng);
  const edlm::Filter filter = check_filter_args("masked_sample", top_k, top_p, min_p);
  auto [tokens, logp, entropy] = sample_cuda(logits, x_t, mask_id, 1, temperature, filter, want_entropy, rng);
  return {tokens.squeeze(1), logp.squeeze(1), entropy};
}

std::tuple<at::Tensor, at::Tensor> sample_proposals_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                         int64_t mask_id, int64_t k, double temperature, int64_t top_k,
                                                         double top_p, double min_p, const at::Tensor& rng) {
  check_masked_sample_args("sample_proposals", logits, x_t, mask_id, temperature, rng);
  TORCH_CHECK(k >= 1, "sample_proposals: k must be >= 1, got ", k);
  const edlm::Filter filter = check_filter_args("sample_proposals", top_k, top_p, min_p);
  auto [tokens, logp, entropy] = sample_cuda(logits, x_t, mask_id, k, temperature, filter, false, rng);
  return {tokens, logp};
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) {
  m.impl("masked_sample", &masked_sample_cuda);
  m.impl("sample_proposals", &sample_proposals_cuda);
}

}  // namespace edlm_ext
