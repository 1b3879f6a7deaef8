// CUDA kernel of edlm_ext.masked_sample: one thread block per [B, L] row.
// Torch-free (raw pointers and sizes); launched from csrc/cuda/masked_sample.cu.
//
// Same method as the CPU kernel (edlm/masked_sample.h), same token order, so the
// same uniform gives the same token on both: one read of the row, O(1) random
// numbers per row, exact to float32 relative accuracy per token.
//  pass 1  warps stream the row in coalesced 16-byte vectors, one tile of
//          32 x kTileVecs vectors at a time, and store per tile (max m_k,
//          s_k = Σ 2^((l - m_k) c)) in shared memory. NaN / +inf poison s_k.
//  pass 2  m = max m_k, tile masses c_k = s_k 2^((m_k - m) c) and their prefix in
//          float64 (token order), one Philox uniform u (53 bits): the tile that
//          holds u·Z.
//  pass 3  warp 0 re-reads that tile (2 KB), recomputes its terms and finds the
//          token by a float64 warp scan.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "edlm/common.h"
#include "edlm/philox.h"

namespace edlm {
namespace cuda {

struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

template <typename T>
struct VecTraits;
template <>
struct VecTraits<float> {
  static constexpr int kVec = 4;
  static EDLM_DEVICE float to_float(float x) { return x; }
};
template <>
struct VecTraits<Bf16> {
  static constexpr int kVec = 8;
  static EDLM_DEVICE float to_float(Bf16 x) { return __uint_as_float(static_cast<uint32_t>(x.bits) << 16); }
};
template <>
struct VecTraits<F16> {
  static constexpr int kVec = 8;
  static EDLM_DEVICE float to_float(F16 x) { return __half2float(__ushort_as_half(x.bits)); }
};

// A row is split into work items of kVec elements: item 0 is the head before the
// first 16-byte-aligned element (possibly empty), items 1..nbody are aligned
// vectors, the last item is the tail. Missing elements and [MASK] read as -inf.
template <typename T>
struct RowView {
  static constexpr int kVec = VecTraits<T>::kVec;
  const T* row;
  int64_t V, mask_id;
  int64_t head;   // elements before the first aligned one
  int64_t nbody;  // full aligned vectors
  int64_t nitems;

  EDLM_DEVICE RowView(const T* r, int64_t V_, int64_t mask) : row(r), V(V_), mask_id(mask) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(r);
    const int64_t mis = static_cast<int64_t>((16 - (addr & 15)) & 15) / static_cast<int64_t>(sizeof(T));
    head = mis < V ? mis : V;
    nbody = (V - head) / kVec;
    nitems = 1 + nbody + ((V - head) % kVec ? 1 : 0);
  }
  EDLM_DEVICE int64_t item_start(int64_t w) const { return w == 0 ? 0 : head + (w - 1) * kVec; }

  EDLM_DEVICE void load(int64_t w, float (&v)[kVec]) const {
    const int64_t start = item_start(w);
    if (w >= 1 && w <= nbody) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(row + start));
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = VecTraits<T>::to_float(e[j]);
    } else {
      const int64_t end = w == 0 ? head : V;
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = start + j < end ? VecTraits<T>::to_float(row[start + j]) : -INFINITY;
    }
    if (mask_id >= start && mask_id < start + kVec) {
#pragma unroll
      for (int j = 0; j < kVec; ++j)
        if (start + j == mask_id) v[j] = -INFINITY;
    }
  }
};

