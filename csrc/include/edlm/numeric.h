// Scalar numerics of the CPU kernels: 16-bit float decoding, +inf. Torch-free.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__GNUC__)
#define EDLM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define EDLM_ALWAYS_INLINE inline
#endif

namespace edlm {

EDLM_ALWAYS_INLINE float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
EDLM_ALWAYS_INLINE uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// bfloat16 is the top half of a float32.
EDLM_ALWAYS_INLINE float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

// IEEE binary16 -> binary32, exact for every input (normals, subnormals,
// infinities, NaN), without branches on the value. Normals and infinities are
// rebased by moving the exponent field and scaling by 2^-112; subnormals are
// built as (0.5 + m 2^-10 ... ) - 0.5 through a float with a fixed exponent.
EDLM_ALWAYS_INLINE float f16_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;  // exponent+mantissa, sign shifted out
  const float normalized = bits_to_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = bits_to_float((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t mag = two_w < (1u << 27) ? float_to_bits(denormalized) : float_to_bits(normalized);
  return bits_to_float(sign | mag);
}

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace edlm
