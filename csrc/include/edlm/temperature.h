// The temperature rule shared by every sampling backend (CPU ops, CUDA launchers, the
// CUDA simulation). Torch-free; host and device.
//
// Sampling at temperature T draws from softmax(l / T) through 2^((l - m) c) with
// c = log2(e) / T in float32. T = 0 means greedy: the argmax, with statistics (logp,
// entropy) under softmax(l).
#pragma once
#include "edlm/common.h"

namespace edlm {

// The valid sampling temperatures: 0 (greedy) or T in [kMinTemperature,
// kMaxTemperature]. Inside the range the kernels' float32 scale c = log2(e) / T is a
// normal float with ample headroom (so (l - m) c is never NaN and a term is 0 only
// when it underflows), and 1 / T is finite: every draw, logp and entropy is computed
// under T itself. Outside it the scale would overflow (T -> 0: not greedy, wrong
// statistics) or underflow to 0 (T -> inf: NaN terms, out-of-range ids). The launchers
// reject the rest (csrc/checks.h check_temperature), the Python
// wrappers (edlm_ext/ops.py, TEMPERATURE_RANGE) state and check the same range.
constexpr double kMinTemperature = 1e-30;
constexpr double kMaxTemperature = 1e30;


EDLM_HD bool is_greedy(double temperature) { return temperature == 0.0; }

struct Tempered {
  bool greedy;
  double inv_t;  // 1 / T; 1 when greedy (statistics at T = 1)
  float c;       // log2(e) * inv_t
};

EDLM_HD Tempered tempered(double temperature) {
  const bool greedy = is_greedy(temperature);
  const double inv_t = greedy ? 1.0 : 1.0 / temperature;
  return Tempered{greedy, inv_t, static_cast<float>(kLog2e * inv_t)};
}

}  // namespace edlm