template <typename U>
EDLM_DEVICE U warp_sum(U x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
EDLM_DEVICE float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
EDLM_DEVICE double warp_inclusive_scan(double x, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  return x;
}

template <int kThreads>
struct BlockShared {
  static constexpr int kWarps = kThreads / 32;
  float fred[kWarps];
  double dred[kWarps];
  int64_t ired[kWarps];
  int flag;
  int winner, last_nonzero;
  int64_t win_tile;
  double win_r;
};

// Block-wide max of a float (all threads get it). Uses sh.fred.
template <int kThreads>
EDLM_DEVICE float block_max(float x, BlockShared<kThreads>& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_max(x);
  if (lane == 0) sh.fred[warp] = x;
  __syncthreads();
  float r = -INFINITY;
#pragma unroll
  for (int i = 0; i < BlockShared<kThreads>::kWarps; ++i) r = fmaxf(r, sh.fred[i]);
  __syncthreads();
  return r;
}

// Block-wide exclusive prefix of a double; *total gets the sum. Uses sh.dred.
template <int kThreads>
EDLM_DEVICE double block_exclusive_scan(double x, double* total, BlockShared<kThreads>& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const double incl = warp_inclusive_scan(x, lane);
  if (lane == 31) sh.dred[warp] = incl;
  __syncthreads();
  double before = 0.0, sum = 0.0;
#pragma unroll
  for (int i = 0; i < BlockShared<kThreads>::kWarps; ++i) {
    if (i < warp) before += sh.dred[i];
    sum += sh.dred[i];
  }
  __syncthreads();
  *total = sum;
  return before + incl - x;
}

// Greedy: block argmax, lowest index on ties. Returns the index to all threads
// (-1 if every element is -inf); *bad set when a NaN or +inf was seen.
template <typename T, int kThreads>
EDLM_DEVICE int64_t block_argmax(const RowView<T>& rv, bool* bad, BlockShared<kThreads>& sh) {
  constexpr int kVec = RowView<T>::kVec;
  float best = -INFINITY;
  int64_t best_i = -1;
  bool poisoned = false;
  for (int64_t w = threadIdx.x; w < rv.nitems; w += kThreads) {
    float v[kVec];
    rv.load(w, v);
    const int64_t start = rv.item_start(w);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      poisoned |= (v[j] != v[j]) || (v[j] == INFINITY);
      if (v[j] > best) {  // items visited in increasing order: first max kept
        best = v[j];
        best_i = start + j;
      }
    }
  }
  const float m = block_max<kThreads>(best, sh);
  int64_t cand = (best == m && best_i >= 0) ? best_i : INT64_MAX;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const int64_t y = __shfl_xor_sync(0xffffffffu, cand, o);
    cand = y < cand ? y : cand;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) sh.flag = 0;
  if (lane == 0) sh.ired[warp] = cand;
  __syncthreads();
  if (poisoned) sh.flag = 1;
  int64_t r = INT64_MAX;
#pragma unroll
  for (int i = 0; i < BlockShared<kThreads>::kWarps; ++i) r = sh.ired[i] < r ? sh.ired[i] : r;
  __syncthreads();
  *bad = sh.flag != 0 || m == -INFINITY;
  return r == INT64_MAX ? -1 : r;
}

// Items per warp tile: each lane loads kTileVecs vectors, so a tile is
// 32 * kTileVecs consecutive items (1024 bf16/fp16 or 512 fp32 logits).
constexpr int kTileVecs = 4;
constexpr int kTileItems = 32 * kTileVecs;

EDLM_HD int64_t num_tiles(int64_t nitems) { return (nitems + kTileItems - 1) / kTileItems; }

