// The CUDA shim of the CPU simulation: what the kernels of csrc/include/edlm/*.cuh use
// (keywords, built-in variables, vector types, barriers, warp collectives, atomics,
// bit casts, half/bfloat16, math), as ordinary C++20 on top of the fiber runtime in
// runtime.h. Every CUDA thread is a fiber; see csrc/sim/README.md for what is modeled.
//
// Included first by every simulated translation unit (and by the shim's cuda_fp16.h /
// cuda_bf16.h, which stand in for the CUDA toolkit's headers of those names).
#pragma once
#include <math.h>  // the float overloads of fmax, exp2, ... in the global namespace, as in CUDA

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#define EDLM_CUDA_SIM 1

// ---- keywords ---------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// A bare __shared__ would be one static shared by every block and never poisoned:
// kernels use EDLM_SHARED / EDLM_DYNAMIC_SHARED (edlm/common.h) instead.
#define __shared__ _Pragma("GCC error \"use EDLM_SHARED / EDLM_DYNAMIC_SHARED (edlm/common.h), not __shared__\"")

// ---- vector and index types ---------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
// alignas as in CUDA's vector_types.h: UBSan's alignment check then catches a
// misaligned vector access anywhere, not only through __ldg.
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(8) uint2 {
  unsigned int x, y;
};
struct alignas(16) double2 {
  double x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
constexpr int warpSize = 32;

#include "runtime.h"

#define threadIdx (::edlm_sim::thread_idx())
#define blockIdx (::edlm_sim::block_idx())
#define blockDim (::edlm_sim::block_dim())
#define gridDim (::edlm_sim::grid_dim())

// ---- barriers and warp collectives (checked: runtime.cpp) ---------------------------
using edlm_sim_loc = std::source_location;

inline void __syncthreads(edlm_sim_loc loc = edlm_sim_loc::current()) { edlm_sim::syncthreads(loc); }
inline void __syncwarp(unsigned mask = 0xffffffffu, edlm_sim_loc loc = edlm_sim_loc::current()) {
  edlm_sim::Payload none{};
  edlm_sim::collective(edlm_sim::Coll::kSyncwarp, mask, 0, 32, none, &none, loc);
}

namespace edlm_sim {
template <typename T>
inline T shuffle(Coll kind, unsigned mask, T var, int arg, int width, edlm_sim_loc loc) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kPayloadBytes, "shuffle of an unsupported type");
  Payload in{}, out{};
  std::memcpy(&in, &var, sizeof(T));
  collective(kind, mask, arg, width, in, &out, loc);
  T r;
  std::memcpy(&r, &out, sizeof(T));
  return r;
}
}  // namespace edlm_sim

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, edlm_sim_loc loc = edlm_sim_loc::current()) {
  return edlm_sim::shuffle(edlm_sim::Coll::kShfl, mask, var, src_lane, width, loc);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        edlm_sim_loc loc = edlm_sim_loc::current()) {
  return edlm_sim::shuffle(edlm_sim::Coll::kShflUp, mask, var, static_cast<int>(delta), width, loc);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          edlm_sim_loc loc = edlm_sim_loc::current()) {
  return edlm_sim::shuffle(edlm_sim::Coll::kShflDown, mask, var, static_cast<int>(delta), width, loc);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         edlm_sim_loc loc = edlm_sim_loc::current()) {
  return edlm_sim::shuffle(edlm_sim::Coll::kShflXor, mask, var, lane_mask, width, loc);
}
inline unsigned __ballot_sync(unsigned mask, int pred, edlm_sim_loc loc = edlm_sim_loc::current()) {
  const edlm_sim::Payload p{{pred != 0 ? 1u : 0u, 0}};
  edlm_sim::Payload unused{};
  return static_cast<unsigned>(edlm_sim::collective(edlm_sim::Coll::kBallot, mask, 0, 32, p, &unused, loc));
}
inline int __any_sync(unsigned mask, int pred, edlm_sim_loc loc = edlm_sim_loc::current()) {
  const edlm_sim::Payload p{{pred != 0 ? 1u : 0u, 0}};
  edlm_sim::Payload unused{};
  return static_cast<int>(edlm_sim::collective(edlm_sim::Coll::kAny, mask, 0, 32, p, &unused, loc));
}
inline int __all_sync(unsigned mask, int pred, edlm_sim_loc loc = edlm_sim_loc::current()) {
  const edlm_sim::Payload p{{pred != 0 ? 1u : 0u, 0}};
  edlm_sim::Payload unused{};
  return static_cast<int>(edlm_sim::collective(edlm_sim::Coll::kAll, mask, 0, 32, p, &unused, loc));
}
// The lanes of this warp that have not exited (no divergence is modeled between barriers).
inline unsigned __activemask() { return edlm_sim::active_mask(); }

