// Test hooks over the counter-based generator (CPU only), registered under
// torch.ops.edlm_ext_testing — not part of the public torch.ops.edlm_ext namespace:
// raw Philox4x32-10 blocks (checked against published known-answer vectors), the
// per-row uniforms the samplers draw, so float64 references can replay a kernel's
// exact noise, and the same uniforms from each vectorized CPU path.
#include <ATen/ATen.h>

#include <string_view>

#include "../ops.h"
#include "edlm/cpu_philox.h"
#include "edlm/philox.h"

namespace edlm_ext {
namespace testing {
namespace {

edlm::RngKey cpu_key(const char* op, const at::Tensor& rng) {
  return edlm::load_rng_key(read_rng_key(op, rng, at::Device(at::kCPU)).data_ptr<int64_t>());
}

}  // namespace

// counters [N, 4] int64 (each a uint32 word), key [2] int64 (uint32 words) -> [N, 4] int64.
at::Tensor philox4x32(const at::Tensor& counters, const at::Tensor& key) {
  TORCH_CHECK_VALUE(counters.dim() == 2 && counters.size(1) == 4 && counters.scalar_type() == at::kLong,
                    "philox4x32: counters must be int64 [N, 4]");
  TORCH_CHECK_VALUE(key.numel() == 2 && key.scalar_type() == at::kLong, "philox4x32: key must be int64 [2]");
  auto c = counters.contiguous();
  auto k = key.contiguous();
  auto out = at::empty_like(c);
  const int64_t* cp = c.data_ptr<int64_t>();
  const int64_t* kp = k.data_ptr<int64_t>();
  int64_t* op = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < c.size(0); ++i) {
    const edlm::U32x4 r = edlm::philox4x32_10(
        edlm::U32x4{static_cast<uint32_t>(cp[4 * i]), static_cast<uint32_t>(cp[4 * i + 1]),
                    static_cast<uint32_t>(cp[4 * i + 2]), static_cast<uint32_t>(cp[4 * i + 3])},
        static_cast<uint32_t>(kp[0]), static_cast<uint32_t>(kp[1]));
    op[4 * i] = r.x;
    op[4 * i + 1] = r.y;
    op[4 * i + 2] = r.z;
    op[4 * i + 3] = r.w;
  }
  return out;
}

// The uniforms drawn for rows [0, rows) at rng = [seed, offset] and stream
// domain + offset (see edlm/philox.h) -> [rows] float64.
at::Tensor row_uniforms(const at::Tensor& rng, int64_t rows, int64_t stream) {
  TORCH_CHECK_VALUE(rows >= 0, "row_uniforms: rows must be >= 0");
  const edlm::RngKey key = cpu_key("row_uniforms", rng);
  auto out = at::empty({rows}, rng.options().dtype(at::kDouble));
  double* op = out.data_ptr<double>();
  const uint64_t st = static_cast<uint64_t>(stream) + key.offset;
  for (int64_t i = 0; i < rows; ++i) op[i] = edlm::row_uniform(key, static_cast<uint64_t>(i), st);
  return out;
}

// The uniforms for counters rows [N] int64 (as uint64) at rng = [seed, offset] and
// stream + offset, by the batched CPU path simd ("scalar", "avx2", "avx512"; see
// edlm/cpu_philox.h) -> [N] float64. A path this CPU lacks is an error.
at::Tensor philox_uniforms(const at::Tensor& rng, const at::Tensor& rows, int64_t stream, c10::string_view simd) {
  const edlm::RngKey key = cpu_key("philox_uniforms", rng);
  TORCH_CHECK_VALUE(rows.dim() == 1 && rows.scalar_type() == at::kLong, "philox_uniforms: rows must be int64 [N]");
  using edlm::cpu::Simd;
  const std::string_view name(simd.data(), simd.size());
  const Simd level = name == "avx512" ? Simd::kAvx512 : name == "avx2" ? Simd::kAvx2 : Simd::kScalar;
  TORCH_CHECK_VALUE(name == "scalar" || name == "avx2" || name == "avx512", "philox_uniforms: unknown simd '", name,
                    "'");
  TORCH_CHECK_VALUE(static_cast<int>(level) <= static_cast<int>(edlm::cpu::best_simd()),
                    "philox_uniforms: this CPU has no ", name);
  auto c = rows.contiguous();
  auto out = at::empty({c.size(0)}, rows.options().dtype(at::kDouble));
  edlm::cpu::uniforms_for_rows(key, static_cast<uint64_t>(stream) + key.offset,
                               reinterpret_cast<const uint64_t*>(c.data_ptr<int64_t>()), c.size(0),
                               out.data_ptr<double>(), level);
  return out;
}

}  // namespace testing
}  // namespace edlm_ext
