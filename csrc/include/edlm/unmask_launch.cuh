// Launch logic of unmask (kernel: unmask_cuda.cuh), torch-free, shared by csrc/cuda/unmask.cu
// and the CPU simulation (edlm/launch.h says how).
#pragma once
#include <algorithm>
#include <string>

#include "edlm/launch.h"
#include "edlm/unmask_cuda.cuh"

namespace edlm {
namespace cuda {

// One unmask call.
struct UnmaskProblem {
  const int64_t* xt;       // [B, L], (b, l) at b*xsb + l*xsl
  int64_t xsb, xsl;
  const int64_t* x0;       // [B, L], (b, l) at b*zsb + l*zsl
  int64_t zsb, zsl;
  DType p_dtype;           // kFloat32 or kFloat64
  const void* p;           // [B], p[b] at b*ps
  int64_t ps;
  int64_t B, L, mask_id;
  const int64_t* rng;      // [2] {seed, offset}
  int64_t* out;            // [B, L] contiguous
};

constexpr int kUnmaskThreads = 256;
constexpr int64_t kUnmaskMaxBlocks = int64_t{1} << 20;  // a grid-stride loop covers the rest

template <typename Launcher>
void launch_unmask(const UnmaskProblem& p, Launcher& launch) {
  if (p.p_dtype != DType::kFloat32 && p.p_dtype != DType::kFloat64) launch.fail("unmask: p must be float32 or float64");
  const int64_t total = p.B * p.L;
  if (total == 0) return;
  const int64_t blocks = std::min<int64_t>((total + kUnmaskThreads - 1) / kUnmaskThreads, kUnmaskMaxBlocks);
  auto go = [&](auto tag) {
    using P = decltype(tag);
    launch(unmask_kernel<P>, dim3(static_cast<unsigned>(blocks)), dim3(kUnmaskThreads), 0, p.xt, p.xsb, p.xsl, p.x0,
           p.zsb, p.zsl, static_cast<const P*>(p.p), p.ps, p.B, p.L, p.mask_id, p.rng, p.out);
  };
  if (p.p_dtype == DType::kFloat64) go(double{});
  else go(float{});
}

}  // namespace cuda
}  // namespace edlm
