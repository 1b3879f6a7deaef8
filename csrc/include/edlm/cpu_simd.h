// The vector instruction sets of the CPU kernels (edlm/cpu_philox.h, edlm/cpu_tiles.h) and
// the one run-time choice between them. Defined in csrc/cpu/cpu_simd.cpp. Torch-free.
//
// Every path gives bit-identical results (the same lane operations in the same order), so
// the choice changes speed only. EDLM_CPU_SIMD=scalar|avx2|avx512 in the environment caps
// it (read once, at the first call; tests run the narrower paths through it).
#pragma once

namespace edlm {
namespace cpu {

// Instruction sets, narrowest first.
enum class Simd : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// The widest Simd this CPU runs (AVX2 counts with FMA and F16C; AVX-512 with F, BW, DQ,
// VL), capped by EDLM_CPU_SIMD when set.
Simd best_simd();

// "scalar", "avx2", "avx512".
const char* simd_name(Simd s);

}  // namespace cpu
}  // namespace edlm