// One block per row (at least 4 resident per SM: <= 64 registers); dynamic shared memory: num_tiles(items) float2 (tile max, tile sum).
// logits row (b, l) at logits + b*sb + l*sl; x_t likewise with (xsb, xsl);
// outputs x0, logp contiguous [B*L]. rng = {seed, offset} on the device.
// c = log2(e) / T; greedy selects the argmax (T == 0).
template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads, 4)
    masked_sample_kernel(const T* __restrict__ logits, int64_t sb, int64_t sl, const int64_t* __restrict__ xt,
                         int64_t xsb, int64_t xsl, int64_t L, int64_t V, int64_t mask_id, float c, double inv_t,
                         bool greedy, const int64_t* __restrict__ rng, int64_t* __restrict__ x0,
                         float* __restrict__ logp) {
  constexpr int kVec = RowView<T>::kVec;
  constexpr int kWarps = kThreads / 32;
  __shared__ BlockShared<kThreads> sh;
  extern __shared__ float2 tiles[];
  const int64_t row = blockIdx.x;
  const int64_t b = row / L, l = row % L;
  const int64_t xv = xt[b * xsb + l * xsl];
  if (xv != mask_id) {
    if (threadIdx.x == 0) {
      const bool ok = xv >= 0 && xv < V;
      x0[row] = ok ? xv : mask_id;
      logp[row] = ok ? 0.0f : NAN;
    }
    return;
  }
  const RowView<T> rv(logits + b * sb + l * sl, V, mask_id);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  if (greedy) {
    bool bad;
    const int64_t i = block_argmax<T, kThreads>(rv, &bad, sh);
    if (threadIdx.x == 0) {
      x0[row] = bad ? mask_id : i;
      logp[row] = bad ? NAN : 0.0f;
    }
    return;
  }

  // pass 1: warp w reduces tiles w, w + kWarps, ...: tile max m_k and
  // s_k = Σ 2^((l - m_k) c). A NaN or +inf makes s_k NaN.
  const int64_t nt = num_tiles(rv.nitems);
  for (int64_t k = warp; k < nt; k += kWarps) {
    float v[kTileVecs][kVec];
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j) {
      const int64_t w = k * kTileItems + j * 32 + lane;
      if (w < rv.nitems) {
        rv.load(w, v[j]);
      } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e) v[j][e] = -INFINITY;
      }
    }
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j)
#pragma unroll
      for (int e = 0; e < kVec; ++e) mx = fmaxf(mx, v[j][e]);
    mx = warp_max(mx);
    const float base = mx == -INFINITY ? 0.0f : mx;  // all -inf: terms are 0 (NaN stays NaN)
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j)
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc += exp2f((v[j][e] - base) * c);
    acc = warp_sum(acc);
    if (lane == 0) tiles[k] = make_float2(mx, acc);
  }
  __syncthreads();

  // pass 2: row max and poison flag; tile masses in float64; thread t owns the
  // contiguous tiles [t*per, (t+1)*per), so prefixes follow token order.
  const int64_t per = (nt + kThreads - 1) / kThreads;
  const int64_t t0 = threadIdx.x * per, t1 = t0 + per < nt ? t0 + per : nt;
  float mloc = -INFINITY;
  bool poisoned = false;
  for (int64_t k = t0; k < t1; ++k) {
    mloc = fmaxf(mloc, tiles[k].x);
    poisoned |= tiles[k].y != tiles[k].y;
  }
  if (threadIdx.x == 0) {
    sh.flag = 0;
    sh.winner = kThreads;  // none yet (atomicMin keeps the lowest claimant)
    sh.last_nonzero = -1;
  }
  const float m = block_max<kThreads>(mloc, sh);  // syncs: init above is visible after
  if (poisoned) sh.flag = 1;
  double mass = 0.0;
  for (int64_t k = t0; k < t1; ++k)
    if (tiles[k].x != -INFINITY) mass += static_cast<double>(tiles[k].y) * exp2(static_cast<double>(tiles[k].x - m) * c);
  double z;
  const double below = block_exclusive_scan<kThreads>(mass, &z, sh);  // syncs: flag visible after
  if (sh.flag || m == -INFINITY || m == INFINITY) {
    if (threadIdx.x == 0) {
      x0[row] = mask_id;
      logp[row] = NAN;
    }
    return;
  }
  const double u = row_uniform(RngKey{static_cast<uint64_t>(rng[0]), static_cast<uint64_t>(rng[1])},
                               static_cast<uint64_t>(row), static_cast<uint64_t>(rng[1]));
  const double target_row = u * z;
  if (mass > 0.0) {
    if (target_row >= below && target_row < below + mass) atomicMin(&sh.winner, static_cast<int>(threadIdx.x));
    atomicMax(&sh.last_nonzero, static_cast<int>(threadIdx.x));
  }
  __syncthreads();
  const bool hit = sh.winner < kThreads;
  if (threadIdx.x == (hit ? sh.winner : sh.last_nonzero)) {
    // Walk this thread's tiles to the one holding target_row (or the last
    // non-empty one when rounding put target_row on the total).
    double cum = below;
    int64_t pick = -1, last = -1;
    double r = 0x1.fffffffffffffp-1;
    for (int64_t k = t0; k < t1; ++k) {
      if (tiles[k].x == -INFINITY) continue;
      const double ck = static_cast<double>(tiles[k].y) * exp2(static_cast<double>(tiles[k].x - m) * c);
      if (ck <= 0.0) continue;
      last = k;
      if (hit && target_row < cum + ck) {
        pick = k;
        r = (target_row - cum) / ck;
        break;
      }
      cum += ck;
    }
    if (pick < 0) pick = last;
    sh.win_tile = pick;
    sh.win_r = r < 0.0 ? 0.0 : (r >= 1.0 ? 0x1.fffffffffffffp-1 : r);
  }
  __syncthreads();
  if (warp != 0) return;

  // pass 3 (warp 0): re-read the chosen tile; its items in token order are
  // (j, lane); float64 warp scans find the token.
  const int64_t k = sh.win_tile;
  const float mk = tiles[k].x;
  float v[kTileVecs][kVec];
  double e[kTileVecs];
  double total = 0.0;
