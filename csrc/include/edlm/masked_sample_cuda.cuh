// CUDA form of masked_sample / sample_proposals: one thread block per [B, L] row, k draws
// from one read of it. Torch-free (raw pointers and sizes); launched by the torch-free launch
// logic of edlm/masked_sample_launch.cuh.
//
// The passes of the CPU form (edlm/masked_sample.h), with the same names and rules:
//   tile_statistics  warp w streams tiles w, w + kWarps, ... (a tile: 32 lanes x kTileVecs
//                    16-byte vectors, the vectors all loaded before any is used), per tile
//                    (m_t, s_t = Σ 2^(l c - b_t), the entropy's Σ 2^(arg) arg) in shared memory.
//                    Tiles that hold the head, the tail or [MASK] are read element by element
//                    in a second loop, so the streaming loop has no per-element test.
//   row_prefix       thread i owns the contiguous tiles [i per, (i+1) per): float64 tile
//                    masses, a block scan (token order): Z, log Z, the entropy
//   locate_tile      per draw, the thread whose tiles hold u Z walks them to the tile and r
//   draw_in_tile     warp w re-reads draw w's tile (~2 KB), recomputes its terms bit for bit,
//                    float64 warp scans find the token
// The same uniform gives the same token as on the CPU except within float rounding of a CDF
// boundary (the tiles and exp2 differ; tests/agreement.py). With filters the launch logic
// runs filtered_sample_kernel (edlm/filter_cuda.cuh), which uses these passes too.
#pragma once
#include <cstdint>

#include "edlm/block_primitives.cuh"
#include "edlm/common.h"
#include "edlm/masked_sample.h"
#include "edlm/philox.h"

namespace edlm {
namespace cuda {

// Items per warp tile: each lane loads kTileVecs vectors, so a tile is 32 * kTileVecs
// consecutive items (1024 bf16/fp16 or 512 fp32 logits).
constexpr int kTileVecs = 4;
constexpr int kTileItems = 32 * kTileVecs;

EDLM_HD int64_t num_tiles(int64_t nitems) { return (nitems + kTileItems - 1) / kTileItems; }

template <int kThreads>
struct SampleShared {
  static constexpr int kWarps = kThreads / 32;
  float fscratch[kWarps];
  double dscratch[kWarps];
  int64_t iscratch[kWarps];
  int flag;
  int last_nonzero;
  // One chunk of up to kWarps draws at a time: draw jj's target u z, the thread
  // whose tiles hold it, and the chosen tile with the position r in [0, 1) inside it.
  double target[kWarps];
  int winner[kWarps];
  int64_t win_tile[kWarps];
  double win_r[kWarps];
};

// One masked row as the passes see it: the RowView, [MASK]'s item and tile, and the filter
// threshold (kFiltered: logits below thr read as -inf).
template <typename T, bool kFiltered>
struct SampleRow {
  static constexpr int kVec = VecTraits<T>::kVec;
  RowView<T> rv;
  int64_t mask_id, mask_item, mask_tile;
  float thr;  // kFiltered only
  EDLM_DEVICE SampleRow(const T* row, int64_t V, int64_t mask, float threshold)
      : rv(row, V), mask_id(mask), thr(threshold) {
    mask_item = mask < rv.head ? 0 : 1 + (mask - rv.head) / kVec;
    mask_tile = mask_item / kTileItems;
  }
  // A tile read through 16-byte vectors only: every item a body item, [MASK] elsewhere.
  EDLM_DEVICE bool vector_tile(int64_t t) const {
    return t != mask_tile && t * kTileItems >= 1 && (t + 1) * kTileItems - 1 <= rv.nbody;
  }
  EDLM_DEVICE float filtered(float v) const {
    if constexpr (kFiltered) return v < thr ? -INFINITY : v;  // NaN stays NaN
    else return v;
  }
  // Element e of item w, any item: -inf past the row, at [MASK] and below the threshold.
  EDLM_DEVICE float element(int64_t w, int e) const {
    if (w >= rv.nitems) return -INFINITY;
    const int64_t i = rv.item_start(w) + e, end = w == 0 ? rv.head : rv.V;
    return i >= end || i == mask_id ? -INFINITY : filtered(rv.at(i));
  }
  // Item w's elements as element() gives them, through one vector load for a body item.
  EDLM_DEVICE void item(int64_t w, float (&v)[kVec]) const {
    if (w >= rv.nitems) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[e] = -INFINITY;
      return;
    }
    rv.load(w, v);
    const int64_t start = rv.item_start(w);
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = start + e == mask_id ? -INFINITY : filtered(v[e]);
  }
};

// The terms of one tile from its values, given by value(j, e) (vector j of the lane,
// element e): the warp's max m_t, then s_t and (want_h) the entropy's Σ 2^arg max(arg, -128),
// arg = l c - b_t (fused, one rounding) or (l - m_t) c (edlm::tile_ref). Lane-wise parts
// reduced over the warp; every lane returns the tile's (m_t, s_t, w_t).
template <int kVec, typename Value>
EDLM_DEVICE float4 tile_terms(const Value& value, float c, bool want_h) {
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kTileVecs; ++j)
#pragma unroll
    for (int e = 0; e < kVec; ++e) mx = fmaxf(mx, value(j, e));  // NaN skipped: it shows in s_t
  mx = warp_max(mx);
  const TileRef ref = tile_ref(mx, c);
  float acc = 0.0f, wacc = 0.0f;
  if (ref.fused) {
    const float nb = -ref.b;
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j)
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float arg = fmaf(value(j, e), c, nb);
        const float term = exp2_ftz(arg);
        acc += term;
        if (want_h) wacc = fmaf(term, fmaxf(arg, -128.0f), wacc);
      }
  } else {  // |m_t c| > 2^22 (extreme temperatures) or m_t = +inf (poisons s_t)
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j)
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float arg = (value(j, e) - ref.b) * c;
        const float term = exp2_ftz(arg);
        acc += term;
        if (want_h) wacc = fmaf(term, fmaxf(arg, -128.0f), wacc);
      }
  }
  acc = warp_sum(acc);
  if (want_h) wacc = warp_sum(wacc);
  return make_float4(mx, acc, wacc, 0.0f);
}

