// CPU implementation of edlm_ext::masked_sample: rows in parallel
// (at::parallel_for), each row by edlm::sample_row (csrc/include/edlm/masked_sample.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "../checks.h"
#include "edlm/masked_sample.h"
#include "edlm/philox.h"

namespace edlm_ext {
namespace {

template <typename Decode>
struct RowLoader {
  const uint16_t* row;
  Decode decode;
  void operator()(int64_t start, int n, float* out) const {
    for (int i = 0; i < n; ++i) out[i] = decode(row[start + i]);
  }
};

struct FloatLoader {
  const float* row;
  void operator()(int64_t start, int n, float* out) const { std::memcpy(out, row + start, sizeof(float) * n); }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> masked_sample_cpu(const at::Tensor& logits, const at::Tensor& x_t,
                                                     int64_t mask_id, double temperature, const at::Tensor& rng) {
  check_masked_sample_args(logits, x_t, mask_id, temperature, rng);
  const int64_t B = logits.size(0), L = logits.size(1), V = logits.size(2);
  const int64_t sb = logits.stride(0), sl = logits.stride(1);
  const int64_t xsb = x_t.stride(0), xsl = x_t.stride(1);
  auto x0 = at::empty({B, L}, x_t.options());
  auto logp = at::empty({B, L}, logits.options().dtype(at::kFloat));
  if (B * L == 0) return {x0, logp};

  const auto* rng_p = rng.data_ptr<int64_t>();
  const edlm::RngKey key{static_cast<uint64_t>(rng_p[0]), static_cast<uint64_t>(rng_p[1])};
  const bool greedy = is_greedy(temperature);
  const double inv_t = greedy ? 0.0 : 1.0 / temperature;
  const int64_t* xt = x_t.data_ptr<int64_t>();
  int64_t* out_tok = x0.data_ptr<int64_t>();
  float* out_lp = logp.data_ptr<float>();
  const auto dtype = logits.scalar_type();
  const char* base = static_cast<const char*>(logits.data_ptr());
  const int64_t esize = logits.element_size();
  const int64_t grain = std::max<int64_t>(1, 32768 / V);

  at::parallel_for(0, B * L, grain, [&](int64_t begin, int64_t end) {
    edlm::RowScratch scratch;
    scratch.reserve(V);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / L, l = row % L;
      const int64_t xv = xt[b * xsb + l * xsl];
      if (xv != mask_id) {  // carried over: copy, or flag an out-of-range id
        const bool ok = xv >= 0 && xv < V;
        out_tok[row] = ok ? xv : mask_id;
        out_lp[row] = ok ? 0.0f : std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      const double u = edlm::row_uniform(key, static_cast<uint64_t>(row), key.offset);
      const void* row_ptr = base + (b * sb + l * sl) * esize;
      edlm::RowDraw d;
      if (dtype == at::kFloat) {
        d = edlm::sample_row(FloatLoader{static_cast<const float*>(row_ptr)}, V, mask_id, inv_t, greedy, u, scratch);
      } else if (dtype == at::kBFloat16) {
        auto dec = [](uint16_t h) { return edlm::bf16_to_float(h); };
        d = edlm::sample_row(RowLoader<decltype(dec)>{static_cast<const uint16_t*>(row_ptr), dec}, V, mask_id, inv_t,
                             greedy, u, scratch);
      } else {
        auto dec = [](uint16_t h) { return edlm::f16_to_float(h); };
        d = edlm::sample_row(RowLoader<decltype(dec)>{static_cast<const uint16_t*>(row_ptr), dec}, V, mask_id, inv_t,
                             greedy, u, scratch);
      }
      out_tok[row] = d.token;
      out_lp[row] = d.logp;
    }
  });
  return {x0, logp};
}

TORCH_LIBRARY_IMPL(edlm_ext, CPU, m) { m.impl("masked_sample", &masked_sample_cpu); }

}  // namespace edlm_ext
