// A tile's reference: the one rule (host, device, and the CPU's row loops in
// csrc/cpu/cpu_tiles.cpp) by which a tile's terms are made from its max. Torch-free.
#pragma once
#include <cmath>

#include "edlm/common.h"

namespace edlm {

// A tile's terms are 2^(l c - b) with b = fl(m_t c), computed as fma(l, c, -b): one
// instruction and one rounding. b differs from m_t c by at most half an ulp of b, an offset
// common to the tile that the row prefix takes out exactly (tile_ref_offset). Past
// |b| = 2^22 that offset could reach 1/4 and more (extreme temperatures), so such a tile
// falls back to the unfused (l - m_t) c (offset 0).
constexpr float kFusedRefLimit = 0x1.0p22f;

struct TileRef {
  float b;     // fused: the reference fl(m_t c); unfused: m_t
  bool fused;
};

EDLM_HD TileRef tile_ref(float mt, float c) {
  if (mt == -INFINITY) return TileRef{0.0f, true};  // every term is 2^-inf = 0
  const float b = mt * c;
  return fabsf(b) <= kFusedRefLimit ? TileRef{b, true} : TileRef{mt, false};
}

}  // namespace edlm
