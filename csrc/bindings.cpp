// The map of the extension edlm_ext._C: every op's schema with its CPU and CUDA
// registrations side by side (TORCH_LIBRARY), the test hooks in their own library,
// and the pybind11 module (build information, the ops' contracts for their fakes).
//
// Every op's pieces, by its name (the README's "Layout" has the same table; the test
// tests/test_op_registry.py checks both against the registered schemas and the tree):
//   schema + registration  csrc/bindings.cpp (below)
//   contract (checks)      csrc/checks.h, check_<op>
//   entry (checks, outputs, then the backend)  csrc/ops.h, template <op><Backend>
//   wrapper + its fake     edlm_ext/ops.py, <op> and the fake right under it
//   float64 reference      edlm_ext/reference.py, reference.<op>
// and, per op (csrc/, csrc/include/edlm/, tests/, python/bench/):
// | op | CPU, CUDA backends | kernels and launch logic | tests | bench |
// | --- | --- | --- | --- | --- |
// | masked_sample | cpu/masked_sample.cpp, cuda/masked_sample.cu | masked_sample.h, masked_sample_cuda.cuh, masked_sample_launch.cuh, filter.h, filter_cuda.cuh | test_masked_sample.py, test_masked_sample_api.py, test_masked_sample_stats.py, test_filters.py | bench_sampling.py |
// | sample_proposals | cpu/sample_proposals.cpp, cuda/sample_proposals.cu | masked_sample.h, masked_sample_cuda.cuh, masked_sample_launch.cuh | test_sample_proposals.py | bench_proposals.py |
// | importance_resample | cpu/importance_resample.cpp, cuda/importance_resample.cu | importance_resample.h, importance_resample_cuda.cuh, importance_resample_launch.cuh | test_importance_resample.py | bench_proposals.py |
// | unmask | cpu/unmask.cpp, cuda/unmask.cu | unmask.h, unmask_cuda.cuh, unmask_launch.cuh | test_unmask.py, test_unmask_api.py | bench_unmask.py |
// | unmask_confident | cpu/unmask_confident.cpp, cuda/unmask_confident.cu | unmask_confident.h, unmask_confident_cuda.cuh, unmask_confident_launch.cuh | test_unmask_confident.py, test_unmask_api.py | bench_unmask.py |
// Shared by all: csrc/include/edlm/philox.h (the counter RNG and its stream domains),
// common.h, numeric.h, temperature.h, tile_ref.h, launch.h, block_primitives.cuh, radix_select.h,
// cpu_simd.h, cpu_philox.h, cpu_tiles.h;
// csrc/cuda/launcher.cuh (the CUDA Launcher); edlm_ext/_rng.py (generator= / seed=).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

#include <string>
#include <utility>

#include "checks.h"
#include "edlm/cpu_philox.h"
#include "edlm/filter.h"
#include "edlm/temperature.h"
#include "ops.h"

#ifndef EDLM_TORCH_VERSION
#define EDLM_TORCH_VERSION "unknown"
#endif
#ifndef EDLM_CUDA_VERSION
#define EDLM_CUDA_VERSION ""
#endif
#ifndef EDLM_CUDA_ARCHS
#define EDLM_CUDA_ARCHS ""
#endif

// The CUDA registration of an op, in CUDA builds only.
#ifdef EDLM_WITH_CUDA
#define EDLM_IMPL_CUDA(m, name, fn) m.impl(name, c10::DeviceType::CUDA, TORCH_FN(fn))
#else
#define EDLM_IMPL_CUDA(m, name, fn)
#endif

