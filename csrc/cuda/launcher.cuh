// The CUDA Launcher of the torch-free launch logic (edlm/launch.h): launches on the
// current stream and turns launch-logic rejections into torch errors (ValueError).
// Shared by the CUDA backends of the ops, csrc/cuda/<op>.cu.
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "edlm/common.h"
#include "edlm/launch.h"

namespace edlm_ext {

struct CudaLauncher {
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  template <typename... P, typename... A>
  void operator()(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) const {
    kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // The compiled kernel's static shared memory (what the hardware reserves).
  template <typename K>
  size_t static_smem(K kernel, size_t /*declared*/) const {
    cudaFuncAttributes attr;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(kernel)));
    return attr.sharedSizeBytes;
  }
  [[noreturn]] void fail(const std::string& msg) const { TORCH_CHECK_VALUE(false, msg); }
};

// at::ScalarType -> the launch logic's dtype (the launch functions reject the others).
inline edlm::DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return edlm::DType::kFloat32;
    case at::kDouble: return edlm::DType::kFloat64;
    case at::kBFloat16: return edlm::DType::kBFloat16;
    case at::kHalf: return edlm::DType::kFloat16;
    default: TORCH_CHECK_TYPE(false, "unsupported dtype ", t);
  }
}

}  // namespace edlm_ext
