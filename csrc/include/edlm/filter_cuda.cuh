// CUDA kernel computing each masked row's filter threshold (top-k, top-p, min-p;
// the rule of edlm/filter.h) for sample_kernel: one block per row, a max pass
// and up to 4 + 4 radix-select passes (8 bits each) over the row with integer
// shared-memory histograms (deterministic). Torch-free.
#pragma once
#include <cstdint>

#include "edlm/filter.h"
#include "edlm/masked_sample_cuda.cuh"

namespace edlm {
namespace cuda {

template <int kThreads>
struct FilterShared {
  BlockShared<kThreads> base;
  unsigned long long hist[256];
  unsigned long long total;
  uint32_t prefix;
  unsigned long long above;
};

// Radix select in 4 passes over the row: the largest key tau with
// Σ_{key >= tau, measure} >= target, where measure(v, key) gives an element's
// measure (0 to exclude it). target == 0 asks for the total of the first pass
// to be scaled by frac (top-p) instead; returns 0 (keep all) when the target
// is not below the total.
template <typename T, int kThreads, typename Measure>
EDLM_DEVICE uint32_t block_radix_select(const RowView<T>& rv, uint64_t target, double frac, const Measure& measure,
                                        FilterShared<kThreads>& sh) {
  constexpr int kVec = RowView<T>::kVec;
  uint32_t prefix_mask = 0;
  // Every thread has read the previous call's result (sh.prefix, sh.total) before
  // thread 0 resets them for this one: a top-k select followed by a top-p select
  // otherwise races (found by the CUDA simulation; tests/agreement.py, filt_*_k50p09).
  __syncthreads();
  if (threadIdx.x == 0) {
    sh.prefix = 0;
    sh.above = 0;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += kThreads) sh.hist[i] = 0;
    __syncthreads();
    const uint32_t prefix = sh.prefix;
    for (int64_t w = threadIdx.x; w < rv.nitems; w += kThreads) {
      float v[kVec];
      rv.load(w, v);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const uint32_t key = order_key(v[e]);
        const unsigned long long q = measure(v[e], key);
        if (q != 0 && (key & prefix_mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & 255u], q);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      if (shift == 24) {
        unsigned long long total = 0;
        for (int i = 0; i < 256; ++i) total += sh.hist[i];
        sh.total = total;
      }
      const unsigned long long goal = target != 0 ? target : static_cast<unsigned long long>(ceil(frac * sh.total));
      if (goal == 0 || goal >= sh.total) {
        sh.prefix = 0;  // keep everything
      } else {
        uint64_t above = sh.above;
        const int bucket = radix_pick_bucket(sh.hist, goal, above);
        sh.above = above;
        sh.prefix = prefix | (static_cast<uint32_t>(bucket) << shift);
      }
    }
    __syncthreads();
    if (shift == 24) {
      const unsigned long long goal = target != 0 ? target : static_cast<unsigned long long>(ceil(frac * sh.total));
      if (goal == 0 || goal >= sh.total) return 0;  // uniform across the block
    }
    prefix_mask |= 255u << shift;
  }
  return sh.prefix;
}

// thresh[row] = the smallest logit a masked row keeps (-inf: keeps all);
// unmasked and invalid rows get -inf (sample_kernel flags invalid rows itself).
// inv_t = 1 / T (1 when greedy).
template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads)
    filter_threshold_kernel(const T* __restrict__ logits, int64_t sb, int64_t sl, const int64_t* __restrict__ xt,
                            int64_t xsb, int64_t xsl, int64_t L, int64_t V, int64_t mask_id, Filter f, double inv_t,
                            float* __restrict__ thresh) {
  constexpr int kVec = RowView<T>::kVec;
  EDLM_SHARED(FilterShared<kThreads>, sh);
  const int64_t row = blockIdx.x;
  const int64_t b = row / L, l = row % L;
  if (xt[b * xsb + l * xsl] != mask_id) {
    if (threadIdx.x == 0) thresh[row] = -INFINITY;
    return;
  }
  const RowView<T> rv(logits + b * sb + l * sl, V, mask_id);
  // Max (NaN / +inf rows: no filtering here, the sampler rejects them).
  float mx = -INFINITY;
  bool bad = false;
  for (int64_t w = threadIdx.x; w < rv.nitems; w += kThreads) {
    float v[kVec];
    rv.load(w, v);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      bad |= (v[e] != v[e]) || v[e] == INFINITY;
      mx = fmaxf(mx, v[e]);
    }
  }
  if (threadIdx.x == 0) sh.base.flag = 0;
  const float m = block_max<kThreads>(mx, sh.base);
  if (bad) sh.base.flag = 1;
  __syncthreads();
  if (sh.base.flag || m == -INFINITY) {
    if (threadIdx.x == 0) thresh[row] = -INFINITY;
    return;
  }
  uint32_t tau = 0;
  if (f.top_k > 0) {
    tau = block_radix_select<T, kThreads>(
        rv, static_cast<uint64_t>(f.top_k), 0.0,
        [](float v, uint32_t) -> unsigned long long { return v != -INFINITY ? 1ull : 0ull; }, sh);
  }
  if (f.top_p < 1.0) {
    const float c = static_cast<float>(inv_t * 1.4426950408889634);
    const uint32_t tau_k = tau;
    const uint32_t tau_p = block_radix_select<T, kThreads>(
        rv, 0, f.top_p,
        [=](float v, uint32_t key) -> unsigned long long {
          return key >= tau_k ? static_cast<unsigned long long>(exp2f((v - m) * c) * kMassScale) : 0ull;
        },
        sh);
    tau = tau_p > tau ? tau_p : tau;
  }
  float thr = tau == 0 ? -INFINITY : key_value(tau);
  if (f.min_p > 0.0) {
    const float tau_min = static_cast<float>(static_cast<double>(m) + log(f.min_p) / inv_t);
    thr = fmaxf(thr, tau_min);
  }
  if (threadIdx.x == 0) thresh[row] = thr;
}

}  // namespace cuda
}  // namespace edlm
