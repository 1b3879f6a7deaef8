// masked_sample / sample_proposals: exact categorical draws of masked logits rows. The
// algorithm's shared rules (host and device) and its CPU form; the CUDA form is
// edlm/masked_sample_cuda.cuh, built from passes of the same names. Torch-free;
// csrc/cpu/masked_sample.cpp runs sample_row over rows.
//
// A row's distribution is p_i ∝ exp(l_i / T) = 2^(l_i c), c = log2(e) / T, over every
// token but [MASK] (and, with filters, over the tokens that pass them: edlm/filter.h).
// The passes, on both backends:
//   tile statistics  one read of the row: per tile (CPU: kTile tokens; CUDA: one warp's
//                    32 x 4 vectors) the max m_t and s_t = Σ 2^(arg_i) with
//                    arg_i = l_i c - b_t in one rounding (fma; tile_ref below);
//                    NaN / +inf make the row invalid
//   row prefix       tile masses s_t 2^(D_t) (tile_scale_log2: exact rescaling to the row
//                    max m) as a float64 prefix in token order: Z, log Z, the entropy
//   locate tile      one uniform u (53 bits, philox.h) per draw: the tile holding u Z, and
//                    the position r in [0, 1) inside it
//   draw in tile     the tile re-read, its terms recomputed bit for bit, a float64 prefix
//                    over them finds the token
// k draws (proposals) share the first two passes. Every token's probability is reproduced
// to float32 *relative* accuracy (~1e-7 of its own mass, however small), which float32
// Gumbel noise or a float32 cumsum cannot do for rare tokens; float64 only for O(V / tile)
// scalars. With filters (filtered_sample_row), the candidates of the threshold are
// gathered in a second read and the draw is made among the survivors directly.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "edlm/common.h"
#include "edlm/cpu_tiles.h"
#include "edlm/filter.h"
#include "edlm/numeric.h"
#include "edlm/tile_ref.h"

