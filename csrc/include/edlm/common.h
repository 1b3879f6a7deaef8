// Shared macros for torch-free kernel code (host and device).
//
// Three compilers see these headers: nvcc (the CUDA kernels, csrc/cuda/*.cu), the host
// C++ compiler (the CPU ops, csrc/cpu/*.cpp), and the host C++ compiler again for the
// CPU simulation of the CUDA execution model (csrc/sim, EDLM_CUDA_SIM defined by its
// shim header), which runs the .cuh kernels on fibers in the test suite.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define EDLM_HD __host__ __device__ __forceinline__
#define EDLM_DEVICE __device__ __forceinline__
#else
#define EDLM_HD inline
#define EDLM_DEVICE inline
#endif

// Block-scope shared memory. Kernels declare it through these two macros, never
// with a bare __shared__, so that the simulation can give every block fresh,
// poisoned storage of exactly the declared size (read-before-write and
// out-of-bounds accesses then show; see csrc/sim/README.md):
//   EDLM_SHARED(Type, name);          // __shared__ Type name;
//   EDLM_DYNAMIC_SHARED(Type, name);  // extern __shared__ Type name[]; (launch's smem bytes)
// Type may be an array type (EDLM_SHARED(float[32], buf)).
namespace edlm {
template <typename T>
using SharedType = T;
}  // namespace edlm
#if defined(EDLM_CUDA_SIM)
#define EDLM_SHARED(Type, name) ::edlm::SharedType<Type>& name = ::edlm_sim::block_shared<Type>([] {})
#define EDLM_DYNAMIC_SHARED(Type, name) Type* const name = ::edlm_sim::dynamic_shared<Type>()
#else
#define EDLM_SHARED(Type, name) __shared__ ::edlm::SharedType<Type> name
#define EDLM_DYNAMIC_SHARED(Type, name) extern __shared__ Type name[]
#endif

namespace edlm {

// log2(e): the sampling scale is c = log2(e) / T (edlm/temperature.h), in double until the
// kernels round it to float32.
constexpr double kLog2e = 1.4426950408889634;

// Element types of the tensors the kernels read, as the launch logic sees them (the
// torch-side launchers map at::ScalarType onto this; the simulation reads it from a case).
enum class DType : int { kFloat32, kFloat64, kBFloat16, kFloat16 };

// A run's random stream: the key and the stream index ("offset") of the
// counter-based generator. The kernels read them from a 2-element int64 array
// so that a seed drawn from a torch.Generator never needs a host round trip.
struct RngKey {
  uint64_t seed;
  uint64_t offset;
};

// The key of a contiguous int64 [seed, offset] array (host or device memory).
EDLM_HD RngKey load_rng_key(const int64_t* rng) {
  return RngKey{static_cast<uint64_t>(rng[0]), static_cast<uint64_t>(rng[1])};
}

}  // namespace edlm
