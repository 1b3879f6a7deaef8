// Device building blocks shared by every CUDA kernel of the project (sampling, filters,
// importance resampling, unmasking). Torch-free; compiled by nvcc and by the CPU
// simulation of the CUDA execution model (csrc/sim).
//
//   element access   Bf16 / F16 tags, VecTraits (elements of a 16-byte vector, bit
//                    operations, no type punning), RowView (a logits row as work items:
//                    head, aligned 16-byte body vectors, tail)
//   math             exp2_ftz: 2^x on the special-function unit, results below 2^-126 are 0
//   warp             warp_sum / warp_max / warp_min, warp_inclusive_scan
//   block            block_max, block_sum, block_exclusive_scan, block_min_index
//                    (every thread gets the result; each uses a kWarps-sized scratch array)
//   selection        block_radix_select (the project's one radix select on the GPU, over any
//                    key width and measure; the digit rule is edlm/radix_select.h, which the
//                    CPU's radix_select uses too) and block_bitonic_sort
//
// Block functions: every thread of the block calls them (they hold __syncthreads), with
// the same arguments where an argument is marked "uniform".
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "edlm/common.h"
#include "edlm/radix_select.h"

namespace edlm {
namespace cuda {

// ---- element access -------------------------------------------------------------------

struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

template <typename T>
struct VecTraits;
// kVec elements per 16-byte vector; element j of a loaded vector from its four 32-bit
// words (bit operations, not a pointer cast: no type punning).
template <>
struct VecTraits<float> {
  static constexpr int kVec = 4;
  static EDLM_DEVICE float to_float(float x) { return x; }
  static EDLM_DEVICE float element(const uint4& w, int j) {
    return __uint_as_float(j == 0 ? w.x : j == 1 ? w.y : j == 2 ? w.z : w.w);
  }
};
EDLM_DEVICE uint32_t vec_word(const uint4& w, int i) { return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w; }
template <>
struct VecTraits<Bf16> {
  static constexpr int kVec = 8;
  static EDLM_DEVICE float to_float(Bf16 x) { return __uint_as_float(static_cast<uint32_t>(x.bits) << 16); }
  // bfloat16 is the top half of a float32: the low element is the word shifted up, the
  // high one the word with its low half cleared (one instruction each).
  static EDLM_DEVICE float element(const uint4& w, int j) {
    const uint32_t word = vec_word(w, j >> 1);
    return __uint_as_float(j & 1 ? word & 0xffff0000u : word << 16);
  }
};
template <>
struct VecTraits<F16> {
  static constexpr int kVec = 8;
  static EDLM_DEVICE float to_float(F16 x) { return __half2float(__ushort_as_half(x.bits)); }
  static EDLM_DEVICE float element(const uint4& w, int j) {
    const uint32_t word = vec_word(w, j >> 1);
    return to_float(F16{static_cast<uint16_t>(j & 1 ? word >> 16 : word & 0xffffu)});
  }
};

// A row split into work items of kVec elements: item 0 is the head before the first
// 16-byte-aligned element (possibly empty), items 1..nbody are aligned vectors, the last
// item is the tail (present when V - head is not a multiple of kVec). Elements past the
// row read as -inf. The row is read as it is: [MASK] and filters are the callers' business.
template <typename T>
struct RowView {
  static constexpr int kVec = VecTraits<T>::kVec;
  const T* row;
  int64_t V;
  int64_t head;   // elements before the first aligned one
  int64_t nbody;  // full aligned vectors
  int64_t nitems;

