// The fiber runtime of the CPU simulation of the CUDA execution model.
//
// A launch runs its blocks one after another; inside a block every CUDA thread is its
// own fiber (its own stack), switched only at barriers and warp collectives, in an
// order chosen per run (forward, reverse, or a seeded random permutation per round),
// so lanes really interleave between synchronization points. Barriers and
// collectives are checked: a mask that does not match the lanes that reach a
// collective, lanes of one mask at different collectives, a lane that exited while
// named in a mask, and a __syncthreads that some thread never reaches are errors
// (reported with block, thread and source location; the process exits with status 3).
// Shared memory is fresh per block and filled with a poison byte. Under
// ThreadSanitizer every fiber is a TSan fiber, barriers are release/acquire, and
// warp shuffles/votes are not memory fences (only __syncwarp is).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <source_location>
#include <string>
#include <tuple>
#include <utility>

struct uint3;
struct dim3;

namespace edlm_sim {

// ---- run options -------------------------------------------------------------------
enum class Order { kForward, kReverse, kRandom };
struct Options {
  Order order = Order::kForward;
  uint64_t seed = 0;  // for Order::kRandom
  int poison = 0xff;  // byte that fills shared memory before each block (0xff: NaN floats, -1 ints)
};
Options& options();
// "forward" | "reverse" | "random"; false for anything else.
bool parse_order(const std::string& name, Order* out);

// ---- errors --------------------------------------------------------------------------
// A launch-configuration or kernel error found by the simulation: printed with the
// current block/thread, then the process exits with status 3.
[[noreturn]] void fail(const std::string& what, const std::source_location& loc);
[[noreturn]] void fail_launch(const std::string& what);

// ---- what the shim calls ------------------------------------------------------------------
constexpr int kPayloadBytes = 16;
struct Payload {  // a lane's value in a collective (up to 16 bytes)
  uint64_t w[2];
};
enum class Coll : int { kShfl, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll, kSyncwarp };

const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();

void syncthreads(const std::source_location& loc);
// One warp collective of the calling lane: `in` its value (shuffles) or predicate
// (votes, in.w[0]); returns the vote for ballot / any / all and writes the value the
// lane reads to *out (shuffles).
uint32_t collective(Coll kind, unsigned mask, int arg, int width, const Payload& in, Payload* out,
                    const std::source_location& loc);
unsigned active_mask();
void check_aligned(const void* p, size_t align, size_t size, const std::source_location& loc);

// Block shared memory: block_shared<T>(tag) is the same fresh, poisoned T for every
// thread of the current block (one per distinct tag type: EDLM_SHARED passes a lambda);
// dynamic_shared<T>() is the launch's dynamic shared memory.
void* block_shared_bytes(const void* slot_key, size_t size, size_t align);
void* dynamic_shared_bytes();
template <typename T, typename Tag>
T& block_shared(Tag) {
  static const char key = 0;  // one per (T, Tag) instantiation
  return *static_cast<T*>(block_shared_bytes(&key, sizeof(T), alignof(T)));
}
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_bytes());
}

// ---- launching ----------------------------------------------------------------------------
// Runs body() as every thread of every block of the grid.
void run_grid(const dim3& grid, const dim3& block, size_t dynamic_smem, const std::function<void()>& body);

// kernel<<<grid, block, smem>>>(args...): arguments converted to the kernel's parameter
// types once, as CUDA copies them into the launch, then passed to every thread.
template <typename... P, typename... A>
void launch(void (*kernel)(P...), const dim3& grid, const dim3& block, size_t smem, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "launch: wrong number of kernel arguments");
  const std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
  run_grid(grid, block, smem, [&] { std::apply(kernel, params); });
}

// Counters since the process started (the driver prints them).
struct Counters {
  uint64_t blocks = 0, threads = 0, switches = 0, barriers = 0, collectives = 0;
};
const Counters& counters();

}  // namespace edlm_sim
