// Exact categorical sampling of one logits row on the CPU: the algorithm behind
// edlm_ext.masked_sample. Torch-free; csrc/cpu/masked_sample.cpp runs it over rows.
//
// The row's distribution is p_i ∝ exp(l_i / T) over every token but [MASK].
// One pass over the row computes, per tile of kTile tokens, the tile max m_k and
// s_k = Σ_tile 2^((l_i - m_k) c), c = log2(e)/T. The tile masses
// c_k = s_k 2^((m_k - m) c) are summed in float64 and ONE uniform u (53 bits,
// midpoint-rounded, see philox.h) picks a tile by inverse CDF, then a token inside
// that tile by a float64 prefix over the recomputed terms. Every token's
// probability is thus reproduced to float32 *relative* accuracy (~1e-7 of its
// own mass, however small), which float32 Gumbel noise or a float32 cumsum cannot
// do for rare tokens. No float64 tensors: float64 is used for O(V / kTile) scalars.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "edlm/cpu_tiles.h"
#include "edlm/numeric.h"

namespace edlm {

// Outcome of sampling one masked row.
struct RowDraw {
  int64_t token;  // in [0, V), never the mask id; mask id when !valid
  float logp;     // log-probability of token under the tempered softmax; NaN when !valid
  bool valid;     // false: NaN or +inf logit, or no finite logit but [MASK]
};

// Per-thread scratch, reused across rows.
struct RowScratch {
  std::vector<float> buf, terms, tile_max, tile_sum;
  std::vector<double> tile_mass;
  void reserve(int64_t V) {
    const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
    buf.resize(cpu::kTile);
    terms.resize(cpu::kTile);
    tile_max.resize(ntiles);
    tile_sum.resize(ntiles);
    tile_mass.resize(ntiles);
  }
};

// Load(start, n, out) writes logits[start .. start+n) as float32 into out.
// greedy: argmax (lowest index on ties), logp = 0 (the point mass).
template <typename Load>
RowDraw sample_row(const Load& load, int64_t V, int64_t mask_id, double inv_temperature, bool greedy,
                   double u, RowScratch& s) {
  const RowDraw invalid{mask_id, std::numeric_limits<float>::quiet_NaN(), false};
  const int64_t ntiles = (V + cpu::kTile - 1) / cpu::kTile;
  const float c = static_cast<float>(inv_temperature * 1.4426950408889634);
  float* buf = s.buf.data();

  // Loads tile k into buf as float32, [MASK] and padding up to kWidth as -inf.
  // Returns the padded length.
  auto load_tile = [&](int64_t k) -> int {
    const int64_t start = k * cpu::kTile;
    const int n = static_cast<int>(std::min<int64_t>(cpu::kTile, V - start));
    load(start, n, buf);
    const int padded = (n + cpu::kWidth - 1) / cpu::kWidth * cpu::kWidth;
    for (int i = n; i < padded; ++i) buf[i] = -kInf;
    if (mask_id >= start && mask_id < start + n) buf[mask_id - start] = -kInf;
    return padded;
  };

  bool has_nan = false;
  float m = -kInf;
  int64_t best = -1;
  for (int64_t k = 0; k < ntiles; ++k) {
    const int n = load_tile(k);
    const float mk = cpu::tile_max(buf, n, &has_nan);
    if (greedy) {
      if (mk > m) {  // first tile holding a new max; lowest index within it
        for (int i = 0; i < n; ++i)
          if (buf[i] == mk) {
            best = k * cpu::kTile + i;
            break;
          }
        m = mk;
      }
      continue;
    }
    s.tile_max[k] = mk;
    s.tile_sum[k] = (mk == -kInf || mk == kInf) ? 0.0f : cpu::tile_exp2_sum(buf, n, mk, c);
    if (mk > m) m = mk;
  }
  if (has_nan || m == kInf || m == -kInf) return invalid;
  if (greedy) return RowDraw{best, 0.0f, true};

  // Tile masses relative to the row max, in float64.
  double z = 0.0;
  for (int64_t k = 0; k < ntiles; ++k) {
    const float mk = s.tile_max[k];
    const double ck = mk == -kInf ? 0.0 : s.tile_sum[k] * std::exp2(static_cast<double>(mk - m) * c);
    s.tile_mass[k] = ck;
    z += ck;
  }
  // Inverse CDF over tiles.
  const double t = u * z;
  int64_t chosen = -1, last_nonzero = -1;
  double below = 0.0;
  for (int64_t k = 0; k < ntiles; ++k) {
    const double ck = s.tile_mass[k];
    if (ck <= 0.0) continue;
    last_nonzero = k;
    if (t < below + ck) {
      chosen = k;
      break;
    }
    below += ck;
  }
  if (chosen < 0) {  // t rounded onto the total: the top of the last tile
    chosen = last_nonzero;
    below = z - s.tile_mass[chosen];
  }
  double r = (t - below) / s.tile_mass[chosen];
  r = r < 0.0 ? 0.0 : (r >= 1.0 ? 0x1.fffffffffffffp-1 : r);

  // Inverse CDF inside the tile, on the same terms that made s_k.
  const int n = load_tile(chosen);
  const float mk = s.tile_max[chosen];
  cpu::tile_exp2(buf, n, mk, c, s.terms.data());
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
  const int64_t token = chosen * cpu::kTile + pick;
  const double logp = static_cast<double>(buf[pick] - m) * inv_temperature - std::log(z);
  return RowDraw{token, static_cast<float>(logp), true};
}

}  // namespace edlm
