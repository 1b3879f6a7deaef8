// edlm::cpu::uniforms_for_rows (edlm/cpu_philox.h): Philox4x32-10 with one
// counter per 32-bit lane, 16 lanes (AVX-512) or 8 (AVX2). The compiler does not
// vectorize the scalar code well (it expands the 32x32->64 multiplies by
// constants into shift-adds), so these paths use intrinsics, in functions
// compiled for their instruction set and picked at run time (the n % lanes tail
// goes through a padded copy). Other CPUs use the scalar edlm::row_uniform.
// Results are bit-identical.
#include "edlm/cpu_philox.h"

#include "edlm/philox.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define EDLM_HAVE_X86_PATHS 1
#endif

namespace edlm {
namespace cpu {
namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // as edlm::philox4x32_10
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

inline int as_int(uint32_t w) { return static_cast<int>(w); }

#ifdef EDLM_HAVE_X86_PATHS
#define EDLM_AVX2 __attribute__((target("avx2"), always_inline)) inline
#define EDLM_AVX512 __attribute__((target("avx512f,avx512dq"), always_inline)) inline

// hi:lo = c * m per 32-bit lane: even lanes, then odd lanes shifted down.
EDLM_AVX2 void mulhilo8(__m256i c, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(c, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}
EDLM_AVX512 void mulhilo16(__m512i c, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(c, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// 4 uint32 -> 4 exact doubles (2^52 + x holds x in its low mantissa bits).
EDLM_AVX2 __m256d u32_to_f64(__m128i x) {
  const __m256i w = _mm256_or_si256(_mm256_cvtepu32_epi64(x), _mm256_set1_epi64x(0x4330000000000000ll));
  return _mm256_sub_pd(_mm256_castsi256_pd(w), _mm256_set1_pd(0x1.0p52));
}

// Both paths end as edlm::uniform_open01 on words (x, y) = (c0, c1): the top 53
// bits n (exact in double), u = (n + 1/2) 2^-53 with the scalar code's rounding.

__attribute__((target("avx2"))) int64_t uniforms_avx2(RngKey key, uint64_t stream, const uint64_t* rows, int64_t n,
                                                      double* out) {
  const __m256i deinterleave = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i m0 = _mm256_set1_epi32(as_int(kM0)), m1 = _mm256_set1_epi32(as_int(kM1));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // counter words: c0, c1 = low, high word of each row; c2, c3 = the stream
    const __m256i a = _mm256_permutevar8x32_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + i)), deinterleave);
    const __m256i b = _mm256_permutevar8x32_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + i + 4)), deinterleave);
    __m256i c0 = _mm256_permute2x128_si256(a, b, 0x20);
    __m256i c1 = _mm256_permute2x128_si256(a, b, 0x31);
    __m256i c2 = _mm256_set1_epi32(as_int(static_cast<uint32_t>(stream)));
    __m256i c3 = _mm256_set1_epi32(as_int(static_cast<uint32_t>(stream >> 32)));
    uint32_t k0 = static_cast<uint32_t>(key.seed), k1 = static_cast<uint32_t>(key.seed >> 32);
    for (int round = 0; round < 10; ++round, k0 += kW0, k1 += kW1) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(c0, m0, hi0, lo0);
      mulhilo8(c2, m1, hi1, lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(as_int(k0)));
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(as_int(k1)));
      c1 = lo1;
      c3 = lo0;
    }
    const __m256i x11 = _mm256_srli_epi32(c0, 11);  // n = y 2^21 + (x >> 11)
    for (int h = 0; h < 2; ++h) {
      const __m128i y = h ? _mm256_extracti128_si256(c1, 1) : _mm256_castsi256_si128(c1);
      const __m128i x = h ? _mm256_extracti128_si256(x11, 1) : _mm256_castsi256_si128(x11);
      const __m256d top = _mm256_add_pd(_mm256_mul_pd(u32_to_f64(y), _mm256_set1_pd(0x1.0p21)), u32_to_f64(x));
      const __m256d u = _mm256_mul_pd(_mm256_add_pd(top, _mm256_set1_pd(0.5)), _mm256_set1_pd(0x1.0p-53));
      _mm256_storeu_pd(out + i + 4 * h, u);
    }
  }
  return i;
}

__attribute__((target("avx512f,avx512dq"))) int64_t uniforms_avx512(RngKey key, uint64_t stream,
                                                                    const uint64_t* rows, int64_t n, double* out) {
  const __m512i low_words = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i high_words = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i first_half = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second_half = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i m0 = _mm512_set1_epi32(as_int(kM0)), m1 = _mm512_set1_epi32(as_int(kM1));
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i a = _mm512_loadu_si512(rows + i), b = _mm512_loadu_si512(rows + i + 8);
    __m512i c0 = _mm512_permutex2var_epi32(a, low_words, b);
    __m512i c1 = _mm512_permutex2var_epi32(a, high_words, b);
    __m512i c2 = _mm512_set1_epi32(as_int(static_cast<uint32_t>(stream)));
    __m512i c3 = _mm512_set1_epi32(as_int(static_cast<uint32_t>(stream >> 32)));
    uint32_t k0 = static_cast<uint32_t>(key.seed), k1 = static_cast<uint32_t>(key.seed >> 32);
    for (int round = 0; round < 10; ++round, k0 += kW0, k1 += kW1) {
      __m512i hi0, lo0, hi1, lo1;
      mulhilo16(c0, m0, hi0, lo0);
      mulhilo16(c2, m1, hi1, lo1);
      c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(as_int(k0)));
      c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(as_int(k1)));
      c1 = lo1;
      c3 = lo0;
    }
    for (int h = 0; h < 2; ++h) {  // 64-bit words y:x back in row order, n = word >> 11
      const __m512i word = _mm512_permutex2var_epi32(c0, h ? second_half : first_half, c1);
      const __m512d top = _mm512_cvtepu64_pd(_mm512_srli_epi64(word, 11));
      const __m512d u = _mm512_mul_pd(_mm512_add_pd(top, _mm512_set1_pd(0.5)), _mm512_set1_pd(0x1.0p-53));
      _mm512_storeu_pd(out + i + 8 * h, u);
    }
  }
  return i;
}

#endif

}  // namespace

void uniforms_for_rows(RngKey key, uint64_t stream, const uint64_t* rows, int64_t n, double* out, Simd simd) {
  int64_t done = 0;
#ifdef EDLM_HAVE_X86_PATHS
  if (simd != Simd::kScalar) {
    const auto vector_path = [&](const uint64_t* r, int64_t m, double* o) {
      return simd == Simd::kAvx512 ? uniforms_avx512(key, stream, r, m, o) : uniforms_avx2(key, stream, r, m, o);
    };
    done = vector_path(rows, n, out);
    if (done < n) {  // the tail: one more vector pass over a padded copy
      constexpr int64_t kPad = 16;  // a multiple of both widths
      uint64_t tail_rows[kPad] = {};
      double tail_out[kPad];
      for (int64_t i = done; i < n; ++i) tail_rows[i - done] = rows[i];
      vector_path(tail_rows, kPad, tail_out);
      for (int64_t i = done; i < n; ++i) out[i] = tail_out[i - done];
      done = n;
    }
  }
#endif
  for (int64_t i = done; i < n; ++i) out[i] = row_uniform(key, rows[i], stream);
}

}  // namespace cpu
}  // namespace edlm
