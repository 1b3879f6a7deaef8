// CPU backend of edlm_ext::importance_resample: per row, normalize the log-weights,
// draw one index, gather the chosen proposal (edlm/resample.h); rows in parallel.
// Checks and outputs: the op's entry (csrc/ops.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "../ops.h"
#include "edlm/philox.h"
#include "edlm/resample.h"

namespace edlm_ext {

void Cpu::importance_resample(const ResampleCall& c) {
  const int64_t B = c.proposals.size(0), k = c.proposals.size(1), L = c.proposals.size(2);
  const edlm::RngKey key = edlm::load_rng_key(c.rng.data_ptr<int64_t>());
  const int64_t* props = c.proposals.data_ptr<int64_t>();
  const int64_t ps0 = c.proposals.stride(0), ps1 = c.proposals.stride(1), ps2 = c.proposals.stride(2);

  AT_DISPATCH_FLOATING_TYPES(c.log_w.scalar_type(), "importance_resample_cpu", [&] {
    const scalar_t* w_in = c.log_w.data_ptr<scalar_t>();
    scalar_t* w_out = c.weights.data_ptr<scalar_t>();
    scalar_t* lz = c.log_z.data_ptr<scalar_t>();
    scalar_t* es = c.ess.data_ptr<scalar_t>();
    int64_t* idx = c.index.data_ptr<int64_t>();
    int64_t* out = c.chosen.data_ptr<int64_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* row = w_in + b * k;
        const edlm::ResampleStats st = edlm::resample_stats(row, k);
        int64_t j = 0;
        if (st.valid) {
          for (int64_t i = 0; i < k; ++i) w_out[b * k + i] = static_cast<scalar_t>(std::exp(row[i] - st.m) / st.z);
          lz[b] = static_cast<scalar_t>(st.m + std::log(st.z));
          es[b] = static_cast<scalar_t>(st.z * st.z / st.sum_sq);
          const double u = edlm::row_uniform(key, static_cast<uint64_t>(b), edlm::kDomainResample + key.offset);
          j = edlm::resample_index(row, k, st, u);
        } else {  // documented rule: NaN statistics, index 0
          for (int64_t i = 0; i < k; ++i) w_out[b * k + i] = std::numeric_limits<scalar_t>::quiet_NaN();
          lz[b] = es[b] = std::numeric_limits<scalar_t>::quiet_NaN();
        }
        idx[b] = j;
        for (int64_t l = 0; l < L; ++l) out[b * L + l] = props[b * ps0 + j * ps1 + l * ps2];
      }
    });
  });
}

}  // namespace edlm_ext
