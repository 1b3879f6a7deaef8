// Vectorized inner loops of the CPU samplers over one tile of float32 values, and the
// exp2 they share. Defined in csrc/cpu/cpu_tiles.cpp with an AVX-512, an AVX2 (+FMA,
// F16C) and a scalar path, chosen at run time (edlm/cpu_simd.h). Every path performs the
// same IEEE operations in the same lane order (16 lanes; x[i] goes to lane i % 16 and the
// lanes are added in one fixed tree; four accumulators, one per vector of a group of four),
// so all three give bit-identical results. (A path may keep a lane in another register
// position, as AVX2's bfloat16 row pass does, if it puts the lanes back before the tree.)
// Torch-free.
#pragma once
#include <cstdint>

namespace edlm {
namespace cpu {

// Tile width of the CPU samplers (elements of one logits row per tile).
constexpr int kTile = 256;
// Lanes of the loops.
constexpr int kWidth = 16;
// The loops take four vectors at a time (four accumulators): every n below is a multiple
// of kGroup (callers pad with -inf, which adds nothing to a max or a sum of terms), and
// tile_max_groups' groups are these.
constexpr int kGroup = 4 * kWidth;
// How far ahead of the tile being read the loops over a row prefetch it (the hardware's
// streamer alone leaves them waiting on memory between the tiles' bursts of loads).
constexpr int kPrefetchBytes = 8192;  // (measured: 4-16 KB all help; prefetcht0)

// exp2_lane(x) = 2^x in float32 for x <= 1 (within 1.3 ulp: a degree-6 minimax polynomial
// on the fraction, the exponent added as an integer); 0 for x < -126 (so every term is 0
// or a normal float; CUDA's exp2_ftz flushes the same range) and for -inf; NaN for NaN.
// The scalar form of what every path computes per lane, bit for bit.
float exp2_lane(float x);

// The argument of a tile's terms: fused, arg = fma(x, c, -b) (b = fl(tile max * c), one
// rounding); otherwise arg = (x - b) * c with b = the tile max (edlm/masked_sample.h,
// tile_ref, says which).
struct Exp2Arg {
  float c, b;
  bool fused;
};

// max(x[0..n)), NaN skipped; *bad |= an element is +inf. A NaN shows in the tile's terms
// instead (2^NaN = NaN), or, where the max is -inf and no terms are made, in tile_has_nan.
float tile_max(const float* x, int n, bool* bad);
bool tile_has_nan(const float* x, int n);
// As tile_max, with *bad also on NaN, and group_max[g] = max(x[g kGroup, (g+1) kGroup))
// for n / kGroup groups (n a multiple of kGroup).
float tile_max_groups(const float* x, int n, bool* bad, float* group_max);

// Decodes bfloat16 / IEEE half bits in[0..n) into out and returns their max (*bad as
// tile_max; with group_max, as tile_max_groups): one pass over the row's memory, the terms
// then come from out (in L1).
float tile_decode_max_bf16(const uint16_t* in, int n, float* out, bool* bad, float* group_max = nullptr);
float tile_decode_max_f16(const uint16_t* in, int n, float* out, bool* bad, float* group_max = nullptr);

// sum_i 2^arg_i; with wsum, also *wsum = sum_i 2^arg_i max(arg_i, -128) (the entropy's
// weighted sum in log2 units; the clamp keeps 0 * -inf out).
float tile_exp2_sum(const float* x, int n, const Exp2Arg& a);
float tile_exp2_wsum(const float* x, int n, const Exp2Arg& a, float* wsum);
// The first pass over ntiles whole tiles x[0, ntiles kTile) of a row, none holding [MASK]:
// for each tile t, tile_max[t] (as tile_max), tile_sum[t] = the sum of its terms against
// tile_ref(tile_max[t], c) (as tile_exp2_sum; 0 where the max is -inf or +inf) and, with
// tile_wsum, the weighted sum (as tile_exp2_wsum); *bad on +inf, and on NaN (through the
// terms, or, in a tile whose max is -inf, as tile_has_nan). The same loops as the per-tile
// functions (the same bits), one call per row, prefetching kPrefetchBytes ahead. The 16-bit
// forms decode each vector as they read it (no decoded copy). With end (the row's end), a
// prefetch address a >= end goes to next + (a - end) instead: the start of the next row the
// caller will read (none when next is null), which need not follow this one in memory.
void row_tiles_f32(const float* x, int64_t ntiles, float c, float* tile_max, float* tile_sum, float* tile_wsum,
                   bool* bad, const char* end = nullptr, const char* next = nullptr);
void row_tiles_bf16(const uint16_t* x, int64_t ntiles, float c, float* tile_max, float* tile_sum, float* tile_wsum,
                    bool* bad, const char* end = nullptr, const char* next = nullptr);
void row_tiles_f16(const uint16_t* x, int64_t ntiles, float c, float* tile_max, float* tile_sum, float* tile_wsum,
                   bool* bad, const char* end = nullptr, const char* next = nullptr);

// Where to prefetch kPrefetchBytes past p in a row ending at end, continued at next (as
// row_tiles_*: null end, no redirect; past end with a null next, nothing).
inline const char* prefetch_target(const char* p, const char* end, const char* next) {
  const char* a = p + kPrefetchBytes;
  if (end == nullptr || a < end) return a;
  return next ? next + (a - end) : nullptr;
}

// out[i] = 2^arg_i, the terms tile_exp2_sum adds up.
void tile_exp2(const float* x, int n, const Exp2Arg& a, float* out);

// out[i] = 2^x[i] in float64, any n: within ~1 ulp (a degree-13 polynomial on the fraction
// times two exact powers of two, so a subnormal result is rounded once); 0 below -1075 and
// for -inf; NaN for NaN. The row prefix's rescalings of the tile sums.
void exp2_f64(const double* x, int n, double* out);

// out[i] = token_mass(2^((x[i] - m) c)) (edlm/filter.h: each term in [0, 1] in 2^-40 fixed
// point), the top-p masses of a tile; exact integers. Returns their sum.
uint64_t tile_masses(const float* x, int n, float c, float m, uint64_t* out);
// sums[r] += the sum of the masses mass[i] >= rungs[r], for r < kMassRungs (n a multiple of
// kWidth; nrungs <= kMassRungs says how many rungs are used, the rest must be kNoRung, which
// no mass reaches: masses are <= 2^40; rungs >= 1). Exact integers: the same on every path.
constexpr int kMassRungs = 8;
constexpr uint64_t kNoRung = uint64_t{1} << 62;
void tile_mass_ge_sums(const uint64_t* mass, int n, const uint64_t* rungs, int nrungs, uint64_t* sums);
// min(lo, the smallest x[i] whose mass[i] >= rung) (n a multiple of kWidth).
float tile_min_where_mass_ge(const float* x, const uint64_t* mass, int n, uint64_t rung, float lo);

// Appends to idx the positions i (as base + i) with x[i] >= lb, in order; returns how many
// (n a multiple of kWidth). Branch-free: idx needs kWidth entries of slack past the count
// (each vector's positions are stored whole, the count then advanced).
int tile_gather_ge(const float* x, int n, float lb, int32_t base, int32_t* idx);

// out[0..n) = in[0..n) sorted ascending; the words must be distinct (a candidate's word
// holds its token index), so the result is the one sorted order on every path. AVX-512 and
// AVX2, n <= kRankSortMax: each word's rank counted against 8 (4) words per compare, with no
// branch on the data (a comparison sort of ~64 candidates mispredicts half its branches);
// else (and on the scalar path) std::sort. in and out must not overlap.
constexpr int kRankSortMax = 256;
void sort_distinct(const uint64_t* in, int64_t n, uint64_t* out);

// out[i] = in[i] decoded from bfloat16 / IEEE half bits (exact), any n.
void bf16_to_float(const uint16_t* in, int n, float* out);
void f16_to_float(const uint16_t* in, int n, float* out);

}  // namespace cpu
}  // namespace edlm
