// Vectorized tile loops for the CPU samplers (declared in edlm/cpu_tiles.h),
// written with GCC/Clang vector extensions (8 floats) so they vectorize without
// -ffast-math. target_clones builds an x86-64-v3 (AVX2+FMA) and a baseline (SSE2) version
// and the loader picks one for the running CPU. Buffers are padded to a multiple
// of kWidth with -inf by the caller (edlm::sample_row), so there is no scalar tail.
#include <cstring>

#include "edlm/cpu_tiles.h"
#include "edlm/numeric.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define EDLM_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EDLM_MULTIVERSION
#endif

namespace edlm {
namespace cpu {
namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

inline __attribute__((always_inline)) v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// 2^x for x <= 0, lane-wise (see exp2 notes in edlm/numeric.h): x = n + f with
// f in [-1/2, 1/2], Taylor series of 2^f to degree 7 (truncation < 6e-9),
// 2^n through the exponent field; x < -126 (and -inf) give 0.
inline __attribute__((always_inline)) v8f exp2_nonpos8(v8f x) {
  const v8f lo = x < -126.0f ? v8f{} - 126.0f : x;
  const v8f xc = lo > 0.0f ? v8f{} : lo;
  const v8i n = __builtin_convertvector(xc - 0.5f, v8i);  // truncation = round-to-nearest for xc <= 0
  const v8f f = xc - __builtin_convertvector(n, v8f);
  v8f p = f * 1.52527338040598e-05f + 0.000154035303933816f;
  p = p * f + 0.00133335581464284f;
  p = p * f + 0.00961812910762848f;
  p = p * f + 0.0555041086648216f;
  p = p * f + 0.240226506959101f;
  p = p * f + 0.693147180559945f;
  p = p * f + 1.0f;
  const v8f scale = (v8f)((n + 127) << 23);
  const v8f r = p * scale;
  return x < -126.0f ? v8f{} : r;
}

}  // namespace

EDLM_MULTIVERSION
float tile_max(const float* buf, int n, bool* has_nan) {
  v8f m = v8f{} - __builtin_huge_valf();
  v8i nan = v8i{};
  for (int i = 0; i < n; i += kWidth) {
    const v8f x = load8(buf + i);
    m = x > m ? x : m;
    nan |= (x != x);
  }
  float r = m[0];
  int any = nan[0];
  for (int j = 1; j < 8; ++j) {
    r = m[j] > r ? m[j] : r;
    any |= nan[j];
  }
  if (any) *has_nan = true;
  return r;
}

EDLM_MULTIVERSION
float tile_exp2_sum(const float* buf, int n, float base, float c) {
  v8f acc = v8f{};
  for (int i = 0; i < n; i += kWidth) acc += exp2_nonpos8((load8(buf + i) - base) * c);
  float s = 0.0f;
  for (int j = 0; j < 8; ++j) s += acc[j];
  return s;
}

EDLM_MULTIVERSION
void tile_exp2(const float* buf, int n, float base, float c, float* out) {
  for (int i = 0; i < n; i += kWidth) {
    const v8f e = exp2_nonpos8((load8(buf + i) - base) * c);
    std::memcpy(out + i, &e, sizeof e);
  }
}

EDLM_MULTIVERSION
void bf16_to_float(const uint16_t* in, int n, float* out) {
  for (int i = 0; i < n; ++i) out[i] = edlm::bf16_to_float(in[i]);
}

EDLM_MULTIVERSION
void f16_to_float(const uint16_t* in, int n, float* out) {
#if defined(__FLT16_MAX__)  // the compiler's _Float16: F16C instructions in the x86-64-v3 clone
  for (int i = 0; i < n; ++i) {
    _Float16 h;
    std::memcpy(&h, in + i, sizeof h);
    out[i] = static_cast<float>(h);
  }
#else
  for (int i = 0; i < n; ++i) out[i] = edlm::f16_to_float(in[i]);
#endif
}

}  // namespace cpu
}  // namespace edlm