// Greedy: the lowest index in tile t holding mx (the tile's max), from value(j, e).
template <int kVec, typename Start, typename Value>
EDLM_DEVICE int64_t tile_first_max(const Start& start, const Value& value, float mx) {
#pragma unroll
  for (int j = 0; j < kTileVecs; ++j) {
    int first = kVec;
#pragma unroll
    for (int e = kVec - 1; e >= 0; --e)
      if (value(j, e) == mx) first = e;
    const unsigned hit = __ballot_sync(0xffffffffu, first < kVec);
    if (hit) {
      const int src = __ffs(hit) - 1;
      return __shfl_sync(0xffffffffu, start(j) + first, src);
    }
  }
  return -1;  // (not reached: mx is one of the tile's values)
}

// Pass 1: tiles[t] = (m_t, s_t, w_t) for every tile of the row; greedy: this warp's first
// argmax (best, best_i). Vector tiles stream in one loop (kTileVecs 16-byte loads issued
// before their first use), the others follow element by element.
template <typename T, int kThreads, bool greedy, bool kFiltered>
EDLM_DEVICE void tile_statistics(const SampleRow<T, kFiltered>& row, float c, bool want_h, float4* tiles,
                                 float* best, int64_t* best_i) {
  constexpr int kVec = VecTraits<T>::kVec, kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t nt = num_tiles(row.rv.nitems);
  for (int64_t t = warp; t < nt; t += kWarps) {
    if (!row.vector_tile(t)) continue;
    uint4 raw[kTileVecs];
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j) raw[j] = row.rv.body(t * kTileItems + j * 32 + lane);
    auto value = [&](int j, int e) { return row.filtered(VecTraits<T>::element(raw[j], e)); };
    const float4 st = tile_terms<kVec>(value, c, want_h);
    if constexpr (greedy) {
      if (st.x > *best) {  // (a warp's tiles come in token order)
        *best = st.x;
        *best_i = tile_first_max<kVec>([&](int j) { return row.rv.item_start(t * kTileItems + j * 32 + lane); }, value,
                                       st.x);
      }
    }
    if (lane == 0) tiles[t] = st;
  }
  for (int64_t t = warp; t < nt; t += kWarps) {
    if (row.vector_tile(t)) continue;
    auto value = [&](int j, int e) { return row.element(t * kTileItems + j * 32 + lane, e); };
    const float4 st = tile_terms<kVec>(value, c, want_h);
    if constexpr (greedy) {
      // (slow tiles come after the vector ones: compare indices, not just values)
      if (st.x != -INFINITY && st.x >= *best) {
        const int64_t i = tile_first_max<kVec>([&](int j) { return row.rv.item_start(t * kTileItems + j * 32 + lane); },
                                               value, st.x);
        if (st.x > *best || i < *best_i) {
          *best = st.x;
          *best_i = i;
        }
      }
    }
    if (lane == 0) tiles[t] = st;
  }
}

