// Log-weight normalization and one multinomial draw per row (importance
// resampling), the CPU form; csrc/include/edlm/importance_resample_cuda.cuh is the CUDA form
// of the same rule. Torch-free.
//
// For log-weights lw[0..k): m = max lw, w_j = exp(lw_j - m) (float64),
// Z = Σ w_j; weights = w / Z, log_z = m + log Z, ess = Z² / Σ w_j²; with one
// uniform u, index = the first j with w_j > 0 whose running sum exceeds u Z (the
// last j with w_j > 0 if rounding puts u Z on the total). -inf entries have
// weight 0 and are never chosen. A row with a NaN or +inf, or with every entry
// -inf, is invalid.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "edlm/common.h"

namespace edlm {

struct ResampleStats {
  double m, z, sum_sq;  // max, Σ exp(lw - m), Σ exp(lw - m)²
  bool valid;
};

// Pass 1 of a row: max, then the two sums. W is float or double.
template <typename W>
inline ResampleStats resample_stats(const W* lw, int64_t k) {
  double m = -INFINITY;
  for (int64_t j = 0; j < k; ++j) {
    const double x = static_cast<double>(lw[j]);
    if (std::isnan(x) || x == INFINITY) return {0.0, 0.0, 0.0, false};
    m = x > m ? x : m;
  }
  if (m == -INFINITY) return {0.0, 0.0, 0.0, false};
  double z = 0.0, sq = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    const double w = std::exp(static_cast<double>(lw[j]) - m);
    z += w;
    sq += w * w;
  }
  return {m, z, sq, true};
}

// The index drawn by uniform u for a valid row with stats st.
template <typename W>
inline int64_t resample_index(const W* lw, int64_t k, const ResampleStats& st, double u) {
  const double target = u * st.z;
  double cum = 0.0;
  int64_t last = 0;
  for (int64_t j = 0; j < k; ++j) {
    const double w = std::exp(static_cast<double>(lw[j]) - st.m);
    if (w <= 0.0) continue;
    last = j;
    cum += w;
    if (cum > target) return j;
  }
  return last;
}

}  // namespace edlm
