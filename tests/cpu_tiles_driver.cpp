// Test driver of the CPU tile loops (csrc/cpu/cpu_tiles.cpp), built and run by
// tests/test_cpu_tiles.py: runs every function of edlm/cpu_tiles.h on fixed inputs under
// the instruction set named on the command line (EDLM_CPU_SIMD, set before the first call)
// and writes the inputs and results as raw little-endian arrays:
//   cpu_tiles_driver <scalar|avx2|avx512> <out file>
// Record: name (u32 length + bytes), dtype code (0 f32, 1 u16, 2 i32), count (u64), data.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "edlm/cpu_simd.h"
#include "edlm/cpu_tiles.h"
#include "edlm/masked_sample.h"
#include "edlm/numeric.h"
#include "edlm/radix_select.h"
#include "edlm/tile_ref.h"

namespace {

using edlm::cpu::kGroup;
using edlm::cpu::kTile;

FILE* out_file = nullptr;

template <typename T>
void emit(const char* name, int code, const std::vector<T>& v) {
  const uint32_t len = static_cast<uint32_t>(std::strlen(name));
  const uint64_t n = v.size();
  std::fwrite(&len, 4, 1, out_file);
  std::fwrite(name, 1, len, out_file);
  std::fwrite(&code, 4, 1, out_file);
  std::fwrite(&n, 8, 1, out_file);
  std::fwrite(v.data(), sizeof(T), v.size(), out_file);
}
void emit_f(const char* name, const std::vector<float>& v) { emit(name, 0, v); }

uint64_t lcg_state = 0x9E3779B97F4A7C15ull;
double uniform01() {
  lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<double>(lcg_state >> 11) * 0x1.0p-53;
}
float normal(float scale) {  // Box-Muller, enough for test data
  const double u = uniform01() + 1e-300, v = uniform01();
  return static_cast<float>(scale * std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <scalar|avx2|avx512> <out>\n", argv[0]);
    return 2;
  }
  setenv("EDLM_CPU_SIMD", argv[1], 1);
  out_file = std::fopen(argv[2], "wb");
  if (out_file == nullptr) return 2;
  const std::string path = edlm::cpu::simd_name(edlm::cpu::best_simd());
  emit("simd", 1, std::vector<uint16_t>(path.begin(), path.end()));
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();

  // exp2 over a dense grid of [-130, 1] and its edges (tile_exp2 with c = 1, b = 0, fused:
  // the argument is x itself), and the scalar lane function on the same inputs.
  std::vector<float> x;
  for (int i = 0; i <= 131 * 4096; ++i) x.push_back(-130.0f + static_cast<float>(i) / 4096.0f);
  for (float e : {-inf, nan, -0.0f, 0.0f, -126.0f, std::nextafter(-126.0f, -inf), -126.5f, -125.5f, -1e-30f,
                  -1e-7f, 0.25f, 1.0f, -127.0f, -149.0f, -1e30f, -0.5f, 0.5f, -1.5f})
    x.push_back(e);
  while (x.size() % kGroup) x.push_back(-inf);
  emit_f("exp2_in", x);
  std::vector<float> y(x.size()), lane(x.size());
  edlm::cpu::tile_exp2(x.data(), static_cast<int>(x.size()), edlm::cpu::Exp2Arg{1.0f, 0.0f, true}, y.data());
  for (size_t i = 0; i < x.size(); ++i) lane[i] = edlm::cpu::exp2_lane(x[i]);
  emit_f("exp2_out", y);
  emit_f("exp2_lane", lane);

  // Tiles of logits ~ N(0, 3^2) with edge values planted in some.
  constexpr int kTiles = 24;
  std::vector<float> tiles(static_cast<size_t>(kTiles) * kTile);
  for (float& v : tiles) v = normal(3.0f);
  tiles[1 * kTile + 7] = nan;           // NaN
  tiles[2 * kTile + 100] = inf;         // +inf
  for (int i = 0; i < kTile; ++i) tiles[3 * kTile + i] = -inf;  // all -inf
  tiles[4 * kTile + 5] = -0.0f;         // signed zeros as the max
  tiles[4 * kTile + 9] = 0.0f;
  for (int i = 0; i < kTile; ++i) tiles[4 * kTile + i] = i == 5 || i == 9 ? tiles[4 * kTile + i] : -1.0f - i;
  for (int i = 0; i < kTile; ++i) tiles[5 * kTile + i] = 1e6f + 0.0625f * (i % 17);  // large logits
  emit_f("tiles", tiles);
  std::vector<float> maxima, bads, groups(static_cast<size_t>(kTiles) * (kTile / kGroup)), nans;
  for (int t = 0; t < kTiles; ++t) {
    bool bad = false, bad_g = false;
    maxima.push_back(edlm::cpu::tile_max(tiles.data() + t * kTile, kTile, &bad));
    const float mg = edlm::cpu::tile_max_groups(tiles.data() + t * kTile, kTile, &bad_g, groups.data() + t * (kTile / kGroup));
    maxima.push_back(mg);
    bads.push_back(bad);
    bads.push_back(bad_g);
    nans.push_back(edlm::cpu::tile_has_nan(tiles.data() + t * kTile, kTile));
  }
  emit_f("tile_max", maxima);
  emit_f("tile_bad", bads);
  emit_f("group_max", groups);
  emit_f("tile_has_nan", nans);

  // Sums, weighted sums and terms at several scales, fused and not.
  std::vector<float> sums, wsums, terms(tiles.size() * 4);
  int term_at = 0;
  for (float c : {1.4426950f, 0.3f, 28.853900f, 1e-3f}) {
    for (int t = 0; t < kTiles; ++t) {
      const float mt = maxima[2 * t];
      const float* tile = tiles.data() + t * kTile;
      for (bool fused : {true, false}) {
        const edlm::cpu::Exp2Arg a{c, fused ? mt * c : mt, fused};
        float w = 0.0f;
        sums.push_back(edlm::cpu::tile_exp2_sum(tile, kTile, a));
        sums.push_back(edlm::cpu::tile_exp2_wsum(tile, kTile, a, &w));
        wsums.push_back(w);
        if (fused) {
          edlm::cpu::tile_exp2(tile, kTile, a, terms.data() + term_at);
          term_at += kTile;
        }
      }
    }
  }
  emit_f("exp2_sums", sums);
  emit_f("exp2_wsums", wsums);
  emit_f("exp2_terms", terms);

  // 16-bit decoding: every bit pattern, through the vector decoders (with their maxima).
  std::vector<uint16_t> halves(65536);
  for (int i = 0; i < 65536; ++i) halves[i] = static_cast<uint16_t>(i);
  emit("halves", 1, halves);
  for (int bf16 = 0; bf16 < 2; ++bf16) {
    std::vector<float> dec(65536), mx, gm(65536 / kGroup);
    for (int t = 0; t < 65536 / kTile; ++t) {
      bool bad = false;
      mx.push_back(bf16 ? edlm::cpu::tile_decode_max_bf16(halves.data() + t * kTile, kTile, dec.data() + t * kTile, &bad,
                                                          gm.data() + t * (kTile / kGroup))
                        : edlm::cpu::tile_decode_max_f16(halves.data() + t * kTile, kTile, dec.data() + t * kTile, &bad,
                                                         gm.data() + t * (kTile / kGroup)));
      mx.push_back(bad);
    }
    std::vector<float> ref(65536);
    if (bf16) edlm::cpu::bf16_to_float(halves.data(), 65536, ref.data());
    else edlm::cpu::f16_to_float(halves.data(), 65536, ref.data());
    emit_f(bf16 ? "bf16_decoded" : "f16_decoded", dec);
    emit_f(bf16 ? "bf16_scalar" : "f16_scalar", ref);
    emit_f(bf16 ? "bf16_max" : "f16_max", mx);
    emit_f(bf16 ? "bf16_group_max" : "f16_group_max", gm);
  }

  // Gathers of the positions >= lb (the buffer has a vector of slack, as RowScratch's).
  std::vector<int32_t> gathered;
  for (float lb : {2.0f, 5.0f, 0.0f, -inf, inf}) {
    std::vector<int32_t> idx(tiles.size() + 16);
    int count = 0;
    for (int t = 0; t < kTiles; ++t) count += edlm::cpu::tile_gather_ge(tiles.data() + t * kTile, kTile, lb, t * kTile, idx.data() + count);
    gathered.push_back(count);
    gathered.insert(gathered.end(), idx.begin(), idx.begin() + count);
  }
  emit("gathered", 2, gathered);

  // top-p masses: tile_masses next to the terms tile_exp2 makes from the
  // same (unfused) argument, on finite logits, -inf, NaN and terms that underflow to 0.
  {
    std::vector<float> x(4 * kTile), terms(x.size());
    std::vector<uint64_t> q(x.size());
    std::vector<int32_t> masses;
    for (size_t i = 0; i < x.size(); ++i) x[i] = normal(4.0f);
    x[3] = -inf;
    x[300] = nan;
    x[517] = -200.0f;
    float m = -inf;
    for (float v : x) m = v > m ? v : m;  // (NaN compares false)
    const float c = 1.4426950408889634f;
    std::vector<int32_t> sums;  // what tile_masses returns, per tile (low, high words)
    for (int t = 0; t < 4; ++t) {
      const uint64_t sum = edlm::cpu::tile_masses(x.data() + t * kTile, kTile, c, m, q.data() + t * kTile);
      sums.push_back(static_cast<int32_t>(static_cast<uint32_t>(sum)));
      sums.push_back(static_cast<int32_t>(static_cast<uint32_t>(sum >> 32)));
      edlm::cpu::tile_exp2(x.data() + t * kTile, kTile, edlm::cpu::Exp2Arg{c, m, false}, terms.data() + t * kTile);
    }
    for (uint64_t w : q) {
      masses.push_back(static_cast<int32_t>(static_cast<uint32_t>(w)));
      masses.push_back(static_cast<int32_t>(static_cast<uint32_t>(w >> 32)));
    }
    emit_f("mass_terms", terms);
    emit("masses", 2, masses);
    emit("mass_sums", 2, sums);
    std::vector<float> mins;  // tile_min_where_mass_ge over the four tiles, for rungs 1 .. 2^41
    for (uint64_t rung : {uint64_t{1}, uint64_t{1} << 20, uint64_t{1} << 39, uint64_t{1} << 40, uint64_t{1} << 41}) {
      float lo = inf;
      for (int t = 0; t < 4; ++t)
        lo = edlm::cpu::tile_min_where_mass_ge(x.data() + t * kTile, q.data() + t * kTile, kTile, rung, lo);
      mins.push_back(lo);
    }
    emit_f("mass_mins", mins);
    std::vector<int32_t> rung_sums;  // tile_mass_ge_sums over the four tiles: 8 rungs, then 3 (+ kNoRung)
    for (int used : {8, 3}) {
      uint64_t rungs[edlm::cpu::kMassRungs], sums[edlm::cpu::kMassRungs] = {};
      for (int r = 0; r < edlm::cpu::kMassRungs; ++r)
        rungs[r] = r < used ? uint64_t{1} << (41 - 5 * r - (used == 3 ? 2 : 0)) : edlm::cpu::kNoRung;
      rungs[0] = used == 8 ? uint64_t{1} : rungs[0];  // every nonzero mass
      edlm::cpu::tile_mass_ge_sums(q.data(), 4 * kTile, rungs, used, sums);
      for (int r = 0; r < edlm::cpu::kMassRungs; ++r)
        for (uint64_t w : {rungs[r], sums[r]}) {
          rung_sums.push_back(static_cast<int32_t>(static_cast<uint32_t>(w)));
          rung_sums.push_back(static_cast<int32_t>(static_cast<uint32_t>(w >> 32)));
        }
    }
    emit("mass_rung_sums", 2, rung_sums);
    emit_f("mass_logits", x);
  }

  // sort_distinct over lengths around its vector blocks and its rank-sort limit: words as the
  // candidates' (a key with many ties over a distinct index), and full 64-bit words, half of
  // them >= 2^63 (a signed compare would misorder them); each record is n, then the input,
  // then the output, every word as two int32 (low, high).
  std::vector<int32_t> sorts;
  auto put = [&](uint64_t w) {
    sorts.push_back(static_cast<int32_t>(static_cast<uint32_t>(w)));
    sorts.push_back(static_cast<int32_t>(static_cast<uint32_t>(w >> 32)));
  };
  for (int kind = 0; kind < 2; ++kind) {
    for (int n : {0, 1, 2, 7, 31, 32, 33, 62, 64, 65, 200, edlm::cpu::kRankSortMax, edlm::cpu::kRankSortMax + 1, 600}) {
      std::vector<uint64_t> in(n), out(n);
      for (int i = 0; i < n; ++i) {
        const uint64_t hi = kind == 0 ? static_cast<uint64_t>(uniform01() * 6) : static_cast<uint64_t>(uniform01() * 4294967296.0);
        in[i] = hi << 32 | static_cast<uint32_t>(kind == 0 ? i * 7919 % 100003 : uniform01() * 4294967296.0);
      }
      edlm::cpu::sort_distinct(in.data(), n, out.data());
      sorts.push_back(n);
      for (uint64_t w : in) put(w);
      for (uint64_t w : out) put(w);
    }
  }
  emit("sorts", 2, sorts);
  // The row pass (row_tiles_*) next to the per-tile loops it must reproduce bit for bit: the
  // tiles above (NaN, +inf, all -inf, signed zeros, large logits, unfused past 2^22 at the
  // larger scales) as one row per scale, with and without the weighted sums, in float32 and
  // rounded to bfloat16 bits; half bits of moderate logits with the same planted tiles. One
  // call per row (the values), and one call per tile (the flags).
  {
    const int n = static_cast<int>(tiles.size());
    std::vector<uint16_t> bf(n), hf(n);
    for (int i = 0; i < n; ++i) {
      uint32_t b;
      std::memcpy(&b, &tiles[i], 4);
      bf[i] = static_cast<uint16_t>(b >> 16);  // truncated: NaN stays NaN
      const uint32_t e = 12 + static_cast<uint32_t>(uniform01() * 6), mant = static_cast<uint32_t>(uniform01() * 1024);
      hf[i] = static_cast<uint16_t>((uniform01() < 0.5 ? 0x8000u : 0u) | e << 10 | mant);
    }
    hf[1 * kTile + 7] = 0x7E00;                              // NaN
    hf[2 * kTile + 100] = 0x7C00;                            // +inf
    for (int i = 0; i < kTile; ++i) hf[3 * kTile + i] = 0xFC00;  // all -inf
    std::vector<float> got, want, bad_got, bad_want;
    for (int dt = 0; dt < 3; ++dt) {
      std::vector<float> dec(n);
      for (int i = 0; i < n; ++i) dec[i] = dt == 0 ? tiles[i] : dt == 1 ? edlm::bf16_to_float(bf[i]) : edlm::f16_to_float(hf[i]);
      auto row = [&](int t0, int count, float c, float* mx, float* sm, float* ws, bool* bad) {
        if (dt == 0) edlm::cpu::row_tiles_f32(tiles.data() + t0 * kTile, count, c, mx, sm, ws, bad);
        else if (dt == 1) edlm::cpu::row_tiles_bf16(bf.data() + t0 * kTile, count, c, mx, sm, ws, bad);
        else edlm::cpu::row_tiles_f16(hf.data() + t0 * kTile, count, c, mx, sm, ws, bad);
      };
      for (float c : {1.4426950f, 0.3f, 28.853900f, 1e-3f}) {
        for (bool weighted : {false, true}) {
          std::vector<float> mx(kTiles), sm(kTiles), ws(kTiles, -1.0f);
          bool bad = false;
          row(0, kTiles, c, mx.data(), sm.data(), weighted ? ws.data() : nullptr, &bad);
          got.insert(got.end(), mx.begin(), mx.end());
          got.insert(got.end(), sm.begin(), sm.end());
          if (weighted) got.insert(got.end(), ws.begin(), ws.end());
          bad_got.push_back(bad);
          std::vector<float> wmx(kTiles), wsm(kTiles), wws(kTiles);
          bool wbad = false;
          for (int t = 0; t < kTiles; ++t) {
            const float* x = dec.data() + t * kTile;
            bool tbad = false;
            const float mt = edlm::cpu::tile_max(x, kTile, &tbad);
            float sum = 0.0f, w = 0.0f;
            if (mt == -inf) {
              tbad |= edlm::cpu::tile_has_nan(x, kTile);
            } else if (mt != inf) {
              const edlm::TileRef r = edlm::tile_ref(mt, c);
              const edlm::cpu::Exp2Arg a{c, r.b, r.fused};
              sum = weighted ? edlm::cpu::tile_exp2_wsum(x, kTile, a, &w) : edlm::cpu::tile_exp2_sum(x, kTile, a);
              tbad |= sum != sum;
            }
            wmx[t] = mt;
            wsm[t] = sum;
            wws[t] = w;
            wbad |= tbad;
            bool one_bad = false;  // the same tile alone through the row pass: its own flag
            float one_mx, one_sm, one_ws;
            row(t, 1, c, &one_mx, &one_sm, weighted ? &one_ws : nullptr, &one_bad);
            bad_got.push_back(one_bad);
            bad_want.push_back(tbad);
          }
          want.insert(want.end(), wmx.begin(), wmx.end());
          want.insert(want.end(), wsm.begin(), wsm.end());
          if (weighted) want.insert(want.end(), wws.begin(), wws.end());
          bad_want.insert(bad_want.end() - kTiles, wbad);
        }
      }
    }
    emit_f("row_got", got);
    emit_f("row_want", want);
    emit_f("row_bad_got", bad_got);
    emit_f("row_bad_want", bad_want);
  }
  // radix_select (edlm/radix_select.h) over float order keys with random masses: without a
  // range, with the keys' exact range and with a wider one (the same answer), at targets 1,
  // the total and in between; sets of 1, 5, 1023, 1024 and 3000 items, equal keys, keys that
  // share 24 bits. Each record: n, then per item key, mass (low, high), then per target the
  // target (low, high) and the three answers.
  {
    std::vector<int32_t> rec;
    for (int kind = 0; kind < 3; ++kind) {
      for (int n : {1, 5, 1023, 1024, 3000}) {
        std::vector<uint32_t> keys(n);
        std::vector<uint64_t> mass(n);
        uint64_t total = 0;
        for (int i = 0; i < n; ++i) {
          const float x = kind == 0 ? normal(2.0f) + 5.0f : kind == 1 ? 3.0f : 4.0f + static_cast<float>(i % 200) * 0x1p-20f;
          keys[i] = edlm::order_key(x);
          mass[i] = uniform01() < 0.1 ? 0 : static_cast<uint64_t>(uniform01() * 0x1p40);
          if (i == 0 && mass[i] == 0) mass[i] = 1;
          total += mass[i];
        }
        uint32_t lo = keys[0], hi = keys[0];
        for (uint32_t k : keys) {
          lo = k < lo ? k : lo;
          hi = k > hi ? k : hi;
        }
        rec.push_back(n);
        for (int i = 0; i < n; ++i) {
          rec.push_back(static_cast<int32_t>(keys[i]));
          rec.push_back(static_cast<int32_t>(static_cast<uint32_t>(mass[i])));
          rec.push_back(static_cast<int32_t>(static_cast<uint32_t>(mass[i] >> 32)));
        }
        auto measure = [&](int64_t i) { return mass[i]; };
        for (uint64_t target : {uint64_t{1}, total, total / 2 + 1, total - total / 10}) {
          rec.push_back(static_cast<int32_t>(static_cast<uint32_t>(target)));
          rec.push_back(static_cast<int32_t>(static_cast<uint32_t>(target >> 32)));
          rec.push_back(static_cast<int32_t>(edlm::radix_select(keys.data(), n, measure, target)));
          rec.push_back(static_cast<int32_t>(edlm::radix_select(keys.data(), n, measure, target, 4, lo, hi)));
          rec.push_back(static_cast<int32_t>(edlm::radix_select(keys.data(), n, measure, target, 4, lo - 777, hi)));
        }
      }
    }
    emit("radix", 2, rec);
  }

  // draw_blocks / draw_pick (edlm/masked_sample.h): terms with runs of zeros (a zero block,
  // a zero first and last term), targets at 0, inside, at block edges and past the total.
  {
    std::vector<float> e(1024);
    for (size_t i = 0; i < e.size(); ++i) e[i] = uniform01() < 0.3 ? 0.0f : static_cast<float>(uniform01());
    for (int i = 32; i < 48; ++i) e[i] = 0.0f;  // block 2 empty
    e[0] = 0.0f;
    e[1023] = 0.0f;
    const int64_t nb = 1024 / edlm::kDrawBlock;
    std::vector<double> block(nb), prefix(nb + 1);
    edlm::draw_blocks(e.data(), 1024, block.data(), prefix.data());
    std::vector<float> targets, picks;
    for (int j = 0; j < 200; ++j) targets.push_back(static_cast<float>(uniform01() * prefix[nb]));
    for (double t : {0.0, prefix[3], prefix[2], prefix[nb], prefix[nb] * 2})
      targets.push_back(static_cast<float>(t));
    for (float t : targets) picks.push_back(static_cast<float>(edlm::draw_pick(e.data(), block.data(), prefix.data(), nb, t)));
    emit_f("draw_terms", e);
    emit_f("draw_targets", targets);
    emit_f("draw_picks", picks);
  }
  // exp2_f64 over [-1100, 1] (a dense grid, and around the subnormal range) and its edges;
  // each double as two int32 words (low, high).
  {
    std::vector<double> x;
    for (int i = 0; i <= 200000; ++i) x.push_back(-1100.0 + 1101.0 * i / 200000.0);
    for (int i = 0; i <= 20000; ++i) x.push_back(-1080.0 + 60.0 * i / 20000.0);
    for (int i = 0; i <= 20000; ++i) x.push_back(-1.0 + 2.0 * i / 20000.0);
    for (double e : {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN(), -0.0, 0.0, 1.0,
                     -0.5, 0.5, -1022.0, -1022.5, -1074.0, -1074.5, -1075.0, -1076.0, -1100.0, -1e300, -1e-300})
      x.push_back(e);
    std::vector<double> y(x.size());
    edlm::cpu::exp2_f64(x.data(), static_cast<int>(x.size()), y.data());
    std::vector<int32_t> words;
    for (const std::vector<double>* v : {&x, &y})
      for (double d : *v) {
        uint64_t b;
        std::memcpy(&b, &d, 8);
        words.push_back(static_cast<int32_t>(static_cast<uint32_t>(b)));
        words.push_back(static_cast<int32_t>(static_cast<uint32_t>(b >> 32)));
      }
    emit("exp2_f64", 2, words);
  }

  // prefetch_target: byte offsets into one buffer (a 20000-byte row at 0, the next row at
  // 500000; -1: none) for positions around end - kPrefetchBytes, without an end, with an end
  // and a next row, with an end and none.
  {
    static char buf[1 << 20];
    std::vector<int32_t> t;
    for (int p : {0, 20000 - edlm::cpu::kPrefetchBytes - 1, 20000 - edlm::cpu::kPrefetchBytes, 19999})
      for (int mode = 0; mode < 3; ++mode) {
        const char* a = edlm::cpu::prefetch_target(buf + p, mode == 0 ? nullptr : buf + 20000,
                                                   mode == 2 ? nullptr : buf + 500000);
        t.push_back(a ? static_cast<int32_t>(a - buf) : -1);
      }
    emit("prefetch", 2, t);
  }
  std::fclose(out_file);
  return 0;
}
