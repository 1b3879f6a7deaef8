// The simulation's self-test: small kernels with planted bugs that the harness must
// report, and correct kernels it must pass. `edlm_sim selftest NAME` runs one;
// tests/test_cuda_sim_selftest.py runs each in the build and fiber order where its
// detector lives and checks the report (a simulator that reports nothing proves nothing).
//
// Detectors: "sim" = the runtime's checked barriers / collectives / alignment (exit 3);
// "asan" = AddressSanitizer; "tsan" = ThreadSanitizer; "order" = a result that depends
// on the fiber order (the kernel's output is checked here: exit 4 when wrong).
#include "selftest.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "edlm/common.h"

namespace edlm_sim {
namespace {

constexpr int kThreads = 128;

// ---- planted bugs -------------------------------------------------------------------------

// Thread 0 publishes a value the others read with no __syncthreads in between.
__global__ void missing_syncthreads_kernel(int* out) {
  EDLM_SHARED(int, value);
  if (threadIdx.x == 0) value = 42;
  // __syncthreads() missing here
  out[threadIdx.x] = value;
}

// Half the warp shuffles at one call site, half at another, with the full mask.
__global__ void divergent_shuffle_kernel(int* out) {
  int x = static_cast<int>(threadIdx.x);
  if ((threadIdx.x & 31) < 16) x += __shfl_xor_sync(0xffffffffu, x, 1);
  else x += __shfl_xor_sync(0xffffffffu, x, 1);
  out[threadIdx.x] = x;
}

// Every lane passes the mask of the lower half, so the upper half calls with a mask
// that does not name itself.
__global__ void shuffle_mask_excludes_caller_kernel(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, static_cast<int>(threadIdx.x), 1);
}

// The lower half shuffles among itself but reads across to the upper half.
__global__ void shuffle_reads_outside_mask_kernel(int* out) {
  int x = static_cast<int>(threadIdx.x);
  if ((threadIdx.x & 31) < 16) x = __shfl_xor_sync(0x0000ffffu, x, 16);
  out[threadIdx.x] = x;
}

// Lane 5 returns before a full-warp reduction.
__global__ void exited_lane_in_collective_kernel(int* out) {
  if (threadIdx.x == 5) return;
  int x = 1;
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  out[threadIdx.x] = x;
}

// A 16-byte load from an address 4 bytes past an aligned one.
__global__ void misaligned_vector_load_kernel(const float* in, float* out) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(in + 1));
  out[threadIdx.x] = __uint_as_float(v.x);
}

// Reads one float4 past the end of the launch's dynamic shared memory.
__global__ void dynamic_shared_oob_kernel(int n, float* out) {
  EDLM_DYNAMIC_SHARED(float4, tiles);
  if (threadIdx.x < static_cast<unsigned>(n)) tiles[threadIdx.x] = make_float4(1, 2, 3, 4);
  __syncthreads();
  out[threadIdx.x] = tiles[n].x;  // index n of n
}

// Reads past the end of a static shared array (into the next slot's redzone).
__global__ void static_shared_oob_kernel(float* out) {
  EDLM_SHARED(float[32], buf);
  buf[threadIdx.x & 31] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = buf[32 + (threadIdx.x & 7)];
}

// Reads past the end of a global buffer of kThreads floats.
__global__ void global_oob_kernel(const float* in, float* out) { out[threadIdx.x] = in[threadIdx.x + 1]; }

// The block_radix_select race: thread 0 resets the shared result for the next call
// while the other threads may still be reading the previous one.
struct SelectShared {
  unsigned result;
};
__device__ unsigned publish(unsigned v, SelectShared& sh) {
  if (threadIdx.x == 0) sh.result = 0;  // reset for this call: races with readers of the last one
  __syncthreads();
  if (threadIdx.x == 0) sh.result = v;
  __syncthreads();
  return sh.result;
}
__global__ void shared_race_kernel(unsigned* out) {
  EDLM_SHARED(SelectShared, sh);
  const unsigned a = publish(7, sh);
  const unsigned b = publish(9, sh);
  out[threadIdx.x] = a * 100 + b;
}

// Only the first half of the block reaches the barrier.
__global__ void barrier_not_reached_kernel(int* out) {
  if (threadIdx.x < kThreads / 2) __syncthreads();
  out[threadIdx.x] = 1;
}

// Two __syncthreads at different call sites.
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < kThreads / 2) __syncthreads();
  else __syncthreads();
  out[threadIdx.x] = 1;
}

// ---- correct kernels (must pass in every build and order) ------------------------------------

