// Warp-level reductions and scans (all 32 lanes active). Torch-free.
#pragma once
#include "edlm/common.h"

namespace edlm {
namespace cuda {

template <typename U>
EDLM_DEVICE U warp_sum(U x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
template <typename U>
EDLM_DEVICE U warp_max(U x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
EDLM_DEVICE double warp_inclusive_scan(double x, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  return x;
}

}  // namespace cuda
}  // namespace edlm
