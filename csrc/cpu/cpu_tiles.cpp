// The CPU samplers' tile loops (declared in edlm/cpu_tiles.h), in three instruction sets
// chosen at run time (edlm/cpu_simd.h): one generic body (cpu_tiles_body.inc) compiled
// three times over a 16-lane vector type, with explicit FMAs and no operation the compiler
// could contract or reorder, so every path gives the same bits:
//   avx512  one __m512 per 16 lanes
//   avx2    two __m256 (lanes 0-7, 8-15), FMA3, F16C
//   scalar  16 floats (std::fma, std::nearbyint): any CPU, and the reference of the others
#include "edlm/cpu_tiles.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "edlm/cpu_simd.h"
#include "edlm/filter.h"
#include "edlm/numeric.h"
#include "edlm/tile_ref.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#define EDLM_X86_PATHS 1
#endif

namespace edlm {
namespace cpu {
namespace {

// 2^f on [-1/2, 1/2]: minimax for relative error, float32 coefficients (Horner with FMAs:
// 1.3 ulp at most together with the rounding; c0 = 1 so 2^0 = 1 exactly).
constexpr float kP6 = 1.534581242594868e-04f, kP5 = 1.3399930903688073e-03f, kP4 = 9.618489071726799e-03f,
                kP3 = 5.550328642129898e-02f, kP2 = 0.24022646248340607f, kP1 = 0.6931471824645996f, kP0 = 1.0f;
constexpr float kLowClamp = -127.0f;   // the scalar path's clamp (arguments below are 0 anyway): keeps
                                       // its float -> int conversion in range
constexpr float kZeroBelow = -126.0f;  // 2^x < 2^-126 counts as 0 (no subnormal terms)
constexpr float kWsumClamp = -128.0f;  // entropy weights: 0 * max(arg, -128) = 0 for arg = -inf

// exp2_f64: 2^f on [-1/2, 1/2] by its Taylor polynomial of degree 13 (coefficients ln2^k / k!
// rounded; the remainder < 5e-18), Horner with FMAs; arguments clamped at -1100 (where 2^x is 0).
constexpr double kD[14] = {0x1.0000000000000p+0,  0x1.62e42fefa39efp-1, 0x1.ebfbdff82c58fp-3, 0x1.c6b08d704a0c0p-5,
                           0x1.3b2ab6fba4e77p-7,  0x1.5d87fe78a6731p-10, 0x1.430912f86c787p-13, 0x1.ffcbfc588b0c7p-17,
                           0x1.62c0223a5c824p-20, 0x1.b5253d395e7c4p-24, 0x1.e4cf5158b8ecap-28, 0x1.e8cac7351bb25p-32,
                           0x1.c3bd650fc2986p-36, 0x1.816193166d0f9p-40};
constexpr double kD64Low = -1100.0;
constexpr double kShifter = 0x1.8p52;  // k + kShifter holds the integer k in its low bits

// ---- the scalar path ------------------------------------------------------------------

inline float scalar_max(float a, float b) { return a > b ? a : b; }  // as maxps: b when unordered or equal

inline float scalar_exp2(float x) {
  const float xc = scalar_max(kLowClamp, x);
  const float n = std::nearbyint(xc);  // round half to even, as the vector round instructions
  const float f = xc - n;
  float p = kP6;
  p = std::fma(p, f, kP5);
  p = std::fma(p, f, kP4);
  p = std::fma(p, f, kP3);
  p = std::fma(p, f, kP2);
  p = std::fma(p, f, kP1);
  p = std::fma(p, f, kP0);
  uint32_t bits;
  std::memcpy(&bits, &p, sizeof bits);
  bits += static_cast<uint32_t>(static_cast<int32_t>(n)) << 23;  // NaN: n is INT_MIN as cvtps gives
  std::memcpy(&p, &bits, sizeof p);
  return x < kZeroBelow ? 0.0f : p;
}

}  // namespace

float exp2_lane(float x) {
  // std::nearbyint / the int conversion of NaN: use the vector paths' definition (NaN in, NaN out)
  return x != x ? x : scalar_exp2(x);
}

namespace {

struct ScalarV {
  float v[16];
  static ScalarV load(const float* p) {
    ScalarV r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static void store(float* p, const ScalarV& a) { std::memcpy(p, a.v, sizeof a.v); }
  static ScalarV set1(float x) {
    ScalarV r;
    for (float& e : r.v) e = x;
    return r;
  }
  static ScalarV load_bf16(const uint16_t* p) {
    ScalarV r;
    for (int j = 0; j < 16; ++j) r.v[j] = edlm::bf16_to_float(p[j]);
    return r;
  }
  static ScalarV load_f16(const uint16_t* p) {
    ScalarV r;
    for (int j = 0; j < 16; ++j) r.v[j] = edlm::f16_to_float(p[j]);
    return r;
  }
  static ScalarV load_bf16_lanes(const uint16_t* p) { return load_bf16(p); }  // (element order)
  static ScalarV unperm_bf16_lanes(const ScalarV& a) { return a; }
#define EDLM_LANEWISE2(name, expr)                     \
  static ScalarV name(const ScalarV& a, const ScalarV& b) { \
    ScalarV r;                                         \
    for (int j = 0; j < 16; ++j) {                     \
      const float x = a.v[j], y = b.v[j];              \
      r.v[j] = (expr);                                 \
    }                                                  \
    return r;                                          \
  }
  EDLM_LANEWISE2(max, scalar_max(x, y))
  EDLM_LANEWISE2(add, x + y)
  EDLM_LANEWISE2(sub, x - y)
  EDLM_LANEWISE2(mul, x * y)
#undef EDLM_LANEWISE2
  static ScalarV fma(const ScalarV& a, const ScalarV& b, const ScalarV& c) {
    ScalarV r;
    for (int j = 0; j < 16; ++j) r.v[j] = std::fma(a.v[j], b.v[j], c.v[j]);
    return r;
  }
  static ScalarV exp2(const ScalarV& x) {
    ScalarV r;
    for (int j = 0; j < 16; ++j) r.v[j] = exp2_lane(x.v[j]);
    return r;
  }
  static void masses(const ScalarV& e, uint64_t* out) {
    for (int j = 0; j < 16; ++j) out[j] = edlm::token_mass(e.v[j]);
  }
  // 2^x in float64 (exp2_f64): n = round(x), f = x - n, the polynomial, times 2^a 2^b with
  // a = floor(n / 2), b = n - a (each a normal power of two, the product rounded once)
  static void exp2_f64(const double* x, int n, double* out) {
    for (int i = 0; i < n; ++i) {
      const double xc = x[i] < kD64Low ? kD64Low : x[i];
      const double k = std::nearbyint(xc), f = xc - k;
      double p = kD[13];
      for (int j = 12; j >= 0; --j) p = std::fma(p, f, kD[j]);
      const double a = std::floor(k * 0.5), b = k - a;
      out[i] = x[i] != x[i] ? x[i] : p * pow2(a) * pow2(b);
    }
  }
  static double pow2(double k) {  // 2^k for an integer k in [-1022, 1023]
    const double t = k + kShifter;
    uint64_t bits;
    std::memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023) << 52;
    double r;
    std::memcpy(&r, &bits, sizeof r);
    return r;
  }
  // lane j: min(m_j, x_j) where mass[j] >= rung; hmin: the smallest lane (a min is exact:
  // any order gives the same value)
  // sums[r] += the masses >= rungs[r], r < R (tile_mass_ge_sums)
  template <int R>
  static void mass_ge_sums(const uint64_t* mass, int n, const uint64_t* rungs, uint64_t* sums) {
    for (int i = 0; i < n; ++i)
      for (int r = 0; r < R; ++r) sums[r] += mass[i] >= rungs[r] ? mass[i] : 0;
  }
  static ScalarV min_where_ge(const ScalarV& x, const uint64_t* mass, uint64_t rung, const ScalarV& m) {
    ScalarV r = m;
    for (int j = 0; j < 16; ++j) r.v[j] = mass[j] >= rung && x.v[j] < m.v[j] ? x.v[j] : m.v[j];
    return r;
  }
  static float hmin(const ScalarV& a) {
    float r = a.v[0];
    for (int j = 1; j < 16; ++j) r = a.v[j] < r ? a.v[j] : r;
    return r;
  }
  static uint32_t nan_mask(const ScalarV& a) {
    uint32_t m = 0;
    for (int j = 0; j < 16; ++j) m |= static_cast<uint32_t>(a.v[j] != a.v[j]) << j;
    return m;
  }
  static int compress_ge(const ScalarV& a, float lb, int32_t first, int32_t* out) {
    int n = 0;
    for (int j = 0; j < 16; ++j) {
      out[n] = first + j;
      n += a.v[j] >= lb;
    }
    return n;
  }
  // the fixed trees: lanes j and j + 8, then j + 4, j + 2, j + 1
  static float hsum(const ScalarV& a) {
    float s[8];
    for (int j = 0; j < 8; ++j) s[j] = a.v[j] + a.v[j + 8];
    for (int j = 0; j < 4; ++j) s[j] = s[j] + s[j + 4];
    for (int j = 0; j < 2; ++j) s[j] = s[j] + s[j + 2];
    return s[0] + s[1];
  }
  static float hmax(const ScalarV& a) {
    float s[8];
    for (int j = 0; j < 8; ++j) s[j] = scalar_max(a.v[j], a.v[j + 8]);
    for (int j = 0; j < 4; ++j) s[j] = scalar_max(s[j], s[j + 4]);
    for (int j = 0; j < 2; ++j) s[j] = scalar_max(s[j], s[j + 2]);
    return scalar_max(s[0], s[1]);
  }
};

}  // namespace

namespace {
// sort_distinct of the scalar and AVX2 paths (and of long inputs on every path).
void sort_distinct_std(const uint64_t* in, int64_t n, uint64_t* out) {
  std::copy_n(in, n, out);
  std::sort(out, out + n);
}
}  // namespace

namespace scalar_path {
using V = ScalarV;
#include "cpu_tiles_body.inc"
inline void sort_distinct(const uint64_t* in, int64_t n, uint64_t* out) { sort_distinct_std(in, n, out); }
}  // namespace scalar_path

#ifdef EDLM_X86_PATHS
// For each 8-bit mask m: the positions of its set bits in increasing order, one per byte
// (the rest 0), and how many (the AVX2 compress_ge's permutation).
struct Compress8 {
  uint64_t index[256];
  uint8_t count[256];
};
constexpr Compress8 make_compress8() {
  Compress8 t{};
  for (int m = 0; m < 256; ++m) {
    int n = 0;
    for (int j = 0; j < 8; ++j)
      if (m >> j & 1) t.index[m] |= static_cast<uint64_t>(j) << (8 * n++);
    t.count[m] = static_cast<uint8_t>(n);
  }
  return t;
}
constexpr Compress8 kCompress8 = make_compress8();

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2_path {
namespace {
struct V {
  __m256 lo, hi;  // lanes 0-7, 8-15
  static V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static void store(float* p, const V& a) {
    _mm256_storeu_ps(p, a.lo);
    _mm256_storeu_ps(p + 8, a.hi);
  }
  static V set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static __m256 bf16x8(const uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static V load_bf16(const uint16_t* p) { return {bf16x8(p), bf16x8(p + 8)}; }
  // 16 bfloat16 values as floats by one unpack each half (each value to the high half of a
  // zeroed dword): lo holds elements 0-3, 8-11, hi 4-7, 12-15 (the unpacks stay in their
  // 128-bit halves); unperm_bf16_lanes swaps the middle quarters back
  static V load_bf16_lanes(const uint16_t* p) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), z = _mm256_setzero_si256();
    return {_mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v)), _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v))};
  }
  static V unperm_bf16_lanes(const V& a) {
    return {_mm256_permute2f128_ps(a.lo, a.hi, 0x20), _mm256_permute2f128_ps(a.lo, a.hi, 0x31)};
  }
  static V load_f16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  }
  static V max(const V& a, const V& b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
  static V add(const V& a, const V& b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  static V sub(const V& a, const V& b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
  static V mul(const V& a, const V& b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  static V fma(const V& a, const V& b, const V& c) {
    return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
  }
  // (no clamp: a lane below -126 is zeroed whatever its n; cvtps gives INT_MIN for a huge n)
  static __m256 exp2x8(__m256 x) {
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(kP6);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kP5));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kP4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kP3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kP2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kP1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kP0));
    const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    const __m256 r = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(kZeroBelow), _CMP_LT_OQ), r);
  }
  static V exp2(const V& x) { return {exp2x8(x.lo), exp2x8(x.hi)}; }
  static uint32_t nan_mask(const V& a) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a.lo, a.lo, _CMP_UNORD_Q))) |
           static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a.hi, a.hi, _CMP_UNORD_Q))) << 8;
  }
  // token_mass of 8 lanes, by integer shifts (AVX2 has no float -> uint64 conversion): a
  // term 2^(E-127) * 1.f > 0 is normal, so term * 2^40 = mant * 2^(E - 110) with mant the
  // 24-bit significand, truncated by a right shift when E < 110; the variable 64-bit shifts
  // give 0 for a count past 63 (the other direction's, negative, and terms too small for a
  // mass). Lanes not > 0 (0, NaN) are zeroed first: E = 0, so they give 0 too.
  static void masses8(__m256 e, uint64_t* out) {
    const __m256i pos = _mm256_castps_si256(_mm256_cmp_ps(e, _mm256_setzero_ps(), _CMP_GT_OQ));
    const __m256i bits = _mm256_and_si256(_mm256_castps_si256(e), pos);
    for (int h = 0; h < 2; ++h) {  // (widened once, then all in 64-bit lanes)
      const __m256i w = _mm256_cvtepu32_epi64(h ? _mm256_extracti128_si256(bits, 1) : _mm256_castsi256_si128(bits));
      const __m256i mant =
          _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi64x(0x7fffff)), _mm256_set1_epi64x(0x800000));
      const __m256i exp = _mm256_srli_epi64(w, 23);
      const __m256i q = _mm256_or_si256(_mm256_sllv_epi64(mant, _mm256_sub_epi64(exp, _mm256_set1_epi64x(110))),
                                        _mm256_srlv_epi64(mant, _mm256_sub_epi64(_mm256_set1_epi64x(110), exp)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * h), q);
    }
  }
  static void masses(const V& e, uint64_t* out) {
    masses8(e.lo, out);
    masses8(e.hi, out + 8);
  }
  static __m256d pow2x4(__m256d k) {
    const __m256i t = _mm256_castpd_si256(_mm256_add_pd(k, _mm256_set1_pd(kShifter)));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(t, _mm256_set1_epi64x(1023)), 52));
  }
  static void exp2_f64(const double* x, int n, double* out) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
      const __m256d v = _mm256_loadu_pd(x + i);
      const __m256d xc = _mm256_max_pd(v, _mm256_set1_pd(kD64Low));  // (NaN: restored below)
      const __m256d k = _mm256_round_pd(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256d f = _mm256_sub_pd(xc, k);
      __m256d p = _mm256_set1_pd(kD[13]);
      for (int j = 12; j >= 0; --j) p = _mm256_fmadd_pd(p, f, _mm256_set1_pd(kD[j]));
      const __m256d a = _mm256_floor_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.5))), b = _mm256_sub_pd(k, a);
      const __m256d r = _mm256_mul_pd(_mm256_mul_pd(p, pow2x4(a)), pow2x4(b));
      _mm256_storeu_pd(out + i, _mm256_blendv_pd(r, v, _mm256_cmp_pd(v, v, _CMP_UNORD_Q)));
    }
    ScalarV::exp2_f64(x + i, n - i, out + i);
  }
  // (masses and rungs < 2^63: the signed compare of 64-bit lanes orders them)
  template <int R>
  static void mass_ge_sums(const uint64_t* mass, int n, const uint64_t* rungs, uint64_t* sums) {
    __m256i below[R], acc[R];
    for (int r = 0; r < R; ++r) {
      below[r] = _mm256_set1_epi64x(static_cast<long long>(rungs[r] - 1));
      acc[r] = _mm256_setzero_si256();
    }
    for (int i = 0; i < n; i += 4) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mass + i));
      for (int r = 0; r < R; ++r) acc[r] = _mm256_add_epi64(acc[r], _mm256_and_si256(_mm256_cmpgt_epi64(q, below[r]), q));
    }
    for (int r = 0; r < R; ++r) {
      alignas(32) uint64_t t[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(t), acc[r]);
      sums[r] += t[0] + t[1] + t[2] + t[3];
    }
  }
  // (mass >= rung as mass > rung - 1 in signed 64-bit lanes; the four lanes' masks of two
  // vectors narrowed to the eight 32-bit lanes of the floats: shuffle, then the 64-bit order)
  static __m256 mass_ge8(const uint64_t* mass, __m256i below) {
    const __m256i q0 = _mm256_cmpgt_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mass)), below);
    const __m256i q1 = _mm256_cmpgt_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mass + 4)), below);
    const __m256 sh = _mm256_shuffle_ps(_mm256_castsi256_ps(q0), _mm256_castsi256_ps(q1), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(sh), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static __m256 min_where_ge8(__m256 x, const uint64_t* mass, __m256i below, __m256 m) {
    const __m256 take = _mm256_and_ps(mass_ge8(mass, below), _mm256_cmp_ps(x, m, _CMP_LT_OQ));
    return _mm256_blendv_ps(m, x, take);
  }
  static V min_where_ge(const V& x, const uint64_t* mass, uint64_t rung, const V& m) {
    const __m256i below = _mm256_set1_epi64x(static_cast<long long>(rung - 1));
    return {min_where_ge8(x.lo, mass, below, m.lo), min_where_ge8(x.hi, mass + 8, below, m.hi)};
  }
  static float hmin(const V& a) {
    alignas(32) float t[16];
    store(t, a);
    float r = t[0];
    for (int j = 1; j < 16; ++j) r = t[j] < r ? t[j] : r;
    return r;
  }
  // 8 lanes: the positions of the mask's set bits, in order (kCompress8), permuted out of
  // first + 0..7 and stored whole (no branch on the mask, which mispredicts)
  static int compress_ge8(__m256 a, __m256 l, int32_t first, int32_t* out) {
    const unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, l, _CMP_GE_OQ)));
    const __m256i order = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(kCompress8.index[m])));
    const __m256i lanes = _mm256_add_epi32(_mm256_set1_epi32(first), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permutevar8x32_epi32(lanes, order));
    return kCompress8.count[m];
  }
  static int compress_ge(const V& a, float lb, int32_t first, int32_t* out) {
    const __m256 l = _mm256_set1_ps(lb);
    const int n = compress_ge8(a.lo, l, first, out);
    return n + compress_ge8(a.hi, l, first + 8, out + n);
  }
  // the fixed trees of ScalarV: j + 8 (the halves), j + 4, j + 2, j + 1
  static float hsum(const V& a) {
    const __m256 s8 = _mm256_add_ps(a.lo, a.hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }
  static float hmax(const V& a) {
    const __m256 s8 = _mm256_max_ps(a.lo, a.hi);
    const __m128 s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_max_ss(s2, _mm_movehdup_ps(s2)));
  }
};
}  // namespace
#include "cpu_tiles_body.inc"

