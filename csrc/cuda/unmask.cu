// CUDA backend of edlm_ext::unmask: the launch is the torch-free edlm/unmask_launch.cuh
// (also run by the CPU simulation). Checks and outputs: the op's entry (csrc/ops.h).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "edlm/unmask_launch.cuh"
#include "launcher.cuh"

namespace edlm_ext {

void Cuda::unmask(const UnmaskCall& c) {
  const c10::cuda::CUDAGuard guard(c.x_t.device());
  const edlm::cuda::UnmaskProblem problem{c.x_t.data_ptr<int64_t>(), c.x_t.stride(0), c.x_t.stride(1),
                                          c.x0.data_ptr<int64_t>(), c.x0.stride(0), c.x0.stride(1),
                                          to_dtype(c.p.scalar_type()), c.p.data_ptr(), c.p.stride(0),
                                          c.x_t.size(0), c.x_t.size(1), c.mask_id, c.rng.data_ptr<int64_t>(),
                                          c.out.data_ptr<int64_t>()};
  CudaLauncher launch;
  edlm::cuda::launch_unmask(problem, launch);
}

}  // namespace edlm_ext