namespace edlm_ext {

TORCH_LIBRARY(edlm_ext, m) {
  // masked_sample: one exact draw per masked row of logits [B, L, V] under temperature and
  // filters; rng = [seed, offset] -> (x0 [B, L], logp [B, L], entropy [B, L] or [0, L]).
  m.def("masked_sample(Tensor logits, Tensor x_t, int mask_id, float temperature, int top_k, float top_p, "
        "float min_p, bool want_entropy, Tensor rng) -> (Tensor, Tensor, Tensor)");
  m.impl("masked_sample", c10::DeviceType::CPU, TORCH_FN(masked_sample<Cpu>));
  EDLM_IMPL_CUDA(m, "masked_sample", masked_sample<Cuda>);

  // sample_proposals: k independent exact draws per masked row from one read of logits
  // -> (proposals [B, k, L], logp [B, k, L]).
  m.def("sample_proposals(Tensor logits, Tensor x_t, int mask_id, int k, float temperature, int top_k, "
        "float top_p, float min_p, Tensor rng) -> (Tensor, Tensor)");
  m.impl("sample_proposals", c10::DeviceType::CPU, TORCH_FN(sample_proposals<Cpu>));
  EDLM_IMPL_CUDA(m, "sample_proposals", sample_proposals<Cuda>);

  // importance_resample: per row b, normalize log_w [B, k], draw index ~ Cat(weights), gather
  // proposals[b, index] -> (weights [B, k], log_z [B], ess [B], index [B], chosen [B, L]).
  m.def("importance_resample(Tensor log_w, Tensor proposals, Tensor rng) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.impl("importance_resample", c10::DeviceType::CPU, TORCH_FN(importance_resample<Cpu>));
  EDLM_IMPL_CUDA(m, "importance_resample", importance_resample<Cuda>);

  // unmask: posterior unmasking; each masked x_t position takes x0 when its Philox uniform
  // is < p[b] (p [B] float) -> x_s [B, L].
  m.def("unmask(Tensor x_t, Tensor x0, int mask_id, Tensor p, Tensor rng) -> Tensor");
  m.impl("unmask", c10::DeviceType::CPU, TORCH_FN(unmask<Cpu>));
  EDLM_IMPL_CUDA(m, "unmask", unmask<Cuda>);

  // unmask_confident: the n[b] most confident masked positions take x0, or those above
  // threshold (at least one per row) -> x_s [B, L].
  m.def("unmask_confident(Tensor x_t, Tensor x0, Tensor confidence, int mask_id, Tensor? n, float? threshold) "
        "-> Tensor");
  m.impl("unmask_confident", c10::DeviceType::CPU, TORCH_FN(unmask_confident<Cpu>));
  EDLM_IMPL_CUDA(m, "unmask_confident", unmask_confident<Cuda>);
}

// Test hooks, CPU only, outside the public namespace (csrc/cpu/testing.cpp).
TORCH_LIBRARY(edlm_ext_testing, m) {
  // philox4x32: Philox4x32-10 blocks for counters [N, 4] under key [2].
  m.def("philox4x32(Tensor counters, Tensor key) -> Tensor");
  m.impl("philox4x32", c10::DeviceType::CPU, TORCH_FN(testing::philox4x32));
  // row_uniforms: the uniforms drawn for rows [0, rows) at rng, stream = stream + offset.
  m.def("row_uniforms(Tensor rng, int rows, int stream=0) -> Tensor");
  m.impl("row_uniforms", c10::DeviceType::CPU, TORCH_FN(testing::row_uniforms));
  // philox_uniforms: the uniforms for counters rows [N] by the batched CPU path simd
  // (scalar, avx2, avx512).
  m.def("philox_uniforms(Tensor rng, Tensor rows, int stream, str simd) -> Tensor");
  m.impl("philox_uniforms", c10::DeviceType::CPU, TORCH_FN(testing::philox_uniforms));
}

namespace {

namespace py = pybind11;

// f(args...) with c10's typed errors as the Python exceptions the dispatcher raises
// for them (TypeError, ValueError, IndexError), so a fake reports exactly what the op does.
template <typename... A>
auto translated(void (*f)(A...)) {
  return [f](A... args) {
    try {
      f(std::forward<A>(args)...);
    } catch (const c10::TypeError& e) {
      throw py::type_error(e.what_without_backtrace());
    } catch (const c10::ValueError& e) {
      throw py::value_error(e.what_without_backtrace());
    } catch (const c10::IndexError& e) {
      throw py::index_error(e.what_without_backtrace());
    } catch (const c10::Error& e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  };
}

// The contracts as void functions (the fakes need the errors, not the values).
void masked_sample_contract(const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id, double temperature,
                            int64_t top_k, double top_p, double min_p, bool want_entropy, const at::Tensor& rng) {
  check_masked_sample(logits, x_t, mask_id, temperature, top_k, top_p, min_p, want_entropy, rng);
}
void sample_proposals_contract(const at::Tensor& logits, const at::Tensor& x_t, int64_t mask_id, int64_t k,
                               double temperature, int64_t top_k, double top_p, double min_p, const at::Tensor& rng) {
  check_sample_proposals(logits, x_t, mask_id, k, temperature, top_k, top_p, min_p, rng);
}
void temperature_contract(const std::string& op, double temperature) { check_temperature(op.c_str(), temperature); }

}  // namespace
}  // namespace edlm_ext

PYBIND11_MODULE(_C, m) {
  namespace py = pybind11;
  using namespace edlm_ext;
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
  m.def("limits", []() {
    py::dict d;
    d["min_temperature"] = edlm::kMinTemperature;
    d["max_temperature"] = edlm::kMaxTemperature;
    d["max_top_p_vocab"] = edlm::kMaxTopPVocab;
    return d;
  }, "The ranges the ops' contracts enforce (csrc/checks.h).");

  // The ops' contracts (csrc/checks.h), same arguments as their schemas; raise what the op raises.
  m.def("check_masked_sample", translated(&masked_sample_contract));
  m.def("check_sample_proposals", translated(&sample_proposals_contract));
  m.def("check_importance_resample", translated(&check_importance_resample));
  m.def("check_unmask", translated(&check_unmask));
  m.def("check_unmask_confident", translated(&check_unmask_confident));
  m.def("check_temperature", translated(&temperature_contract),
        "The temperature rule of the sampling ops: 0 (greedy) or in [min, max] of limits().");
}
