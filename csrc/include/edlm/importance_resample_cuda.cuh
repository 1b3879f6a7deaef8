// CUDA kernel of edlm_ext.importance_resample: one block per row. Warp 0
// normalizes the row's k log-weights and draws the index (the rule of
// edlm/importance_resample.h, float64 warp reductions and scans); then the block gathers the
// chosen proposal. One launch, no host synchronization. Torch-free.
#pragma once
#include <cstdint>

#include "edlm/common.h"
#include "edlm/philox.h"
#include "edlm/block_primitives.cuh"

namespace edlm {
namespace cuda {

// lw [B, k] contiguous (W = float or double); props [B, k, L] with strides
// (ps0, ps1, ps2); outputs weights [B, k], log_z [B], ess [B], index [B],
// chosen [B, L], contiguous. rng = {seed, offset}; row b draws from stream
// kDomainResample + offset. Invalid rows: NaN statistics, index 0.
template <typename W, int kThreads>
__global__ void __launch_bounds__(kThreads)
    importance_resample_kernel(const W* __restrict__ lw, int64_t k, const int64_t* __restrict__ props, int64_t ps0,
                               int64_t ps1, int64_t ps2, int64_t L, const int64_t* __restrict__ rng,
                               W* __restrict__ weights, W* __restrict__ log_z, W* __restrict__ ess,
                               int64_t* __restrict__ index, int64_t* __restrict__ chosen) {
  EDLM_SHARED(int64_t, s_index);
  const int64_t b = blockIdx.x;
  const W* row = lw + b * k;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    double m = -INFINITY;
    bool bad = false;
    for (int64_t j = lane; j < k; j += 32) {
      const double x = static_cast<double>(row[j]);
      bad |= (x != x) || x == INFINITY;
      m = fmax(m, x);
    }
    m = warp_max(m);
    bad = __any_sync(0xffffffffu, bad) || m == -INFINITY;
    int64_t pick = 0;
    if (bad) {
      for (int64_t j = lane; j < k; j += 32) weights[b * k + j] = static_cast<W>(NAN);
      if (lane == 0) log_z[b] = ess[b] = static_cast<W>(NAN);
    } else {
      double z = 0.0, sq = 0.0;
      for (int64_t j = lane; j < k; j += 32) {
        const double w = exp(static_cast<double>(row[j]) - m);
        z += w;
        sq += w * w;
      }
      z = warp_sum(z);
      sq = warp_sum(sq);
      for (int64_t j = lane; j < k; j += 32) weights[b * k + j] = static_cast<W>(exp(static_cast<double>(row[j]) - m) / z);
      if (lane == 0) {
        log_z[b] = static_cast<W>(m + log(z));
        ess[b] = static_cast<W>(z * z / sq);
      }
      const RngKey key = load_rng_key(rng);
      const double target = row_uniform(key, static_cast<uint64_t>(b), kDomainResample + key.offset) * z;
      double running = 0.0;
      int64_t found = -1, last = 0;
      for (int64_t j0 = 0; j0 < k && found < 0; j0 += 32) {
        const int64_t j = j0 + lane;
        const double w = j < k ? exp(static_cast<double>(row[j]) - m) : 0.0;
        const double incl = warp_inclusive_scan(w, lane);
        const unsigned cross = __ballot_sync(0xffffffffu, w > 0.0 && running + incl > target);
        const unsigned pos = __ballot_sync(0xffffffffu, w > 0.0);
        if (cross) found = j0 + __ffs(cross) - 1;
        else if (pos) last = j0 + 31 - __clz(pos);
        running += __shfl_sync(0xffffffffu, incl, 31);
      }
      pick = found >= 0 ? found : last;
    }
    if (lane == 0) {
      s_index = pick;
      index[b] = pick;
    }
  }
  __syncthreads();
  const int64_t j = s_index;
  for (int64_t l = threadIdx.x; l < L; l += kThreads) chosen[b * L + l] = props[b * ps0 + j * ps1 + l * ps2];
}

}  // namespace cuda
}  // namespace edlm
