// The temperature rule shared by every sampling backend (CPU ops, CUDA launchers, the
// CUDA simulation). Torch-free; host and device.
//
// Sampling at temperature T draws from softmax(l / T) through 2^((l - m) c) with
// c = log2(e) / T in float32. T = 0 -- or a T so small that c overflows float32 --
// means greedy: the argmax, with statistics (logp, entropy) under softmax(l).
#pragma once
#include "edlm/common.h"

namespace edlm {

EDLM_HD bool is_greedy(double temperature) { return temperature == 0.0 || 1.4426950408889634 / temperature > 3.0e38; }

struct Tempered {
  bool greedy;
  double inv_t;  // 1 / T; 1 when greedy (statistics at T = 1)
  float c;       // log2(e) * inv_t
};

EDLM_HD Tempered tempered(double temperature) {
  const bool greedy = is_greedy(temperature);
  const double inv_t = greedy ? 1.0 : 1.0 / temperature;
  return Tempered{greedy, inv_t, static_cast<float>(1.4426950408889634 * inv_t)};
}

}  // namespace edlm