namespace edlm {

// ---- shared rules (host and device) ----------------------------------------------------

// b - m_t c (log2 units), exact in double: the factor 2^(-offset) every term of the tile
// carries relative to 2^((l - m_t) c).
EDLM_HD double tile_ref_offset(float mt, float c, TileRef r) {
  return r.fused && mt != -INFINITY ? static_cast<double>(r.b) - static_cast<double>(mt) * static_cast<double>(c)
                                    : 0.0;
}

// D_t: tile t's sum times 2^(D_t) is its mass relative to the row's reference (the row max
// m with its own offset e_m), i.e. Σ_tile 2^((l - m) c - e_m).
EDLM_HD double tile_scale_log2(float mt, double e_t, float m, double e_m, float c) {
  return (static_cast<double>(mt) - static_cast<double>(m)) * static_cast<double>(c) + e_t - e_m;
}

// log Z of the row from the float64 sum z_ref of its masses relative to its reference.
EDLM_HD double row_log_z(double z_ref, double e_m) { return log(z_ref) + e_m * 0.6931471805599453; }

// A tile's part of Σ_i e_i (l_i - m) / T, the entropy's weighted sum (relative to the
// row's reference): s = Σ terms, wsum = Σ terms arg (arg in log2 units), scale = 2^(D_t).
EDLM_HD double tile_weighted(double scale, float s, float wsum, double e_t, float mt, float m, float c,
                             double inv_t) {
  return scale * ((static_cast<double>(wsum) + e_t * s) * (inv_t / static_cast<double>(c)) +
                  static_cast<double>(s) * (static_cast<double>(mt) - static_cast<double>(m)) * inv_t);
}

// The log-probability of a token with logit l in a row with max m and log Z.
EDLM_HD float token_logp(float l, float m, double inv_t, double log_z) {
  return static_cast<float>((static_cast<double>(l) - static_cast<double>(m)) * inv_t - log_z);
}

// Inverse CDF rule inside a tile / over a survivor list: the first term (in token order)
// with e > 0 whose running float64 sum exceeds target; the last one with e > 0 when
// rounding leaves target on the total.
constexpr double kBelowOne = 0x1.fffffffffffffp-1;  // r is kept in [0, 1)

// ---- the CPU form ----------------------------------------------------------------------

struct SampleParams {
  double inv_temperature;  // 1 / T; for greedy, 1 (statistics under softmax(logits))
  bool greedy;             // T = 0: every draw is the argmax
  Filter filter;
  bool entropy;  // also compute the entropy of the (filtered) distribution
};

// One logits row in memory: float32, bfloat16 or IEEE half (the 16-bit ones as their bits).
struct RowSource {
  const void* data;
  DType dtype;                 // kFloat32, kBFloat16, kFloat16
  const void* next = nullptr;  // the next row the caller will read (prefetched past this one's end), or none
};

// Per-thread scratch, reused across rows.
struct RowScratch {
  std::vector<float> buf, terms, tile_max, tile_sum, tile_wsum, row, group_max, vals;
  std::vector<double> prefix;  // prefix[t] = mass of tiles [0, t), float64
  std::vector<double> tile_offset, tile_scale;  // the row prefix's e_t and 2^(D_t)
  std::vector<double> block;   // the survivors' draw: float64 sums of kDrawBlock terms
  std::vector<uint32_t> keys;
  std::vector<uint64_t> mass, cand, sorted, cand_mass;
  std::vector<int32_t> idx, groups;
  void reserve(int64_t V, bool filtering) {
    const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
    buf.resize(cpu::kTile);
    terms.resize(cpu::kTile);
    tile_max.resize(ntiles);
    tile_sum.resize(ntiles);
    tile_wsum.resize(ntiles);
    prefix.resize(ntiles + 1);
    tile_offset.resize(ntiles);
    tile_scale.resize(ntiles);
    if (filtering) {
      row.resize(ntiles * cpu::kTile);
      group_max.resize(ntiles * cpu::kTile / cpu::kGroup);
      groups.resize(ntiles * cpu::kTile / cpu::kGroup);
      idx.resize(ntiles * cpu::kTile + cpu::kWidth);  // (tile_gather_ge may write a vector past the count)
    }
  }
};

namespace cpu_detail {

// v's data with room for n elements: grown when smaller, never shrunk (a scratch vector
// resized down and up again per row would zero-fill its elements each time).
template <typename T>
inline T* room(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

inline int64_t element_size(DType d) { return d == DType::kFloat32 ? 4 : 2; }

// The end of a row of V elements (where its prefetches turn to src.next).
inline const char* row_end(const RowSource& src, int64_t V) {
  return static_cast<const char*>(src.data) + V * element_size(src.dtype);
}

// Prefetches the tile cpu::kPrefetchBytes past the one at element `start` (a read; past the
// row's end, in src.next: cpu::prefetch_target).
inline void prefetch_tile_ahead(const RowSource& src, int64_t V, int64_t start) {
#if defined(__GNUC__)
  const int64_t esize = element_size(src.dtype);
  const char* ahead = cpu::prefetch_target(static_cast<const char*>(src.data) + start * esize, row_end(src, V),
                                           static_cast<const char*>(src.next));
  if (ahead)
    for (int64_t off = 0; off < cpu::kTile * esize; off += 64) __builtin_prefetch(ahead + off, 0, 3);
#endif
}

// Tile t of the row as kTile float32 values: a pointer into the row itself (a full float32
// tile without [MASK]) or into buf (kTile floats; decoded, padded with -inf, [MASK] = -inf); sets *mt
// to the tile max and *bad on +inf (NaN: see cpu::tile_max). One read of the tile's memory.
inline const float* load_tile(const RowSource& src, int64_t V, int64_t mask_id, int64_t t, float* buf, float* mt,
                              bool* bad) {
  const int64_t start = t * cpu::kTile;
  const int n = static_cast<int>(std::min<int64_t>(cpu::kTile, V - start));
  const bool patch = mask_id >= start && mask_id < start + n;
  const char* bytes = static_cast<const char*>(src.data) + start * element_size(src.dtype);
  prefetch_tile_ahead(src, V, start);
  if (n == cpu::kTile && !patch) {
    if (src.dtype == DType::kFloat32) {
      const float* x = reinterpret_cast<const float*>(bytes);
      *mt = cpu::tile_max(x, cpu::kTile, bad);
      return x;
    }
    const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes);
    *mt = src.dtype == DType::kBFloat16 ? cpu::tile_decode_max_bf16(h, cpu::kTile, buf, bad)
                                        : cpu::tile_decode_max_f16(h, cpu::kTile, buf, bad);
    return buf;
  }
  if (src.dtype == DType::kFloat32) {
    std::copy_n(reinterpret_cast<const float*>(bytes), n, buf);
  } else {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes);
    if (src.dtype == DType::kBFloat16) cpu::bf16_to_float(h, n, buf);
    else cpu::f16_to_float(h, n, buf);
  }
  std::fill(buf + n, buf + cpu::kTile, -kInf);
  if (patch) buf[mask_id - start] = -kInf;
  *mt = cpu::tile_max(buf, cpu::kTile, bad);
  return buf;
}

inline cpu::Exp2Arg exp2_arg(TileRef r, float c) { return cpu::Exp2Arg{c, r.b, r.fused}; }

}  // namespace cpu_detail

// What tile_statistics leaves for the other passes.
struct RowStats {
  float m;       // row max
  int64_t best;  // greedy: the argmax (lowest index on ties)
  bool valid;    // no NaN / +inf, and a finite logit
};

// Tile t's statistics from its float32 copy (load_tile: [MASK] and the padding -inf) by the
// row loops over that one tile: the [MASK] tile and a partial last tile.
inline void one_tile_statistics(const RowSource& src, int64_t V, int64_t mask_id, int64_t t, float c, bool entropy,
                                RowScratch& s, bool* bad) {
  float mt;
  const float* x = cpu_detail::load_tile(src, V, mask_id, t, s.buf.data(), &mt, bad);
  s.tile_wsum[t] = 0.0f;
  cpu::row_tiles_f32(x, 1, c, &s.tile_max[t], &s.tile_sum[t], entropy ? &s.tile_wsum[t] : nullptr, bad);
}