// What row_prefix leaves for the draws (every thread holds it).
struct RowTotalsDevice {
  float m;        // row max
  double e_m;     // the row reference's offset (edlm::tile_ref_offset)
  double z;       // Σ tile masses relative to the reference
  double log_z;
  double below;   // this thread's exclusive prefix (its tiles start there)
  double mass;    // this thread's tiles' mass
  int64_t t0, t1; // this thread's tiles
  float entropy;
  bool valid;     // no NaN / +inf, a finite logit
};

// 2^(D_t) of tile t (0 for an empty tile), and its mass relative to the row reference: the
// same bits wherever they are recomputed.
EDLM_DEVICE double tile_scale(const float4* tiles, int64_t t, float m, double e_m, float c) {
  const float mt = tiles[t].x;
  if (mt == -INFINITY) return 0.0;
  return exp2(tile_scale_log2(mt, tile_ref_offset(mt, c, tile_ref(mt, c)), m, e_m, c));
}
EDLM_DEVICE double tile_mass(const float4* tiles, int64_t t, float m, double e_m, float c) {
  return static_cast<double>(tiles[t].y) * tile_scale(tiles, t, m, e_m, c);
}

// Pass 2: the row max, validity, the float64 prefix of tile masses, log Z and the entropy.
// Uses sh.fscratch, dscratch, flag, last_nonzero (last_nonzero: the last thread with mass).
template <int kThreads>
EDLM_DEVICE RowTotalsDevice row_prefix(const float4* tiles, int64_t nt, float c, double inv_t, bool want_h,
                                       SampleShared<kThreads>& sh) {
  RowTotalsDevice r;
  const int64_t per = (nt + kThreads - 1) / kThreads;
  r.t0 = threadIdx.x * per;
  r.t1 = r.t0 + per < nt ? r.t0 + per : nt;
  float mloc = -INFINITY;
  bool poisoned = false;
  for (int64_t t = r.t0; t < r.t1; ++t) {
    mloc = fmaxf(mloc, tiles[t].x);
    poisoned |= tiles[t].y != tiles[t].y;
  }
  if (threadIdx.x == 0) {
    sh.flag = 0;
    sh.last_nonzero = -1;
  }
  r.m = block_max<kThreads>(mloc, sh.fscratch);  // syncs: the init above is visible after
  if (poisoned) atomicOr(&sh.flag, 1);
  r.e_m = tile_ref_offset(r.m, c, tile_ref(r.m, c));
  double mass = 0.0, weighted = 0.0;
  for (int64_t t = r.t0; t < r.t1; ++t) {
    const double scale = tile_scale(tiles, t, r.m, r.e_m, c);
    mass += static_cast<double>(tiles[t].y) * scale;
    if (want_h && scale > 0.0) {
      const float mt = tiles[t].x;
      weighted += tile_weighted(scale, tiles[t].y, tiles[t].z, tile_ref_offset(mt, c, tile_ref(mt, c)), mt, r.m, c, inv_t);
    }
  }
  r.mass = mass;
  if (mass > 0.0) atomicMax(&sh.last_nonzero, static_cast<int>(threadIdx.x));
  r.below = block_exclusive_scan<kThreads>(mass, &r.z, sh.dscratch);  // syncs: flag visible after
  double wtotal = 0.0;
  if (want_h) wtotal = block_sum<kThreads>(weighted, sh.dscratch);
  r.valid = !sh.flag && r.m != -INFINITY && r.m != INFINITY;
  r.log_z = row_log_z(r.z, r.e_m);
  r.entropy = want_h ? static_cast<float>(r.log_z - wtotal / r.z) : 0.0f;
  return r;
}