#pragma unroll
  for (int j = 0; j < kTileVecs; ++j) {
    const int64_t w = k * kTileItems + j * 32 + lane;
    e[j] = 0.0;
    if (w < rv.nitems) {
      rv.load(w, v[j]);
#pragma unroll
      for (int q = 0; q < kVec; ++q) e[j] += static_cast<double>(exp2f((v[j][q] - mk) * c));
    } else {
#pragma unroll
      for (int q = 0; q < kVec; ++q) v[j][q] = -INFINITY;
    }
    total += e[j];
  }
  total = warp_sum(total);
  const double target = sh.win_r * total;
  double running = 0.0;
  int64_t pick = -1, fallback = -1;
#pragma unroll
  for (int j = 0; j < kTileVecs; ++j) {
    if (pick >= 0) break;
    const double incl = warp_inclusive_scan(e[j], lane);
    const unsigned cross = __ballot_sync(0xffffffffu, e[j] > 0.0 && running + incl > target);
    const unsigned pos = __ballot_sync(0xffffffffu, e[j] > 0.0);
    const int src = cross ? __ffs(cross) - 1 : (pos ? 31 - __clz(pos) : -1);
    int64_t found = -1;
    if (src >= 0 && lane == src) {
      const int64_t start = rv.item_start(k * kTileItems + j * 32 + lane);
      double cum = running + incl - e[j];
      int64_t last = -1;
#pragma unroll
      for (int q = 0; q < kVec; ++q) {
        const double eq = static_cast<double>(exp2f((v[j][q] - mk) * c));
        if (eq > 0.0) {
          cum += eq;
          last = start + q;
          if (cross && found < 0 && cum > target) found = start + q;
        }
      }
      if (found < 0) found = last;
    }
    if (src >= 0) {
      found = __shfl_sync(0xffffffffu, found, src);
      if (cross) pick = found;
      else fallback = found;
    }
    running += __shfl_sync(0xffffffffu, incl, 31);
  }
  if (pick < 0) pick = fallback;
  if (lane == 0) {
    const float lv = VecTraits<T>::to_float(rv.row[pick]);
    x0[row] = pick;
    logp[row] = static_cast<float>(static_cast<double>(lv - m) * inv_t - log(z));
  }
}

}  // namespace cuda
}  // namespace edlm