// sort_distinct by ranks, as the AVX-512 path's (below) with 4 words per vector: AVX2 compares
// 64-bit words as signed, so each word is taken with its top bit flipped (the same order).
void sort_distinct(const uint64_t* in, int64_t n, uint64_t* out) {
  if (n > kRankSortMax) return sort_distinct_std(in, n, out);
  constexpr int kBlock = 16;
  constexpr uint64_t kFlip = uint64_t{1} << 63;
  alignas(32) int64_t words[kRankSortMax];
  alignas(32) int64_t rank[kRankSortMax];
  const int len = static_cast<int>(n), padded = (len + kBlock - 1) / kBlock * kBlock;
  for (int i = 0; i < len; ++i) words[i] = static_cast<int64_t>(in[i] ^ kFlip);
  for (int i = len; i < padded; ++i) words[i] = 0;
  for (int v = 0; v < padded; v += kBlock) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(words + v)),
                  w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(words + v + 4)),
                  w2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(words + v + 8)),
                  w3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(words + v + 12));
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
    for (int j = 0; j < len; ++j) {  // (w > b is -1: subtracting it counts b < w)
      const __m256i b = _mm256_set1_epi64x(words[j]);
      c0 = _mm256_sub_epi64(c0, _mm256_cmpgt_epi64(w0, b));
      c1 = _mm256_sub_epi64(c1, _mm256_cmpgt_epi64(w1, b));
      c2 = _mm256_sub_epi64(c2, _mm256_cmpgt_epi64(w2, b));
      c3 = _mm256_sub_epi64(c3, _mm256_cmpgt_epi64(w3, b));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(rank + v), c0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(rank + v + 4), c1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(rank + v + 8), c2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(rank + v + 12), c3);
  }
  for (int i = 0; i < len; ++i) out[rank[i]] = in[i];
}
}  // namespace avx2_path
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
namespace avx512_path {
namespace {
struct V {
  __m512 x;
  static V load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static void store(float* p, const V& a) { _mm512_storeu_ps(p, a.x); }
  static V set1(float v) { return {_mm512_set1_ps(v)}; }
  static V load_bf16(const uint16_t* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
  }
  static V load_f16(const uint16_t* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
  }
  static V load_bf16_lanes(const uint16_t* p) { return load_bf16(p); }  // (element order)
  static V unperm_bf16_lanes(const V& a) { return a; }
  static V max(const V& a, const V& b) { return {_mm512_max_ps(a.x, b.x)}; }
  static V add(const V& a, const V& b) { return {_mm512_add_ps(a.x, b.x)}; }
  static V sub(const V& a, const V& b) { return {_mm512_sub_ps(a.x, b.x)}; }
  static V mul(const V& a, const V& b) { return {_mm512_mul_ps(a.x, b.x)}; }
  static V fma(const V& a, const V& b, const V& c) { return {_mm512_fmadd_ps(a.x, b.x, c.x)}; }
  // (no clamp: a lane below -126 is zeroed by the mask whatever its n; scalef(p, n) = p 2^n
  // is exact where the lane is kept, as the integer exponent add of the other paths)
  static V exp2(const V& v) {
    const __m512 x = v.x;
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(kP6);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP5));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kP0));
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kZeroBelow), _CMP_NLT_UQ);
    return {_mm512_maskz_scalef_ps(keep, p, n)};
  }
  static uint32_t nan_mask(const V& a) { return _mm512_cmp_ps_mask(a.x, a.x, _CMP_UNORD_Q); }
  // token_mass in vectors: term * 2^40 is exact in float32 (terms are 0, NaN or normal and
  // <= 1), truncated to uint64 like the scalar cast; lanes not > 0 (0, NaN) give 0
  static void masses(const V& e, uint64_t* out) {
    const __m512 q = _mm512_mul_ps(e.x, _mm512_set1_ps(0x1.0p40f));
    const __mmask16 pos = _mm512_cmp_ps_mask(e.x, _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_storeu_si512(out, _mm512_maskz_cvttps_epu64(static_cast<__mmask8>(pos), _mm512_castps512_ps256(q)));
    _mm512_storeu_si512(out + 8, _mm512_maskz_cvttps_epu64(static_cast<__mmask8>(pos >> 8), _mm512_extractf32x8_ps(q, 1)));
  }
  static __m512d pow2x8(__m512d k) {
    const __m512i t = _mm512_castpd_si512(_mm512_add_pd(k, _mm512_set1_pd(kShifter)));
    return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(t, _mm512_set1_epi64(1023)), 52));
  }
  static void exp2_f64(const double* x, int n, double* out) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m512d v = _mm512_loadu_pd(x + i);
      const __m512d xc = _mm512_max_pd(v, _mm512_set1_pd(kD64Low));  // (NaN: restored below)
      const __m512d k = _mm512_roundscale_pd(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512d f = _mm512_sub_pd(xc, k);
      __m512d p = _mm512_set1_pd(kD[13]);
      for (int j = 12; j >= 0; --j) p = _mm512_fmadd_pd(p, f, _mm512_set1_pd(kD[j]));
      const __m512d a = _mm512_roundscale_pd(_mm512_mul_pd(k, _mm512_set1_pd(0.5)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m512d b = _mm512_sub_pd(k, a);
      const __m512d r = _mm512_mul_pd(_mm512_mul_pd(p, pow2x8(a)), pow2x8(b));
      _mm512_storeu_pd(out + i, _mm512_mask_blend_pd(_mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q), r, v));
    }
    ScalarV::exp2_f64(x + i, n - i, out + i);
  }
  template <int R>
  static void mass_ge_sums(const uint64_t* mass, int n, const uint64_t* rungs, uint64_t* sums) {
    __m512i rung[R], acc[R];
    for (int r = 0; r < R; ++r) {
      rung[r] = _mm512_set1_epi64(static_cast<long long>(rungs[r]));
      acc[r] = _mm512_setzero_si512();
    }
    for (int i = 0; i < n; i += 8) {
      const __m512i q = _mm512_loadu_si512(mass + i);
      for (int r = 0; r < R; ++r) acc[r] = _mm512_mask_add_epi64(acc[r], _mm512_cmpge_epu64_mask(q, rung[r]), acc[r], q);
    }
    for (int r = 0; r < R; ++r) sums[r] += static_cast<uint64_t>(_mm512_reduce_add_epi64(acc[r]));
  }
  static V min_where_ge(const V& x, const uint64_t* mass, uint64_t rung, const V& m) {
    const __m512i r = _mm512_set1_epi64(static_cast<long long>(rung));
    const __mmask8 lo = _mm512_cmpge_epu64_mask(_mm512_loadu_si512(mass), r);
    const __mmask8 hi = _mm512_cmpge_epu64_mask(_mm512_loadu_si512(mass + 8), r);
    const __mmask16 k = static_cast<__mmask16>(lo | (static_cast<unsigned>(hi) << 8));
    return {_mm512_mask_min_ps(m.x, k, x.x, m.x)};
  }
  static float hmin(const V& a) { return _mm512_reduce_min_ps(a.x); }
  static int compress_ge(const V& a, float lb, int32_t first, int32_t* out) {
    // (no branch on the mask, whose zero / nonzero mispredicts; the register form of the
    // compress, then a whole-vector store: the memory form is microcoded on AMD cores)
    const __mmask16 m = _mm512_cmp_ps_mask(a.x, _mm512_set1_ps(lb), _CMP_GE_OQ);
    const __m512i lanes = _mm512_add_epi32(_mm512_set1_epi32(first),
                                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    _mm512_storeu_si512(out, _mm512_maskz_compress_epi32(m, lanes));
    return __builtin_popcount(m);
  }
  static float hsum(const V& a) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a.x), _mm512_extractf32x8_ps(a.x, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }
  static float hmax(const V& a) {
    const __m256 s8 = _mm256_max_ps(_mm512_castps512_ps256(a.x), _mm512_extractf32x8_ps(a.x, 1));
    const __m128 s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_max_ss(s2, _mm_movehdup_ps(s2)));
  }
};
}  // namespace
#include "cpu_tiles_body.inc"

