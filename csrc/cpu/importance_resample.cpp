// CPU implementation of edlm_ext::importance_resample: per row, normalize the
// log-weights, draw one index, gather the chosen proposal (edlm/importance_resample.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "edlm/philox.h"
#include "edlm/importance_resample.h"

namespace edlm_ext {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> importance_resample_cpu(
    const at::Tensor& log_w, const at::Tensor& proposals, const at::Tensor& rng) {
  check_importance_resample_args(log_w, proposals, rng);
  const int64_t B = proposals.size(0), k = proposals.size(1), L = proposals.size(2);
  auto lw = log_w.contiguous();
  auto weights = at::empty({B, k}, lw.options());
  auto log_z = at::empty({B}, lw.options());
  auto ess = at::empty({B}, lw.options());
  auto index = at::empty({B}, proposals.options());
  auto chosen = at::empty({B, L}, proposals.options());
  const edlm::RngKey key = read_rng_key_cpu("importance_resample", rng);
  const int64_t* props = proposals.data_ptr<int64_t>();
  const int64_t ps0 = proposals.stride(0), ps1 = proposals.stride(1), ps2 = proposals.stride(2);

  AT_DISPATCH_FLOATING_TYPES(lw.scalar_type(), "importance_resample_cpu", [&] {
    const scalar_t* w_in = lw.data_ptr<scalar_t>();
    scalar_t* w_out = weights.data_ptr<scalar_t>();
    scalar_t* lz = log_z.data_ptr<scalar_t>();
    scalar_t* es = ess.data_ptr<scalar_t>();
    int64_t* idx = index.data_ptr<int64_t>();
    int64_t* out = chosen.data_ptr<int64_t>();
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
  return {weights, log_z, ess, index, chosen};
}

TORCH_LIBRARY_IMPL(edlm_ext, CPU, m) { m.impl("importance_resample", &importance_resample_cpu); }

}  // namespace edlm_ext
