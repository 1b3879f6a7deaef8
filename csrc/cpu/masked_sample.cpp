// CPU implementations of edlm_ext::masked_sample and ::sample_proposals (k draws
// per row from one pass): rows in parallel (at::parallel_for), each row by
// edlm::sample_row (csrc/include/edlm/masked_sample.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../checks.h"
#include "edlm/masked_sample.h"
#include "edlm/philox.h"

namespace edlm_ext {
// k draws per masked row -> (tokens [B, k, L] int64, logp [B, k, L] float32,
// entropy [B, L] float32 or [0] when not asked for).
std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_cpu(const at::Tensor& logits, const at::Tensor& x_t,
                                                          int64_t mask_id, int64_t k, double temperature,
                                                          const edlm::Filter& filter, bool want_entropy,
                                                          const edlm::RngKey key) {
  const int64_t B = logits.size(0), L = logits.size(1), V = logits.size(2);
  const int64_t sb = logits.stride(0), sl = logits.stride(1);
  const int64_t xsb = x_t.stride(0), xsl = x_t.stride(1);
  auto tokens = at::empty({B, k, L}, x_t.options());
  auto logp = at::empty({B, k, L}, logits.options().dtype(at::kFloat));
  auto entropy = at::empty({want_entropy ? B : 0, L}, logits.options().dtype(at::kFloat));
  if (B * L * k == 0) return {tokens, logp, entropy};

  const uint64_t stream0 = edlm::kDomainSample + key.offset;
  const bool greedy = is_greedy(temperature);
  const edlm::SampleParams params{greedy ? 1.0 : 1.0 / temperature, greedy, filter, want_entropy};
  const int64_t* xt = x_t.data_ptr<int64_t>();
  int64_t* out_tok = tokens.data_ptr<int64_t>();
  float* out_lp = logp.data_ptr<float>();
  float* out_h = want_entropy ? entropy.data_ptr<float>() : nullptr;
  const auto dtype = logits.scalar_type() == at::kFloat      ? edlm::DType::kFloat32
                     : logits.scalar_type() == at::kBFloat16 ? edlm::DType::kBFloat16
                                                             : edlm::DType::kFloat16;
  const char* base = static_cast<const char*>(logits.data_ptr());
  const int64_t esize = logits.element_size();
  const int64_t grain = std::max<int64_t>(1, 32768 / V);

  at::parallel_for(0, B * L, grain, [&](int64_t begin, int64_t end) {
    edlm::RowScratch scratch;
    scratch.reserve(V, filter.active());
    std::vector<double> u(k);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / L, l = row % L;
      const int64_t xv = xt[b * xsb + l * xsl];
      int64_t* tok = out_tok + b * k * L + l;  // proposal j at tok[j * L]
      float* lp = out_lp + b * k * L + l;
      float* h = want_entropy ? out_h + row : nullptr;
      bool ok;
      if (xv != mask_id) {  // carried over: copy, or flag an out-of-range id
        ok = xv >= 0 && xv < V;
        for (int64_t j = 0; j < k && ok; ++j) {
          tok[j * L] = xv;
          lp[j * L] = 0.0f;
        }
        if (ok && h) *h = 0.0f;
      } else {
        for (int64_t j = 0; j < k; ++j) u[j] = edlm::row_uniform(key, static_cast<uint64_t>(row), stream0 + j);
        const edlm::RowSource src{base + (b * sb + l * sl) * esize, dtype};
        ok = edlm::sample_row(src, V, mask_id, params, u.data(), k, scratch, tok, lp, L, h);
      }
      if (!ok) {  // documented rule for invalid rows: [MASK] with logp NaN
        for (int64_t j = 0; j < k; ++j) {
          tok[j * L] = mask_id;
          lp[j * L] = std::numeric_limits<float>::quiet_NaN();
        }
        if (h) *h = std::numeric_limits<float>::quiet_NaN();
      }
    }
  });
  return {tokens, logp, entropy};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_sample_cpu(const at::Tensor& logits, const at::Tensor& x_t,
                                                                 int64_t mask_id, double temperature, int64_t top_k,
                                                                 double top_p, double min_p, bool want_entropy,
                                                                 const at::Tensor& rng) {
  check_masked_sample_args("masked_sample", logits, x_t, mask_id, temperature, rng);
  const edlm::Filter filter = check_filter_args("masked_sample", top_k, top_p, min_p, logits.size(2));
  const edlm::RngKey key = read_rng_key_cpu("masked_sample", rng);
  auto [tokens, logp, entropy] = sample_cpu(logits, x_t, mask_id, 1, temperature, filter, want_entropy, key);
  return {tokens.squeeze(1), logp.squeeze(1), entropy};
}

std::tuple<at::Tensor, at::Tensor> sample_proposals_cpu(const at::Tensor& logits, const at::Tensor& x_t,
                                                        int64_t mask_id, int64_t k, double temperature, int64_t top_k,
                                                        double top_p, double min_p, const at::Tensor& rng) {
  check_masked_sample_args("sample_proposals", logits, x_t, mask_id, temperature, rng);
  TORCH_CHECK(k >= 1, "sample_proposals: k must be >= 1, got ", k);
  const edlm::Filter filter = check_filter_args("sample_proposals", top_k, top_p, min_p, logits.size(2));
  const edlm::RngKey key = read_rng_key_cpu("sample_proposals", rng);
  auto [tokens, logp, entropy] = sample_cpu(logits, x_t, mask_id, k, temperature, filter, false, key);
  return {tokens, logp};
}

TORCH_LIBRARY_IMPL(edlm_ext, CPU, m) {
  m.impl("masked_sample", &masked_sample_cpu);
  m.impl("sample_proposals", &sample_proposals_cpu);
}

}  // namespace edlm_ext
