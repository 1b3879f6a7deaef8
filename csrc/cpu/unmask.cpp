// CPU implementations of edlm_ext::unmask and edlm_ext::unmask_confident
// (rules: csrc/include/edlm/unmask.h, unmask_confident.h). unmask runs over chunks of the
// flattened [B, L] positions, unmask_confident over rows, with at::parallel_for;
// unmask draws its uniforms in batches (edlm/cpu_philox.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "../checks.h"
#include "edlm/cpu_philox.h"
#include "edlm/philox.h"
#include "edlm/unmask.h"
#include "edlm/unmask_confident.h"

namespace edlm_ext {
namespace {

constexpr int64_t kGrainPositions = 8192;
constexpr int64_t kBatch = 256;  // unmask: positions per batch of uniforms

// a if pick else b, without a branch: the picks are unpredictable, and compilers
// tend to turn `pick ? a : b` with a load on one side into a branch.
inline int64_t select(bool pick, int64_t a, int64_t b) {
  const int64_t all = -static_cast<int64_t>(pick);
  return (a & all) | (b & ~all);
}

// Rows [b0, b1) of unmask_confident, confidence of element type C: the pivot
// selection of edlm/unmask.h with std::nth_element over the masked keys. The two
// passes over a row avoid branches on the (unpredictable) mask.
template <typename C>
void unmask_confident_rows(int64_t b0, int64_t b1, const at::Tensor& x_t, const at::Tensor& x0,
                           const at::Tensor& confidence, int64_t mask_id, const int64_t* n, int64_t n_stride,
                           double threshold, bool use_threshold, int64_t* out) {
  const int64_t L = x_t.size(1);
  const int64_t xsl = x_t.stride(1), zsl = x0.stride(1), csl = confidence.stride(1);
  std::vector<uint64_t> keys(L);  // the masked positions' keys, packed
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t* xrow = x_t.data_ptr<int64_t>() + b * x_t.stride(0);
    const int64_t* zrow = x0.data_ptr<int64_t>() + b * x0.stride(0);
    const C* crow = confidence.data_ptr<C>() + b * confidence.stride(0);
    int64_t* orow = out + b * L;
    int64_t m = 0, above = 0;
    for (int64_t l = 0; l < L; ++l) {
      const bool masked = xrow[l * xsl] == mask_id;
      const double c = static_cast<double>(crow[l * csl]);
      keys[m] = edlm::confidence_key(c);
      m += masked;
      above += masked & (c > threshold);
    }
    const int64_t k = edlm::unmask_count(m, above, use_threshold ? 0 : n[b * n_stride], use_threshold);
    // out = x0 where take(masked, confidence), else x_t.
    const auto write_row = [&](auto&& take) {
      for (int64_t l = 0; l < L; ++l) {
        const int64_t v = xrow[l * xsl];
        orow[l] = select(take(v == mask_id, static_cast<double>(crow[l * csl])), zrow[l * zsl], v);
      }
    };
    if (k == 0) {
      write_row([](bool, double) { return false; });
    } else if (k == m) {
      write_row([](bool masked, double) { return masked; });
    } else if (use_threshold && above > 0) {  // exactly those above the threshold
      write_row([&](bool masked, double c) { return masked & (c > threshold); });
    } else {
      std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.begin() + m, std::greater<uint64_t>());
      const uint64_t pivot = keys[k - 1];
      int64_t need = k - std::count_if(keys.begin(), keys.begin() + m, [&](uint64_t key) { return key > pivot; });
      write_row([&](bool masked, double c) {  // ties at the pivot: the lowest positions
        const uint64_t key = edlm::confidence_key(c);
        const bool tie = masked & (key == pivot);
        const bool take = (masked & (key > pivot)) | (tie & (need > 0));
        need -= tie;
        return take;
      });
    }
  }
}

}  // namespace

at::Tensor unmask_cpu(const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id, const at::Tensor& p,
                      const at::Tensor& rng) {
  check_unmask_args(x_t, x0, mask_id, p, rng);
  const int64_t B = x_t.size(0), L = x_t.size(1);
  auto out = at::empty({B, L}, x_t.options());
  if (B * L == 0) return out;
  const auto p64 = p.to(at::kDouble).contiguous();
  const double* pp = p64.data_ptr<double>();
  const edlm::RngKey key = read_rng_key_cpu("unmask", rng);
  const int64_t* xt = x_t.data_ptr<int64_t>();
  const int64_t* z = x0.data_ptr<int64_t>();
  const int64_t xsb = x_t.stride(0), xsl = x_t.stride(1), zsb = x0.stride(0), zsl = x0.stride(1);
  int64_t* o = out.data_ptr<int64_t>();
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
        orow[idx[j]] = select(edlm::unmask_takes_x0(u[j], pb), zrow[idx[j] * zsl], mask_id);
      pos += n;
    }
  });
  return out;
}

at::Tensor unmask_confident_cpu(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& confidence,
                                int64_t mask_id, const std::optional<at::Tensor>& n,
                                std::optional<double> threshold) {
  check_unmask_confident_args(x_t, x0, confidence, mask_id, n, threshold);
  const int64_t B = x_t.size(0), L = x_t.size(1);
  auto out = at::empty({B, L}, x_t.options());
  if (B * L == 0) return out;
  const bool use_threshold = threshold.has_value();
  const int64_t* np = use_threshold ? nullptr : n->data_ptr<int64_t>();
  const int64_t n_stride = use_threshold ? 0 : n->stride(0);
  const double thr = use_threshold ? *threshold : 0.0;
  int64_t* o = out.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, confidence.scalar_type(), "unmask_confident", [&] {
    at::parallel_for(0, B, std::max<int64_t>(1, kGrainPositions / L), [&](int64_t b0, int64_t b1) {
      unmask_confident_rows<scalar_t>(b0, b1, x_t, x0, confidence, mask_id, np, n_stride, thr, use_threshold, o);
    });
  });
  return out;
}

TORCH_LIBRARY_IMPL(edlm_ext, CPU, m) {
  m.impl("unmask", &unmask_cpu);
  m.impl("unmask_confident", &unmask_confident_cpu);
}

}  // namespace edlm_ext
