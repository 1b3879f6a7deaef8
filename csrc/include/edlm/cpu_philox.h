// Batched uniforms of the counter-based generator on the CPU: exactly the values
// of edlm::row_uniform (edlm/philox.h), 16 counters at a time with AVX-512 or 8
// with AVX2, whichever the CPU has. Defined in csrc/cpu/cpu_philox.cpp. Torch-free.
#pragma once
#include <cstdint>

#include "edlm/common.h"
#include "edlm/cpu_simd.h"

namespace edlm {
namespace cpu {

// out[i] = row_uniform(key, rows[i], stream) for i in [0, n); rows in any order.
// simd must not exceed best_simd() (a lower one is for tests: same results).
void uniforms_for_rows(RngKey key, uint64_t stream, const uint64_t* rows, int64_t n, double* out,
                       Simd simd = best_simd());

}  // namespace cpu
}  // namespace edlm