// Tiles [t0, t1), all whole and without [MASK], by one call of the row loops (of a row of V).
inline void run_tile_statistics(const RowSource& src, int64_t V, int64_t t0, int64_t t1, float c, bool entropy,
                                RowScratch& s, bool* bad) {
  if (t1 <= t0) return;
  float* wsum = entropy ? s.tile_wsum.data() + t0 : nullptr;
  float* mx = s.tile_max.data() + t0;
  float* sum = s.tile_sum.data() + t0;
  const int64_t start = t0 * cpu::kTile;
  const char* end = cpu_detail::row_end(src, V);
  const char* next = static_cast<const char*>(src.next);
  if (src.dtype == DType::kFloat32) {
    cpu::row_tiles_f32(static_cast<const float*>(src.data) + start, t1 - t0, c, mx, sum, wsum, bad, end, next);
  } else {
    const uint16_t* h = static_cast<const uint16_t*>(src.data) + start;
    if (src.dtype == DType::kBFloat16) cpu::row_tiles_bf16(h, t1 - t0, c, mx, sum, wsum, bad, end, next);
    else cpu::row_tiles_f16(h, t1 - t0, c, mx, sum, wsum, bad, end, next);
  }
}

// Pass 1: s.tile_max / tile_sum / tile_wsum of every tile, the row max, the greedy argmax.
// The runs of whole tiles without [MASK] (all but at most two tiles) go to the row loops
// in one call each; the [MASK] tile and a partial last tile through load_tile.
inline RowStats tile_statistics(const RowSource& src, int64_t V, int64_t mask_id, const SampleParams& p, float c,
                                RowScratch& s) {
  const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
  const int64_t whole = V / cpu::kTile;
  const int64_t mask_tile = mask_id >= 0 && mask_id < V ? mask_id / cpu::kTile : -1;
  bool bad = false;
  int64_t t = 0;
  if (mask_tile >= 0 && mask_tile < whole) {
    run_tile_statistics(src, V, 0, mask_tile, c, p.entropy, s, &bad);
    one_tile_statistics(src, V, mask_id, mask_tile, c, p.entropy, s, &bad);
    t = mask_tile + 1;
  }
  run_tile_statistics(src, V, t, whole, c, p.entropy, s, &bad);
  if (whole < ntiles) one_tile_statistics(src, V, mask_id, whole, c, p.entropy, s, &bad);
  float m = -kInf;
  int64_t best_tile = -1;
  for (int64_t i = 0; i < ntiles; ++i)
    if (s.tile_max[i] > m) {  // the first tile holding the max
      m = s.tile_max[i];
      best_tile = i;
    }
  int64_t best = -1;
  if (p.greedy && best_tile >= 0) {  // lowest index within it
    float mt;
    bool ignored = false;
    const float* x = cpu_detail::load_tile(src, V, mask_id, best_tile, s.buf.data(), &mt, &ignored);
    best = best_tile * cpu::kTile + (std::find(x, x + cpu::kTile, mt) - x);
  }
  return RowStats{m, best, !bad && m != kInf && m != -kInf};
}

// Pass 2's results.
struct RowTotals {
  double z;      // Σ tile masses relative to the row's reference (prefix[ntiles])
  double log_z;  // log of the row's normalizer Σ 2^((l - m) c)
  float entropy;
  int64_t last_nonzero;  // the last tile with mass > 0
};

// Pass 2: the float64 prefix of tile masses in token order (s.prefix), log Z and the entropy.
inline RowTotals row_prefix(int64_t ntiles, float m, float c, double inv_t, bool entropy, RowScratch& s) {
  const double e_m = tile_ref_offset(m, c, tile_ref(m, c));
  // the tiles' rescalings 2^(D_t) in float64, all at once (cpu::exp2_f64; 2^-inf = 0 for the
  // tiles without a finite logit)
  double* offset = s.tile_offset.data();
  double* scale = s.tile_scale.data();
  for (int64_t t = 0; t < ntiles; ++t) {
    const float mt = s.tile_max[t];
    offset[t] = mt != -kInf ? tile_ref_offset(mt, c, tile_ref(mt, c)) : 0.0;
    scale[t] = mt != -kInf ? tile_scale_log2(mt, offset[t], m, e_m, c) : -std::numeric_limits<double>::infinity();
  }
  cpu::exp2_f64(scale, static_cast<int>(ntiles), scale);
  double* prefix = s.prefix.data();
  prefix[0] = 0.0;
  double weighted = 0.0;
  for (int64_t t = 0; t < ntiles; ++t) {
    prefix[t + 1] = prefix[t] + s.tile_sum[t] * scale[t];
    if (entropy && scale[t] > 0.0)
      weighted += tile_weighted(scale[t], s.tile_sum[t], s.tile_wsum[t], offset[t], s.tile_max[t], m, c, inv_t);
  }
  RowTotals r;
  r.z = prefix[ntiles];
  r.log_z = row_log_z(r.z, e_m);
  r.entropy = entropy ? static_cast<float>(r.log_z - weighted / r.z) : 0.0f;
  r.last_nonzero = ntiles - 1;
  while (prefix[r.last_nonzero + 1] <= prefix[r.last_nonzero]) --r.last_nonzero;  // z > 0: terminates
  return r;
}

// Pass 3: the tile holding target_row = u Z and the position r in [0, 1) inside it.
struct Located {
  int64_t tile;
  double r;
};
inline Located locate_tile(const double* prefix, int64_t ntiles, int64_t last_nonzero, double target_row) {
  int64_t t = std::upper_bound(prefix + 1, prefix + ntiles + 1, target_row) - (prefix + 1);
  if (t >= ntiles) return Located{last_nonzero, kBelowOne};  // u Z rounded onto the total
  double r = (target_row - prefix[t]) / (prefix[t + 1] - prefix[t]);
  r = r < 0.0 ? 0.0 : (r >= 1.0 ? kBelowOne : r);
  return Located{t, r};
}

