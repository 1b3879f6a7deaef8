// Exact categorical sampling of one logits row on the CPU: the algorithm behind
// edlm_ext.masked_sample and sample_proposals. Torch-free; csrc/cpu/masked_sample.cpp
// runs it over rows.
//
// The row's distribution is p_i ∝ exp(l_i / T) over every token but [MASK]
// (and, with filters, over the tokens that pass them: edlm/filter.h).
// One pass over the row computes, per tile of kTile tokens, the tile max m_t and
// s_t = Σ_tile 2^((l_i - m_t) c), c = log2(e)/T. The tile masses
// c_t = s_t 2^((m_t - m) c) are summed in float64 and one uniform u (53 bits,
// midpoint-rounded, see philox.h) picks a tile by inverse CDF, then a token inside
// that tile by a float64 prefix over the recomputed terms. k draws (proposals)
// share the one pass and re-read one tile each. Every token's probability is
// reproduced to float32 *relative* accuracy (~1e-7 of its own mass, however
// small), which float32 Gumbel noise or a float32 cumsum cannot do for rare
// tokens. No float64 tensors: float64 is used for O(V / kTile) scalars.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "edlm/cpu_tiles.h"
#include "edlm/filter.h"
#include "edlm/numeric.h"

namespace edlm {

struct SampleParams {
  double inv_temperature;  // 1 / T; for greedy, 1 (statistics under softmax(logits))
  bool greedy;             // T = 0: every draw is the argmax
  Filter filter;
  bool entropy;  // also compute the entropy of the (filtered) distribution
};

// Per-thread scratch, reused across rows.
struct RowScratch {
  std::vector<float> buf, terms, tile_max, tile_sum, tile_wsum, row;
  std::vector<uint32_t> keys;
  std::vector<uint64_t> mass;
  std::vector<double> prefix;  // prefix[t] = mass of tiles [0, t), float64
  void reserve(int64_t V, bool filtering) {
    const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
    buf.resize(cpu::kTile);
    terms.resize(cpu::kTile);
    tile_max.resize(ntiles);
    tile_sum.resize(ntiles);
    tile_wsum.resize(ntiles);
    prefix.resize(ntiles + 1);
    if (filtering) {
      row.resize(ntiles * cpu::kTile);
      keys.resize(V);
      mass.resize(V);
    }
  }
};

// Applies the filters to a materialized row vals[0..V) ([MASK] already -inf):
// tokens below the combined threshold become -inf. m is the row max, finite.
inline void filter_row(float* vals, int64_t V, float m, double inv_t, const Filter& f, RowScratch& s) {
  uint32_t* keys = s.keys.data();
  int64_t finite = 0;
  for (int64_t i = 0; i < V; ++i) {
    keys[i] = order_key(vals[i]);
    finite += vals[i] != -kInf;
  }
  uint32_t tau = 0;  // keep key >= tau
  if (f.top_k > 0 && f.top_k < finite)
    tau = radix_select(keys, V, [&](int64_t i) -> uint64_t { return vals[i] != -kInf; },
                       static_cast<uint64_t>(f.top_k));
  if (f.top_p < 1.0) {
    // Masses 2^((l - m) c) in 2^-40 fixed point, over the tokens top_k kept.
    const float c = static_cast<float>(inv_t * 1.4426950408889634);
    uint64_t total = 0;
    uint64_t* mass = s.mass.data();
    for (int64_t start = 0; start < V; start += cpu::kTile) {
      const int n = static_cast<int>(std::min<int64_t>(cpu::kTile, V - start));
      const int padded = (n + cpu::kWidth - 1) / cpu::kWidth * cpu::kWidth;
      std::copy(vals + start, vals + start + n, s.buf.data());
      std::fill(s.buf.data() + n, s.buf.data() + padded, -kInf);
      cpu::tile_exp2(s.buf.data(), padded, m, c, s.terms.data());
      for (int i = 0; i < n; ++i) {
        // (terms are in [0, 1] for a valid temperature; the test also keeps a NaN
        // term, which must never reach the integer conversion, at 0)
        const uint64_t q = keys[start + i] >= tau && s.terms[i] > 0.0f
                               ? static_cast<uint64_t>(s.terms[i] * kMassScale) : 0;
        mass[start + i] = q;
        total += q;
      }
    }
    const auto target = static_cast<uint64_t>(std::ceil(f.top_p * static_cast<double>(total)));
    if (target > 0 && target < total)
      tau = std::max(tau, radix_select(keys, V, [&](int64_t i) { return mass[i]; }, target));
  }
  // min_p: p >= min_p * p_max  <=>  l >= m + T ln(min_p) (in float32, as on CUDA).
  const float tau_min = f.min_p > 0.0 ? static_cast<float>(static_cast<double>(m) + std::log(f.min_p) / inv_t) : -kInf;
  for (int64_t i = 0; i < V; ++i)
    if (keys[i] < tau || vals[i] < tau_min) vals[i] = -kInf;
}

// Draws k tokens from one masked row, one per uniform u[j], and writes token j to
// tokens[j * stride] and its log-probability under the tempered, filtered softmax
// to logp[j * stride] (greedy: the argmax, lowest index on ties, with its
// log-probability under softmax(logits), filtered); with p.entropy, the entropy
// of that distribution to *entropy. Load(start, n, out) writes
// logits[start .. start+n) as float32 into out. Returns false, writing nothing,
// when the row is invalid: a NaN or +inf logit, or no finite logit but [MASK].
template <typename Load>
bool sample_row(const Load& load_raw, int64_t V, int64_t mask_id, const SampleParams& p, const double* u, int64_t k,
                RowScratch& s, int64_t* tokens, float* logp, int64_t stride, float* entropy) {
  const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
  const double inv_t = p.inv_temperature;
  const float c = static_cast<float>(inv_t * 1.4426950408889634);
  const bool filtering = p.filter.active();
  float* buf = s.buf.data();

  // With filters the row is materialized once (float32, [MASK] = -inf), checked,
  // filtered, and then read from memory.
  if (filtering) {
    float* row = s.row.data();
    load_raw(0, static_cast<int>(V), row);
    row[mask_id] = -kInf;
    float m = -kInf;
    bool bad = false;
    for (int64_t i = 0; i < V; ++i) {
      bad |= (row[i] != row[i]) || row[i] == kInf;
      m = row[i] > m ? row[i] : m;
    }
    if (bad || m == -kInf) return false;
    filter_row(row, V, m, inv_t, p.filter, s);
  }
  auto load = [&](int64_t start, int n, float* out) {
    if (filtering)
      std::copy(s.row.data() + start, s.row.data() + start + n, out);
    else
      load_raw(start, n, out);
  };
  // Loads tile t into buf as float32, [MASK] and padding up to kWidth as -inf.
  // Returns the padded length.
  auto load_tile = [&](int64_t t) -> int {
    const int64_t start = t * cpu::kTile;
    const int n = static_cast<int>(std::min<int64_t>(cpu::kTile, V - start));
    load(start, n, buf);
    const int padded = (n + cpu::kWidth - 1) / cpu::kWidth * cpu::kWidth;
    for (int i = n; i < padded; ++i) buf[i] = -kInf;
    if (mask_id >= start && mask_id < start + n) buf[mask_id - start] = -kInf;
    return padded;
  };

  // Pass 1: per-tile max, sum of 2^((l - m_t) c) and, for the entropy,
  // Σ 2^((l - m_t) c) (l - m_t) / T; the argmax when greedy.
  bool has_nan = false;
  float m = -kInf;
  int64_t best = -1;
  for (int64_t t = 0; t < ntiles; ++t) {
    const int n = load_tile(t);
    const float mt = cpu::tile_max(buf, n, &has_nan);
    if (p.greedy && mt > m) {  // first tile holding a new max; lowest index within it
      for (int i = 0; i < n; ++i)
        if (buf[i] == mt) {
          best = t * cpu::kTile + i;
          break;
        }
    }
    s.tile_max[t] = mt;
    s.tile_sum[t] = 0.0f;
    s.tile_wsum[t] = 0.0f;
    if (mt != -kInf && mt != kInf) {
      if (p.entropy) {
        cpu::tile_exp2(buf, n, mt, c, s.terms.data());
        float sum = 0.0f, wsum = 0.0f;
        for (int i = 0; i < n; ++i) {
          sum += s.terms[i];
          if (s.terms[i] > 0.0f) wsum += s.terms[i] * static_cast<float>((buf[i] - mt) * inv_t);
        }
        s.tile_sum[t] = sum;
        s.tile_wsum[t] = wsum;
      } else {
        s.tile_sum[t] = cpu::tile_exp2_sum(buf, n, mt, c);
      }
    }
    if (mt > m) m = mt;
  }
  if (has_nan || m == kInf || m == -kInf) return false;

  // Tile masses relative to the row max, as a float64 prefix in token order.
  double* prefix = s.prefix.data();
  prefix[0] = 0.0;
  double weighted = 0.0;  // Σ_i e_i (l_i - m) / T
  for (int64_t t = 0; t < ntiles; ++t) {
    const float mt = s.tile_max[t];
    const double scale = mt == -kInf ? 0.0 : std::exp2(static_cast<double>(mt - m) * c);
    prefix[t + 1] = prefix[t] + s.tile_sum[t] * scale;
    if (p.entropy && scale > 0.0)
      weighted += scale * (s.tile_wsum[t] + s.tile_sum[t] * static_cast<double>(mt - m) * inv_t);
  }
  const double z = prefix[ntiles];
  const double log_z = std::log(z);
  if (p.entropy) *entropy = static_cast<float>(log_z - weighted / z);

  if (p.greedy) {
    float lv;
    load(best, 1, &lv);
    const float lp = static_cast<float>(static_cast<double>(lv - m) * inv_t - log_z);
    for (int64_t j = 0; j < k; ++j) {
      tokens[j * stride] = best;
      logp[j * stride] = lp;
    }
    return true;
  }

  int64_t last_nonzero = ntiles - 1;
  while (prefix[last_nonzero + 1] <= prefix[last_nonzero]) --last_nonzero;  // z > 0: terminates
  for (int64_t j = 0; j < k; ++j) {
    // Inverse CDF over tiles: the first tile whose prefix end exceeds u z.
    const double target_row = u[j] * z;
    int64_t t = std::upper_bound(prefix + 1, prefix + ntiles + 1, target_row) - (prefix + 1);
    double r;
    if (t >= ntiles) {  // u z rounded onto the total: the top of the last tile
      t = last_nonzero;
      r = 0x1.fffffffffffffp-1;
    } else {
      r = (target_row - prefix[t]) / (prefix[t + 1] - prefix[t]);
      r = r < 0.0 ? 0.0 : (r >= 1.0 ? 0x1.fffffffffffffp-1 : r);
    }
    // Inverse CDF inside the tile, on the same terms that made its sum.
    const int n = load_tile(t);
    cpu::tile_exp2(buf, n, s.tile_max[t], c, s.terms.data());
    double total = 0.0;
    for (int i = 0; i < n; ++i) total += s.terms[i];
    const double target = r * total;
    double cum = 0.0;
    int pick = -1, last_pos = -1;
    for (int i = 0; i < n; ++i) {
      const double e = s.terms[i];
      if (e <= 0.0) continue;
      last_pos = i;
      cum += e;
      if (cum > target) {
        pick = i;
        break;
      }
    }
    if (pick < 0) pick = last_pos;
    tokens[j * stride] = t * cpu::kTile + pick;
    logp[j * stride] = static_cast<float>(static_cast<double>(buf[pick] - m) * inv_t - log_z);
  }
  return true;
}

}  // namespace edlm
