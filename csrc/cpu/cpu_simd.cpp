// edlm::cpu::best_simd (edlm/cpu_simd.h): what the CPU runs, capped by EDLM_CPU_SIMD.
#include "edlm/cpu_simd.h"

#include <cstdlib>
#include <cstring>

namespace edlm {
namespace cpu {
namespace {

Simd detect() {
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return Simd::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Simd::kAvx2;
#endif
  return Simd::kScalar;
}

Simd capped(Simd best) {
  const char* cap = std::getenv("EDLM_CPU_SIMD");
  if (cap == nullptr || *cap == '\0') return best;
  Simd want = best;
  if (std::strcmp(cap, "scalar") == 0) want = Simd::kScalar;
  else if (std::strcmp(cap, "avx2") == 0) want = Simd::kAvx2;
  else if (std::strcmp(cap, "avx512") == 0) want = Simd::kAvx512;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;  // a cap never adds a path
}

}  // namespace

Simd best_simd() {
  static const Simd best = capped(detect());
  return best;
}

const char* simd_name(Simd s) {
  switch (s) {
    case Simd::kAvx512: return "avx512";
    case Simd::kAvx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace cpu
}  // namespace edlm
