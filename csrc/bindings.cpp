// The extension module edlm_ext._C: build information and the CPU's vector path
// (pybind11), and the one block of op schemas (TORCH_LIBRARY). Implementations register per backend in
// csrc/cpu/*.cpp and csrc/cuda/*.cu.
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include "edlm/cpu_philox.h"

#ifndef EDLM_TORCH_VERSION
#define EDLM_TORCH_VERSION "unknown"
#endif
#ifndef EDLM_CUDA_VERSION
#define EDLM_CUDA_VERSION ""
#endif
#ifndef EDLM_CUDA_ARCHS
#define EDLM_CUDA_ARCHS ""
#endif

TORCH_LIBRARY(edlm_ext, m) {
  // Exact draw of every masked row of logits [B,L,V] (temperature, filters); rng = [seed, offset] -> (x0, logp, entropy [B,L] or [0,L]).
  m.def("masked_sample(Tensor logits, Tensor x_t, int mask_id, float temperature, int top_k, float top_p, float min_p, bool want_entropy, Tensor rng) -> (Tensor, Tensor, Tensor)");
  // k independent exact draws per masked row from one read of logits -> (proposals [B,k,L], logp [B,k,L]).
  m.def("sample_proposals(Tensor logits, Tensor x_t, int mask_id, int k, float temperature, int top_k, float top_p, float min_p, Tensor rng) -> (Tensor, Tensor)");
  // Per row b: normalize log_w [B,k], draw index ~ Cat(weights), gather proposals[b, index] -> (weights, log_z, ess, index, chosen).
  m.def("importance_resample(Tensor log_w, Tensor proposals, Tensor rng) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Philox4x32-10 blocks for counters [N,4] under key [2] (test hook, CPU).
  m.def("philox4x32(Tensor counters, Tensor key) -> Tensor");
  // The uniforms drawn for rows [0, rows) at rng, stream = stream + offset (test hook, CPU).
  m.def("row_uniforms(Tensor rng, int rows, int stream=0) -> Tensor");
  // The uniforms for counters rows [N] by the batched CPU path simd: scalar, avx2, avx512 (test hook, CPU).
  m.def("philox_uniforms(Tensor rng, Tensor rows, int stream, str simd) -> Tensor");
  // Posterior unmasking: each masked x_t position takes x0 when its Philox uniform < p[b]; p [B] float.
  m.def("unmask(Tensor x_t, Tensor x0, int mask_id, Tensor p, Tensor rng) -> Tensor");
  // The n[b] most confident masked positions take x0, or those above threshold (at least one per row).
  m.def("unmask_confident(Tensor x_t, Tensor x0, Tensor confidence, int mask_id, Tensor? n, float? threshold) "
        "-> Tensor");
}

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "edlm_ext native module: ops are registered under torch.ops.edlm_ext";
  m.def("build_info", []() {
    py::dict d;
    py::list backends;
    backends.append("cpu");
#ifdef EDLM_WITH_CUDA
    backends.append("cuda");
#endif
    d["backends"] = backends;
    d["torch_version"] = EDLM_TORCH_VERSION;
    d["cuda_version"] = std::string(EDLM_CUDA_VERSION).empty() ? py::object(py::none()) : py::str(EDLM_CUDA_VERSION);
    d["cuda_archs"] = py::str(EDLM_CUDA_ARCHS);
    return d;
  });
  m.def("cpu_simd", []() {
    switch (edlm::cpu::best_simd()) {
      case edlm::cpu::Simd::kAvx512: return "avx512";
      case edlm::cpu::Simd::kAvx2: return "avx2";
      default: return "scalar";
    }
  }, "The widest instruction set of the CPU kernels' vectorized paths on this CPU.");
}
