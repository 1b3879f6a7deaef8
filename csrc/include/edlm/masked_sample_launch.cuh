// Launch logic of masked_sample and sample_proposals (kernels: masked_sample_cuda.cuh,
// filter_cuda.cuh), torch-free, shared by csrc/cuda/masked_sample.cu and the CPU
// simulation (edlm/launch.h says how).
#pragma once
#include <string>

#include "edlm/filter.h"
#include "edlm/filter_cuda.cuh"
#include "edlm/launch.h"
#include "edlm/masked_sample_cuda.cuh"
#include "edlm/temperature.h"

namespace edlm {
namespace cuda {

// One masked_sample / sample_proposals call, in device pointers and element strides.
struct SampleProblem {
  DType dtype;                // of logits: kFloat32, kBFloat16 or kFloat16
  const void* logits;         // [B, L, V], row (b, l) at b*sb + l*sl, stride(2) == 1
  int64_t sb, sl;
  const int64_t* xt;          // [B, L], (b, l) at b*xsb + l*xsl
  int64_t xsb, xsl;
  int64_t B, L, V, mask_id, k;
  double temperature;         // >= 0 (edlm/temperature.h)
  Filter filter;
  const int64_t* rng;         // [2] {seed, offset}
  int64_t* tokens;            // [B, k, L] contiguous
  float* logp;                // [B, k, L] contiguous
  float* entropy;             // [B*L], or nullptr: not wanted
};

constexpr int kSampleThreads = 256;

// dtype -> f(tag), tag of the kernels' element type (float, Bf16, F16).
template <typename F>
void dispatch_logits(DType dtype, const F& f) {
  switch (dtype) {
    case DType::kFloat32: f(float{}); break;
    case DType::kBFloat16: f(Bf16{}); break;
    case DType::kFloat16: f(F16{}); break;
    default: break;  // the launch function rejects it first
  }
}

// Dynamic shared memory of sample_kernel: one float4 of tile statistics per tile; a
// row has at most V / kVec + 2 items (head and tail).
template <typename T>
size_t sample_tile_smem_bytes(int64_t V) {
  return static_cast<size_t>(num_tiles(V / VecTraits<T>::kVec + 2)) * sizeof(float4);
}

// Dynamic shared memory of filtered_sample_kernel: the candidates, or (the general path)
// the tile statistics, whichever is larger.
template <typename T>
size_t filtered_smem_bytes(int64_t V) {
  const size_t cand = static_cast<size_t>(candidate_capacity(V)) * sizeof(uint64_t);
  const size_t tiles = sample_tile_smem_bytes<T>(V);
  return cand > tiles ? cand : tiles;
}

// One launch: filtered_sample_kernel when a filter is active, else sample_kernel; one block
// per row, no host synchronization.
template <typename Launcher>
void launch_sample(const SampleProblem& p, Launcher& launch) {
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kBFloat16 && p.dtype != DType::kFloat16)
    launch.fail("sample: logits must be float32, bfloat16 or float16");
  const int64_t rows = p.B * p.L;
  if (rows == 0 || p.k == 0) return;
  if (rows > kMaxGridBlocks) launch.fail("sample: B*L = " + std::to_string(rows) + " is too large for one launch");
  const Tempered tp = tempered(p.temperature);
  const dim3 grid(static_cast<unsigned>(rows));
  auto check_smem = [&](size_t static_smem, size_t smem) {
    if (static_smem + smem > kSharedMemoryLimit)
      launch.fail("sample: V = " + std::to_string(p.V) + " is too large for the CUDA kernel (" +
                  std::to_string(static_smem + smem) + " bytes of shared memory per block, the limit is " +
                  std::to_string(kSharedMemoryLimit) + ")");
  };
  dispatch_logits(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* logits = static_cast<const T*>(p.logits);
    if (p.filter.active()) {
      auto kernel = tp.greedy ? filtered_sample_kernel<T, kSampleThreads, true>
                              : filtered_sample_kernel<T, kSampleThreads, false>;
      const size_t smem = filtered_smem_bytes<T>(p.V);
      check_smem(launch.static_smem(kernel, sizeof(FilterShared<kSampleThreads>)), smem);
      launch(kernel, grid, dim3(kSampleThreads), smem, logits, p.sb, p.sl, p.xt, p.xsb, p.xsl, p.L, p.V, p.mask_id,
             p.k, p.filter, tp.c, tp.inv_t, p.rng, p.tokens, p.logp, p.entropy);
    } else {
      auto kernel = tp.greedy ? sample_kernel<T, kSampleThreads, true> : sample_kernel<T, kSampleThreads, false>;
      const size_t smem = sample_tile_smem_bytes<T>(p.V);
      check_smem(launch.static_smem(kernel, sizeof(SampleShared<kSampleThreads>)), smem);
      launch(kernel, grid, dim3(kSampleThreads), smem, logits, p.sb, p.sl, p.xt, p.xsb, p.xsl, p.L, p.V, p.mask_id,
             p.k, tp.c, tp.inv_t, p.rng, p.tokens, p.logp, p.entropy);
    }
  });
}

}  // namespace cuda
}  // namespace edlm
