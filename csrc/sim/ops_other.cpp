// Simulation runners of importance_resample, unmask and unmask_confident: the case's
// tensors through the launch logic the CUDA launchers run (edlm/*_launch.cuh).
#include "shim/cuda_sim.h"
// (the shim first: the kernels below compile against it)
#include "case_io.h"
#include "edlm/importance_resample_launch.cuh"
#include "edlm/unmask_confident_launch.cuh"
#include "edlm/unmask_launch.cuh"
#include "launcher.h"

namespace edlm_sim {
namespace {

size_t dtype_size(edlm::DType d) {
  return d == edlm::DType::kFloat64 ? 8 : d == edlm::DType::kFloat32 ? 4 : 2;
}

template <typename Problem, typename Launch>
Result run(Result r, const Problem& p, Launch launch_fn) {
  SimLauncher launch;
  try {
    launch_fn(p, launch);
  } catch (const LaunchRejected& e) {
    return Result{std::string("rejected ") + e.what(), {}};
  }
  return r;
}

}  // namespace

Result run_importance_resample(const Case& c) {
  const int64_t B = c.i("B"), k = c.i("k"), L = c.i("L");
  const auto dtype = static_cast<edlm::DType>(c.i("dtype"));
  const size_t ws = dtype_size(dtype);
  Result r;
  void* weights = r.output<unsigned char>("weights", B * k * ws);
  void* log_z = r.output<unsigned char>("log_z", B * ws);
  void* ess = r.output<unsigned char>("ess", B * ws);
  int64_t* index = r.output<int64_t>("index", B);
  int64_t* chosen = r.output<int64_t>("chosen", B * L);
  const edlm::cuda::ResampleProblem p{dtype,  c.at_bytes("log_w", ws), c.at<const int64_t>("props"),
                                      c.i("ps0"), c.i("ps1"), c.i("ps2"), B, k, L, c.at<const int64_t>("rng"),
                                      weights, log_z, ess, index, chosen};
  return run(std::move(r), p, [](const auto& q, auto& l) { edlm::cuda::launch_importance_resample(q, l); });
}

Result run_unmask(const Case& c) {
  const int64_t B = c.i("B"), L = c.i("L");
  const auto p_dtype = static_cast<edlm::DType>(c.i("p_dtype"));
  Result r;
  int64_t* out = r.output<int64_t>("out", B * L);
  const edlm::cuda::UnmaskProblem p{c.at<const int64_t>("xt"), c.i("xsb"), c.i("xsl"),
                                    c.at<const int64_t>("x0"), c.i("zsb"), c.i("zsl"),
                                    p_dtype, c.at_bytes("p", dtype_size(p_dtype)), c.i("ps"),
                                    B, L, c.i("mask_id"), c.at<const int64_t>("rng"), out};
  return run(std::move(r), p, [](const auto& q, auto& l) { edlm::cuda::launch_unmask(q, l); });
}

Result run_unmask_confident(const Case& c) {
  const int64_t B = c.i("B"), L = c.i("L");
  const auto conf_dtype = static_cast<edlm::DType>(c.i("conf_dtype"));
  const bool use_threshold = c.i("use_threshold") != 0;
  Result r;
  int64_t* out = r.output<int64_t>("out", B * L);
  const edlm::cuda::ConfidentProblem p{c.at<const int64_t>("xt"), c.i("xsb"), c.i("xsl"),
                                       c.at<const int64_t>("x0"), c.i("zsb"), c.i("zsl"),
                                       conf_dtype, c.at_bytes("conf", dtype_size(conf_dtype)), c.i("csb"), c.i("csl"),
                                       use_threshold ? nullptr : c.at<const int64_t>("n"), c.i("ns", 0),
                                       use_threshold, use_threshold ? c.f("threshold") : 0.0,
                                       B, L, c.i("mask_id"), out};
  return run(std::move(r), p, [](const auto& q, auto& l) { edlm::cuda::launch_unmask_confident(q, l); });
}

}  // namespace edlm_sim
