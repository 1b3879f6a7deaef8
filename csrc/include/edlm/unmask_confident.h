// Confidence-ranked unmasking (edlm_ext.unmask_confident): the rules shared by the CPU
// kernel (csrc/cpu/unmask.cpp) and the CUDA kernel (edlm/unmask_confident_cuda.cuh).
// Torch-free; host and device.
#pragma once
#include <cstdint>
#include <cstring>

#include "edlm/common.h"

namespace edlm {

// unmask_confident ranks a row's masked positions by confidence, highest
// first, the lower position first on ties. confidence_key maps a confidence to
// a 64-bit key with the same order (k1 > k2 iff c1 > c2), -0 == +0, and NaN
// below every number including -inf (key 0; the Python wrapper rejects NaN).
EDLM_HD uint64_t confidence_key(double c) {
  if (c != c) return 0;
  if (c == 0.0) c = 0.0;  // -0 -> +0
  uint64_t bits;
#if defined(__CUDA_ARCH__)
  bits = static_cast<uint64_t>(__double_as_longlong(c));
#else
  std::memcpy(&bits, &c, sizeof bits);
#endif
  constexpr uint64_t kSign = 1ull << 63;
  return (bits & kSign) ? ~bits : (bits | kSign);
}

// unmask_confident takes the first k masked positions in rank order. Both
// kernels find them through the pivot K, the k-th largest key: every position
// with key > K, and the first k - #{key > K} positions (lowest first) with key == K.

// How many of a row's `masked` positions unmask_confident unmasks (the first
// that many in rank order). With a count n: min(n, masked) (n < 0 counts as 0).
// With a threshold: the `above` positions whose confidence exceeds it (exactly
// the first `above` in rank order), or the single best one when none does.
EDLM_HD int64_t unmask_count(int64_t masked, int64_t above, int64_t n, bool use_threshold) {
  if (use_threshold) return above > 0 ? above : (masked > 0 ? 1 : 0);
  return n <= 0 ? 0 : (n < masked ? n : masked);
}

}  // namespace edlm
