// Shared macros for torch-free kernel code (host and device).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define EDLM_HD __host__ __device__ __forceinline__
#define EDLM_DEVICE __device__ __forceinline__
#else
#define EDLM_HD inline
#endif

namespace edlm {

// A run's random stream: the key and the stream index ("offset") of the
// counter-based generator. The kernels read them from a 2-element int64 array
// so that a seed drawn from a torch.Generator never needs a host round trip.
struct RngKey {
  uint64_t seed;
  uint64_t offset;
};

}  // namespace edlm
