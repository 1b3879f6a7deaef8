// CUDA launchers of edlm_ext::masked_sample and ::sample_proposals: argument checks and
// output tensors here; which kernels run, with which grid and shared memory, is the
// torch-free launch logic of edlm/masked_sample_launch.cuh (also run by the CPU
// simulation in the test suite).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/masked_sample_launch.cuh"
#include "launcher.cuh"

namespace edlm_ext {

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
  auto rng_c = contiguous_rng("sample", rng, logits.device());                              // [2] {seed, offset}
  const edlm::cuda::SampleProblem problem{
      to_dtype(logits.scalar_type()), logits.data_ptr(), logits.stride(0), logits.stride(1),
      x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), B, L, V, mask_id, k, temperature, filter,
      rng_c.data_ptr<int64_t>(), tokens.data_ptr<int64_t>(), logp.data_ptr<float>(),
      want_entropy ? entropy.data_ptr<float>() : nullptr};
  CudaLauncher launch;
  edlm::cuda::launch_sample(problem, launch);
  return {tokens, logp, entropy};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_sample_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                                  int64_t mask_id, double temperature, int64_t top_k,
                                                                  double top_p, double min_p, bool want_entropy,
                                                                  const at::Tensor& rng) {
  check_masked_sample_args("masked_sample", logits, x_t, mask_id, temperature, rng);
  const edlm::Filter filter = check_filter_args("masked_sample", top_k, top_p, min_p, logits.size(2));
  auto [tokens, logp, entropy] = sample_cuda(logits, x_t, mask_id, 1, temperature, filter, want_entropy, rng);
  return {tokens.squeeze(1), logp.squeeze(1), entropy};
}

std::tuple<at::Tensor, at::Tensor> sample_proposals_cuda(const at::Tensor& logits, const at::Tensor& x_t,
                                                         int64_t mask_id, int64_t k, double temperature, int64_t top_k,
                                                         double top_p, double min_p, const at::Tensor& rng) {
  check_masked_sample_args("sample_proposals", logits, x_t, mask_id, temperature, rng);
  TORCH_CHECK(k >= 1, "sample_proposals: k must be >= 1, got ", k);
  const edlm::Filter filter = check_filter_args("sample_proposals", top_k, top_p, min_p, logits.size(2));
  auto [tokens, logp, entropy] = sample_cuda(logits, x_t, mask_id, k, temperature, filter, false, rng);
  return {tokens, logp};
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) {
  m.impl("masked_sample", &masked_sample_cuda);
  m.impl("sample_proposals", &sample_proposals_cuda);
}

}  // namespace edlm_ext