// sort_distinct by ranks: rank(w_i) = #{j < n : w_j < w_i}, counted for 32 words at a time
// (four vectors, four independent counts) against each word broadcast; out[rank] = w. The
// last block is padded (its extra lanes' counts are never used).
void sort_distinct(const uint64_t* in, int64_t n, uint64_t* out) {
  if (n > kRankSortMax) return sort_distinct_std(in, n, out);
  constexpr int kBlock = 32;
  alignas(64) uint64_t words[kRankSortMax];
  alignas(64) uint64_t rank[kRankSortMax];
  const int len = static_cast<int>(n), padded = (len + kBlock - 1) / kBlock * kBlock;
  for (int i = 0; i < len; ++i) words[i] = in[i];
  for (int i = len; i < padded; ++i) words[i] = ~uint64_t{0};
  const __m512i one = _mm512_set1_epi64(1);
  for (int v = 0; v < padded; v += kBlock) {
    const __m512i w0 = _mm512_load_si512(words + v), w1 = _mm512_load_si512(words + v + 8),
                  w2 = _mm512_load_si512(words + v + 16), w3 = _mm512_load_si512(words + v + 24);
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
    for (int j = 0; j < len; ++j) {
      const __m512i b = _mm512_set1_epi64(static_cast<long long>(words[j]));
      c0 = _mm512_mask_add_epi64(c0, _mm512_cmplt_epu64_mask(b, w0), c0, one);
      c1 = _mm512_mask_add_epi64(c1, _mm512_cmplt_epu64_mask(b, w1), c1, one);
      c2 = _mm512_mask_add_epi64(c2, _mm512_cmplt_epu64_mask(b, w2), c2, one);
      c3 = _mm512_mask_add_epi64(c3, _mm512_cmplt_epu64_mask(b, w3), c3, one);
    }
    _mm512_store_si512(rank + v, c0);
    _mm512_store_si512(rank + v + 8, c1);
    _mm512_store_si512(rank + v + 16, c2);
    _mm512_store_si512(rank + v + 24, c3);
  }
  for (int i = 0; i < len; ++i) out[rank[i]] = words[i];
}
}  // namespace avx512_path
#pragma GCC pop_options
#endif  // EDLM_X86_PATHS

