// One contract per op: every shape, dtype, device and range check of an op's
// arguments, written once. The op's backend-generic entry (csrc/ops.h) runs it for
// every backend before anything is allocated; its fake (edlm_ext/ops.py) runs it too,
// through edlm_ext._C.check_<op>, so meta and fake tensors get the same errors.
//
// The errors are typed: TORCH_CHECK_TYPE (a wrong dtype: TypeError in Python) and
// TORCH_CHECK_VALUE (a wrong shape, device or value: ValueError), each message
// starting with the op's name and naming the argument. What these checks cannot see
// stays in Python (edlm_ext/ops.py): the Python type of a scalar (a bool passed as an
// int, an int beyond int64) and the data-dependent diagnosis of invalid rows.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <string>

#include "edlm/common.h"
#include "edlm/filter.h"
#include "edlm/temperature.h"

namespace edlm_ext {

// torch's name of a dtype ("torch.float32"), as Python users write it.
inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kLong: return "torch.int64";
    case at::kInt: return "torch.int32";
    case at::kShort: return "torch.int16";
    case at::kChar: return "torch.int8";
    case at::kByte: return "torch.uint8";
    case at::kBool: return "torch.bool";
    default: return std::string("torch.") + c10::toString(t);
  }
}

// `t` is on `device`, where the op runs (`other` names what set that device).
inline void check_device(const char* op, const char* name, const at::Tensor& t, const at::Device& device,
                         const char* other) {
  TORCH_CHECK_VALUE(t.device() == device, op, ": ", name, " is on ", t.device(), " but ", other, " is on ", device);
}

// ---------------------------------------------------------------------------------
// Shared pieces

// temperature: 0 (greedy) or in [kMinTemperature, kMaxTemperature] (edlm/temperature.h;
// NaN and +-inf are outside).
inline void check_temperature(const char* op, double temperature) {
  TORCH_CHECK_VALUE(
      temperature == 0.0 || (temperature >= edlm::kMinTemperature && temperature <= edlm::kMaxTemperature), op,
      ": temperature must be 0 (greedy) or in [", edlm::kMinTemperature, ", ", edlm::kMaxTemperature, "], got ",
      temperature);
}

// rng: the [seed, offset] key of one op call, a 1-D int64 tensor of 2 elements on the
// op's device, any strides.
inline void check_rng(const char* op, const at::Tensor& rng, const at::Device& device) {
  TORCH_CHECK_TYPE(rng.scalar_type() == at::kLong, op, ": rng must be a 1-D int64 tensor [seed, offset], got ",
                   dtype_name(rng.scalar_type()));
  TORCH_CHECK_VALUE(rng.dim() == 1 && rng.numel() == 2, op,
                    ": rng must be a 1-D int64 tensor [seed, offset], got shape ", rng.sizes());
  check_device(op, "rng", rng, device, "the op");
}

// The one reader of an op's rng: the checked key as a contiguous tensor on the op's
// device (a strided or expanded view would be read at the wrong addresses). CPU
// backends load it with edlm::load_rng_key(r.data_ptr<int64_t>()); CUDA kernels read
// it from device memory, so a key drawn from a torch.Generator needs no host round trip.
inline at::Tensor read_rng_key(const char* op, const at::Tensor& rng, const at::Device& device) {
  check_rng(op, rng, device);
  return rng.contiguous();
}

// top_k >= 0 (0: off), top_p in (0, 1] (1: off), min_p in [0, 1] (0: off); top_p < 1
// counts token masses in fixed point (edlm/filter.h), so it needs V <= kMaxTopPVocab.
inline edlm::Filter check_filters(const char* op, int64_t top_k, double top_p, double min_p, int64_t V) {
  TORCH_CHECK_VALUE(top_k >= 0, op, ": top_k must be >= 0 (0 = off), got ", top_k);
  TORCH_CHECK_VALUE(top_p > 0.0 && top_p <= 1.0, op, ": top_p must be in (0, 1] (1 = off), got ", top_p);
  TORCH_CHECK_VALUE(min_p >= 0.0 && min_p <= 1.0, op, ": min_p must be in [0, 1] (0 = off), got ", min_p);
  TORCH_CHECK_VALUE(top_p >= 1.0 || V <= edlm::kMaxTopPVocab, op, ": top_p < 1 needs a vocabulary of at most ",
                    edlm::kMaxTopPVocab, " tokens (the fixed-point mass counter of the top-p select), got V = ", V);
  return edlm::Filter{top_k, top_p, min_p};
}

