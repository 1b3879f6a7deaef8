// Vectorized inner loops of the CPU kernels over one tile of float32 values.
// Defined in csrc/cpu/tile_kernels.cpp, compiled for several instruction sets
// and picked at load time. Torch-free.
#pragma once
#include <cstdint>

namespace edlm {
namespace cpu {

// Tile width of the CPU samplers (elements of one logits row per tile).
constexpr int kTile = 256;
// Vector width of the loops: n below is a multiple of kWidth, the caller pads
// its buffer with -inf (which adds nothing to a max or a sum of exponentials).
constexpr int kWidth = 8;

// max(buf[0..n)); sets *has_nan when any element is NaN (NaN is skipped by the max).
float tile_max(const float* buf, int n, bool* has_nan);

// sum_i 2^((buf[i] - base) * c) for a base >= every buf[i] (so each term is <= 1);
// terms below 2^-126 count as 0.
float tile_exp2_sum(const float* buf, int n, float base, float c);

// out[i] = 2^((buf[i] - base) * c), the same terms tile_exp2_sum adds up.
void tile_exp2(const float* buf, int n, float base, float c, float* out);

// out[i] = in[i] decoded from bfloat16 / IEEE half bits (exact).
void bf16_to_float(const uint16_t* in, int n, float* out);
void f16_to_float(const uint16_t* in, int n, float* out);

}  // namespace cpu
}  // namespace edlm
