// CUDA kernels of edlm_ext.unmask and edlm_ext.unmask_confident. Torch-free
// (raw pointers and sizes); launched from csrc/cuda/unmask.cu. Same rules as
// the CPU kernels (edlm/unmask.h), so both give the same result.
//
// unmask_kernel            one thread per [B, L] position (grid-stride loop).
// unmask_confident_kernel  one block of kSelectThreads per row:
//   pass 1  copy x_t to the output; count the masked positions and those above
//           the threshold; k = how many to unmask (unmask_count).
//   pass 2  radix select of the k-th largest confidence key among the masked
//           positions, 8 bits at a time from the top (8 passes over the row,
//           256-bin shared-memory histograms): pivot key K, and `need`, how many
//           of the positions with key == K are taken.
//   pass 3  in position order, chunk by chunk: keys > K take x0, and the first
//           `need` positions with key == K (a block scan counts them).
//   Any L (the row is re-read from global memory in every pass; no row-sized
//   shared memory). k == 0, k == #masked and a threshold that some position
//   passes need no selection: pass 2 is skipped.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "edlm/common.h"
#include "edlm/philox.h"
#include "edlm/unmask.h"

namespace edlm {
namespace cuda {
namespace unmask_detail {

EDLM_DEVICE double to_double(float x) { return x; }
EDLM_DEVICE double to_double(double x) { return x; }
EDLM_DEVICE double to_double(__nv_bfloat16 x) { return __bfloat162float(x); }
EDLM_DEVICE double to_double(__half x) { return __half2float(x); }

constexpr int kBins = 256;  // radix digits of 8 bits

template <int kThreads>
struct SelectShared {
  static constexpr int kWarps = kThreads / 32;
  int64_t warp_i64[kWarps];
  int warp_i32[kWarps];
  int hist[kBins];
  int digit;  // the chosen digit of this radix pass
  int larger;  // candidates with a larger digit
};

// Block-wide sum of an int64 (all threads get it).
template <int kThreads>
EDLM_DEVICE int64_t block_sum(int64_t x, SelectShared<kThreads>& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  if (lane == 0) sh.warp_i64[warp] = x;
  __syncthreads();
  int64_t r = 0;
#pragma unroll
  for (int i = 0; i < SelectShared<kThreads>::kWarps; ++i) r += sh.warp_i64[i];
  __syncthreads();
  return r;
}

// Block-wide exclusive prefix sum of an int in thread order; *total gets the sum.
template <int kThreads>
EDLM_DEVICE int block_exclusive_scan(int x, int* total, SelectShared<kThreads>& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = x;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) sh.warp_i32[warp] = incl;
  __syncthreads();
  int before = 0, sum = 0;
#pragma unroll
  for (int i = 0; i < SelectShared<kThreads>::kWarps; ++i) {
    if (i < warp) before += sh.warp_i32[i];
    sum += sh.warp_i32[i];
  }
  __syncthreads();
  *total = sum;
  return before + incl - x;
}

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

// unmask: out[pos] (contiguous [B*L]) = x0 where x_t == mask_id and the
// position's uniform < p[b], else x_t. P is float or double; rng = {seed, offset}.
template <typename P>
__global__ void unmask_kernel(const int64_t* __restrict__ xt, int64_t xsb, int64_t xsl,
                              const int64_t* __restrict__ x0, int64_t zsb, int64_t zsl, const P* __restrict__ p,
                              int64_t ps, int64_t B, int64_t L, int64_t mask_id, const int64_t* __restrict__ rng,
                              int64_t* __restrict__ out) {
  const RngKey key = load_rng_key(rng);
  const int64_t total = B * L;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t pos = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pos < total; pos += step) {
    const int64_t b = pos / L, l = pos - b * L;
    const int64_t v = xt[b * xsb + l * xsl];
    const bool take = v == mask_id && unmask_takes_x0(row_uniform(key, static_cast<uint64_t>(pos), unmask_stream(key)),
                                                      static_cast<double>(p[b * ps]));
    out[pos] = take ? x0[b * zsb + l * zsl] : v;
  }
}

constexpr int kSelectThreads = unmask_detail::kBins;  // one thread per radix digit

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
  EDLM_SHARED(SelectShared<kThreads>, sh);
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
  masked = block_sum<kThreads>(masked, sh);
  above = block_sum<kThreads>(above, sh);
  const int64_t k = unmask_count(masked, above, use_threshold ? 0 : n[b * ns], use_threshold);
  if (k == 0) return;
  if (k == masked || (use_threshold && above > 0)) {  // all masked, or exactly those above the threshold
    const bool all = k == masked;
    for (int64_t l = threadIdx.x; l < L; l += kThreads)  // the same thread per l as pass 1
      if (row.masked(l) && (all || row.confidence(l) > threshold)) orow[l] = zrow[l * zsl];
    return;
  }

  // pass 2: radix select. Candidates are the masked positions whose key agrees
  // with `prefix` on the bits above `shift + 8`; `remaining` (>= 1, <= #candidates)
  // of them are still to be taken, from the top.
  uint64_t prefix = 0;
  int64_t remaining = k;
  for (int shift = 56; shift >= 0; shift -= 8) {
    const uint64_t high = shift == 56 ? 0 : (~0ull << (shift + 8));
    sh.hist[threadIdx.x] = 0;
    __syncthreads();
    for (int64_t l = threadIdx.x; l < L; l += kThreads) {
      if (!row.masked(l)) continue;
      const uint64_t key = row.key(l);
      if ((key & high) == prefix) atomicAdd(&sh.hist[(key >> shift) & 0xff], 1);
    }
    __syncthreads();
    // thread t holds digit 255 - t: the exclusive scan counts candidates with larger digits.
    const int digit = kBins - 1 - static_cast<int>(threadIdx.x);
    const int count = sh.hist[digit];
    int total;
    const int larger = block_exclusive_scan<kThreads>(count, &total, sh);
    if (larger < remaining && remaining <= larger + count) {  // exactly one thread
      sh.digit = digit;
      sh.larger = larger;
    }
    __syncthreads();
    prefix |= static_cast<uint64_t>(sh.digit) << shift;
    remaining -= sh.larger;
    __syncthreads();  // sh.digit / sh.larger / sh.hist are rewritten next pass
  }
  const uint64_t pivot = prefix;
  const int64_t need = remaining;  // of the positions with key == pivot, the first `need`

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
    const int before = block_exclusive_scan<kThreads>(tie, &ties, sh);
    if (tie && taken + before < need) take = true;
    if (take) orow[l] = zrow[l * zsl];
    taken += ties;
  }
}

}  // namespace cuda
}  // namespace edlm