// Block sum: warp shuffles, one shared slot per warp, barriers on both sides.
__global__ void block_sum_kernel(const int* in, int* out) {
  EDLM_SHARED(int[kThreads / 32], partial);
  int x = in[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = x;
  __syncthreads();
  int total = 0;
  for (int i = 0; i < kThreads / 32; ++i) total += partial[i];
  __syncthreads();
  out[blockIdx.x * kThreads + threadIdx.x] = total;
}

// Half-warp groups shuffling with their own masks at one call site; a vote; scans.
__global__ void half_warps_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  int x = __shfl_xor_sync(half, lane, 1);
  int y = __shfl_up_sync(0xffffffffu, lane, 3);
  const unsigned vote = __ballot_sync(0xffffffffu, lane % 3 == 0);
  out[threadIdx.x] = x * 10000 + y * 100 + __popc(vote);
}

struct Case {
  const char* detector;
  int (*run)();
};

template <typename T>
std::vector<T> launch_out(void (*kernel)(T*), unsigned blocks = 1) {
  std::vector<T> out(blocks * kThreads, T{});
  launch(kernel, dim3(blocks), dim3(kThreads), 0, out.data());
  return out;
}

int expect_all(const std::vector<int>& v, int want, const char* what) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != want) {
      std::fprintf(stderr, "edlm_sim selftest: wrong result: %s: out[%zu] = %d, want %d (order-dependent)\n", what, i,
                   v[i], want);
      return 4;
    }
  return 0;
}

const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> c = {
      {"missing_syncthreads", {"order,tsan", [] { return expect_all(launch_out(missing_syncthreads_kernel), 42, "missing_syncthreads"); }}},
      {"divergent_shuffle", {"sim", [] { launch_out(divergent_shuffle_kernel); return 0; }}},
      {"shuffle_mask_excludes_caller", {"sim", [] { launch_out(shuffle_mask_excludes_caller_kernel); return 0; }}},
      {"shuffle_reads_outside_mask", {"sim", [] { launch_out(shuffle_reads_outside_mask_kernel); return 0; }}},
      {"exited_lane_in_collective", {"sim", [] { launch_out(exited_lane_in_collective_kernel); return 0; }}},
      {"misaligned_vector_load", {"sim", [] {
         std::vector<float> in(64, 1.0f), out(kThreads);
         launch(misaligned_vector_load_kernel, dim3(1), dim3(kThreads), 0, in.data(), out.data());
         return 0;
       }}},
      {"dynamic_shared_oob", {"asan", [] {
         std::vector<float> out(kThreads);
         const int n = 8;
         launch(dynamic_shared_oob_kernel, dim3(1), dim3(kThreads), n * sizeof(float4), n, out.data());
         return 0;
       }}},
      {"static_shared_oob", {"asan", [] { launch_out(static_shared_oob_kernel); return 0; }}},
      {"global_oob", {"asan", [] {
         auto* in = static_cast<float*>(std::malloc(kThreads * sizeof(float)));
         for (int i = 0; i < kThreads; ++i) in[i] = 1.0f;
         std::vector<float> out(kThreads);
         launch(global_oob_kernel, dim3(1), dim3(kThreads), 0, static_cast<const float*>(in), out.data());
         std::free(in);
         return 0;
       }}},
      {"shared_race", {"order,tsan", [] {
         const auto out = launch_out(shared_race_kernel);
         for (unsigned v : out)
           if (v != 709) {
             std::fprintf(stderr, "edlm_sim selftest: wrong result: shared_race: %u, want 709 (order-dependent)\n", v);
             return 4;
           }
         return 0;
       }}},
      {"barrier_not_reached", {"sim", [] { launch_out(barrier_not_reached_kernel); return 0; }}},
      {"divergent_barrier", {"sim", [] { launch_out(divergent_barrier_kernel); return 0; }}},
      {"ok_block_sum", {"none", [] {
         std::vector<int> in(kThreads);
         for (int i = 0; i < kThreads; ++i) in[i] = i;
         std::vector<int> out(3 * kThreads);
         launch(block_sum_kernel, dim3(3), dim3(kThreads), 0, static_cast<const int*>(in.data()), out.data());
         return expect_all(out, kThreads * (kThreads - 1) / 2, "ok_block_sum");
       }}},
      {"ok_half_warps", {"none", [] {
         const auto out = launch_out(half_warps_kernel);
         for (int i = 0; i < kThreads; ++i) {
           const int lane = i & 31, y = lane >= 3 ? lane - 3 : lane;
           const int want = (lane ^ 1) * 10000 + y * 100 + 11;  // lanes 0,3,..,30: 11 of 32
           if (out[i] != want) {
             std::fprintf(stderr, "edlm_sim selftest: wrong result: ok_half_warps: out[%d] = %d, want %d\n", i, out[i], want);
             return 4;
           }
         }
         return 0;
       }}},
  };
  return c;
}

}  // namespace

int run_selftest(const std::string& name) {
  const auto& c = cases();
  const auto it = c.find(name);
  if (it == c.end()) {
    std::fprintf(stderr, "edlm_sim: no self-test named %s\n", name.c_str());
    return 2;
  }
  return it->second.run();
}

void list_selftests() {
  for (const auto& [name, c] : cases()) std::printf("%s %s\n", name.c_str(), c.detector);
}

}  // namespace edlm_sim
