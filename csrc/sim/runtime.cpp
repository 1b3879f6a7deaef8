// The fiber runtime of the CPU simulation (runtime.h): stacks and context switches,
// the per-block scheduler, checked barriers and warp collectives, shared memory.
//
// Under ThreadSanitizer this file is compiled WITHOUT -fsanitize=thread (the Makefile):
// its bookkeeping (thread states, the payload exchange of a shuffle, the poison fill)
// is the simulated hardware, not kernel code, so TSan must not see it; it tells TSan
// about the hardware's ordering through __tsan_release / __tsan_acquire instead.
#include "shim/cuda_sim.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EDLM_SIM_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(EDLM_SIM_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace edlm_sim {
namespace {

// ---- context switch ----------------------------------------------------------------------
// switch_context(&save_sp, next_sp): saves the callee-saved registers and the SSE / x87
// control words on the current stack, stores the stack pointer to *save_sp and resumes
// the context whose stack pointer is next_sp.
#if defined(__x86_64__)
extern "C" void edlm_sim_switch_context(void** save_sp, void* next_sp);
asm(R"(
  .text
  .globl edlm_sim_switch_context
  .type edlm_sim_switch_context, @function
edlm_sim_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size edlm_sim_switch_context, .-edlm_sim_switch_context
  .section .note.GNU-stack,"",@progbits
)");
#else
#error "the CUDA simulation's context switch is written for x86-64"
#endif

[[noreturn]] void fiber_main();

// The initial stack of a fiber: what edlm_sim_switch_context pops, returning into fiber_main.
void* initial_stack(char* lo, size_t size) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(lo) + size) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                                            // fiber_main's (never used) return address
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);      // popped by ret
  for (int i = 0; i < 6; ++i) *--sp = 0;                // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr;
  uint16_t fcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fcw));
  *--sp = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fcw) << 32);
  return sp;
}

// ---- threads and blocks ----------------------------------------------------------------
enum class State : uint8_t { kRunnable, kBarrier, kCollective, kExited };

#if defined(EDLM_SIM_ASAN) || defined(EDLM_SIM_TSAN)
constexpr size_t kStackBytes = 1 << 20;
#else
constexpr size_t kStackBytes = 256 << 10;
#endif
constexpr size_t kGuardBytes = 4096;
constexpr size_t kStackTopBytes = 16 << 10;

struct Thread {
  uint3 idx{};
  int linear = 0, warp = 0, lane = 0;
  State state = State::kRunnable;
  bool started = false;
  std::source_location where;  // the barrier or collective it waits at
  // its pending collective
  Coll kind = Coll::kShfl;
  unsigned mask = 0;
  int arg = 0, width = 32;
  Payload in{}, out{};
  uint32_t vote = 0;
  uint64_t gen = 0;  // barrier / warp-sync generation it arrived at (TSan)
  // its fiber
  char* stack = nullptr;
  void* sp = nullptr;
  void* tsan_fiber = nullptr;
  void* asan_fake_stack = nullptr;
};

struct Warp {
  uint64_t sync_gen = 0;  // __syncwarp generations (TSan sync objects)
  char tsan_sync[2] = {};
};

struct SharedSlot {
  const void* key;
  size_t offset, size;
};

struct Block {
  std::vector<Thread*> threads;
  std::vector<Warp> warps;
  uint64_t barrier_gen = 0;
  char tsan_barrier[2] = {};
  char* dynamic = nullptr;  // the launch's dynamic shared memory, exactly its size
  char* arena = nullptr;    // static shared memory (EDLM_SHARED), one slot per variable, redzones between
  size_t arena_used = 0;
  std::vector<SharedSlot> slots;
};

constexpr size_t kStaticSharedLimit = 48 << 10;   // CUDA's limit for static __shared__ per block
constexpr size_t kDefaultSharedLimit = 48 << 10;  // static + dynamic without cudaFuncSetAttribute opt-in
constexpr size_t kRedzone = 64;
constexpr size_t kArenaBytes = kStaticSharedLimit + 64 * kRedzone;

struct Runtime {
  Options options;
  Counters counters;
  std::vector<Thread*> pool;  // fibers with stacks, reused across blocks and launches
  Block block;
  const std::function<void()>* body = nullptr;
  Thread* current = nullptr;
  void* sched_sp = nullptr;
  void* main_tsan_fiber = nullptr;
  const void* main_stack_lo = nullptr;
  size_t main_stack_size = 0;
  void* main_fake_stack = nullptr;
  uint3 block_idx{};
  dim3 block_dim, grid_dim;
  char tsan_start = 0, tsan_end = 0;
  std::mt19937_64 rng;
};

