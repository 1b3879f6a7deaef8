// CUDA backend of edlm_ext::unmask_confident: the launch is the torch-free
// edlm/unmask_launch.cuh (also run by the CPU simulation). Checks and outputs: the
// op's entry (csrc/ops.h).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "edlm/unmask_launch.cuh"
#include "launcher.cuh"

namespace edlm_ext {

void Cuda::unmask_confident(const ConfidentCall& c) {
  const c10::cuda::CUDAGuard guard(c.x_t.device());
  const bool use_threshold = c.threshold.has_value();
  const at::Tensor& conf = c.confidence;
  const edlm::cuda::ConfidentProblem problem{
      c.x_t.data_ptr<int64_t>(), c.x_t.stride(0), c.x_t.stride(1), c.x0.data_ptr<int64_t>(), c.x0.stride(0),
      c.x0.stride(1), to_dtype(conf.scalar_type()), conf.data_ptr(), conf.stride(0), conf.stride(1),
      use_threshold ? nullptr : c.n->data_ptr<int64_t>(), use_threshold ? 0 : c.n->stride(0), use_threshold,
      use_threshold ? *c.threshold : 0.0, c.x_t.size(0), c.x_t.size(1), c.mask_id, c.out.data_ptr<int64_t>()};
  CudaLauncher launch;
  edlm::cuda::launch_unmask_confident(problem, launch);
}

}  // namespace edlm_ext
