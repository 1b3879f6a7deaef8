// CUDA launchers of edlm_ext::unmask and edlm_ext::unmask_confident
// (kernels: edlm/unmask_cuda.cuh).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "../checks.h"
#include "edlm/unmask_cuda.cuh"

namespace edlm_ext {

at::Tensor unmask_cuda(const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id, const at::Tensor& p,
                       const at::Tensor& rng) {
  check_unmask_args(x_t, x0, mask_id, p, rng);
  const c10::cuda::CUDAGuard guard(x_t.device());
  const int64_t B = x_t.size(0), L = x_t.size(1);
  auto out = at::empty({B, L}, x_t.options());  // [B, L] int64
  const int64_t total = B * L;
  if (total == 0) return out;
  auto rng_c = rng.contiguous();
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto launch = [&](auto tag) {
    using P = decltype(tag);
    edlm::cuda::unmask_kernel<P><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), x0.data_ptr<int64_t>(), x0.stride(0), x0.stride(1),
        p.data_ptr<P>(), p.stride(0), B, L, mask_id, rng_c.data_ptr<int64_t>(), out.data_ptr<int64_t>());
  };
  if (p.scalar_type() == at::kDouble) {
    launch(double{});
  } else {
    launch(float{});
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor unmask_confident_cuda(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& confidence,
                                 int64_t mask_id, const std::optional<at::Tensor>& n,
                                 std::optional<double> threshold) {
  check_unmask_confident_args(x_t, x0, confidence, mask_id, n, threshold);
  const c10::cuda::CUDAGuard guard(x_t.device());
  const int64_t B = x_t.size(0), L = x_t.size(1);
  auto out = at::empty({B, L}, x_t.options());  // [B, L] int64
  if (B * L == 0) return out;
  TORCH_CHECK(L <= std::numeric_limits<int32_t>::max(), "unmask_confident: L too large for the CUDA kernel");
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "unmask_confident: B too large for one launch");
  const bool use_threshold = threshold.has_value();
  const int64_t* np = use_threshold ? nullptr : n->data_ptr<int64_t>();
  const int64_t ns = use_threshold ? 0 : n->stride(0);
  const double thr = use_threshold ? *threshold : 0.0;
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    edlm::cuda::unmask_confident_kernel<T><<<static_cast<unsigned>(B), edlm::cuda::kSelectThreads, 0, stream>>>(
        x_t.data_ptr<int64_t>(), x_t.stride(0), x_t.stride(1), x0.data_ptr<int64_t>(), x0.stride(0), x0.stride(1),
        reinterpret_cast<const T*>(confidence.data_ptr()), confidence.stride(0), confidence.stride(1), np, ns, thr,
        use_threshold, L, mask_id, out.data_ptr<int64_t>());
  };
  switch (confidence.scalar_type()) {
    case at::kFloat: launch(float{}); break;
    case at::kDouble: launch(double{}); break;
    case at::kBFloat16: launch(__nv_bfloat16{}); break;
    case at::kHalf: launch(__half{}); break;
    default: TORCH_CHECK(false, "unmask_confident: unsupported confidence dtype");
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

TORCH_LIBRARY_IMPL(edlm_ext, CUDA, m) {
  m.impl("unmask", &unmask_cuda);
  m.impl("unmask_confident", &unmask_confident_cuda);
}

}  // namespace edlm_ext
