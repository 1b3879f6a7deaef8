// CPU backend of edlm_ext::masked_sample, and the draw pass it shares with
// sample_proposals: k exact draws per masked row from one pass over the row, rows in
// parallel (at::parallel_for), each row by edlm::sample_row (edlm/masked_sample.h).
// Checks and outputs: the op's entry (csrc/ops.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../ops.h"
#include "edlm/masked_sample.h"
#include "edlm/philox.h"

namespace edlm_ext {
void cpu::sample_rows(const SampleCall& c) {
  const at::Tensor& logits = c.logits;
  const int64_t B = logits.size(0), L = logits.size(1), V = logits.size(2), k = c.k;
  if (B * L * k == 0) return;
  const int64_t sb = logits.stride(0), sl = logits.stride(1);
  const int64_t xsb = c.x_t.stride(0), xsl = c.x_t.stride(1);
  const int64_t mask_id = c.mask_id;
  const edlm::Filter filter = c.filter;
  const edlm::RngKey key = edlm::load_rng_key(c.rng.data_ptr<int64_t>());
  const uint64_t stream0 = edlm::kDomainSample + key.offset;
  const edlm::Tempered tp = edlm::tempered(c.temperature);
  const edlm::SampleParams params{tp.inv_t, tp.greedy, filter, c.want_entropy};
  const int64_t* xt = c.x_t.data_ptr<int64_t>();
  int64_t* out_tok = c.tokens.data_ptr<int64_t>();
  float* out_lp = c.logp.data_ptr<float>();
  float* out_h = c.want_entropy ? c.entropy.data_ptr<float>() : nullptr;
  const auto dtype = logits.scalar_type() == at::kFloat      ? edlm::DType::kFloat32
                     : logits.scalar_type() == at::kBFloat16 ? edlm::DType::kBFloat16
                                                             : edlm::DType::kFloat16;
  const char* base = static_cast<const char*>(logits.data_ptr());
  const int64_t esize = logits.element_size();
  const int64_t grain = std::max<int64_t>(1, 32768 / V);

  auto id_at = [&](int64_t row) { return xt[row / L * xsb + row % L * xsl]; };
  auto row_data = [&](int64_t row) { return base + (row / L * sb + row % L * sl) * esize; };

  at::parallel_for(0, B * L, grain, [&](int64_t begin, int64_t end) {
    edlm::RowScratch scratch;
    scratch.reserve(V, filter.active());
    std::vector<double> u(k);
    int64_t next = begin;  // the first masked row after the current one (end: none), found scanning ahead
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / L, l = row % L;
      const int64_t xv = id_at(row);
      int64_t* tok = out_tok + b * k * L + l;  // proposal j at tok[j * L]
      float* lp = out_lp + b * k * L + l;
      float* h = out_h ? out_h + row : nullptr;
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
        // (the rows a thread reads need not be adjacent: its prefetches run on into the next one it will)
        for (next = std::max(next, row + 1); next < end && id_at(next) != mask_id;) ++next;
        const edlm::RowSource src{row_data(row), dtype, next < end ? row_data(next) : nullptr};
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
}

void Cpu::masked_sample(const SampleCall& c) { cpu::sample_rows(c); }

}  // namespace edlm_ext