// The float64 prefix of a draw among float terms e[0, n) (>= 0; n a multiple of
// kDrawBlock), by blocks: block[j] = the sum of terms [j kDrawBlock, (j + 1) kDrawBlock) in
// order (the blocks' sums are independent chains), prefix[j] = the sum of the blocks before j
// in order (prefix[0] = 0; prefix[n / kDrawBlock] is the total).
constexpr int kDrawBlock = 16;
inline void draw_blocks(const float* e, int64_t n, double* block, double* prefix) {
  const int64_t nblocks = n / kDrawBlock;
  for (int64_t j = 0; j < nblocks; ++j) {
    double sum = 0.0;
    for (int i = 0; i < kDrawBlock; ++i) sum += e[j * kDrawBlock + i];
    block[j] = sum;
  }
  prefix[0] = 0.0;
  for (int64_t j = 0; j < nblocks; ++j) prefix[j + 1] = prefix[j] + block[j];
}

// The term at which the running sum (the blocks before, then the block's terms in order)
// first passes target, skipping terms without mass; past the end, the last term with mass.
// (The block is found by binary search on the prefix; the blocks before it hold <= target.)
inline int64_t draw_pick(const float* e, const double* block, const double* prefix, int64_t nblocks, double target) {
  auto last_with_mass = [&](int64_t j) {  // in block j (block[j] > 0: it has one)
    int64_t i = (j + 1) * kDrawBlock - 1;
    while (e[i] <= 0.0f) --i;
    return i;
  };
  int64_t b = std::upper_bound(prefix + 1, prefix + nblocks + 1, target) - (prefix + 1);
  int64_t last_pos = -1;  // the fallback: the last term with mass before block b
  for (int64_t j = b - 1; j >= 0 && last_pos < 0; --j)
    if (block[j] > 0.0) last_pos = last_with_mass(j);
  double cum = b < nblocks ? prefix[b] : 0.0;
  for (; b < nblocks; ++b) {
    if (block[b] <= 0.0) continue;
    if (cum + block[b] <= target) {  // (the block's own terms summed short of its total)
      last_pos = last_with_mass(b);
      cum += block[b];
      continue;
    }
    for (int64_t i = b * kDrawBlock; i < (b + 1) * kDrawBlock; ++i) {
      if (e[i] <= 0.0f) continue;
      last_pos = i;
      cum += e[i];
      if (cum > target) return i;
    }
  }
  return last_pos;
}

// Pass 4: the token at position r of tile t, on the same terms that made the tile's sum,
// by the blocked float64 prefix of its terms (draw_blocks / draw_pick). Returns the token and
// writes its logit to *logit.
inline int64_t draw_in_tile(const RowSource& src, int64_t V, int64_t mask_id, Located at, float c, RowScratch& s,
                            float* logit) {
  constexpr int kBlocks = cpu::kTile / kDrawBlock;
  float mt;
  bool bad = false;
  const float* x = cpu_detail::load_tile(src, V, mask_id, at.tile, s.buf.data(), &mt, &bad);
  cpu::tile_exp2(x, cpu::kTile, cpu_detail::exp2_arg(tile_ref(mt, c), c), s.terms.data());
  const float* e = s.terms.data();
  double block[kBlocks], prefix[kBlocks + 1];
  draw_blocks(e, cpu::kTile, block, prefix);
  const int64_t pick = draw_pick(e, block, prefix, kBlocks, at.r * prefix[kBlocks]);
  *logit = x[pick];
  return at.tile * cpu::kTile + pick;
}

// The four passes over an unfiltered row (or a materialized, filtered one).
inline bool sample_tiles(const RowSource& src, int64_t V, int64_t mask_id, const SampleParams& p, const double* u,
                         int64_t k, RowScratch& s, int64_t* tokens, float* logp, int64_t stride, float* entropy) {
  const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
  const double inv_t = p.inv_temperature;
  const float c = static_cast<float>(inv_t * kLog2e);
  const RowStats st = tile_statistics(src, V, mask_id, p, c, s);
  if (!st.valid) return false;
  const RowTotals rt = row_prefix(ntiles, st.m, c, inv_t, p.entropy, s);
  if (p.entropy) *entropy = rt.entropy;
  if (p.greedy) {
    const float lp = token_logp(st.m, st.m, inv_t, rt.log_z);  // the argmax has value m
    for (int64_t j = 0; j < k; ++j) {
      tokens[j * stride] = st.best;
      logp[j * stride] = lp;
    }
    return true;
  }
  for (int64_t j = 0; j < k; ++j) {
    const Located at = locate_tile(s.prefix.data(), ntiles, rt.last_nonzero, u[j] * rt.z);
    float l;
    tokens[j * stride] = draw_in_tile(src, V, mask_id, at, c, s, &l);
    logp[j * stride] = token_logp(l, st.m, inv_t, rt.log_z);
  }
  return true;
}