// Passes 3 and 4 for draws [j0, j0 + nj), nj <= kWarps: locate each draw's tile, then warp w
// finds draw j0 + w inside it; lane 0 of that warp writes token and logp at tok[(j0+w) L].
template <typename T, int kThreads, bool kFiltered>
EDLM_DEVICE void draw_chunk(const SampleRow<T, kFiltered>& row, const float4* tiles, const RowTotalsDevice& rt,
                            float c, double inv_t, RngKey key, uint64_t row_index, int64_t j0, int nj, int64_t* tok,
                            float* logp, int64_t L, SampleShared<kThreads>& sh) {
  constexpr int kVec = VecTraits<T>::kVec;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // locate_tile
  if (threadIdx.x < nj) {
    const uint64_t stream = kDomainSample + key.offset + static_cast<uint64_t>(j0 + threadIdx.x);
    sh.target[threadIdx.x] = row_uniform(key, row_index, stream) * rt.z;
    sh.winner[threadIdx.x] = kThreads;  // none yet (atomicMin keeps the lowest claimant)
  }
  __syncthreads();
  if (rt.mass > 0.0) {
    for (int jj = 0; jj < nj; ++jj)
      if (sh.target[jj] >= rt.below && sh.target[jj] < rt.below + rt.mass) atomicMin(&sh.winner[jj], static_cast<int>(threadIdx.x));
  }
  __syncthreads();
  for (int jj = 0; jj < nj; ++jj) {
    const bool hit = sh.winner[jj] < kThreads;
    if (threadIdx.x != (hit ? sh.winner[jj] : sh.last_nonzero)) continue;
    // walk this thread's tiles to the one holding the target (or the last non-empty one
    // when rounding put the target on the total)
    double cum = rt.below, r = kBelowOne;
    int64_t pick = -1, last = -1;
    for (int64_t t = rt.t0; t < rt.t1; ++t) {
      const double ct = tile_mass(tiles, t, rt.m, rt.e_m, c);
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
    sh.win_r[jj] = r < 0.0 ? 0.0 : (r >= 1.0 ? kBelowOne : r);
  }
  __syncthreads();
  // draw_in_tile: the tile's items in token order are (j, lane); the terms as in pass 1
  if (warp < nj) {
    const int64_t tile = sh.win_tile[warp];
    const float mt = tiles[tile].x;
    const TileRef ref = tile_ref(mt, c);
    auto term = [&](float v) {
      return static_cast<double>(exp2_ftz(ref.fused ? fmaf(v, c, -ref.b) : (v - ref.b) * c));
    };
    auto item_terms = [&](int j) {
      float v[kVec];
      row.item(tile * kTileItems + j * 32 + lane, v);
      double s = 0.0;
#pragma unroll
      for (int q = 0; q < kVec; ++q) s += term(v[q]);
      return s;
    };
    double e[kTileVecs];
    double total = 0.0;
#pragma unroll
    for (int j = 0; j < kTileVecs; ++j) {
      e[j] = item_terms(j);
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
        const int64_t w = tile * kTileItems + j * 32 + lane;
        const int64_t start = row.rv.item_start(w);
        double cum = running + incl - e[j];
        int64_t last = -1;
        float v[kVec];
        row.item(w, v);
        for (int q = 0; q < kVec; ++q) {
          const double eq = term(v[q]);
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
      tok[(j0 + warp) * L] = pick;
      logp[(j0 + warp) * L] = token_logp(row.rv.at(pick), rt.m, inv_t, rt.log_z);
    }
  }
  __syncthreads();  // the next chunk reuses sh.target / winner / win_*
}

// Writes every draw of the row (token, logp) and its entropy h.
struct RowOutput {
  int64_t* tok;  // draw j at tok[j * L]
  float* logp;
  float* entropy;  // entropy[row], or nullptr
  int64_t row, k, L;
  template <int kThreads>
  EDLM_DEVICE void write_all(int64_t token, float lp, float h) const {
    for (int64_t j = threadIdx.x; j < k; j += kThreads) {
      tok[j * L] = token;
      logp[j * L] = lp;
    }
    if (entropy != nullptr && threadIdx.x == 0) entropy[row] = h;
  }
  // A row whose x_t token xv is not [MASK] is carried over: xv with logp 0 and entropy 0,
  // or for an id outside [0, V) the invalid-row rule ([MASK], NaN). True: the row is done.
  template <int kThreads>
  EDLM_DEVICE bool write_carried_over(int64_t xv, int64_t mask_id, int64_t V) const {
    if (xv == mask_id) return false;
    const bool ok = xv >= 0 && xv < V;
    write_all<kThreads>(ok ? xv : mask_id, ok ? 0.0f : NAN, ok ? 0.0f : NAN);
    return true;
  }
};

// The four passes over one masked row whose tile statistics go to `tiles` (greedy: the
// argmax with statistics at inv_t = 1). Invalid rows get [MASK] and logp NaN.
template <typename T, int kThreads, bool greedy, bool kFiltered>
EDLM_DEVICE void sample_tiles(const SampleRow<T, kFiltered>& row, float c, double inv_t, const int64_t* rng,
                              const RowOutput& out, float4* tiles, SampleShared<kThreads>& sh) {
  constexpr int kWarps = kThreads / 32;
  const bool want_h = out.entropy != nullptr;
  float best = -INFINITY;
  int64_t best_i = -1;
  tile_statistics<T, kThreads, greedy>(row, c, want_h, tiles, &best, &best_i);
  __syncthreads();
  const int64_t nt = num_tiles(row.rv.nitems);
  const RowTotalsDevice rt = row_prefix<kThreads>(tiles, nt, c, inv_t, want_h, sh);
  if (!rt.valid) {
    out.write_all<kThreads>(row.mask_id, NAN, NAN);
    return;
  }
  if constexpr (greedy) {  // the argmax has value m: logp = token_logp(m, m, ...)
    const int64_t i = block_min_index<kThreads>(best == rt.m && best_i >= 0 ? best_i : INT64_MAX, sh.iscratch);
    out.write_all<kThreads>(i, token_logp(rt.m, rt.m, inv_t, rt.log_z), rt.entropy);
  } else {
    if (want_h && threadIdx.x == 0) out.entropy[out.row] = rt.entropy;
    const RngKey key = load_rng_key(rng);
    for (int64_t j0 = 0; j0 < out.k; j0 += kWarps) {
      const int nj = out.k - j0 < kWarps ? static_cast<int>(out.k - j0) : kWarps;
      draw_chunk<T, kThreads>(row, tiles, rt, c, inv_t, key, static_cast<uint64_t>(out.row), j0, nj, out.tok, out.logp,
                              out.L, sh);
    }
  }
}

// One block per row (at least 4 resident per SM: <= 64 registers); dynamic shared memory:
// num_tiles(items) float4 (tile max, tile sum, entropy sum). Draws k tokens per masked row
// from one read of it. logits row (b, l) at logits + b*sb + l*sl; x_t likewise with
// (xsb, xsl); outputs tok, logp contiguous [B, k, L], entropy [B*L] (nullptr: not wanted).
// rng = {seed, offset} on the device; draw j uses stream kDomainSample + offset + j.
// c = log2(e) * inv_t; greedy (a template flag, to keep the sampling path's registers
// free) draws the argmax and reports statistics at inv_t = 1. Unmasked rows copy x_t
// (logp 0); out-of-range ids and invalid rows get [MASK] and logp NaN.
template <typename T, int kThreads, bool greedy>
__global__ void __launch_bounds__(kThreads, 4)
    sample_kernel(const T* __restrict__ logits, int64_t sb, int64_t sl, const int64_t* __restrict__ xt, int64_t xsb,
                  int64_t xsl, int64_t L, int64_t V, int64_t mask_id, int64_t k, float c, double inv_t,
                  const int64_t* __restrict__ rng, int64_t* __restrict__ out_tok, float* __restrict__ out_logp,
                  float* __restrict__ entropy) {
  EDLM_SHARED(SampleShared<kThreads>, sh);
  EDLM_DYNAMIC_SHARED(float4, tiles);
  const int64_t row = blockIdx.x;
  const int64_t b = row / L, l = row % L;
  const RowOutput out{out_tok + b * k * L + l, out_logp + b * k * L + l, entropy, row, k, L};
  if (out.write_carried_over<kThreads>(xt[b * xsb + l * xsl], mask_id, V)) return;
  const SampleRow<T, false> srow(logits + b * sb + l * sl, V, mask_id, -INFINITY);
  sample_tiles<T, kThreads, greedy>(srow, c, inv_t, rng, out, tiles, sh);
}

}  // namespace cuda
}  // namespace edlm
