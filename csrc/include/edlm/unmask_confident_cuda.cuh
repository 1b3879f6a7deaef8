// CUDA kernel of edlm_ext.unmask_confident: one block of kSelectThreads per row, the rules
// of edlm/unmask_confident.h, so the CPU and CUDA ops give the same result. Torch-free (raw
// pointers and sizes); launched by edlm/unmask_confident_launch.cuh.
//   pass 1  copy x_t to the output; count the masked positions and those above the
//           threshold; k = how many to unmask (unmask_count).
//   pass 2  the pivot: block_radix_select (edlm/block_primitives.cuh) of the k-th largest
//           confidence key among the masked positions, 8 bits at a time (8 passes over the
//           row), and `need`, how many of the positions with key == pivot are taken.
//   pass 3  in position order, chunk by chunk: keys > pivot take x0, and the first `need`
//           positions with key == pivot (a block scan counts them).
//   Any L (the row is re-read from global memory in every pass; no row-sized shared
//   memory). k == 0, k == #masked and a threshold that some position passes need no
//   selection: pass 2 is skipped.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "edlm/block_primitives.cuh"
#include "edlm/common.h"
#include "edlm/unmask_confident.h"

namespace edlm {
namespace cuda {
namespace unmask_detail {

EDLM_DEVICE double to_double(float x) { return x; }
EDLM_DEVICE double to_double(double x) { return x; }
EDLM_DEVICE double to_double(__nv_bfloat16 x) { return __bfloat162float(x); }
EDLM_DEVICE double to_double(__half x) { return __half2float(x); }

template <int kThreads>
struct ConfidentShared {
  static constexpr int kWarps = kThreads / 32;
  int64_t i64[kWarps];
  int i32[kWarps];
  RadixShared radix;
};

// One row of unmask_confident's inputs (strides in elements).
template <typename T>
struct ConfidentRow {
  const int64_t* xt;
  int64_t xs;
  const T* conf;
  int64_t cs;
  int64_t mask_id;
  EDLM_DEVICE bool masked(int64_t l) const { return xt[l * xs] == mask_id; }
  EDLM_DEVICE double confidence(int64_t l) const { return to_double(conf[l * cs]); }
  EDLM_DEVICE uint64_t key(int64_t l) const { return confidence_key(confidence(l)); }
};

}  // namespace unmask_detail

constexpr int kSelectThreads = kRadixBins;  // one thread per radix digit

// unmask_confident, one block of kSelectThreads per row b; out contiguous [B, L].
// n (stride ns) is read when !use_threshold; L < 2^31.
template <typename T>
__global__ void __launch_bounds__(kSelectThreads)
    unmask_confident_kernel(const int64_t* __restrict__ xt, int64_t xsb, int64_t xsl, const int64_t* __restrict__ x0,
                            int64_t zsb, int64_t zsl, const T* __restrict__ conf, int64_t csb, int64_t csl,
                            const int64_t* __restrict__ n, int64_t ns, double threshold, bool use_threshold, int64_t L,
                            int64_t mask_id, int64_t* __restrict__ out) {
  using namespace unmask_detail;
  constexpr int kThreads = kSelectThreads;
  EDLM_SHARED(ConfidentShared<kThreads>, sh);
  const int64_t b = blockIdx.x;
  const ConfidentRow<T> row{xt + b * xsb, xsl, conf + b * csb, csl, mask_id};
  const int64_t* zrow = x0 + b * zsb;
  int64_t* orow = out + b * L;

  // pass 1: copy, count.
  int64_t masked = 0, above = 0;
  for (int64_t l = threadIdx.x; l < L; l += kThreads) {
    const int64_t v = row.xt[l * row.xs];
    orow[l] = v;
    if (v == mask_id) {
      ++masked;
      above += use_threshold && row.confidence(l) > threshold;
    }
  }
  masked = block_sum<kThreads>(masked, sh.i64);
  above = block_sum<kThreads>(above, sh.i64);
  const int64_t k = unmask_count(masked, above, use_threshold ? 0 : n[b * ns], use_threshold);
  if (k == 0) return;
  if (k == masked || (use_threshold && above > 0)) {  // all masked, or exactly those above the threshold
    const bool all = k == masked;
    for (int64_t l = threadIdx.x; l < L; l += kThreads)  // the same thread per l as pass 1
      if (row.masked(l) && (all || row.confidence(l) > threshold)) orow[l] = zrow[l * zsl];
    return;
  }

  // pass 2: the pivot, the k-th largest key among the masked positions (1 <= k < masked).
  const RadixResult<uint64_t> sel = block_radix_select<kThreads, uint64_t>(
      [&](auto add) {
        for (int64_t l = threadIdx.x; l < L; l += kThreads)
          if (row.masked(l)) add(row.key(l), 1);
      },
      static_cast<uint64_t>(k), sh.radix);
  const uint64_t pivot = sel.tau;
  const int64_t need = k - static_cast<int64_t>(sel.above);  // of the positions with key == pivot, the first `need`

  // pass 3: chunks of kThreads positions in order.
  int64_t taken = 0;
  for (int64_t base = 0; base < L; base += kThreads) {
    const int64_t l = base + threadIdx.x;
    bool take = false;
    int tie = 0;
    if (l < L && row.masked(l)) {
      const uint64_t key = row.key(l);
      take = key > pivot;
      tie = key == pivot;
    }
    int ties;
    const int before = block_exclusive_scan<kThreads>(tie, &ties, sh.i32);
    if (tie && taken + before < need) take = true;
    if (take) orow[l] = zrow[l * zsl];
    taken += ties;
  }
}

}  // namespace cuda
}  // namespace edlm