namespace cpu_detail {

// The candidate path's limit (more candidates: the general path).
constexpr int64_t kMaxCandidates = 4096;

// The general filter: tokens below the combined threshold become -inf in the materialized
// row vals[0..n) ([MASK] already -inf; m its finite max). Radix selects over the whole row.
inline void filter_row(float* vals, int64_t n, float m, double inv_t, const Filter& f, RowScratch& s) {
  uint32_t* keys = room(s.keys, n);
  int64_t finite = 0;
  for (int64_t i = 0; i < n; ++i) {
    keys[i] = order_key(vals[i]);
    finite += vals[i] != -kInf;
  }
  uint32_t tau = 0;  // keep key >= tau
  if (f.top_k > 0 && f.top_k < finite)
    tau = radix_select(keys, n, [&](int64_t i) -> uint64_t { return vals[i] != -kInf; },
                       static_cast<uint64_t>(f.top_k));
  if (f.top_p < 1.0) {
    const float c = static_cast<float>(inv_t * kLog2e);
    uint64_t* mass = room(s.mass, n);
    uint64_t total = 0;
    for (int64_t start = 0; start < n; start += cpu::kTile)  // n is a multiple of kTile
      cpu::tile_masses(vals + start, cpu::kTile, c, m, mass + start);
    for (int64_t i = 0; i < n; ++i) {  // (only what top_k keeps)
      mass[i] = keys[i] >= tau ? mass[i] : 0;
      total += mass[i];
    }
    const uint64_t target = topp_target(f.top_p, total);
    if (topp_applies(target, total))
      tau = std::max(tau, radix_select(keys, n, [&](int64_t i) { return mass[i]; }, target));
  }
  // one float threshold (key < tau <=> value < key_value(tau), -0 and +0 alike; tau 0: keep
  // all), applied by a select the compiler vectorizes (which tokens go is unpredictable)
  const float tau_min = f.min_p > 0.0 ? min_p_threshold(m, f.min_p, inv_t) : -kInf;
  const float thr = std::max(tau == 0 ? -kInf : key_value(tau), tau_min);
  for (int64_t i = 0; i < n; ++i) vals[i] = vals[i] < thr ? -kInf : vals[i];
}

// The first position after j whose key (sorted descending in cand's high word) is lower.
inline int64_t end_of_ties(const uint64_t* cand, int64_t n, int64_t j) {
  const uint64_t key_part = cand[j] >> 32;
  while (j + 1 < n && (cand[j + 1] >> 32) == key_part) ++j;
  return j + 1;
}

// The draw among the survivors of the filters: of the `count` candidates s.idx[0, count)
// (token order, their words in s.cand), those whose key reaches cut, compacted in token
// order without a branch on which go; their terms relative to the row max (as a tile's with
// max m: edlm::tile_ref), a float64 prefix, k draws (greedy: best, the max with the lowest
// index), the entropy. row(i) is token i's logit.
template <typename Row>
inline void draw_survivors(const Row& row, int64_t count, uint32_t cut, int32_t best, float m, const SampleParams& p,
                           const double* u, int64_t k, RowScratch& s, int64_t* tokens, float* logp, int64_t stride,
                           float* entropy) {
  const double inv_t = p.inv_temperature;
  const float c = static_cast<float>(inv_t * kLog2e);
  int32_t* idx = s.idx.data();
  const uint64_t* in_order = s.cand.data();
  int64_t keep = 0;
  for (int64_t i = 0; i < count; ++i) {
    idx[keep] = idx[i];
    keep += candidate_key(in_order[i]) >= cut;
  }
  const int64_t kept_padded = (keep + cpu::kGroup - 1) / cpu::kGroup * cpu::kGroup;
  float* vals = room(s.vals, kept_padded);
  for (int64_t i = 0; i < keep; ++i) vals[i] = row(idx[i]);
  std::fill(vals + keep, vals + kept_padded, -kInf);
  const TileRef ref = tile_ref(m, c);
  float* e = room(s.terms, kept_padded);
  cpu::tile_exp2(vals, static_cast<int>(kept_padded), cpu_detail::exp2_arg(ref, c), e);
  // the float64 prefix of the terms, by blocks (draw_blocks / draw_pick)
  const int64_t nblocks = kept_padded / kDrawBlock;
  double* prefix = room(s.prefix, nblocks + 1);
  double* block = room(s.block, nblocks);
  draw_blocks(e, kept_padded, block, prefix);
  double weighted = 0.0;
  if (p.entropy)
    for (int64_t i = 0; i < keep; ++i)
      if (e[i] > 0.0f) weighted += e[i] * ((static_cast<double>(vals[i]) - m) * inv_t);
  const double z = prefix[nblocks];
  const double log_z = row_log_z(z, tile_ref_offset(m, c, ref));
  if (p.entropy) *entropy = static_cast<float>(log_z - weighted / z);
  for (int64_t j = 0; j < k; ++j) {
    const int64_t pick = p.greedy ? best : idx[draw_pick(e, block, prefix, nblocks, u[j] * z)];
    tokens[j * stride] = pick;
    logp[j * stride] = token_logp(row(pick), m, inv_t, log_z);
  }
}

// The candidate path of the filters: the survivors of the thresholds are found among the
// `count` candidates s.idx[0, count) (every token >= lb, a lower bound of the final threshold,
// [MASK] excluded), then drawn from directly. row(i) is token i's logit. topp_total: the
// row's total top-p mass when lb came from top_p's own bound (0: top_k bounded the
// candidates, whose masses are then the total).
template <typename Row>
inline void sample_candidates(const Row& row, int64_t count, float m, const SampleParams& p, const double* u,
                              int64_t k, RowScratch& s, int64_t* tokens, float* logp, int64_t stride,
                              float* entropy, uint64_t topp_total = 0) {
  const Filter& f = p.filter;
  const double inv_t = p.inv_temperature;
  const float c = static_cast<float>(inv_t * kLog2e);
  int32_t* idx = s.idx.data();
  // (key descending, index ascending) in one sortable word: cand in token order, sorted by it
  uint64_t* const in_order = room(s.cand, count);
  for (int64_t i = 0; i < count; ++i) in_order[i] = candidate_word(order_key(row(idx[i])), idx[i]);
  uint64_t* const cand = room(s.sorted, count);
  cpu::sort_distinct(in_order, count, cand);
  int64_t keep = count;
  if (f.top_k > 0 && f.top_k <= count) keep = end_of_ties(cand, count, f.top_k - 1);
  // the candidates' logits in (key, index) order, padded to whole groups, for the vector exp2
  const int64_t padded = (count + cpu::kGroup - 1) / cpu::kGroup * cpu::kGroup;
  float* vals = room(s.vals, padded);
  room(s.terms, padded);
  for (int64_t i = 0; i < count; ++i) vals[i] = row(candidate_index(cand[i]));
  std::fill(vals + count, vals + padded, -kInf);
  if (f.top_p < 1.0) {  // lb <= tau_k or tau_p here (filter.h): the scan from the top reaches tau_p
    float* e = s.terms.data();
    const int64_t n_mass = (keep + cpu::kGroup - 1) / cpu::kGroup * cpu::kGroup;  // <= padded
    cpu::tile_exp2(vals, static_cast<int>(n_mass), cpu::Exp2Arg{c, m, false}, e);  // as filter_row's masses
    uint64_t total = topp_total;
    if (total == 0)
      for (int64_t i = 0; i < keep; ++i) total += token_mass(e[i]);
    const uint64_t target = topp_target(f.top_p, total);
    if (topp_applies(target, total)) {
      uint64_t cum = 0;
      int64_t i = 0;
      while (cum + token_mass(e[i]) < target) cum += token_mass(e[i++]);  // target <= total: stops inside
      keep = end_of_ties(cand, keep, i);
    }
  }
  if (f.min_p > 0.0) {
    const float tau_min = min_p_threshold(m, f.min_p, inv_t);
    while (keep > 1 && vals[keep - 1] < tau_min) --keep;  // the max always passes
  }
  // every cut above keeps whole tie groups: the survivors are the candidates whose key
  // reaches the last survivor's
  draw_survivors(row, count, candidate_key(cand[keep - 1]), candidate_index(cand[0]), m, p, u, k, s, tokens, logp,
                 stride, entropy);
}

// top_p's bound from the row's masses (mass[0, ntiles kTile), target > 0 and <= their sum):
// the tokens whose mass has at least b bits, b the largest for which those tokens hold the
// target; lb = their smallest logit. mass(l >= lb) >= what they hold >= target, so lb <=
// tau_p (whatever the rounding of their terms). tile(t, ...) gives tile t's logits.
template <typename Tile>
inline float topp_mass_bound(const uint64_t* mass, int64_t ntiles, uint64_t target, const Tile& tile) {
  const int64_t n = ntiles * cpu::kTile;
  // S(b) = the mass of the tokens whose mass has at least b bits (mass >= 2^(b-1)), non-
  // increasing in b; b = the largest with S(b) >= target (S(1) is the total, masses have at
  // most 41 bits). Eight rungs 5 bits apart, then the four between the two that bracket it.
  auto largest_reaching = [&](const int* bits, int count, int otherwise) {
    uint64_t rungs[cpu::kMassRungs], sums[cpu::kMassRungs] = {};
    for (int r = 0; r < cpu::kMassRungs; ++r) rungs[r] = r < count ? uint64_t{1} << (bits[r] - 1) : cpu::kNoRung;
    cpu::tile_mass_ge_sums(mass, static_cast<int>(n), rungs, count, sums);
    for (int r = 0; r < count; ++r)
      if (sums[r] >= target) return bits[r];
    return otherwise;
  };
  const int coarse[cpu::kMassRungs] = {41, 36, 31, 26, 21, 16, 11, 6};
  const int b_lo = largest_reaching(coarse, cpu::kMassRungs, 1);  // b in [b_lo, b_lo + 4]
  int fine[4], count = 0;
  for (int bb = std::min(b_lo + 4, 41); bb > b_lo; --bb) fine[count++] = bb;
  const int b = count > 0 ? largest_reaching(fine, count, b_lo) : b_lo;
  const uint64_t rung = uint64_t{1} << (b - 1);  // mass >= rung <=> at least b bits
  float lb = kInf;
  for (int64_t t = 0; t < ntiles; ++t)
    lb = cpu::tile_min_where_mass_ge(tile(t, nullptr, nullptr, nullptr), mass + t * cpu::kTile, cpu::kTile, rung, lb);
  return lb;
}

// top_p without top_k over candidates too many to sort: tau_p by a radix select of the
// candidates' keys weighted by their masses (s.mass, per token of the row). Every token
// >= tau_p is a candidate (lb <= tau_p), so the select over them finds the row's threshold;
// min_p's cut, if on, is a key too. target: top_p's target mass of the whole row.
template <typename Row>
inline void sample_topp_candidates(const Row& row, int64_t count, float m, uint64_t target, const SampleParams& p,
                                   const double* u, int64_t k, RowScratch& s, int64_t* tokens, float* logp,
                                   int64_t stride, float* entropy) {
  const int32_t* idx = s.idx.data();
  uint64_t* in_order = room(s.cand, count);
  uint32_t* keys = room(s.keys, count);
  uint64_t* cand_mass = room(s.cand_mass, count);  // (contiguous: the select reads them in order)
  const uint64_t* mass = s.mass.data();
  const uint32_t top = order_key(m);
  uint32_t lo = top, hi = top;  // the keys' range: the select's known leading bits
  int64_t first_max = -1;  // greedy: the max with the lowest index (the candidates are in token order)
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t key = order_key(row(idx[i]));
    keys[i] = key;
    in_order[i] = candidate_word(key, idx[i]);
    cand_mass[i] = mass[idx[i]];
    lo = key < lo ? key : lo;
    hi = key > hi ? key : hi;
    if (first_max < 0 && key == top) first_max = i;
  }
  uint32_t cut = radix_select(keys, count, [&](int64_t i) { return cand_mass[i]; }, target, 4, lo, hi);
  if (p.filter.min_p > 0.0) cut = std::max(cut, order_key(min_p_threshold(m, p.filter.min_p, p.inv_temperature)));
  draw_survivors(row, count, cut, idx[first_max], m, p, u, k, s, tokens, logp, stride, entropy);
}

}  // namespace cpu_detail

