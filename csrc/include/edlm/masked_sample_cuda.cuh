// CUDA kernel of edlm_ext.masked_sample and sample_proposals: one thread block
// per [B, L] row, k draws from one read of it.
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
//  pass 3  per draw, a warp re-reads its tile (2 KB), recomputes the terms and
//          finds the token by a float64 warp scan (k draws: k tiles, k uniforms).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "edlm/common.h"
#include "edlm/philox.h"
#include "edlm/warp.cuh"

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
EDLM_DEVICE uint16_t half_word(const uint4& w, int j) {  // 16-bit element j of 8
  const uint32_t word = j < 2 ? w.x : j < 4 ? w.y : j < 6 ? w.z : w.w;
  return static_cast<uint16_t>(j & 1 ? word >> 16 : word & 0xffffu);
}
template <>
struct VecTraits<Bf16> {
  static constexpr int kVec = 8;
  static EDLM_DEVICE float to_float(Bf16 x) { return __uint_as_float(static_cast<uint32_t>(x.bits) << 16); }
  static EDLM_DEVICE float element(const uint4& w, int j) { return to_float(Bf16{half_word(w, j)}); }
};
template <>
struct VecTraits<F16> {
  static constexpr int kVec = 8;
  static EDLM_DEVICE float to_float(F16 x) { return __half2float(__ushort_as_half(x.bits)); }
  static EDLM_DEVICE float element(const uint4& w, int j) { return to_float(F16{half_word(w, j)}); }
};

// A row is split into work items of kVec elements: item 0 is the head before the
// first 16-byte-aligned element (possibly empty), items 1..nbody are aligned
// vectors, the last item is the tail. Missing elements and [MASK] read as -inf.
template <typename T>
struct RowView {
  static constexpr int kVec = VecTraits<T>::kVec;
  const T* row;
  int64_t V, mask_id;
  float thr;      // filter threshold: logits below it read as -inf (-inf: no filter)
  int64_t head;   // elements before the first aligned one
  int64_t nbody;  // full aligned vectors
  int64_t nitems;

  EDLM_DEVICE RowView(const T* r, int64_t V_, int64_t mask, float threshold = -INFINITY)
      : row(r), V(V_), mask_id(mask), thr(threshold) {
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
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = VecTraits<T>::element(raw, j);
    } else {
      const int64_t end = w == 0 ? head : V;
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = start + j < end ? VecTraits<T>::to_float(row[start + j]) : -INFINITY;
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] = v[j] < thr ? -INFINITY : v[j];  // NaN stays NaN
    if (mask_id >= start && mask_id < start + kVec) {
#pragma unroll
      for (int j = 0; j < kVec; ++j)
        if (start + j == mask_id) v[j] = -INFINITY;
    }
  }
};

