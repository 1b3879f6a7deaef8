// Radix select: the largest key tau such that the items with key >= tau hold at least
// `target` of a measure (a count, or a token mass in fixed point), found 8 bits at a time
// from the top with integer histograms, so the answer never depends on the order in which
// items are added. The digit rule is written once here, for host and device; the CPU
// driver is radix_select below, the GPU's is block_radix_select (edlm/block_primitives.cuh).
// Users: the top-k / top-p filters (edlm/filter.h, both backends) and unmask_confident's
// pivot on the GPU. Torch-free.
#pragma once
#include <cstdint>

#include "edlm/common.h"

namespace edlm {

constexpr int kRadixBins = 256;  // 8-bit digits

// Scanning the digits from the top, `above` is the measure of the items with a larger
// digit and `count` this digit's: the digit holds the target-th unit of measure
// (remaining = target minus what the prefix's larger keys hold) iff this is true. Exactly
// one digit satisfies it when 1 <= remaining <= the total under the prefix.
EDLM_HD bool radix_digit_holds(uint64_t above, uint64_t count, uint64_t remaining) {
  return above < remaining && remaining <= above + count;
}

// CPU: radix select over n items with 32-bit keys; measure(i) is item i's measure. The
// caller ensures 1 <= target <= the total measure. With digits < 4, only the top `digits`
// digits are selected: the result (those digits, zeros below) is then a lower bound of tau
// within 2^(32 - 8 digits) keys of it.
template <typename Measure>
inline uint32_t radix_select(const uint32_t* keys, int64_t n, const Measure& measure, uint64_t target, int digits = 4) {
  uint32_t prefix = 0, prefix_mask = 0;
  uint64_t remaining = target;
  for (int shift = 24; shift >= 32 - 8 * digits; shift -= 8) {
    uint64_t hist[kRadixBins] = {};
    for (int64_t i = 0; i < n; ++i)
      if ((keys[i] & prefix_mask) == prefix) hist[(keys[i] >> shift) & (kRadixBins - 1)] += measure(i);
    uint64_t above = 0;
    int d = kRadixBins - 1;
    for (; d > 0 && !radix_digit_holds(above, hist[d], remaining); --d) above += hist[d];
    remaining -= above;
    prefix |= static_cast<uint32_t>(d) << shift;
    prefix_mask |= static_cast<uint32_t>(kRadixBins - 1) << shift;
  }
  return prefix;
}

}  // namespace edlm
