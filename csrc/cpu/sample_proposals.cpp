// CPU backend of edlm_ext::sample_proposals: k independent exact draws per masked
// row from one read of the row — the draw pass of masked_sample
// (csrc/cpu/masked_sample.cpp) with the row's k uniforms, proposal j drawing from
// stream kDomainSample + offset + j (edlm/philox.h). Checks and outputs: csrc/ops.h.
#include "../ops.h"

namespace edlm_ext {

void Cpu::sample_proposals(const SampleCall& c) { cpu::sample_rows(c); }

}  // namespace edlm_ext