// Filtered rows. Pass 1 reads the row once for its max and group maxima (float32 tiles in
// place, 16-bit ones decoded into s.row; the tiles holding [MASK] or the end of the row go
// through a patched copy there); the candidates >= candidate_bound are gathered from the
// groups whose max reaches it (from cache) and drawn from (sample_candidates). When the
// bound admits too many, the general path: the row materialized, filter_row, the tile
// passes over the filtered row.
inline bool filtered_sample_row(const RowSource& src, int64_t V, int64_t mask_id, const SampleParams& p,
                                const double* u, int64_t k, RowScratch& s, int64_t* tokens, float* logp,
                                int64_t stride, float* entropy) {
  const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile, n = ntiles * cpu::kTile;
  const bool f32 = src.dtype == DType::kFloat32;
  const float* f32_row = static_cast<const float*>(src.data);
  const uint16_t* h_row = static_cast<const uint16_t*>(src.data);
  auto value = [&](int64_t i) -> float {
    return f32 ? f32_row[i] : src.dtype == DType::kBFloat16 ? bf16_to_float(h_row[i]) : f16_to_float(h_row[i]);
  };
  // Tile t as kTile floats ([MASK] and the padding -inf): whole float32 tiles without [MASK]
  // in place, the others (16-bit ones decoded, patched ones copied) in s.row, written by the
  // first call, with gm; with gm, the group maxima (and the max, *bad on NaN / +inf) into
  // gm / *mt.
  auto tile = [&](int64_t t, float* gm, float* mt, bool* bad) -> const float* {
    const int64_t start = t * cpu::kTile;
    const int len = static_cast<int>(std::min<int64_t>(cpu::kTile, V - start));
    const bool patch = mask_id >= start && mask_id < start + len;
    float* x = s.row.data() + start;
    if (gm == nullptr) return f32 && len == cpu::kTile && !patch ? f32_row + start : x;  // made by pass 1
    cpu_detail::prefetch_tile_ahead(src, V, start);  // pass 1 reads the row from memory
    if (len == cpu::kTile && !patch) {
      if (f32) {
        *mt = cpu::tile_max_groups(f32_row + start, cpu::kTile, bad, gm);
        return f32_row + start;
      }
      *mt = src.dtype == DType::kBFloat16 ? cpu::tile_decode_max_bf16(h_row + start, len, x, bad, gm)
                                          : cpu::tile_decode_max_f16(h_row + start, len, x, bad, gm);
      return x;
    }
    if (f32) std::copy_n(f32_row + start, len, x);
    else if (src.dtype == DType::kBFloat16) cpu::bf16_to_float(h_row + start, len, x);
    else cpu::f16_to_float(h_row + start, len, x);
    std::fill(x + len, x + cpu::kTile, -kInf);
    if (patch) x[mask_id - start] = -kInf;
    *mt = cpu::tile_max_groups(x, cpu::kTile, bad, gm);
    return x;
  };
  bool bad = false;
  float m = -kInf;
  for (int64_t t = 0; t < ntiles; ++t) {
    float mt = -kInf;
    tile(t, s.group_max.data() + t * (cpu::kTile / cpu::kGroup), &mt, &bad);
    m = std::max(m, mt);
  }
  if (bad || m == -kInf) return false;
  const int64_t groups = n / cpu::kGroup;
  float kth_group_max = -kInf;  // (a lower bound of) the top_k-th largest group max (-inf: fewer finite groups)
  if (p.filter.top_k > 0) {
    const float* g = s.group_max.data();
    cpu_detail::room(s.keys, groups);
    int64_t finite = 0;
    for (int64_t i = 0; i < groups; ++i) {
      s.keys[i] = order_key(g[i]);
      finite += g[i] != -kInf;
    }
    // (a radix select: branch-free histograms, where a sort mispredicts; two digits give a
    // lower bound within 2^-9 of the group max, all a candidate bound needs)
    if (p.filter.top_k <= finite)
      kth_group_max = key_value(radix_select(s.keys.data(), groups, [&](int64_t i) -> uint64_t { return g[i] != -kInf; },
                                             static_cast<uint64_t>(p.filter.top_k), 2));
  }
  float lb = candidate_bound(p.filter, kth_group_max, m, p.inv_temperature);
  uint64_t topp_total = 0, target = 0;
  const bool topp_own = topp_has_own_bound(p.filter);
  if (topp_own) {
    // the row's top-p masses (kept per token: the candidates' select reads them), then the
    // radix select of the group maxima weighted by theirs
    const float c = static_cast<float>(p.inv_temperature * kLog2e);
    uint64_t* mass = cpu_detail::room(s.mass, n);
    for (int64_t t = 0; t < ntiles; ++t)
      topp_total += cpu::tile_masses(tile(t, nullptr, nullptr, nullptr), cpu::kTile, c, m, mass + t * cpu::kTile);
    target = topp_target(p.filter.top_p, topp_total);
    if (topp_applies(target, topp_total)) {
      const float* g = s.group_max.data();
      const int64_t padded = (groups + cpu::kGroup - 1) / cpu::kGroup * cpu::kGroup;  // the vector loops' unit
      cpu_detail::room(s.vals, padded);
      std::copy_n(g, groups, s.vals.data());
      std::fill(s.vals.data() + groups, s.vals.data() + padded, -kInf);
      cpu::tile_exp2(s.vals.data(), static_cast<int>(padded), cpu::Exp2Arg{c, m, false}, s.vals.data());
      cpu_detail::room(s.keys, groups);
      uint64_t group_total = 0;
      for (int64_t i = 0; i < groups; ++i) {
        s.keys[i] = order_key(g[i]);
        group_total += token_mass(s.vals[i]);
      }
      if (group_total >= target)
        lb = key_value(radix_select(s.keys.data(), groups, [&](int64_t i) { return token_mass(s.vals[i]); }, target, 2));
      else  // the maxima hold too little (a nucleus of many tokens per group): a bound from the masses
        lb = cpu_detail::topp_mass_bound(mass, ntiles, target, tile);
    }
  }
  if (lb != -kInf) {
    // only the groups whose max reaches lb hold candidates (listed without a branch on which)
    constexpr int64_t kTileGroups = cpu::kTile / cpu::kGroup;
    const float* g = s.group_max.data();
    int32_t* listed = s.groups.data();
    int64_t n_listed = 0;
    for (int64_t i = 0; i < groups; ++i) {
      listed[n_listed] = static_cast<int32_t>(i);
      n_listed += g[i] >= lb;
    }
    // (top_p alone takes any number: its candidates are selected, not sorted, past kRankSortMax)
    const int64_t limit = topp_own ? n : cpu_detail::kMaxCandidates;
    int64_t count = 0;
    for (int64_t i = 0; i < n_listed && count <= limit; ++i) {
      const int64_t grp = listed[i];
      const float* x = tile(grp / kTileGroups, nullptr, nullptr, nullptr) + grp % kTileGroups * cpu::kGroup;
      count += cpu::tile_gather_ge(x, cpu::kGroup, lb, static_cast<int32_t>(grp * cpu::kGroup), s.idx.data() + count);
    }
    if (topp_own && count > cpu::kRankSortMax) {
      cpu_detail::sample_topp_candidates(value, count, m, target, p, u, k, s, tokens, logp, stride, entropy);
      return true;
    }
    if (count <= cpu_detail::kMaxCandidates) {
      cpu_detail::sample_candidates(value, count, m, p, u, k, s, tokens, logp, stride, entropy, topp_total);
      return true;
    }
  }
  float* row = s.row.data();  // the general path: the row materialized, then filtered
  for (int64_t t = 0; t < ntiles; ++t) {
    const float* x = tile(t, nullptr, nullptr, nullptr);
    if (x != row + t * cpu::kTile) std::copy_n(x, cpu::kTile, row + t * cpu::kTile);
  }
  cpu_detail::filter_row(row, n, m, p.inv_temperature, p.filter, s);
  return sample_tiles(RowSource{row, DType::kFloat32}, n, -1, p, u, k, s, tokens, logp, stride, entropy);
}

// Draws k tokens from one masked row, one per uniform u[j], and writes token j to
// tokens[j * stride] and its log-probability under the tempered, filtered softmax to
// logp[j * stride] (greedy: the argmax, lowest index on ties, with its log-probability
// under softmax(logits), filtered); with p.entropy, the entropy of that distribution to
// *entropy. Returns false, writing nothing, when the row is invalid: a NaN or +inf logit,
// or no finite logit but [MASK].
inline bool sample_row(const RowSource& src, int64_t V, int64_t mask_id, const SampleParams& p, const double* u,
                       int64_t k, RowScratch& s, int64_t* tokens, float* logp, int64_t stride, float* entropy) {
  if (p.filter.active()) return filtered_sample_row(src, V, mask_id, p, u, k, s, tokens, logp, stride, entropy);
  return sample_tiles(src, V, mask_id, p, u, k, s, tokens, logp, stride, entropy);
}

}  // namespace edlm
