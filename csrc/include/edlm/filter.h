// Logit filters (top-k, top-p, min-p) as ONE threshold on a row's logits: every filter
// keeps the tokens whose logit is >= some value, so their combination keeps
// l >= max(tau_k, tau_p, tau_min) and sampling stays exact under the filtered,
// renormalized distribution. The rules, for host and device; both backends find the
// thresholds the same two ways (edlm/masked_sample.h on the CPU, filtered_sample_kernel in
// edlm/filter_cuda.cuh on the GPU). Torch-free.
//
//  top_k  tau_k = the k-th largest logit (ties at tau_k are all kept).
//  top_p  on the distribution left by top_k: tau_p = the largest value whose tokens
//         {l >= tau_p} hold at least top_p of its mass (ties kept); masses are
//         token_mass(2^((l - m) c)), integers, so sums never depend on their order.
//  min_p  tau_min = m + T ln(min_p): tokens with p >= min_p * p_max.
//
// The candidate path: a lower bound lb of the final threshold (candidate_bound; from the
// k-th largest of group maxima: k groups each hold a token >= their max) admits the few
// tokens >= lb; sorted by (logit descending, index ascending), the thresholds are cuts of
// that list, and the survivors are drawn from directly. top_p alone has a bound of its own
// on the CPU (topp_has_own_bound): any x with mass(l >= x) >= the target is <= tau_p, and
// the groups whose maxima are >= x already hold that much for x = the radix select of the
// group maxima weighted by their own masses; when the maxima hold too little (many tokens of
// the nucleus per group), x = the smallest logit among the tokens whose masses have >= b bits,
// b the largest for which they hold the target (masked_sample.h, topp_mass_bound), and its
// candidates, if more than a rank sort takes, are radix-selected rather than sorted. When the
// bound admits too many, the general path: radix selects over the whole row (edlm/radix_select.h), then the tile passes over
// the thresholded row.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "edlm/common.h"
#include "edlm/radix_select.h"

namespace edlm {

struct Filter {
  int64_t top_k = 0;   // 0: off
  double top_p = 1.0;  // 1: off
  double min_p = 0.0;  // 0: off
  EDLM_HD bool active() const { return top_k > 0 || top_p < 1.0 || min_p > 0.0; }
};

// Fixed-point scale of token masses (each <= 1, so each <= 2^40 after scaling) in the
// top-p select: a row's total stays below 2^64 (uint64) for V < 2^24. The ops reject
// top_p < 1 on longer rows (csrc/checks.h, check_top_p_vocab).
constexpr double kMassScale = 1099511627776.0;  // 2^40
constexpr int64_t kMaxTopPVocab = (int64_t{1} << 24) - 1;

EDLM_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
EDLM_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// Monotone map float -> uint32 (a < b  <=>  key(a) < key(b), for non-NaN) that keeps
// the float order's equalities too: -0.0 and +0.0 get one key, so a -0.0 tied with a
// +0.0 at a threshold is kept like every other tie (the CUDA kernels compare floats).
EDLM_HD uint32_t order_key(float x) {
  const uint32_t u = float_bits(x) == 0x80000000u ? 0u : float_bits(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
EDLM_HD float key_value(uint32_t key) { return bits_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key); }

// A token's top-p mass from its term 2^((l - m) c) in [0, 1] (unfused argument: the term
// never exceeds 1); NaN counts as 0.
EDLM_HD uint64_t token_mass(float term) { return term > 0.0f ? static_cast<uint64_t>(term * kMassScale) : 0; }

// top-p's target mass for a total, and whether it cuts anything (else: keep all).
EDLM_HD uint64_t topp_target(double top_p, uint64_t total) {
  return static_cast<uint64_t>(ceil(top_p * static_cast<double>(total)));
}
EDLM_HD bool topp_applies(uint64_t target, uint64_t total) { return target > 0 && target < total; }

// min_p: p >= min_p * p_max  <=>  l >= m + T ln(min_p), in float32 (never above m).
EDLM_HD float min_p_threshold(float m, double min_p, double inv_t) {
  return static_cast<float>(static_cast<double>(m) + log(min_p) / inv_t);
}

// The candidate path's lower bound of the final threshold, given kth_group_max (the top_k-th
// largest maximum of disjoint groups of tokens, -inf when top_k is off or fewer groups hold a
// finite logit) and the row max m. -inf: no useful bound, take the general path. With top_p,
// only top_k's bound serves: top_p's masses need every token top_k keeps.
EDLM_HD float candidate_bound(const Filter& f, float kth_group_max, float m, double inv_t) {
  const float lb_k = f.top_k > 0 ? kth_group_max : -INFINITY;
  if (f.top_p < 1.0) return lb_k;
  const float lb_min = f.min_p > 0.0 ? min_p_threshold(m, f.min_p, inv_t) : -INFINITY;
  return lb_k > lb_min ? lb_k : lb_min;
}

// top_p without top_k: the CPU bounds tau_p from the group maxima's masses (see above).
EDLM_HD bool topp_has_own_bound(const Filter& f) { return f.top_p < 1.0 && f.top_k == 0; }

// A candidate as one word that sorts ascending in (logit descending, index ascending).
EDLM_HD uint64_t candidate_word(uint32_t key, int32_t index) {
  return (static_cast<uint64_t>(~key) << 32) | static_cast<uint32_t>(index);
}
EDLM_HD int32_t candidate_index(uint64_t word) { return static_cast<int32_t>(word & 0xffffffffu); }
EDLM_HD uint32_t candidate_key(uint64_t word) { return ~static_cast<uint32_t>(word >> 32); }

}  // namespace edlm