template <int kThreads>
struct BlockShared {
  static constexpr int kWarps = kThreads / 32;
  float fred[kWarps];
  double dred[kWarps];
  int64_t ired[kWarps];
  int flag;
  int last_nonzero;
  // One chunk of up to kWarps draws at a time: draw jj's target u z, the thread
  // whose tiles hold it, and the chosen tile with the position r in [0, 1) inside it.
  double target[kWarps];
  int winner[kWarps];
  int64_t win_tile[kWarps];
  double win_r[kWarps];
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

// Block argmax of per-thread candidates (best value, its lowest index): the
// lowest index among threads holding the block max m. Uses sh.ired.
template <int kThreads>
EDLM_DEVICE int64_t block_argmin_index(float best, int64_t best_i, float m, BlockShared<kThreads>& sh) {
  int64_t cand = (best == m && best_i >= 0) ? best_i : INT64_MAX;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const int64_t y = __shfl_xor_sync(0xffffffffu, cand, o);
    cand = y < cand ? y : cand;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh.ired[warp] = cand;
  __syncthreads();
  int64_t r = INT64_MAX;
#pragma unroll
  for (int i = 0; i < BlockShared<kThreads>::kWarps; ++i) r = sh.ired[i] < r ? sh.ired[i] : r;
  __syncthreads();
  return r;
}

// Items per warp tile: each lane loads kTileVecs vectors, so a tile is
// 32 * kTileVecs consecutive items (1024 bf16/fp16 or 512 fp32 logits).
constexpr int kTileVecs = 4;
constexpr int kTileItems = 32 * kTileVecs;

EDLM_HD int64_t num_tiles(int64_t nitems) { return (nitems + kTileItems - 1) / kTileItems; }

// One block per row (at least 4 resident per SM: <= 64 registers); dynamic shared
// memory: num_tiles(items) float4 (tile max, tile sum, entropy sum). Draws k tokens
// per masked row from one read of it. logits row (b, l) at logits + b*sb + l*sl;
// x_t likewise with (xsb, xsl); outputs tok, logp contiguous [B, k, L], entropy
// [B*L] (nullptr: not wanted). thresh: per-row filter thresholds [B*L] from
// filter_threshold_kernel (nullptr: no filter). rng = {seed, offset} on the device;
// draw j uses stream kDomainSample + offset + j. c = log2(e) * inv_t; greedy (a
// template flag, to keep the sampling path's registers free) draws the argmax and reports statistics at inv_t = 1. Invalid rows get [MASK]
// and logp NaN.
template <typename T, int kThreads, bool greedy>
__global__ void __launch_bounds__(kThreads, 4)
    sample_kernel(const T* __restrict__ logits, int64_t sb, int64_t sl, const int64_t* __restrict__ xt, int64_t xsb,
                  int64_t xsl, int64_t L, int64_t V, int64_t mask_id, int64_t k, float c, double inv_t,
                  const float* __restrict__ thresh, const int64_t* __restrict__ rng, int64_t* __restrict__ out_tok,
                  float* __restrict__ out_logp, float* __restrict__ entropy) {
  constexpr int kVec = RowView<T>::kVec;
  constexpr int kWarps = kThreads / 32;
  EDLM_SHARED(BlockShared<kThreads>, sh);
  EDLM_DYNAMIC_SHARED(float4, tiles);
  const int64_t row = blockIdx.x;
  const int64_t b = row / L, l = row % L;
  int64_t* tok = out_tok + b * k * L + l;  // draw j at tok[j * L]
  float* logp = out_logp + b * k * L + l;
  auto write_all = [&](int64_t token, float lp, float h) {
    for (int64_t j = threadIdx.x; j < k; j += kThreads) {
      tok[j * L] = token;
      logp[j * L] = lp;
    }
    if (entropy != nullptr && threadIdx.x == 0) entropy[row] = h;
  };
  const int64_t xv = xt[b * xsb + l * xsl];
  if (xv != mask_id) {
    const bool ok = xv >= 0 && xv < V;
    write_all(ok ? xv : mask_id, ok ? 0.0f : NAN, ok ? 0.0f : NAN);
    return;
  }
  const RowView<T> rv(logits + b * sb + l * sl, V, mask_id, thresh != nullptr ? thresh[row] : -INFINITY);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const bool want_h = entropy != nullptr;
  const float inv_tf = static_cast<float>(inv_t);

  // pass 1: warp w reduces tiles w, w + kWarps, ...: tile max m_t,
  // s_t = Σ 2^((l - m_t) c) and, for the entropy, Σ 2^((l - m_t) c) (l - m_t) / T.
  // A NaN or +inf makes s_t NaN. Greedy: each lane also keeps its first max.
  const int64_t nt = num_tiles(rv.nitems);
  float best = -INFINITY;
  int64_t best_i = -1;
  for (int64_t t = warp; t < nt; t += kWarps) {
    float v[kTileVecs][kVec];
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j) {
      const int64_t w = t * kTileItems + j * 32 + lane;
      if (w < rv.nitems) {
        rv.load(w, v[j]);
        if constexpr (greedy) {
          const int64_t start = rv.item_start(w);
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            if (v[j][e] > best) {  // a lane visits its items in token order
              best = v[j][e];
              best_i = start + e;
            }
        }
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
    float acc = 0.0f, wacc = 0.0f;
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j)
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float term = exp2f((v[j][e] - base) * c);
        acc += term;
        if (want_h) wacc += term > 0.0f ? term * ((v[j][e] - base) * inv_tf) : 0.0f;
      }
    acc = warp_sum(acc);
    if (want_h) wacc = warp_sum(wacc);
    if (lane == 0) tiles[t] = make_float4(mx, acc, wacc, 0.0f);
  }
  __syncthreads();