  EDLM_DEVICE RowView(const T* r, int64_t V_) : row(r), V(V_) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(r);
    const int64_t mis = static_cast<int64_t>((16 - (addr & 15)) & 15) / static_cast<int64_t>(sizeof(T));
    head = mis < V ? mis : V;
    nbody = (V - head) / kVec;
    nitems = 1 + nbody + ((V - head) % kVec ? 1 : 0);
  }
  EDLM_DEVICE int64_t item_start(int64_t w) const { return w == 0 ? 0 : head + (w - 1) * kVec; }
  EDLM_DEVICE bool is_body(int64_t w) const { return w >= 1 && w <= nbody; }
  // The 16-byte vector of body item w (1 <= w <= nbody).
  EDLM_DEVICE uint4 body(int64_t w) const { return __ldg(reinterpret_cast<const uint4*>(row + item_start(w))); }
  EDLM_DEVICE float at(int64_t i) const { return VecTraits<T>::to_float(row[i]); }
  // Item w as kVec floats, through element loads (head, tail, or any item off the hot path).
  EDLM_DEVICE void load_scalar(int64_t w, float (&v)[kVec]) const {
    const int64_t start = item_start(w);
    const int64_t end = w == 0 ? head : V;
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] = start + j < end ? at(start + j) : -INFINITY;
  }
  // Item w as kVec floats: one vector load for a body item, element loads otherwise.
  EDLM_DEVICE void load(int64_t w, float (&v)[kVec]) const {
    if (is_body(w)) {
      const uint4 raw = body(w);
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = VecTraits<T>::element(raw, j);
    } else {
      load_scalar(w, v);
    }
  }
};

// ---- math -----------------------------------------------------------------------------

// 2^x in float32 on the special-function unit (MUFU.EX2, the instruction exp2f is built
// on, within 2 ulp): subnormal results flush to +0, 2^-inf = 0, NaN stays NaN. The CPU
// kernels count terms below 2^-126 as 0 too (edlm/cpu_tiles.h), so both backends draw
// from the same support. The simulation uses the host's exp2f with the same flush.
EDLM_DEVICE float exp2_ftz(float x) {
#if defined(EDLM_CUDA_SIM)
  const float r = exp2f(x);
  return r < 0x1.0p-126f ? 0.0f : r;  // (false for NaN: NaN stays NaN)
#else
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#endif
}

// ---- warp (all 32 lanes active) ------------------------------------------------------

