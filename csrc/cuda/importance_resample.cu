// CUDA backend of edlm_ext::importance_resample: the launch itself is the torch-free
// edlm/resample_launch.cuh (also run by the CPU simulation). Checks and outputs: the
// op's entry (csrc/ops.h).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "edlm/resample_launch.cuh"
#include "launcher.cuh"

namespace edlm_ext {

void Cuda::importance_resample(const ResampleCall& c) {
  const c10::cuda::CUDAGuard guard(c.log_w.device());
  const at::Tensor& props = c.proposals;
  const edlm::cuda::ResampleProblem problem{
      to_dtype(c.log_w.scalar_type()), c.log_w.data_ptr(), props.data_ptr<int64_t>(), props.stride(0),
      props.stride(1), props.stride(2), props.size(0), props.size(1), props.size(2), c.rng.data_ptr<int64_t>(),
      c.weights.data_ptr(), c.log_z.data_ptr(), c.ess.data_ptr(), c.index.data_ptr<int64_t>(),
      c.chosen.data_ptr<int64_t>()};
  CudaLauncher launch;
  edlm::cuda::launch_importance_resample(problem, launch);
}

}  // namespace edlm_ext
