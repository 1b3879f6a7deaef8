// CPU backend of edlm_ext::unmask_confident (rule: edlm/unmask.h): rows in parallel
// (at::parallel_for), each by the pivot selection of edlm/unmask.h with
// std::nth_element over the masked positions' keys. Checks and outputs: csrc/ops.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "../ops.h"
#include "edlm/unmask.h"
#include "select.h"

namespace edlm_ext {
namespace {

constexpr int64_t kGrainPositions = 8192;

// Rows [b0, b1), confidence of element type C. The two passes over a row avoid
// branches on the (unpredictable) mask.
template <typename C>
void confident_rows(int64_t b0, int64_t b1, const ConfidentCall& c, const int64_t* n, int64_t n_stride,
                    double threshold, bool use_threshold) {
  const int64_t L = c.x_t.size(1), mask_id = c.mask_id;
  const int64_t xsl = c.x_t.stride(1), zsl = c.x0.stride(1), csl = c.confidence.stride(1);
  int64_t* out = c.out.data_ptr<int64_t>();
  std::vector<uint64_t> keys(L);  // the masked positions' keys, packed
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t* xrow = c.x_t.data_ptr<int64_t>() + b * c.x_t.stride(0);
    const int64_t* zrow = c.x0.data_ptr<int64_t>() + b * c.x0.stride(0);
    const C* crow = c.confidence.data_ptr<C>() + b * c.confidence.stride(0);
    int64_t* orow = out + b * L;
    int64_t m = 0, above = 0;
    for (int64_t l = 0; l < L; ++l) {
      const bool masked = xrow[l * xsl] == mask_id;
      const double conf = static_cast<double>(crow[l * csl]);
      keys[m] = edlm::confidence_key(conf);
      m += masked;
      above += masked & (conf > threshold);
    }
    const int64_t k = edlm::unmask_count(m, above, use_threshold ? 0 : n[b * n_stride], use_threshold);
    // out = x0 where take(masked, confidence), else x_t.
    const auto write_row = [&](auto&& take) {
      for (int64_t l = 0; l < L; ++l) {
        const int64_t v = xrow[l * xsl];
        orow[l] = cpu::select(take(v == mask_id, static_cast<double>(crow[l * csl])), zrow[l * zsl], v);
      }
    };
    if (k == 0) {
      write_row([](bool, double) { return false; });
    } else if (k == m) {
      write_row([](bool masked, double) { return masked; });
    } else if (use_threshold && above > 0) {  // exactly those above the threshold
      write_row([&](bool masked, double conf) { return masked & (conf > threshold); });
    } else {
      std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.begin() + m, std::greater<uint64_t>());
      const uint64_t pivot = keys[k - 1];
      int64_t need = k - std::count_if(keys.begin(), keys.begin() + m, [&](uint64_t key) { return key > pivot; });
      write_row([&](bool masked, double conf) {  // ties at the pivot: the lowest positions
        const uint64_t key = edlm::confidence_key(conf);
        const bool tie = masked & (key == pivot);
        const bool take = (masked & (key > pivot)) | (tie & (need > 0));
        need -= tie;
        return take;
      });
    }
  }
}

}  // namespace

void Cpu::unmask_confident(const ConfidentCall& c) {
  const int64_t B = c.x_t.size(0), L = c.x_t.size(1);
  if (B * L == 0) return;
  const bool use_threshold = c.threshold.has_value();
  const int64_t* np = use_threshold ? nullptr : c.n->data_ptr<int64_t>();
  const int64_t n_stride = use_threshold ? 0 : c.n->stride(0);
  const double thr = use_threshold ? *c.threshold : 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, c.confidence.scalar_type(), "unmask_confident", [&] {
    at::parallel_for(0, B, std::max<int64_t>(1, kGrainPositions / L), [&](int64_t b0, int64_t b1) {
      confident_rows<scalar_t>(b0, b1, c, np, n_stride, thr, use_threshold);
    });
  });
}

}  // namespace edlm_ext
