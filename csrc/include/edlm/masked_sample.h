// Exact categorical sampling of one logits row on the CPU: the algorithm behind
// edlm_ext.masked_sample. Torch-free; csrc/cpu/masked_sample.cpp runs it over rows.
//
// The row's distribution is p_i ∝ exp(l_i / T) over every token but [MASK].
// One pass over the row computes, per tile of kTile tokens, the tile max m_k and
// s_k = Σ_tile 2^((l_i - m_k) c), c = log2(e)/T. The tile masses
// c_k = s_k 2^((m_k - m) c) are summed in float64 and ONE uniform u (53 bits,
// midpoint-rounded, see philox.h) picks a tile by inverse CDF, then a token inside
// that tile by a float64 prefix over the recomputed terms. k draws (proposals)
// share the one pass and re-read one tile each. Every token's
// probability is thus reproduced to float32 *relative* accuracy (~1e-7 of its
// own mass, however small), which float32 Gumbel noise or a float32 cumsum cannot
// do for rare tokens. No float64 tensors: float64 is used for O(V / kTile) scalars.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "edlm/cpu_tiles.h"
#include "edlm/numeric.h"

namespace edlm {

// Per-thread scratch, reused across rows.
struct RowScratch {
  std::vector<float> buf, terms, tile_max, tile_sum;
  std::vector<double> prefix;  // prefix[k] = mass of tiles [0, k), float64
  void reserve(int64_t V) {
    const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
    buf.resize(cpu::kTile);
    terms.resize(cpu::kTile);
    tile_max.resize(ntiles);
    tile_sum.resize(ntiles);
    prefix.resize(ntiles + 1);
  }
};

// Draws k tokens from one masked row, one per uniform u[j], and writes token j to
// tokens[j * stride] and its log-probability under the tempered softmax to
// logp[j * stride]. Load(start, n, out) writes logits[start .. start+n) as
// float32 into out. greedy: every draw is the argmax (lowest index on ties),
// logp = 0 (the point mass). Returns false, writing nothing, when the row is
// invalid: a NaN or +inf logit, or no finite logit but [MASK].
template <typename Load>
bool sample_row(const Load& load, int64_t V, int64_t mask_id, double inv_temperature, bool greedy,
                const double* u, int64_t k, RowScratch& s, int64_t* tokens, float* logp, int64_t stride) {
  const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
  const float c = static_cast<float>(inv_temperature * 1.4426950408889634);
  float* buf = s.buf.data();

  // Loads tile k into buf as float32, [MASK] and padding up to kWidth as -inf.
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

  // Pass 1: per-tile max and sum of 2^((l - m_t) c).
  bool has_nan = false;
  float m = -kInf;
  int64_t best = -1;
  for (int64_t t = 0; t < ntiles; ++t) {
    const int n = load_tile(t);
    const float mt = cpu::tile_max(buf, n, &has_nan);
    if (greedy) {
      if (mt > m) {  // first tile holding a new max; lowest index within it
        for (int i = 0; i < n; ++i)
          if (buf[i] == mt) {
            best = t * cpu::kTile + i;
            break;
          }
      }
    } else {
      s.tile_max[t] = mt;
      s.tile_sum[t] = (mt == -kInf || mt == kInf) ? 0.0f : cpu::tile_exp2_sum(buf, n, mt, c);
    }
    if (mt > m) m = mt;
  }
  if (has_nan || m == kInf || m == -kInf) return false;
  if (greedy) {
    for (int64_t j = 0; j < k; ++j) {
      tokens[j * stride] = best;
      logp[j * stride] = 0.0f;
    }
    return true;
  }

  // Tile masses relative to the row max, as a float64 prefix in token order.
  double* prefix = s.prefix.data();
  prefix[0] = 0.0;
  for (int64_t t = 0; t < ntiles; ++t) {
    const float mt = s.tile_max[t];
    const double ct = mt == -kInf ? 0.0 : s.tile_sum[t] * std::exp2(static_cast<double>(mt - m) * c);
    prefix[t + 1] = prefix[t] + ct;
  }
  const double z = prefix[ntiles];
  const double log_z = std::log(z);
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
    logp[j * stride] = static_cast<float>(static_cast<double>(buf[pick] - m) * inv_temperature - log_z);
  }
  return true;
}

}  // namespace edlm
