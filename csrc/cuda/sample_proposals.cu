// CUDA backend of edlm_ext::sample_proposals: k independent exact draws per masked
// row from one read of the row — the draw pass of masked_sample
// (csrc/cuda/masked_sample.cu, one block per row drawing all k). Checks and outputs:
// the op's entry (csrc/ops.h).
#include "../ops.h"

namespace edlm_ext {

void Cuda::sample_proposals(const SampleCall& c) { cuda::sample_rows(c); }

}  // namespace edlm_ext
