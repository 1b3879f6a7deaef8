// CUDA backend of edlm_ext::masked_sample, and the draw pass it shares with
// sample_proposals: the filter pre-pass scratch here; which kernels run, with which
// grid and shared memory, is the torch-free launch logic of edlm/masked_sample_launch.cuh
// (also run by the CPU simulation in the test suite). Checks and outputs: csrc/ops.h.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "edlm/masked_sample_launch.cuh"
#include "launcher.cuh"

namespace edlm_ext {

void cuda::sample_rows(const SampleCall& c) {
  const at::Tensor& logits = c.logits;
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t B = logits.size(0), L = logits.size(1), V = logits.size(2);
  const bool filtered = c.filter.active();
  auto thresh = at::empty({filtered ? B * L : 0}, logits.options().dtype(at::kFloat));  // [B*L] scratch
  const edlm::cuda::SampleProblem problem{
      to_dtype(logits.scalar_type()), logits.data_ptr(), logits.stride(0), logits.stride(1),
      c.x_t.data_ptr<int64_t>(), c.x_t.stride(0), c.x_t.stride(1), B, L, V, c.mask_id, c.k, c.temperature, c.filter,
      c.rng.data_ptr<int64_t>(), c.tokens.data_ptr<int64_t>(), c.logp.data_ptr<float>(),
      c.want_entropy ? c.entropy.data_ptr<float>() : nullptr, filtered ? thresh.data_ptr<float>() : nullptr};
  CudaLauncher launch;
  edlm::cuda::launch_sample(problem, launch);
}

void Cuda::masked_sample(const SampleCall& c) { cuda::sample_rows(c); }

}  // namespace edlm_ext
