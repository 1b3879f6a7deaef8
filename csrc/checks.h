// Argument checks shared by the CPU and CUDA implementations of each op. The
// Python wrappers in edlm_ext/ops.py check first and raise typed errors; these
// TORCH_CHECKs guard direct torch.ops.edlm_ext.* callers.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <optional>

#include "edlm/common.h"
#include "edlm/filter.h"
#include "edlm/temperature.h"

namespace edlm_ext {

// The valid temperatures (0, or [kMinTemperature, kMaxTemperature]): edlm/temperature.h.
using edlm::kMaxTemperature;
using edlm::kMinTemperature;

inline void check_temperature(const char* op, double temperature) {
  TORCH_CHECK(temperature == 0.0 || (temperature >= kMinTemperature && temperature <= kMaxTemperature), op,
              ": temperature must be 0 (greedy) or in [", kMinTemperature, ", ", kMaxTemperature, "], got ",
              temperature);
}

// rng: the [seed, offset] key of one op call, a 1-D int64 tensor of 2 elements on
// `device` (any strides: readers go through contiguous_rng / read_rng_key_cpu).
inline void check_rng(const char* op, const at::Tensor& rng, const at::Device& device) {
  TORCH_CHECK(rng.dim() == 1 && rng.numel() == 2 && rng.scalar_type() == at::kLong, op,
              ": rng must be a 1-D int64 tensor [seed, offset], got ", rng.scalar_type(), " of shape ", rng.sizes());
  TORCH_CHECK(rng.device() == device, op, ": rng is on ", rng.device(), " but the op runs on ", device);
}

// The checked rng as a contiguous tensor (a strided or expanded view would be read
// at the wrong addresses). CUDA launchers pass its data_ptr to their kernels.
inline at::Tensor contiguous_rng(const char* op, const at::Tensor& rng, const at::Device& device) {
  check_rng(op, rng, device);
  return rng.contiguous();
}

// The key of a CPU op: the one place where CPU ops read rng.
inline edlm::RngKey read_rng_key_cpu(const char* op, const at::Tensor& rng) {
  const at::Tensor r = contiguous_rng(op, rng, at::Device(at::kCPU));
  return edlm::load_rng_key(r.data_ptr<int64_t>());
}

// logits [B, L, V] float32/bfloat16/float16, stride(-1) == 1; x_t [B, L] int64;
// rng [2] int64 (seed, stream offset) on the logits' device.
inline void check_masked_sample_args(const char* op, const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id,
                                     double temperature, const at::Tensor& rng) {
  TORCH_CHECK(logits.dim() == 3, op, ": logits must be [B, L, V], got ", logits.sizes());
  TORCH_CHECK(logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16 ||
                  logits.scalar_type() == at::kHalf,
              op, ": logits must be float32, bfloat16 or float16, got ", logits.scalar_type());
  TORCH_CHECK(logits.size(2) > 0, op, ": logits has V = 0");
  TORCH_CHECK(logits.size(2) == 1 || logits.stride(2) == 1, op, ": logits.stride(-1) must be 1");
  TORCH_CHECK(x_t.dim() == 2 && x_t.size(0) == logits.size(0) && x_t.size(1) == logits.size(1),
              op, ": x_t must be [B, L] = ", logits.sizes().slice(0, 2), ", got ", x_t.sizes());
  TORCH_CHECK(x_t.scalar_type() == at::kLong, op, ": x_t must be int64, got ", x_t.scalar_type());
  TORCH_CHECK(x_t.device() == logits.device(), op, ": x_t is on ", x_t.device(), ", logits on ",
              logits.device());
  TORCH_CHECK(mask_id >= 0 && mask_id < logits.size(2), op, ": mask_id ", mask_id,
              " outside [0, V = ", logits.size(2), ")");
  check_temperature(op, temperature);
  check_rng(op, rng, logits.device());
}

// log_w [B, k] float32/float64; proposals [B, k, L] int64; rng [2] int64; one device.
inline void check_importance_resample_args(const at::Tensor& log_w, const at::Tensor& proposals, const at::Tensor& rng) {
  TORCH_CHECK(proposals.dim() == 3 && proposals.scalar_type() == at::kLong,
              "importance_resample: proposals must be int64 [B, k, L], got ", proposals.scalar_type(), " ",
              proposals.sizes());
  TORCH_CHECK(log_w.dim() == 2 && log_w.size(0) == proposals.size(0) && log_w.size(1) == proposals.size(1),
              "importance_resample: log_w must be [B, k] = ", proposals.sizes().slice(0, 2), ", got ", log_w.sizes());
  TORCH_CHECK(log_w.scalar_type() == at::kFloat || log_w.scalar_type() == at::kDouble,
              "importance_resample: log_w must be float32 or float64, got ", log_w.scalar_type());
  TORCH_CHECK(proposals.size(1) >= 1, "importance_resample: k must be >= 1");
  TORCH_CHECK(log_w.device() == proposals.device(), "importance_resample: log_w is on ", log_w.device(),
              ", proposals on ", proposals.device());
  check_rng("importance_resample", rng, log_w.device());
}

// top_k >= 0 (0: off), top_p in (0, 1] (1: off), min_p in [0, 1] (0: off).
// Without V this cannot enforce the top-p vocabulary limit: callers that have V use
// the overload below (the CPU ops do; the CUDA launchers still call this one, and the
// Python wrappers check V for both).
inline edlm::Filter check_filter_args(const char* op, int64_t top_k, double top_p, double min_p) {
  TORCH_CHECK(top_k >= 0, op, ": top_k must be >= 0, got ", top_k);
  TORCH_CHECK(top_p > 0.0 && top_p <= 1.0, op, ": top_p must be in (0, 1], got ", top_p);
  TORCH_CHECK(min_p >= 0.0 && min_p <= 1.0, op, ": min_p must be in [0, 1], got ", min_p);
  return edlm::Filter{top_k, top_p, min_p};
}

// top_p < 1 counts token masses in fixed point (edlm/filter.h): V <= kMaxTopPVocab.
inline void check_top_p_vocab(const char* op, double top_p, int64_t V) {
  TORCH_CHECK(top_p >= 1.0 || V <= edlm::kMaxTopPVocab, op, ": top_p < 1 needs a vocabulary of at most ",
              edlm::kMaxTopPVocab, " tokens (the fixed-point mass counter of the top-p select), got V = ", V);
}

// The filters of a row of V logits, all checked.
inline edlm::Filter check_filter_args(const char* op, int64_t top_k, double top_p, double min_p, int64_t V) {
  const edlm::Filter f = check_filter_args(op, top_k, top_p, min_p);
  check_top_p_vocab(op, top_p, V);
  return f;
}

// x_t, x0 [B, L] int64 on one device; mask_id >= 0. `op` names the caller.
inline void check_unmask_tokens(const char* op, const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id) {
  TORCH_CHECK(x_t.dim() == 2, op, ": x_t must be [B, L], got ", x_t.sizes());
  TORCH_CHECK(x_t.scalar_type() == at::kLong, op, ": x_t must be int64, got ", x_t.scalar_type());
  TORCH_CHECK(x0.sizes() == x_t.sizes(), op, ": x0 must be [B, L] = ", x_t.sizes(), ", got ", x0.sizes());
  TORCH_CHECK(x0.scalar_type() == at::kLong, op, ": x0 must be int64, got ", x0.scalar_type());
  TORCH_CHECK(x0.device() == x_t.device(), op, ": x0 is on ", x0.device(), ", x_t on ", x_t.device());
  TORCH_CHECK(mask_id >= 0, op, ": mask_id must be >= 0, got ", mask_id);
}

// unmask: x_t, x0 as above; p [B] float32/float64; rng [2] int64 (seed, offset); all on x_t's device.
inline void check_unmask_args(const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id, const at::Tensor& p,
                              const at::Tensor& rng) {
  check_unmask_tokens("unmask", x_t, x0, mask_id);
  TORCH_CHECK(p.dim() == 1 && p.size(0) == x_t.size(0), "unmask: p must be [B] = [", x_t.size(0), "], got ",
              p.sizes());
  TORCH_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble,
              "unmask: p must be float32 or float64, got ", p.scalar_type());
  TORCH_CHECK(p.device() == x_t.device(), "unmask: p is on ", p.device(), ", x_t on ", x_t.device());
  check_rng("unmask", rng, x_t.device());
}

