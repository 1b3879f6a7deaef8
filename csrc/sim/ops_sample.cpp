// Simulation runner of masked_sample / sample_proposals: the case's tensors through
// edlm::cuda::launch_sample, the launch logic csrc/cuda/masked_sample.cu runs.
#include "shim/cuda_sim.h"
// (the shim first: the kernels below compile against it)
#include "case_io.h"
#include "edlm/masked_sample_launch.cuh"
#include "launcher.h"

namespace edlm_sim {

Result run_sample(const Case& c) {
  const int64_t B = c.i("B"), L = c.i("L"), V = c.i("V"), k = c.i("k");
  const auto dtype = static_cast<edlm::DType>(c.i("dtype"));
  const size_t esize = dtype == edlm::DType::kFloat32 ? 4 : 2;
  const edlm::Filter filter{c.i("top_k"), c.f("top_p"), c.f("min_p")};
  const bool want_entropy = c.i("want_entropy") != 0;
  Result r;
  int64_t* tokens = r.output<int64_t>("tokens", B * k * L);
  float* logp = r.output<float>("logp", B * k * L);
  float* entropy = want_entropy ? r.output<float>("entropy", B * L) : nullptr;
  const edlm::cuda::SampleProblem p{dtype,          c.at_bytes("logits", esize), c.i("sb"),     c.i("sl"),
                                    c.at<const int64_t>("xt"), c.i("xsb"),   c.i("xsl"),   B,
                                    L,              V,           c.i("mask_id"), k,
                                    c.f("temperature"), filter,  c.at<const int64_t>("rng"), tokens,
                                    logp,           entropy};
  SimLauncher launch;
  try {
    edlm::cuda::launch_sample(p, launch);
  } catch (const LaunchRejected& e) {
    return Result{std::string("rejected ") + e.what(), {}};
  }
  return r;
}

}  // namespace edlm_sim