// x_t and x0 [B, L] int64 on one device; mask_id >= 0 (unmask, unmask_confident).
inline void check_unmask_tokens(const char* op, const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id) {
  TORCH_CHECK_TYPE(x_t.scalar_type() == at::kLong, op, ": x_t must be int64, got ", dtype_name(x_t.scalar_type()));
  TORCH_CHECK_TYPE(x0.scalar_type() == at::kLong, op, ": x0 must be int64, got ", dtype_name(x0.scalar_type()));
  TORCH_CHECK_VALUE(x_t.dim() == 2, op, ": x_t must be [B, L], got shape ", x_t.sizes());
  TORCH_CHECK_VALUE(x0.sizes() == x_t.sizes(), op, ": x0 must have the shape of x_t ", x_t.sizes(), ", got ",
                    x0.sizes());
  check_device(op, "x0", x0, x_t.device(), "x_t");
  TORCH_CHECK_VALUE(mask_id >= 0, op, ": mask_id must be >= 0, got ", mask_id);
}

// A per-row tensor argument: [B] on x_t's device (its dtype is checked by the caller).
inline void check_per_row(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x_t) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == x_t.size(0), op, ": ", name, " must have shape [B] = [",
                    x_t.size(0), "], got ", t.sizes());
  check_device(op, name, t, x_t.device(), "x_t");
}

// ---------------------------------------------------------------------------------
// The contracts

// masked_sample and sample_proposals: logits [B, L, V] float32/bfloat16/float16 with
// stride(-1) == 1 (V >= 1); x_t [B, L] int64 on the logits' device; mask_id in [0, V);
// the temperature and the filters; rng. Returns the filters as the kernels take them.
inline edlm::Filter check_sampling(const char* op, const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id,
                                   double temperature, int64_t top_k, double top_p, double min_p,
                                   const at::Tensor& rng) {
  const auto lt = logits.scalar_type();
  TORCH_CHECK_TYPE(lt == at::kFloat || lt == at::kBFloat16 || lt == at::kHalf, op,
                   ": logits must be float32, bfloat16 or float16, got ", dtype_name(lt));
  TORCH_CHECK_TYPE(x_t.scalar_type() == at::kLong, op, ": x_t must be int64, got ", dtype_name(x_t.scalar_type()));
  TORCH_CHECK_VALUE(logits.dim() == 3, op, ": logits must be [B, L, V], got shape ", logits.sizes());
  const int64_t V = logits.size(2);
  TORCH_CHECK_VALUE(V > 0, op, ": logits has an empty vocabulary (V = 0)");
  TORCH_CHECK_VALUE(V == 1 || logits.stride(2) == 1, op, ": logits.stride(-1) must be 1, got ", logits.stride(2));
  TORCH_CHECK_VALUE(x_t.dim() == 2 && x_t.size(0) == logits.size(0) && x_t.size(1) == logits.size(1), op,
                    ": x_t must have shape [B, L] = ", logits.sizes().slice(0, 2), ", got ", x_t.sizes());
  check_device(op, "x_t", x_t, logits.device(), "logits");
  TORCH_CHECK_VALUE(mask_id >= 0 && mask_id < V, op, ": mask_id = ", mask_id, " is outside [0, V = ", V, ")");
  check_temperature(op, temperature);
  const edlm::Filter filter = check_filters(op, top_k, top_p, min_p, V);
  check_rng(op, rng, logits.device());
  return filter;
}

inline edlm::Filter check_masked_sample(const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id,
                                        double temperature, int64_t top_k, double top_p, double min_p,
                                        bool /*want_entropy*/, const at::Tensor& rng) {
  return check_sampling("masked_sample", logits, x_t, mask_id, temperature, top_k, top_p, min_p, rng);
}

