// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11) and the 64-bit uniforms our samplers draw from it. Host and device.
//
// Counter layout used by every edlm op (so CPU and CUDA draw the same noise):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (row & 0xffffffff, row >> 32, stream & 0xffffffff, stream >> 32)
// where row is the flattened [B, L] position (or the batch index) and stream is
// the op's domain + offset + proposal j (see kDomain* below).
#pragma once
#include "edlm/common.h"

namespace edlm {

struct U32x4 {
  uint32_t x, y, z, w;
};

EDLM_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

EDLM_HD U32x4 philox4x32_10(U32x4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kM0, ctr.x, hi0, lo0);
    mulhilo32(kM1, ctr.z, hi1, lo1);
    ctr = U32x4{hi1 ^ ctr.y ^ k0, lo1, hi0 ^ ctr.w ^ k1, lo0};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// The four 32-bit words for (key, row, stream).
EDLM_HD U32x4 philox_block(RngKey key, uint64_t row, uint64_t stream) {
  const U32x4 ctr{static_cast<uint32_t>(row), static_cast<uint32_t>(row >> 32),
                  static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  return philox4x32_10(ctr, static_cast<uint32_t>(key.seed),
                       static_cast<uint32_t>(key.seed >> 32));
}

// A uniform in the open interval (0, 1) from 64 random bits: the top 53 bits
// with midpoint rounding, u = (n + 1/2) 2^-53, so u is never 0 or 1 and the
// resolution (2^-53) is far below any probability a float32 logit can express.
EDLM_HD double uniform_open01(uint32_t lo, uint32_t hi) {
  const uint64_t bits = (static_cast<uint64_t>(hi) << 32) | lo;
  return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53;
}

// Stream domains: each op draws from its own part of the counter space, so one
// seed handed to several ops never correlates them. stream = domain + offset + j.
constexpr uint64_t kDomainSample = 0;               // masked_sample, sample_proposals (j = proposal)
constexpr uint64_t kDomainUnmask = 1ull << 61;      // unmask (row = b * L + l)
constexpr uint64_t kDomainResample = 1ull << 62;    // importance_resample (row = b)

// The uniform for (row, stream): words x, y of the block.
EDLM_HD double row_uniform(RngKey key, uint64_t row, uint64_t stream) {
  const U32x4 r = philox_block(key, row, stream);
  return uniform_open01(r.x, r.y);
}

}  // namespace edlm