// unmask_confident: x_t, x0 as above; confidence [B, L] float32/float64/bfloat16/float16;
// exactly one of n ([B] int64) and threshold (not NaN); all on x_t's device.
inline void check_unmask_confident_args(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& confidence,
                                        int64_t mask_id, const std::optional<at::Tensor>& n,
                                        std::optional<double> threshold) {
  check_unmask_tokens("unmask_confident", x_t, x0, mask_id);
  TORCH_CHECK(confidence.sizes() == x_t.sizes(), "unmask_confident: confidence must be [B, L] = ", x_t.sizes(),
              ", got ", confidence.sizes());
  const auto ct = confidence.scalar_type();
  TORCH_CHECK(ct == at::kFloat || ct == at::kDouble || ct == at::kBFloat16 || ct == at::kHalf,
              "unmask_confident: confidence must be float32, float64, bfloat16 or float16, got ", ct);
  TORCH_CHECK(confidence.device() == x_t.device(), "unmask_confident: confidence is on ", confidence.device(),
              ", x_t on ", x_t.device());
  TORCH_CHECK(n.has_value() != threshold.has_value(), "unmask_confident: pass exactly one of n and threshold");
  if (n.has_value()) {
    TORCH_CHECK(n->dim() == 1 && n->size(0) == x_t.size(0) && n->scalar_type() == at::kLong,
                "unmask_confident: n must be an int64 tensor [B] = [", x_t.size(0), "], got ", n->scalar_type(), " ",
                n->sizes());
    TORCH_CHECK(n->device() == x_t.device(), "unmask_confident: n is on ", n->device(), ", x_t on ", x_t.device());
  } else {
    TORCH_CHECK(!std::isnan(*threshold), "unmask_confident: threshold is NaN");
  }
}

// The temperature rule (greedy or not, 1 / T, c) of every backend: edlm/temperature.h.
using edlm::is_greedy;

}  // namespace edlm_ext
