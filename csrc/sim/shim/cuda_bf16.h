// Stand-in for the CUDA toolkit's cuda_bf16.h in the CPU simulation: __nv_bfloat16 as
// 16 bits with the conversions the kernels use (no arithmetic operators).
#pragma once
#include "cuda_fp16.h"

struct __nv_bfloat16 {
  unsigned short __x;
};
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return __nv_bfloat16{b}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
// bfloat16 is the top half of a binary32.
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float(static_cast<unsigned>(h.__x) << 16); }
