// Launch logic of unmask_confident (kernel: unmask_confident_cuda.cuh), torch-free, shared
// by csrc/cuda/unmask.cu and the CPU simulation (edlm/launch.h says how).
#pragma once
#include <limits>
#include <string>

#include "edlm/launch.h"
#include "edlm/unmask_confident_cuda.cuh"

namespace edlm {
namespace cuda {

// One unmask_confident call: n (count per row) or a threshold.
struct ConfidentProblem {
  const int64_t* xt;       // [B, L], (b, l) at b*xsb + l*xsl
  int64_t xsb, xsl;
  const int64_t* x0;       // [B, L], (b, l) at b*zsb + l*zsl
  int64_t zsb, zsl;
  DType conf_dtype;        // kFloat32, kFloat64, kBFloat16 or kFloat16
  const void* conf;        // [B, L], (b, l) at b*csb + l*csl
  int64_t csb, csl;
  const int64_t* n;        // [B], n[b] at b*ns; nullptr with a threshold
  int64_t ns;
  bool use_threshold;
  double threshold;
  int64_t B, L, mask_id;
  int64_t* out;            // [B, L] contiguous
};

template <typename Launcher>
void launch_unmask_confident(const ConfidentProblem& p, Launcher& launch) {
  if (p.B * p.L == 0) return;
  if (p.L > std::numeric_limits<int32_t>::max())
    launch.fail("unmask_confident: L = " + std::to_string(p.L) + " is too large for the CUDA kernel");
  if (p.B > kMaxGridBlocks) launch.fail("unmask_confident: B = " + std::to_string(p.B) + " is too large for one launch");
  auto go = [&](auto tag) {
    using T = decltype(tag);
    launch(unmask_confident_kernel<T>, dim3(static_cast<unsigned>(p.B)), dim3(kSelectThreads), 0, p.xt, p.xsb, p.xsl,
           p.x0, p.zsb, p.zsl, static_cast<const T*>(p.conf), p.csb, p.csl, p.n, p.ns, p.threshold, p.use_threshold,
           p.L, p.mask_id, p.out);
  };
  switch (p.conf_dtype) {
    case DType::kFloat32: go(float{}); break;
    case DType::kFloat64: go(double{}); break;
    case DType::kBFloat16: go(__nv_bfloat16{}); break;
    case DType::kFloat16: go(__half{}); break;
  }
}

}  // namespace cuda
}  // namespace edlm
