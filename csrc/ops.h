// The torch-facing entry of every op, written once for all backends: run the op's
// contract (csrc/checks.h), allocate its outputs, and hand both to the backend, which
// only runs the kernel. csrc/bindings.cpp registers entry<Cpu> for the CPU dispatch
// key and entry<Cuda> for CUDA; the backends' halves live in csrc/cpu/<op>.cpp and
// csrc/cuda/<op>.cu (the latter left out of CPU-only builds, where a CUDA tensor then
// meets the dispatcher's "no kernel for the CUDA backend" error).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "checks.h"
#include "edlm/filter.h"

namespace edlm_ext {

// ---------------------------------------------------------------------------------
// One call of each op as the backends see it: checked arguments, allocated outputs.

// masked_sample (k = 1) and sample_proposals: k draws per masked row of logits.
struct SampleCall {
  at::Tensor logits;   // [B, L, V] float32/bfloat16/float16, stride(-1) == 1
  at::Tensor x_t;      // [B, L] int64
  int64_t mask_id, k;
  double temperature;  // 0 (greedy) or in the valid range
  edlm::Filter filter;
  bool want_entropy;
  at::Tensor rng;      // [2] int64 {seed, offset}, contiguous, on the op's device
  at::Tensor tokens;   // out: [B, k, L] int64, contiguous
  at::Tensor logp;     // out: [B, k, L] float32, contiguous
  at::Tensor entropy;  // out: [B, L] float32 with want_entropy, else [0, L]
};

struct ResampleCall {
  at::Tensor log_w;      // [B, k] float32/float64, contiguous
  at::Tensor proposals;  // [B, k, L] int64, any strides
  at::Tensor rng;        // [2] int64, contiguous
  at::Tensor weights, log_z, ess;  // out: [B, k], [B], [B], dtype of log_w
  at::Tensor index;      // out: [B] int64
  at::Tensor chosen;     // out: [B, L] int64
};

struct UnmaskCall {
  at::Tensor x_t, x0;  // [B, L] int64, any strides
  int64_t mask_id;
  at::Tensor p;        // [B] float32/float64, any stride
  at::Tensor rng;      // [2] int64, contiguous
  at::Tensor out;      // out: [B, L] int64, contiguous
};

struct ConfidentCall {
  at::Tensor x_t, x0;               // [B, L] int64, any strides
  at::Tensor confidence;            // [B, L] float32/float64/bfloat16/float16, any strides
  int64_t mask_id;
  std::optional<at::Tensor> n;      // [B] int64, or nullopt with a threshold
  std::optional<double> threshold;  // not NaN, or nullopt with n
  at::Tensor out;                   // out: [B, L] int64, contiguous
};

// ---------------------------------------------------------------------------------
// The backends: each function runs one op's kernels on a checked, allocated call.

struct Cpu {
  static void masked_sample(const SampleCall& c);        // csrc/cpu/masked_sample.cpp
  static void sample_proposals(const SampleCall& c);     // csrc/cpu/sample_proposals.cpp
  static void importance_resample(const ResampleCall& c);  // csrc/cpu/importance_resample.cpp
  static void unmask(const UnmaskCall& c);               // csrc/cpu/unmask.cpp
  static void unmask_confident(const ConfidentCall& c);  // csrc/cpu/unmask_confident.cpp
};

struct Cuda {
  static void masked_sample(const SampleCall& c);        // csrc/cuda/masked_sample.cu
  static void sample_proposals(const SampleCall& c);     // csrc/cuda/sample_proposals.cu
  static void importance_resample(const ResampleCall& c);  // csrc/cuda/importance_resample.cu
  static void unmask(const UnmaskCall& c);               // csrc/cuda/unmask.cu
  static void unmask_confident(const ConfidentCall& c);  // csrc/cuda/unmask_confident.cu
};

// The draw pass shared by masked_sample and sample_proposals (k uniforms per row).
namespace cpu {
void sample_rows(const SampleCall& c);  // csrc/cpu/masked_sample.cpp
}  // namespace cpu
namespace cuda {
void sample_rows(const SampleCall& c);  // csrc/cuda/masked_sample.cu
}  // namespace cuda

// ---------------------------------------------------------------------------------
// The entries (schemas: csrc/bindings.cpp).

// The outputs of the draw pass for k draws per row.
inline SampleCall sample_call(const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id, int64_t k,
                              double temperature, const edlm::Filter& filter, bool want_entropy, at::Tensor rng) {
  const int64_t B = logits.size(0), L = logits.size(1);
  const auto f32 = logits.options().dtype(at::kFloat);
  return SampleCall{logits, x_t, mask_id, k, temperature, filter, want_entropy, std::move(rng),
                    at::empty({B, k, L}, x_t.options()), at::empty({B, k, L}, f32),
                    at::empty({want_entropy ? B : 0, L}, f32)};
}

// -> (x0 [B, L] int64, logp [B, L] float32, entropy [B, L] float32 or [0, L])
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_sample(const at::Tensor& logits, const at::Tensor& x_t,
                                                             int64_t mask_id, double temperature, int64_t top_k,
                                                             double top_p, double min_p, bool want_entropy,
                                                             const at::Tensor& rng) {
  const edlm::Filter filter =
      check_masked_sample(logits, x_t, mask_id, temperature, top_k, top_p, min_p, want_entropy, rng);
  const SampleCall c = sample_call(logits, x_t, mask_id, 1, temperature, filter, want_entropy,
                                   read_rng_key("masked_sample", rng, logits.device()));
  Backend::masked_sample(c);
  return {c.tokens.squeeze(1), c.logp.squeeze(1), c.entropy};
}

// -> (proposals [B, k, L] int64, logp [B, k, L] float32)
template <class Backend>
std::tuple<at::Tensor, at::Tensor> sample_proposals(const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id,
                                                    int64_t k, double temperature, int64_t top_k, double top_p,
                                                    double min_p, const at::Tensor& rng) {
  const edlm::Filter filter = check_sample_proposals(logits, x_t, mask_id, k, temperature, top_k, top_p, min_p, rng);
  const SampleCall c = sample_call(logits, x_t, mask_id, k, temperature, filter, false,
                                   read_rng_key("sample_proposals", rng, logits.device()));
  Backend::sample_proposals(c);
  return {c.tokens, c.logp};
}

// -> (weights [B, k], log_z [B], ess [B], index [B] int64, chosen [B, L] int64)
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> importance_resample(
    const at::Tensor& log_w, const at::Tensor& proposals, const at::Tensor& rng) {
  check_importance_resample(log_w, proposals, rng);
  const int64_t B = proposals.size(0), k = proposals.size(1), L = proposals.size(2);
  const at::Tensor lw = log_w.contiguous();
  const ResampleCall c{lw, proposals, read_rng_key("importance_resample", rng, proposals.device()),
                       at::empty({B, k}, lw.options()), at::empty({B}, lw.options()), at::empty({B}, lw.options()),
                       at::empty({B}, proposals.options()), at::empty({B, L}, proposals.options())};
  Backend::importance_resample(c);
  return {c.weights, c.log_z, c.ess, c.index, c.chosen};
}

// -> x_s [B, L] int64
template <class Backend>
at::Tensor unmask(const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id, const at::Tensor& p,
                  const at::Tensor& rng) {
  check_unmask(x_t, x0, mask_id, p, rng);
  const UnmaskCall c{x_t, x0, mask_id, p, read_rng_key("unmask", rng, x_t.device()),
                     at::empty({x_t.size(0), x_t.size(1)}, x_t.options())};
  Backend::unmask(c);
  return c.out;
}

// -> x_s [B, L] int64
template <class Backend>
at::Tensor unmask_confident(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& confidence,
                            int64_t mask_id, const std::optional<at::Tensor>& n, std::optional<double> threshold) {
  check_unmask_confident(x_t, x0, confidence, mask_id, n, threshold);
  const ConfidentCall c{x_t, x0, confidence, mask_id, n, threshold,
                        at::empty({x_t.size(0), x_t.size(1)}, x_t.options())};
  Backend::unmask_confident(c);
  return c.out;
}

// ---------------------------------------------------------------------------------
// Test hooks (CPU only; registered under torch.ops.edlm_ext_testing, not the public
// namespace): csrc/cpu/testing.cpp.
namespace testing {
at::Tensor philox4x32(const at::Tensor& counters, const at::Tensor& key);
at::Tensor row_uniforms(const at::Tensor& rng, int64_t rows, int64_t stream);
at::Tensor philox_uniforms(const at::Tensor& rng, const at::Tensor& rows, int64_t stream, c10::string_view simd);
}  // namespace testing

}  // namespace edlm_ext
