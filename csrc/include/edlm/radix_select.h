// Radix select: the largest key tau such that the items with key >= tau hold at least
// `target` of a measure (a count, or a token mass in fixed point), found 8 bits at a time
// from the top with integer histograms, so the answer never depends on the order in which
// items are added. The digit rule is written once here, for host and device; the CPU
// driver is radix_select below, the GPU's is block_radix_select (edlm/block_primitives.cuh).
// Users: the top-k / top-p filters (edlm/filter.h, both backends) and unmask_confident's
// pivot on the GPU. Torch-free.
#pragma once
#include <cstdint>
#include <vector>

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
// 8-bit digits are selected: the result (those digits, zeros below) is then a lower bound of
// tau within 2^(32 - 8 digits) keys of it. A full select (digits = 4) given a range [lo, hi]
// holding every key takes the bits lo and hi share as known and starts its digits right
// below them (the answer is the same: tau is defined by the measures alone), so that its
// first pass already spreads the items. After the first digit only the items under the
// chosen prefix are kept (copied out), so the later digits cost little.
template <typename Measure>
inline uint32_t radix_select(const uint32_t* keys, int64_t n, const Measure& measure, uint64_t target, int digits = 4,
                             uint32_t lo = 0, uint32_t hi = ~0u) {
  uint32_t prefix = 0;
  int top = 32;  // bits [top, 32) of tau are known (prefix)
  if (digits == 4 && (lo != 0 || hi != ~0u)) {
    top = lo == hi ? 0 : 32 - __builtin_clz(lo ^ hi);
    prefix = top == 32 ? 0 : lo >> top << top;
    if (top == 0) return prefix;  // one key: it is tau
  }
  const int stop = digits == 4 ? 0 : 32 - 8 * digits;  // the lowest bit selected
  uint64_t remaining = target;
  thread_local std::vector<uint32_t> sub_keys;  // (per thread, kept and never shrunk: no allocation
  thread_local std::vector<uint64_t> sub_measure;  // or zero-fill per call; the first `kept` are the items)
  size_t kept = 0;
  for (bool first = true; top > stop; first = false) {
    const int width = top - stop < 8 ? top - stop : 8, shift = top - width;
    const uint32_t mask = (1u << width) - 1;
    uint64_t hist[kRadixBins] = {};
    if (first && n >= 1024) {  // four histograms, so that runs of equal digits do not wait on each other
      uint64_t h4[4][kRadixBins] = {};
      int64_t i = 0;
      for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; ++j) h4[j][(keys[i + j] >> shift) & mask] += measure(i + j);
      for (; i < n; ++i) h4[0][(keys[i] >> shift) & mask] += measure(i);
      for (int b = 0; b < kRadixBins; ++b) hist[b] = h4[0][b] + h4[1][b] + h4[2][b] + h4[3][b];
    } else if (first) {
      for (int64_t i = 0; i < n; ++i) hist[(keys[i] >> shift) & mask] += measure(i);
    } else {
      for (size_t i = 0; i < kept; ++i) hist[(sub_keys[i] >> shift) & mask] += sub_measure[i];
    }
    uint64_t above = 0;
    int b = static_cast<int>(mask);
    for (; b > 0 && !radix_digit_holds(above, hist[b], remaining); --b) above += hist[b];
    remaining -= above;
    prefix |= static_cast<uint32_t>(b) << shift;
    top = shift;
    if (top == stop) break;
    // keep the items under the chosen prefix (written unconditionally, the count advanced by
    // the test: which items stay is unpredictable, a branch would mispredict)
    size_t w = 0;
    if (first) {
      if (sub_keys.size() < static_cast<size_t>(n)) {
        sub_keys.resize(static_cast<size_t>(n));
        sub_measure.resize(static_cast<size_t>(n));
      }
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t q = measure(i);
        sub_keys[w] = keys[i];
        sub_measure[w] = q;
        w += (((keys[i] >> shift) & mask) == static_cast<uint32_t>(b)) & (q != 0);
      }
    } else {
      for (size_t i = 0; i < kept; ++i) {
        sub_keys[w] = sub_keys[i];
        sub_measure[w] = sub_measure[i];
        w += ((sub_keys[i] >> shift) & mask) == static_cast<uint32_t>(b);
      }
    }
    kept = w;
  }
  return prefix;
}

}  // namespace edlm