Runtime& rt() {
  static Runtime r;
  return r;
}

const char* coll_name(Coll k) {
  switch (k) {
    case Coll::kShfl: return "__shfl_sync";
    case Coll::kShflUp: return "__shfl_up_sync";
    case Coll::kShflDown: return "__shfl_down_sync";
    case Coll::kShflXor: return "__shfl_xor_sync";
    case Coll::kBallot: return "__ballot_sync";
    case Coll::kAny: return "__any_sync";
    case Coll::kAll: return "__all_sync";
    case Coll::kSyncwarp: return "__syncwarp";
  }
  return "?";
}

std::string where_str(const std::source_location& l) {
  char buf[64];
  std::snprintf(buf, sizeof buf, ":%u", static_cast<unsigned>(l.line()));
  return std::string(l.file_name()) + buf + " (" + l.function_name() + ")";
}

std::string thread_str(const Thread* t) {
  char buf[160];
  const Runtime& r = rt();
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u) [warp %d lane %d]", r.block_idx.x,
                r.block_idx.y, r.block_idx.z, t->idx.x, t->idx.y, t->idx.z, t->warp, t->lane);
  return buf;
}

const char* order_name(Order o) { return o == Order::kForward ? "forward" : o == Order::kReverse ? "reverse" : "random"; }

[[noreturn]] void die(const std::string& msg) {
  const Runtime& r = rt();
  std::fprintf(stderr, "edlm_sim: error: %s\n  (fiber order %s, seed %llu, poison 0x%02x)\n", msg.c_str(),
               order_name(r.options.order), static_cast<unsigned long long>(r.options.seed), r.options.poison & 0xff);
  std::fflush(stderr);
  std::fflush(stdout);
  _exit(3);
}

[[noreturn]] void fail_at(const Thread* t, const std::string& what, const std::source_location& loc) {
  die(what + "\n  at " + where_str(loc) + "\n  " + thread_str(t));
}