namespace {

struct TileFns {
  decltype(&scalar_path::tile_max) max;
  decltype(&scalar_path::tile_has_nan) has_nan;
  decltype(&scalar_path::tile_max_groups) max_groups;
  decltype(&scalar_path::tile_decode_max_bf16) decode_max_bf16;
  decltype(&scalar_path::tile_decode_max_f16) decode_max_f16;
  decltype(&scalar_path::tile_exp2_sum) exp2_sum;
  decltype(&scalar_path::tile_exp2_wsum) exp2_wsum;
  decltype(&scalar_path::tile_exp2) exp2;
  decltype(&scalar_path::row_tiles_f32) row_f32;
  decltype(&scalar_path::row_tiles_bf16) row_bf16;
  decltype(&scalar_path::row_tiles_f16) row_f16;
  decltype(&scalar_path::tile_gather_ge) gather_ge;
  decltype(&scalar_path::tile_masses) masses;
  decltype(&scalar_path::tile_min_where_mass_ge) min_where_mass_ge;
  decltype(&scalar_path::tile_mass_ge_sums) mass_ge_sums;
  decltype(&scalar_path::exp2_f64) exp2_f64;
  decltype(&scalar_path::sort_distinct) sort_distinct;
};

#define EDLM_TILE_FNS(ns)                                                                                   \
  TileFns {                                                                                                 \
    ns::tile_max, ns::tile_has_nan, ns::tile_max_groups, ns::tile_decode_max_bf16, ns::tile_decode_max_f16, ns::tile_exp2_sum, \
        ns::tile_exp2_wsum, ns::tile_exp2, ns::row_tiles_f32, ns::row_tiles_bf16, ns::row_tiles_f16, ns::tile_gather_ge, ns::tile_masses, ns::tile_min_where_mass_ge, ns::tile_mass_ge_sums, ns::exp2_f64, ns::sort_distinct \
  }

const TileFns& fns() {
  static const TileFns f = [] {
#ifdef EDLM_X86_PATHS
    switch (best_simd()) {
      case Simd::kAvx512: return EDLM_TILE_FNS(avx512_path);
      case Simd::kAvx2: return EDLM_TILE_FNS(avx2_path);
      default: break;
    }
#endif
    return EDLM_TILE_FNS(scalar_path);
  }();
  return f;
}
#undef EDLM_TILE_FNS

}  // namespace

