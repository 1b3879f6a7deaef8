// Stand-in for the CUDA toolkit's cuda_fp16.h in the CPU simulation: __half as 16 bits
// with the conversions the kernels use (no arithmetic operators, as the project's nvcc
// flags -D__CUDA_NO_HALF_OPERATORS__ also disallow). The decoding is written here,
// independently of edlm/numeric.h, so the simulation cross-checks the CPU's decoder.
#pragma once
#include "cuda_sim.h"

struct __half {
  unsigned short __x;
};
inline __half __ushort_as_half(unsigned short b) { return __half{b}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
// IEEE binary16 -> binary32, exactly: sign, 5-bit exponent (bias 15), 10-bit fraction.
inline float __half2float(__half h) {
  const unsigned sign = h.__x >> 15, exp = (h.__x >> 10) & 31u, frac = h.__x & 1023u;
  float mag;
  if (exp == 31) mag = frac ? NAN : INFINITY;
  else if (exp == 0) mag = std::ldexp(static_cast<float>(frac), -24);  // subnormal (or zero)
  else mag = std::ldexp(static_cast<float>(frac | 1024u), static_cast<int>(exp) - 25);
  return sign ? -mag : mag;
}