// ---- loads ----------------------------------------------------------------------------
// __ldg: a read-only load; a vector load must be aligned to its size (a misaligned
// LDG.E.128 faults on the GPU), which is checked here in every build.
template <typename T>
inline T __ldg(const T* p, edlm_sim_loc loc = edlm_sim_loc::current()) {
  edlm_sim::check_aligned(p, alignof(T), sizeof(T), loc);
  return *p;
}

// ---- atomics (real atomics, so ThreadSanitizer sees them as such) ----------------------
#define EDLM_SIM_INT_ATOMICS(T)                                                                         \
  inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }                  \
  inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }                  \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                  \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                    \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                  \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }                \
  inline T atomicCAS(T* a, T expected, T desired) {                                                     \
    __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);      \
    return expected;                                                                                    \
  }                                                                                                     \
  inline T atomicMax(T* a, T v) {                                                                       \
    T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                       \
    while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
      ;                                                                                                 \
    return old;                                                                                         \
  }                                                                                                     \
  inline T atomicMin(T* a, T v) {                                                                       \
    T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                       \
    while (v < old && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
      ;                                                                                                 \
    return old;                                                                                         \
  }
EDLM_SIM_INT_ATOMICS(int)
EDLM_SIM_INT_ATOMICS(unsigned int)
EDLM_SIM_INT_ATOMICS(unsigned long long)
EDLM_SIM_INT_ATOMICS(long long)
#undef EDLM_SIM_INT_ATOMICS

template <typename F>
inline F edlm_sim_atomic_float_add(F* a, F v) {
  using U = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
  U* p = reinterpret_cast<U*>(a);
  U old = __atomic_load_n(p, __ATOMIC_RELAXED), next;
  do {
    F f;
    std::memcpy(&f, &old, sizeof f);
    f += v;
    std::memcpy(&next, &f, sizeof f);
  } while (!__atomic_compare_exchange_n(p, &old, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  F f;
  std::memcpy(&f, &old, sizeof f);
  return f;
}
inline float atomicAdd(float* a, float v) { return edlm_sim_atomic_float_add(a, v); }
inline double atomicAdd(double* a, double v) { return edlm_sim_atomic_float_add(a, v); }

// ---- bit casts and integer intrinsics ---------------------------------------------------
template <typename To, typename From>
inline To edlm_sim_bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From));
  To y;
  std::memcpy(&y, &x, sizeof y);
  return y;
}
inline unsigned int __float_as_uint(float x) { return edlm_sim_bit_cast<unsigned int>(x); }
inline float __uint_as_float(unsigned int x) { return edlm_sim_bit_cast<float>(x); }
inline int __float_as_int(float x) { return edlm_sim_bit_cast<int>(x); }
inline float __int_as_float(int x) { return edlm_sim_bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return edlm_sim_bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return edlm_sim_bit_cast<double>(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}

// ---- math: the host libm's (correctly rounded or nearly so); CUDA's exp2f / expf / log
// are within 2 ulp of these but not bit-identical, so the simulation does not model
// their exact bits (csrc/sim/README.md).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __exp2f(float x) { return exp2f(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
