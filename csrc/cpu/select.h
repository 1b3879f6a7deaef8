// A branch-free select for the CPU unmasking loops (unmask.cpp, unmask_confident.cpp).
#pragma once
#include <cstdint>

namespace edlm_ext {
namespace cpu {

// a if pick else b, without a branch: the picks are unpredictable, and compilers
// tend to turn `pick ? a : b` with a load on one side into a branch.
inline int64_t select(bool pick, int64_t a, int64_t b) {
  const int64_t all = -static_cast<int64_t>(pick);
  return (a & all) | (b & ~all);
}

}  // namespace cpu
}  // namespace edlm_ext
