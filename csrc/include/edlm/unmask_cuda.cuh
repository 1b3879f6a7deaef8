// CUDA kernel of edlm_ext.unmask: one thread per [B, L] position (grid-stride loop), the
// rule of edlm/unmask.h, so the CPU and CUDA ops give the same result. Torch-free (raw
// pointers and sizes); launched by edlm/unmask_launch.cuh.
#pragma once
#include <cstdint>

#include "edlm/common.h"
#include "edlm/philox.h"
#include "edlm/unmask.h"

namespace edlm {
namespace cuda {

// out[pos] (contiguous [B*L]) = x0 where x_t == mask_id and the position's uniform < p[b],
// else x_t. P is float or double; rng = {seed, offset}.
template <typename P>
__global__ void unmask_kernel(const int64_t* __restrict__ xt, int64_t xsb, int64_t xsl,
                              const int64_t* __restrict__ x0, int64_t zsb, int64_t zsl, const P* __restrict__ p,
                              int64_t ps, int64_t B, int64_t L, int64_t mask_id, const int64_t* __restrict__ rng,
                              int64_t* __restrict__ out) {
  const RngKey key = load_rng_key(rng);
  const int64_t total = B * L;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t pos = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pos < total; pos += step) {
    const int64_t b = pos / L, l = pos - b * L;
    const int64_t v = xt[b * xsb + l * xsl];
    const bool take = v == mask_id && unmask_takes_x0(row_uniform(key, static_cast<uint64_t>(pos), unmask_stream(key)),
                                                      static_cast<double>(p[b * ps]));
    out[pos] = take ? x0[b * zsb + l * zsl] : v;
  }
}

}  // namespace cuda
}  // namespace edlm
