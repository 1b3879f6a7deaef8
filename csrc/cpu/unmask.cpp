// CPU backend of edlm_ext::unmask (rule: edlm/unmask.h): chunks of the flattened
// [B, L] positions in parallel (at::parallel_for), the uniforms drawn in batches
// (edlm/cpu_philox.h). Checks and outputs: the op's entry (csrc/ops.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "../ops.h"
#include "edlm/cpu_philox.h"
#include "edlm/philox.h"
#include "edlm/unmask.h"
#include "select.h"

namespace edlm_ext {
namespace {

constexpr int64_t kGrainPositions = 8192;
constexpr int64_t kBatch = 256;  // positions per batch of uniforms

}  // namespace

void Cpu::unmask(const UnmaskCall& c) {
  const int64_t B = c.x_t.size(0), L = c.x_t.size(1);
  if (B * L == 0) return;
  const auto p64 = c.p.to(at::kDouble).contiguous();
  const double* pp = p64.data_ptr<double>();
  const edlm::RngKey key = edlm::load_rng_key(c.rng.data_ptr<int64_t>());
  const int64_t* xt = c.x_t.data_ptr<int64_t>();
  const int64_t* z = c.x0.data_ptr<int64_t>();
  const int64_t xsb = c.x_t.stride(0), xsl = c.x_t.stride(1), zsb = c.x0.stride(0), zsl = c.x0.stride(1);
  const int64_t mask_id = c.mask_id;
  int64_t* o = c.out.data_ptr<int64_t>();
  const uint64_t stream = edlm::unmask_stream(key);
  // (captures by value: the loops below then keep sizes and strides in registers)
  at::parallel_for(0, B * L, kGrainPositions, [=](int64_t begin, int64_t end) {
    // Segments of at most kBatch positions inside one row: copy x_t and list the
    // masked positions (branch-free), draw their uniforms at once (vectorized),
    // then write x0 or [MASK] at each of them.
    int64_t idx[kBatch];
    uint64_t counter[kBatch];
    double u[kBatch];
    for (int64_t pos = begin; pos < end;) {
      const int64_t b = pos / L, l0 = pos - b * L;
      const int64_t n = std::min({end - pos, L - l0, kBatch});
      const int64_t* xrow = xt + b * xsb + l0 * xsl;
      const int64_t* zrow = z + b * zsb + l0 * zsl;
      int64_t* orow = o + pos;
      int64_t m = 0;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = xrow[i * xsl];
        orow[i] = v;
        idx[m] = i;
        counter[m] = static_cast<uint64_t>(pos + i);
        m += v == mask_id;
      }
      edlm::cpu::uniforms_for_rows(key, stream, counter, m, u);
      const double pb = pp[b];
      for (int64_t j = 0; j < m; ++j)
        orow[idx[j]] = cpu::select(edlm::unmask_takes_x0(u[j], pb), zrow[idx[j] * zsl], mask_id);
      pos += n;
    }
  });
}

}  // namespace edlm_ext
