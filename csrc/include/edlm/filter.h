// Logit filters (top-k, top-p, min-p) as ONE threshold on a row's logits:
// every filter keeps the tokens whose logit is >= some value, so their
// combination keeps l >= max(tau_k, tau_p, tau_min) and sampling stays exact
// under the filtered, renormalized distribution. Torch-free; host and device.
//
//  top_k  tau_k = the k-th largest logit (ties at tau_k are all kept).
//  top_p  on the distribution left by top_k: tau_p = the largest value whose
//         tokens {l >= tau_p} hold at least top_p of its mass (ties kept).
//  min_p  tau_min = m + T ln(min_p): tokens with p >= min_p * p_max.
// Selection is a radix select over order-preserving 32-bit keys of the logits,
// 8 bits at a time, with integer measures (counts, or masses in 2^-40 fixed
// point), so it is deterministic on any number of threads.
#pragma once
#include <cstdint>
#include <cstring>

#include "edlm/common.h"

namespace edlm {

struct Filter {
  int64_t top_k = 0;   // 0: off
  double top_p = 1.0;  // 1: off
  double min_p = 0.0;  // 0: off
  EDLM_HD bool active() const { return top_k > 0 || top_p < 1.0 || min_p > 0.0; }
};

// Fixed-point scale of token masses (each <= 1, so each <= 2^40 after scaling) in
// the top-p select: a row's total stays below 2^64 (uint64) for V < 2^24. The ops
// reject top_p < 1 on longer rows (csrc/checks.h, check_top_p_vocab).
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

// One radix step: given the 256-bucket histogram of the measure over keys that
// match the prefix so far, the bucket (scanned from the top) where the running
// measure `above` first reaches target; `above` becomes the measure above it.
template <typename Count>  // uint64_t (CPU) or unsigned long long (CUDA shared-memory atomics)
EDLM_HD int radix_pick_bucket(const Count* hist, uint64_t target, uint64_t& above) {
  int b = 255;
  for (; b > 0; --b) {
    if (above + hist[b] >= target) break;
    above += hist[b];
  }
  return b;
}

// CPU: the largest key tau with Σ_{key_i >= tau} measure(i) >= target, over n
// items (the caller ensures the total reaches target).
template <typename Measure>
inline uint32_t radix_select(const uint32_t* keys, int64_t n, const Measure& measure, uint64_t target) {
  uint32_t prefix = 0, prefix_mask = 0;
  uint64_t above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    uint64_t hist[256] = {};
    for (int64_t i = 0; i < n; ++i)
      if ((keys[i] & prefix_mask) == prefix) hist[(keys[i] >> shift) & 255u] += measure(i);
    prefix |= static_cast<uint32_t>(radix_pick_bucket(hist, target, above)) << shift;
    prefix_mask |= 255u << shift;
  }
  return prefix;
}

}  // namespace edlm