  // pass 2: row max and poison flag; tile masses in float64; thread i owns the
  // contiguous tiles [i*per, (i+1)*per), so prefixes follow token order.
  const int64_t per = (nt + kThreads - 1) / kThreads;
  const int64_t t0 = threadIdx.x * per, t1 = t0 + per < nt ? t0 + per : nt;
  float mloc = -INFINITY;
  bool poisoned = false;
  for (int64_t t = t0; t < t1; ++t) {
    mloc = fmaxf(mloc, tiles[t].x);
    poisoned |= tiles[t].y != tiles[t].y;
  }
  if (threadIdx.x == 0) {
    sh.flag = 0;
    sh.last_nonzero = -1;
  }
  const float m = block_max<kThreads>(mloc, sh);  // syncs: init above is visible after
  if (poisoned) sh.flag = 1;
  auto tile_scale = [&](int64_t t) -> double {
    return tiles[t].x == -INFINITY ? 0.0 : exp2(static_cast<double>(tiles[t].x - m) * c);
  };
  double mass = 0.0, weighted = 0.0;
  for (int64_t t = t0; t < t1; ++t) {
    const double f = tile_scale(t);
    mass += static_cast<double>(tiles[t].y) * f;
    if (want_h && f > 0.0)
      weighted += f * (static_cast<double>(tiles[t].z) + static_cast<double>(tiles[t].y) * (tiles[t].x - m) * inv_t);
  }
  if (mass > 0.0) atomicMax(&sh.last_nonzero, static_cast<int>(threadIdx.x));
  double z, wtotal = 0.0;
  const double below = block_exclusive_scan<kThreads>(mass, &z, sh);  // syncs: flag visible after
  if (want_h) block_exclusive_scan<kThreads>(weighted, &wtotal, sh);
  if (sh.flag || m == -INFINITY || m == INFINITY) {
    write_all(mask_id, NAN, NAN);
    return;
  }
  const double log_z = log(z);
  const float h = want_h ? static_cast<float>(log_z - wtotal / z) : 0.0f;
  if constexpr (greedy) {  // the argmax has value m: logp = -log z
    const int64_t i = block_argmin_index<kThreads>(best, best_i, m, sh);
    write_all(i, static_cast<float>(-log_z), h);
    return;
  } else {
    if (want_h && threadIdx.x == 0) entropy[row] = h;
    const RngKey key = load_rng_key(rng);
    for (int64_t j0 = 0; j0 < k; j0 += kWarps) {
      const int nj = k - j0 < kWarps ? static_cast<int>(k - j0) : kWarps;
      if (threadIdx.x < nj) {
        const uint64_t stream = kDomainSample + key.offset + static_cast<uint64_t>(j0 + threadIdx.x);
        sh.target[threadIdx.x] = row_uniform(key, static_cast<uint64_t>(row), stream) * z;
        sh.winner[threadIdx.x] = kThreads;  // none yet (atomicMin keeps the lowest claimant)
      }
      __syncthreads();
      if (mass > 0.0) {
        for (int jj = 0; jj < nj; ++jj)
          if (sh.target[jj] >= below && sh.target[jj] < below + mass) atomicMin(&sh.winner[jj], static_cast<int>(threadIdx.x));
      }
      __syncthreads();
      for (int jj = 0; jj < nj; ++jj) {
        const bool hit = sh.winner[jj] < kThreads;
        if (threadIdx.x != (hit ? sh.winner[jj] : sh.last_nonzero)) continue;
        // Walk this thread's tiles to the one holding the target (or the last
        // non-empty one when rounding put the target on the total).
        double cum = below, r = 0x1.fffffffffffffp-1;
        int64_t pick = -1, last = -1;
        for (int64_t t = t0; t < t1; ++t) {
          const double ct = static_cast<double>(tiles[t].y) * tile_scale(t);
          if (ct <= 0.0) continue;
          last = t;
          if (hit && sh.target[jj] < cum + ct) {
            pick = t;
            r = (sh.target[jj] - cum) / ct;
            break;
          }
          cum += ct;
        }
        sh.win_tile[jj] = pick >= 0 ? pick : last;
        sh.win_r[jj] = r < 0.0 ? 0.0 : (r >= 1.0 ? 0x1.fffffffffffffp-1 : r);
      }
      __syncthreads();

      // pass 3: warp w finds draw j0 + w inside its tile (re-read, ~2 KB): the
      // tile's items in token order are (j, lane); float64 warp scans find the token.
      if (warp < nj) {
        const int64_t tile = sh.win_tile[warp];
        const float mt = tiles[tile].x;
        float v[kTileVecs][kVec];
        double e[kTileVecs];
        double total = 0.0;
  #pragma unroll
        for (int j = 0; j < kTileVecs; ++j) {
          const int64_t w = tile * kTileItems + j * 32 + lane;
          e[j] = 0.0;
          if (w < rv.nitems) {
            rv.load(w, v[j]);
  #pragma unroll
            for (int q = 0; q < kVec; ++q) e[j] += static_cast<double>(exp2f((v[j][q] - mt) * c));
          } else {
  #pragma unroll
            for (int q = 0; q < kVec; ++q) v[j][q] = -INFINITY;
          }
          total += e[j];
        }
        total = warp_sum(total);
        const double target = sh.win_r[warp] * total;
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
            const int64_t start = rv.item_start(tile * kTileItems + j * 32 + lane);
            double cum = running + incl - e[j];
            int64_t last = -1;
  #pragma unroll
            for (int q = 0; q < kVec; ++q) {
              const double eq = static_cast<double>(exp2f((v[j][q] - mt) * c));
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
          tok[(j0 + warp) * L] = pick;
          logp[(j0 + warp) * L] = static_cast<float>(static_cast<double>(lv - m) * inv_t - log_z);
        }
      }
      __syncthreads();  // the next chunk reuses sh.target / winner / win_*
    }
  }  // !greedy
}

}  // namespace cuda
}  // namespace edlm