// sample_proposals: as masked_sample, and k >= 1 proposals.
inline edlm::Filter check_sample_proposals(const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id, int64_t k,
                                           double temperature, int64_t top_k, double top_p, double min_p,
                                           const at::Tensor& rng) {
  const edlm::Filter filter =
      check_sampling("sample_proposals", logits, x_t, mask_id, temperature, top_k, top_p, min_p, rng);
  TORCH_CHECK_VALUE(k >= 1, "sample_proposals: k must be >= 1, got ", k);
  return filter;
}

// importance_resample: log_w [B, k] float32/float64, proposals [B, k, L] int64, k >= 1,
// both on one device; rng.
inline void check_importance_resample(const at::Tensor& log_w, const at::Tensor& proposals, const at::Tensor& rng) {
  const char* op = "importance_resample";
  const auto wt = log_w.scalar_type();
  TORCH_CHECK_TYPE(wt == at::kFloat || wt == at::kDouble, op, ": log_w must be float32 or float64, got ",
                   dtype_name(wt));
  TORCH_CHECK_TYPE(proposals.scalar_type() == at::kLong, op, ": proposals must be int64, got ",
                   dtype_name(proposals.scalar_type()));
  TORCH_CHECK_VALUE(proposals.dim() == 3, op, ": proposals must be [B, k, L], got shape ", proposals.sizes());
  TORCH_CHECK_VALUE(log_w.dim() == 2 && log_w.size(0) == proposals.size(0) && log_w.size(1) == proposals.size(1), op,
                    ": log_w must have shape [B, k] = ", proposals.sizes().slice(0, 2), ", got ", log_w.sizes());
  TORCH_CHECK_VALUE(proposals.size(1) >= 1, op, ": k = 0 candidates");
  check_device(op, "log_w", log_w, proposals.device(), "proposals");
  check_rng(op, rng, proposals.device());
}

// unmask: x_t, x0 [B, L] int64; mask_id >= 0; p [B] float32/float64; rng; one device.
inline void check_unmask(const at::Tensor& x_t, const at::Tensor& x0, int64_t mask_id, const at::Tensor& p,
                         const at::Tensor& rng) {
  const char* op = "unmask";
  check_unmask_tokens(op, x_t, x0, mask_id);
  TORCH_CHECK_TYPE(p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble, op,
                   ": p must be float32 or float64, got ", dtype_name(p.scalar_type()));
  check_per_row(op, "p", p, x_t);
  check_rng(op, rng, x_t.device());
}

// unmask_confident: x_t, x0 [B, L] int64; confidence [B, L] float32/float64/bfloat16/
// float16; mask_id >= 0; exactly one of n ([B] int64) and threshold (not NaN); one device.
inline void check_unmask_confident(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& confidence,
                                   int64_t mask_id, const std::optional<at::Tensor>& n,
                                   std::optional<double> threshold) {
  const char* op = "unmask_confident";
  check_unmask_tokens(op, x_t, x0, mask_id);
  const auto ct = confidence.scalar_type();
  TORCH_CHECK_TYPE(ct == at::kFloat || ct == at::kDouble || ct == at::kBFloat16 || ct == at::kHalf, op,
                   ": confidence must be float32, float64, bfloat16 or float16, got ", dtype_name(ct));
  TORCH_CHECK_VALUE(confidence.sizes() == x_t.sizes(), op, ": confidence must have the shape of x_t ", x_t.sizes(),
                    ", got ", confidence.sizes());
  check_device(op, "confidence", confidence, x_t.device(), "x_t");
  TORCH_CHECK_VALUE(n.has_value() != threshold.has_value(), op, ": pass exactly one of n= and threshold=");
  if (n.has_value()) {
    TORCH_CHECK_TYPE(n->scalar_type() == at::kLong, op, ": n must be int64, got ", dtype_name(n->scalar_type()));
    check_per_row(op, "n", *n, x_t);
  } else {
    TORCH_CHECK_VALUE(!std::isnan(*threshold), op, ": threshold is NaN");
  }
}

}  // namespace edlm_ext