template <typename U>
EDLM_DEVICE U warp_sum(U x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
template <typename U>
EDLM_DEVICE U warp_max(U x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
template <typename U>
EDLM_DEVICE U warp_min(U x) {  // integers
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const U y = __shfl_xor_sync(0xffffffffu, x, o);
    x = y < x ? y : x;
  }
  return x;
}
template <typename U>
EDLM_DEVICE U warp_inclusive_scan(U x, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const U y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  return x;
}

// ---- block ----------------------------------------------------------------------------

template <int kThreads>
struct BlockDims {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");
  static constexpr int kWarps = kThreads / 32;
};

// Block-wide max of a float (NaN ignored, as fmaxf). scratch: kWarps floats.
template <int kThreads>
EDLM_DEVICE float block_max(float x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_max(x);
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float r = -INFINITY;
#pragma unroll
  for (int i = 0; i < BlockDims<kThreads>::kWarps; ++i) r = fmaxf(r, scratch[i]);
  __syncthreads();
  return r;
}

// Block-wide sum. scratch: kWarps values of U.
template <int kThreads, typename U>
EDLM_DEVICE U block_sum(U x, U* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum(x);
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  U r = 0;
#pragma unroll
  for (int i = 0; i < BlockDims<kThreads>::kWarps; ++i) r += scratch[i];
  __syncthreads();
  return r;
}

// Block-wide exclusive prefix in thread order; *total gets the sum. scratch: kWarps of U.
template <int kThreads, typename U>
EDLM_DEVICE U block_exclusive_scan(U x, U* total, U* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const U incl = warp_inclusive_scan(x, lane);
  if (lane == 31) scratch[warp] = incl;
  __syncthreads();
  U before = 0, sum = 0;
#pragma unroll
  for (int i = 0; i < BlockDims<kThreads>::kWarps; ++i) {
    if (i < warp) before += scratch[i];
    sum += scratch[i];
  }
  __syncthreads();
  *total = sum;
  return before + incl - x;
}

// Block-wide minimum of an int64 (INT64_MAX: none). scratch: kWarps int64.
template <int kThreads>
EDLM_DEVICE int64_t block_min_index(int64_t x, int64_t* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_min(x);
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  int64_t r = INT64_MAX;
#pragma unroll
  for (int i = 0; i < BlockDims<kThreads>::kWarps; ++i) r = scratch[i] < r ? scratch[i] : r;
  __syncthreads();
  return r;
}

// ---- selection ------------------------------------------------------------------------

// Shared memory of block_radix_select: a 256-bin histogram of 64-bit measures kept as two
// 32-bit words (lo, hi: 32-bit shared atomics with the carry counted, so any 64-bit total
// is exact and the result does not depend on the order of the additions), and the
// per-warp scratch of its scan.
struct RadixShared {
  uint32_t lo[kRadixBins];
  uint32_t hi[kRadixBins];
  uint64_t scan[32];
  uint64_t above;  // measure above the chosen digit
  int digit;
};

// hist += q, exactly, with 32-bit atomics: the low word's carry goes to the high word.
EDLM_DEVICE void atomic_add_u64_split(uint32_t* lo, uint32_t* hi, uint64_t q) {
  const uint32_t ql = static_cast<uint32_t>(q);
  uint32_t qh = static_cast<uint32_t>(q >> 32);
  if (ql != 0) {
    const uint32_t old = atomicAdd(lo, ql);
    qh += static_cast<uint32_t>(old + ql < old);
  }
  if (qh != 0) atomicAdd(hi, qh);
}

template <typename Key>
struct RadixResult {
  Key tau;
  uint64_t above;  // the measure of the items with key > tau (< target)
};

// The largest key tau (Key: uint32_t or uint64_t) with
//   sum of measure(i) over the items i with key(i) >= tau  >=  target        (radix_select.h)
// over the items of the whole block: for_each(f) calls f(key, measure) for each item this
// thread holds (it is called once per digit, 4 or 8 times). target (uniform) must be in
// [1, total measure]. One thread per digit: kThreads == 256. Deterministic.
template <int kThreads, typename Key, typename ForEach>
EDLM_DEVICE RadixResult<Key> block_radix_select(const ForEach& for_each, uint64_t target, RadixShared& sh) {
  static_assert(kThreads == kRadixBins, "one thread per radix digit");
  const int t = threadIdx.x;
  Key prefix = 0;
  uint64_t remaining = target;  // of the measure, still to be found at and below the prefix
  for (int shift = static_cast<int>(8 * sizeof(Key)) - 8; shift >= 0; shift -= 8) {
    const Key high = shift + 8 >= static_cast<int>(8 * sizeof(Key)) ? Key{0} : static_cast<Key>(~Key{0} << (shift + 8));
    sh.lo[t] = 0;
    sh.hi[t] = 0;
    __syncthreads();
    for_each([&](Key key, uint64_t q) {
      if (q != 0 && (key & high) == prefix) {
        const int d = static_cast<int>((key >> shift) & (kRadixBins - 1));
        atomic_add_u64_split(&sh.lo[d], &sh.hi[d], q);
      }
    });
    __syncthreads();
    // thread t holds digit 255 - t: the exclusive scan is the measure above its digit
    const int digit = kRadixBins - 1 - t;
    const uint64_t count = (static_cast<uint64_t>(sh.hi[digit]) << 32) | sh.lo[digit];
    uint64_t total;
    const uint64_t above = block_exclusive_scan<kThreads>(count, &total, sh.scan);
    if (radix_digit_holds(above, count, remaining)) {  // exactly one thread (target <= total)
      sh.digit = digit;
      sh.above = above;
    }
    __syncthreads();
    prefix |= static_cast<Key>(sh.digit) << shift;
    remaining -= sh.above;
    __syncthreads();  // sh is rewritten by the next digit (or the next call)
  }
  return RadixResult<Key>{prefix, target - remaining};
}

// Sorts a[0, n) ascending in shared memory (n a power of two, uniform). Deterministic.
template <int kThreads>
EDLM_DEVICE void block_bitonic_sort(uint64_t* a, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < n / 2; i += kThreads) {
        // pair (lo, lo + stride) of the i-th comparator; ascending where (lo & size) == 0
        const int lo = 2 * i - (i & (stride - 1));
        const int hi = lo + stride;
        const uint64_t x = a[lo], y = a[hi];
        const bool up = (lo & size) == 0;
        if ((x > y) == up) {
          a[lo] = y;
          a[hi] = x;
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace cuda
}  // namespace edlm