// ---- switching ---------------------------------------------------------------------------------
void switch_to(Thread* t) {
  Runtime& r = rt();
  r.current = t;
  ++r.counters.switches;
#if defined(EDLM_SIM_ASAN)
  __sanitizer_start_switch_fiber(&r.main_fake_stack, t->stack, kStackBytes);
#endif
#if defined(EDLM_SIM_TSAN)
  __tsan_switch_to_fiber(t->tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
  edlm_sim_switch_context(&r.sched_sp, t->sp);
#if defined(EDLM_SIM_ASAN)
  __sanitizer_finish_switch_fiber(r.main_fake_stack, nullptr, nullptr);
#endif
  r.current = nullptr;
}

// From a fiber back to the scheduler; returns when the scheduler resumes it.
void yield_to_scheduler(Thread* t) {
  Runtime& r = rt();
#if defined(EDLM_SIM_ASAN)
  __sanitizer_start_switch_fiber(&t->asan_fake_stack, r.main_stack_lo, r.main_stack_size);
#endif
#if defined(EDLM_SIM_TSAN)
  __tsan_switch_to_fiber(r.main_tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
  edlm_sim_switch_context(&t->sp, r.sched_sp);
#if defined(EDLM_SIM_ASAN)
  __sanitizer_finish_switch_fiber(t->asan_fake_stack, &r.main_stack_lo, &r.main_stack_size);
#endif
}

[[noreturn]] void fiber_main() {
  Runtime& r = rt();
#if defined(EDLM_SIM_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &r.main_stack_lo, &r.main_stack_size);
#endif
  Thread* t = r.current;
#if defined(EDLM_SIM_TSAN)
  __tsan_acquire(&r.tsan_start);  // the launch's inputs and this block's shared memory
#endif
  (*r.body)();
  t->state = State::kExited;
#if defined(EDLM_SIM_TSAN)
  __tsan_release(&r.tsan_end);  // the host reads the outputs after the launch
  __tsan_switch_to_fiber(r.main_tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(EDLM_SIM_ASAN)
  __sanitizer_start_switch_fiber(nullptr, r.main_stack_lo, r.main_stack_size);
#endif
  void* dead;
  edlm_sim_switch_context(&dead, r.sched_sp);
  __builtin_unreachable();
}

Thread* pooled_thread(size_t i) {
  Runtime& r = rt();
  while (r.pool.size() <= i) {
    auto* t = new Thread;
    void* mem = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("cannot map a fiber stack");
    mprotect(mem, kGuardBytes, PROT_NONE);  // a stack overflow faults instead of corrupting memory
    t->stack = static_cast<char*>(mem) + kGuardBytes;
#if defined(EDLM_SIM_TSAN)
    t->tsan_fiber = __tsan_create_fiber(0);
#endif
    r.pool.push_back(t);
  }
  return r.pool[i];
}

// ---- collectives --------------------------------------------------------------------------------
bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

unsigned existing_lanes(const Block& b, int warp) {
  const int n = static_cast<int>(b.threads.size()) - warp * 32;
  return n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
}

std::string mask_str(unsigned m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", m);
  return buf;
}

// Lane j of warp w stopped (exited, or reached a barrier): a collective that names it
// can never complete.
void check_no_waiter_names(const Thread* j, const char* what) {
  Block& b = rt().block;
  for (int l = 0; l < 32; ++l) {
    const size_t i = static_cast<size_t>(j->warp) * 32 + l;
    if (i >= b.threads.size()) break;
    const Thread* w = b.threads[i];
    if (w != j && w->state == State::kCollective && ((w->mask >> j->lane) & 1u))
      fail_at(w, std::string(coll_name(w->kind)) + " with mask " + mask_str(w->mask) + " waits for lane " +
                     std::to_string(j->lane) + ", which " + what +
                     (j->state == State::kBarrier ? " at " + where_str(j->where) : std::string()),
              w->where);
  }
}

// Lane t just arrived at a collective: check it against the lanes it names and the
// lanes waiting for it; when its whole mask has arrived, exchange and wake them.
void on_collective_arrival(Thread* t) {
  Block& b = rt().block;
  const unsigned m = t->mask;
  const unsigned exist = existing_lanes(b, t->warp);
  if (!((m >> t->lane) & 1u))
    fail_at(t, std::string(coll_name(t->kind)) + " with mask " + mask_str(m) + " that does not name the calling lane",
            t->where);
  if (m & ~exist)
    fail_at(t, std::string(coll_name(t->kind)) + " with mask " + mask_str(m) + " names lanes this block does not have",
            t->where);
  if (t->width < 1 || t->width > 32 || (t->width & (t->width - 1)))
    fail_at(t, std::string(coll_name(t->kind)) + ": width " + std::to_string(t->width) + " is not a power of 2 <= 32",
            t->where);
  Thread* const* lanes = &b.threads[static_cast<size_t>(t->warp) * 32];
  auto mismatch = [&](const Thread* a, const Thread* c) {
    if (a->kind != c->kind || a->mask != c->mask || a->width != c->width) return true;
    return a->kind != Coll::kSyncwarp && !same_site(a->where, c->where);  // __syncwarp may be at different sites
  };
  // Lanes already waiting whose mask names t must be at the same collective.
  for (int l = 0; l < 32; ++l) {
    if (!((exist >> l) & 1u) || l == t->lane) continue;
    const Thread* w = lanes[l];
    if (w->state == State::kCollective && ((w->mask >> t->lane) & 1u) && mismatch(w, t))
      fail_at(t,
              "divergent collective: this lane calls " + std::string(coll_name(t->kind)) + " with mask " +
                  mask_str(m) + ", while lane " + std::to_string(l) + " waits in " + coll_name(w->kind) +
                  " with mask " + mask_str(w->mask) + " at " + where_str(w->where),
              t->where);
  }
  // Every lane t names must come to the same collective.
  for (int l = 0; l < 32; ++l) {
    if (!((m >> l) & 1u) || l == t->lane) continue;
    const Thread* u = lanes[l];
    switch (u->state) {
      case State::kExited:
        fail_at(t, std::string(coll_name(t->kind)) + " with mask " + mask_str(m) + " names lane " + std::to_string(l) +
                       ", which has exited",
                t->where);
      case State::kBarrier:
        fail_at(t, std::string(coll_name(t->kind)) + " with mask " + mask_str(m) + " names lane " + std::to_string(l) +
                       ", which waits at __syncthreads at " + where_str(u->where),
                t->where);
      case State::kRunnable: return;  // not there yet
      case State::kCollective:
        if (mismatch(u, t))
          fail_at(t,
                  "divergent collective: this lane calls " + std::string(coll_name(t->kind)) + " with mask " +
                      mask_str(m) + ", lane " + std::to_string(l) + " calls " + coll_name(u->kind) + " with mask " +
                      mask_str(u->mask) + " at " + where_str(u->where),
                  t->where);
        break;
    }
  }
  // All of m has arrived: exchange.
  ++rt().counters.collectives;
  uint32_t ballot = 0;
  for (int l = 0; l < 32; ++l)
    if ((m >> l) & 1u) ballot |= (lanes[l]->in.w[0] != 0 ? 1u : 0u) << l;
  const int w = t->width;
  for (int l = 0; l < 32; ++l) {
    if (!((m >> l) & 1u)) continue;
    Thread* u = lanes[l];
    const int seg = l & ~(w - 1), pos = l & (w - 1);
    int src = l;
    switch (t->kind) {
      case Coll::kShfl: src = seg + (u->arg & (w - 1)); break;
      case Coll::kShflUp: src = pos >= u->arg ? l - u->arg : l; break;
      case Coll::kShflDown: src = pos + u->arg < w ? l + u->arg : l; break;
      case Coll::kShflXor: {
        const int x = l ^ u->arg;
        src = (x >= 0 && x < 32 && x < seg + w) ? x : l;  // a later segment: own value (CUDA's rule)
        break;
      }
      default: break;
    }
    if (src != l && !((m >> src) & 1u))
      fail_at(u, std::string(coll_name(t->kind)) + " reads lane " + std::to_string(src) + ", which mask " +
                     mask_str(m) + " does not name (its value is undefined on the GPU)",
              u->where);
    u->out = lanes[src]->in;
    switch (t->kind) {
      case Coll::kBallot: u->vote = ballot; break;
      case Coll::kAny: u->vote = ballot != 0; break;
      case Coll::kAll: u->vote = ballot == m; break;
      default: u->vote = 0;
    }
    u->state = State::kRunnable;
  }
  if (t->kind == Coll::kSyncwarp) ++b.warps[t->warp].sync_gen;
}

void release_barrier() {
  Block& b = rt().block;
  const Thread* first = b.threads[0];
  for (const Thread* t : b.threads) {
    if (t->state == State::kExited)
      fail_at(first, "__syncthreads that thread (" + std::to_string(t->idx.x) + "," + std::to_string(t->idx.y) + "," +
                         std::to_string(t->idx.z) + ") never reaches: it has exited",
              first->where);
    if (!same_site(t->where, first->where))
      fail_at(t, "divergent __syncthreads: this thread waits here, thread (" + std::to_string(first->idx.x) + "," +
                     std::to_string(first->idx.y) + "," + std::to_string(first->idx.z) + ") at " +
                     where_str(first->where),
              t->where);
  }
  ++rt().counters.barriers;
  ++b.barrier_gen;
  for (Thread* t : b.threads) t->state = State::kRunnable;
}

[[noreturn]] void deadlock() {
  const Block& b = rt().block;
  std::string msg = "no thread can make progress:";
  int shown = 0;
  for (const Thread* t : b.threads) {
    if (t->state == State::kExited || shown >= 8) continue;
    msg += "\n  " + thread_str(t) + " waits in " +
           (t->state == State::kBarrier ? std::string("__syncthreads") : std::string(coll_name(t->kind))) + " at " +
           where_str(t->where);
    ++shown;
  }
  die(msg);
}

void run_block() {
  Runtime& r = rt();
  Block& b = r.block;
  const size_t n = b.threads.size();
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  if (r.options.order == Order::kReverse) std::reverse(order.begin(), order.end());
  size_t exited = 0;
  while (exited < n) {
    if (r.options.order == Order::kRandom) std::shuffle(order.begin(), order.end(), r.rng);
    bool ran = false;
    for (size_t i : order) {
      Thread* t = b.threads[i];
      if (t->state != State::kRunnable) continue;
      ran = true;
      if (!t->started) {
        t->started = true;
#if defined(EDLM_SIM_ASAN)
        // Redzones a previous fiber's never-returning fiber_main frame left at the top of this stack.
        __asan_unpoison_memory_region(t->stack + kStackBytes - kStackTopBytes, kStackTopBytes);
#endif
        t->sp = initial_stack(t->stack, kStackBytes);
      }
      switch_to(t);
      switch (t->state) {
        case State::kExited:
          ++exited;
          check_no_waiter_names(t, "has exited");
          break;
        case State::kBarrier: check_no_waiter_names(t, "waits at __syncthreads"); break;
        case State::kCollective: on_collective_arrival(t); break;
        case State::kRunnable: die("internal: a fiber yielded while runnable");
      }
    }
    if (!ran && exited < n) {
      bool all_at_barrier = true;
      for (const Thread* t : b.threads) all_at_barrier &= t->state == State::kBarrier || t->state == State::kExited;
      bool any_barrier = false;
      for (const Thread* t : b.threads) any_barrier |= t->state == State::kBarrier;
      if (all_at_barrier && any_barrier) release_barrier();
      else deadlock();
    }
  }
}

}  // namespace

// ---- the shim's entry points ---------------------------------------------------------------------
Options& options() { return rt().options; }

bool parse_order(const std::string& name, Order* out) {
  if (name == "forward") *out = Order::kForward;
  else if (name == "reverse") *out = Order::kReverse;
  else if (name == "random") *out = Order::kRandom;
  else return false;
  return true;
}

void fail(const std::string& what, const std::source_location& loc) {
  const Thread* t = rt().current;
  if (t) fail_at(t, what, loc);
  die(what + "\n  at " + where_str(loc));
}
void fail_launch(const std::string& what) { die(what); }

static Thread* current_or_die(const char* what) {
  Thread* t = rt().current;
  if (!t) die(std::string(what) + " used outside a kernel");
  return t;
}

const uint3& thread_idx() { return current_or_die("threadIdx")->idx; }
const uint3& block_idx() {
  current_or_die("blockIdx");
  return rt().block_idx;
}
const dim3& block_dim() {
  current_or_die("blockDim");
  return rt().block_dim;
}
const dim3& grid_dim() {
  current_or_die("gridDim");
  return rt().grid_dim;
}

void syncthreads(const std::source_location& loc) {
  Thread* t = current_or_die("__syncthreads");
  Block& b = rt().block;
  t->state = State::kBarrier;
  t->where = loc;
  t->gen = b.barrier_gen;
#if defined(EDLM_SIM_TSAN)
  __tsan_release(&b.tsan_barrier[t->gen & 1]);
#endif
  yield_to_scheduler(t);
#if defined(EDLM_SIM_TSAN)
  __tsan_acquire(&b.tsan_barrier[t->gen & 1]);
#endif
}

uint32_t collective(Coll kind, unsigned mask, int arg, int width, const Payload& in, Payload* out,
                    const std::source_location& loc) {
  Thread* t = current_or_die(coll_name(kind));
  t->state = State::kCollective;
  t->where = loc;
  t->kind = kind;
  t->mask = mask;
  t->arg = arg;
  t->width = width;
  t->in = in;
#if defined(EDLM_SIM_TSAN)
  Warp& w = rt().block.warps[t->warp];
  t->gen = w.sync_gen;
  if (kind == Coll::kSyncwarp) __tsan_release(&w.tsan_sync[t->gen & 1]);
#endif
  yield_to_scheduler(t);
#if defined(EDLM_SIM_TSAN)
  if (kind == Coll::kSyncwarp) __tsan_acquire(&w.tsan_sync[t->gen & 1]);
#endif
  *out = t->out;
  return t->vote;
}

unsigned active_mask() {
  const Thread* t = current_or_die("__activemask");
  const Block& b = rt().block;
  unsigned m = 0;
  for (int l = 0; l < 32; ++l) {
    const size_t i = static_cast<size_t>(t->warp) * 32 + l;
    if (i < b.threads.size() && b.threads[i]->state != State::kExited) m |= 1u << l;
  }
  return m;
}

void check_aligned(const void* p, size_t align, size_t size, const std::source_location& loc) {
  if (reinterpret_cast<uintptr_t>(p) % align != 0)
    fail("misaligned " + std::to_string(size) + "-byte vector load from " +
             std::to_string(reinterpret_cast<uintptr_t>(p)) + " (needs " + std::to_string(align) + "-byte alignment)",
         loc);
}

void* block_shared_bytes(const void* key, size_t size, size_t align) {
  Runtime& r = rt();
  Block& b = r.block;
  current_or_die("shared memory");
  for (const SharedSlot& s : b.slots)
    if (s.key == key) return b.arena + s.offset;
  const size_t a = std::max<size_t>(align, 16);
  const size_t offset = (b.arena_used + kRedzone + a - 1) / a * a;
  if (offset + size > kArenaBytes) die("static shared memory of one block exceeds the 48 KiB CUDA allows");
  b.slots.push_back(SharedSlot{key, offset, size});
  b.arena_used = offset + size;
#if defined(EDLM_SIM_ASAN)
  __asan_unpoison_memory_region(b.arena + offset, size);
#endif
  return b.arena + offset;
}

void* dynamic_shared_bytes() {
  current_or_die("dynamic shared memory");
  return rt().block.dynamic;
}

const Counters& counters() { return rt().counters; }

void run_grid(const dim3& grid, const dim3& block, size_t dynamic_smem, const std::function<void()>& body) {
  Runtime& r = rt();
  if (r.current) die("a kernel launched a kernel (not supported)");
  const uint64_t nthreads = uint64_t{block.x} * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || nthreads > 1024 || block.z > 64)
    fail_launch("invalid launch configuration: block (" + std::to_string(block.x) + "," + std::to_string(block.y) +
                "," + std::to_string(block.z) + ")");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu)
    fail_launch("invalid launch configuration: grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," +
                std::to_string(grid.z) + ")");
  if (dynamic_smem > kDefaultSharedLimit)
    fail_launch("launch with " + std::to_string(dynamic_smem) +
                " bytes of dynamic shared memory: more than 48 KiB needs cudaFuncSetAttribute");
  r.rng.seed(r.options.seed);
  r.body = &body;
  r.block_dim = block;
  r.grid_dim = grid;
#if defined(EDLM_SIM_TSAN)
  if (!r.main_tsan_fiber) r.main_tsan_fiber = __tsan_get_current_fiber();
#endif
  std::vector<char*> frees;
  size_t static_bytes = 0;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        r.block_idx = uint3{bx, by, bz};
        Block& b = r.block;
        b.threads.clear();
        b.slots.clear();
        b.arena_used = 0;
        b.barrier_gen = 0;
        b.warps.assign((nthreads + 31) / 32, Warp{});
        // Fresh shared memory, filled with the poison byte (outside any fiber: TSan does not
        // see this fill, and the fibers acquire tsan_start below).
        b.dynamic = static_cast<char*>(std::malloc(std::max<size_t>(dynamic_smem, 1)));
        b.arena = static_cast<char*>(std::malloc(kArenaBytes));
        if (!b.dynamic || !b.arena) die("out of memory for shared memory");
        std::memset(b.dynamic, r.options.poison, std::max<size_t>(dynamic_smem, 1));
        std::memset(b.arena, r.options.poison, kArenaBytes);
#if defined(EDLM_SIM_ASAN)
        __asan_poison_memory_region(b.arena, kArenaBytes);  // unpoisoned slot by slot
#endif
        frees.push_back(b.dynamic);
        frees.push_back(b.arena);
        uint32_t i = 0;
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx, ++i) {
              Thread* t = pooled_thread(i);
              t->idx = uint3{tx, ty, tz};
              t->linear = static_cast<int>(i);
              t->warp = static_cast<int>(i / 32);
              t->lane = static_cast<int>(i % 32);
              t->state = State::kRunnable;
              t->started = false;
              b.threads.push_back(t);
            }
#if defined(EDLM_SIM_TSAN)
        __tsan_release(&r.tsan_start);
#endif
        run_block();
        ++r.counters.blocks;
        r.counters.threads += nthreads;
        // Static shared memory is known once a block has run: the launch must fit the
        // per-block limit with it, or it fails on the GPU.
        size_t used = 0;
        for (const SharedSlot& s : b.slots) used += s.size;
        static_bytes = std::max(static_bytes, used);
        if (static_bytes + dynamic_smem > kDefaultSharedLimit)
          fail_launch("launch uses " + std::to_string(static_bytes) + " bytes of static + " +
                      std::to_string(dynamic_smem) +
                      " bytes of dynamic shared memory per block: more than the 48 KiB a launch gets without "
                      "cudaFuncSetAttribute (the GPU refuses it)");
      }
#if defined(EDLM_SIM_TSAN)
  __tsan_acquire(&r.tsan_end);
#endif
  for (char* p : frees) std::free(p);
  r.block.threads.clear();
  r.body = nullptr;
}

}  // namespace edlm_sim