float tile_max(const float* x, int n, bool* bad) { return fns().max(x, n, bad); }
bool tile_has_nan(const float* x, int n) { return fns().has_nan(x, n); }
float tile_max_groups(const float* x, int n, bool* bad, float* group_max) {
  return fns().max_groups(x, n, bad, group_max);
}
float tile_decode_max_bf16(const uint16_t* in, int n, float* out, bool* bad, float* group_max) {
  return fns().decode_max_bf16(in, n, out, bad, group_max);
}
float tile_decode_max_f16(const uint16_t* in, int n, float* out, bool* bad, float* group_max) {
  return fns().decode_max_f16(in, n, out, bad, group_max);
}
float tile_exp2_sum(const float* x, int n, const Exp2Arg& a) { return fns().exp2_sum(x, n, a); }
float tile_exp2_wsum(const float* x, int n, const Exp2Arg& a, float* wsum) { return fns().exp2_wsum(x, n, a, wsum); }
void tile_exp2(const float* x, int n, const Exp2Arg& a, float* out) { fns().exp2(x, n, a, out); }
void row_tiles_f32(const float* x, int64_t ntiles, float c, float* tile_max, float* tile_sum, float* tile_wsum,
                   bool* bad, const char* end, const char* next) {
  fns().row_f32(x, ntiles, c, tile_max, tile_sum, tile_wsum, bad, end, next);
}
void row_tiles_bf16(const uint16_t* x, int64_t ntiles, float c, float* tile_max, float* tile_sum, float* tile_wsum,
                    bool* bad, const char* end, const char* next) {
  fns().row_bf16(x, ntiles, c, tile_max, tile_sum, tile_wsum, bad, end, next);
}
void row_tiles_f16(const uint16_t* x, int64_t ntiles, float c, float* tile_max, float* tile_sum, float* tile_wsum,
                   bool* bad, const char* end, const char* next) {
  fns().row_f16(x, ntiles, c, tile_max, tile_sum, tile_wsum, bad, end, next);
}
int tile_gather_ge(const float* x, int n, float lb, int32_t base, int32_t* idx) {
  return fns().gather_ge(x, n, lb, base, idx);
}
uint64_t tile_masses(const float* x, int n, float c, float m, uint64_t* out) { return fns().masses(x, n, c, m, out); }
float tile_min_where_mass_ge(const float* x, const uint64_t* mass, int n, uint64_t rung, float lo) {
  return fns().min_where_mass_ge(x, mass, n, rung, lo);
}
void tile_mass_ge_sums(const uint64_t* mass, int n, const uint64_t* rungs, int nrungs, uint64_t* sums) {
  fns().mass_ge_sums(mass, n, rungs, nrungs, sums);
}
void exp2_f64(const double* x, int n, double* out) { fns().exp2_f64(x, n, out); }
void sort_distinct(const uint64_t* in, int64_t n, uint64_t* out) { fns().sort_distinct(in, n, out); }

void bf16_to_float(const uint16_t* in, int n, float* out) {
  for (int i = 0; i < n; ++i) out[i] = edlm::bf16_to_float(in[i]);
}
void f16_to_float(const uint16_t* in, int n, float* out) {
  for (int i = 0; i < n; ++i) out[i] = edlm::f16_to_float(in[i]);
}

}  // namespace cpu
}  // namespace edlm
