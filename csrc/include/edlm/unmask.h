// Posterior unmasking (edlm_ext.unmask): the per-position rule shared by the CPU kernel
// (csrc/cpu/unmask.cpp) and the CUDA kernel (edlm/unmask_cuda.cuh). Torch-free; host and
// device. unmask_confident's rules: edlm/unmask_confident.h.
#pragma once
#include <cstdint>

#include "edlm/common.h"
#include "edlm/philox.h"

namespace edlm {

// unmask: the masked position pos = b * L + l draws the uniform u in (0, 1)
// row_uniform(key, pos, unmask_stream(key)) and takes x0 when u < p (never
// for p <= 0 or NaN, always for p >= 1).
EDLM_HD uint64_t unmask_stream(RngKey key) { return kDomainUnmask + key.offset; }
EDLM_HD bool unmask_takes_x0(double u, double p) { return u < p; }

}  // namespace edlm
