// CUDA form of the filtered draws (top-k, top-p, min-p; the rules of edlm/filter.h) for
// masked_sample / sample_proposals: one block per row, the thresholds and the draw in one
// kernel, no host synchronization. Torch-free.
//
//  bound    a prefix of the row (each thread's first 4 vectors): a block radix select
//           over the kThreads thread maxima gives the top_k-th largest of them, a lower
//           bound of tau_k for the whole row (candidate_bound; min_p's from the prefix max)
//  pass 1   stream the row: each thread's max (the row max, validity), and every token >=
//           the bound is a candidate, appended to shared memory (32-bit atomics on a counter
//           only, for the few candidates); when they fit, the row was read once
//  pass 2   else: the same bound from the whole row's thread maxima, and the row streamed
//           again for its candidates
//  select   candidates sorted (bitonic, logit descending, index ascending): tau_k, tau_p
//           (a block scan of integer masses) and tau_min are cuts of that list; the
//           survivors re-sorted by index, their float64 prefix (block scan), the draws
//  general  when there is no bound (top_p alone, top_k > kThreads) or the candidates do not
//           fit: radix selects over the whole row (8-bit digits, 32-bit shared atomics with
//           the carry counted: edlm/block_primitives.cuh), then the tile passes of
//           edlm/masked_sample_cuda.cuh over the thresholded row
// Deterministic: integer histograms and masses, sorted candidates, fixed scan orders.
#pragma once
#include <cstdint>

#include "edlm/block_primitives.cuh"
#include "edlm/filter.h"
#include "edlm/masked_sample_cuda.cuh"

namespace edlm {
namespace cuda {

// Candidates a block keeps in shared memory (8 bytes each), at most; fewer for short rows.
constexpr int64_t kCandidateCap = 2048;
EDLM_HD int64_t candidate_capacity(int64_t V) {
  int64_t cap = 1;
  while (cap < V && cap < kCandidateCap) cap <<= 1;
  return cap;
}
EDLM_HD int next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

template <int kThreads>
struct FilterShared {
  static constexpr int kWarps = kThreads / 32;
  SampleShared<kThreads> base;
  RadixShared radix;
  uint64_t uscratch[kWarps];
  int64_t iscratch[kWarps];
  int count;  // candidates gathered (may exceed the capacity: then the general path)
};

// Visits this thread's part of the row as (index, logit) pairs, [MASK] excluded: body items
// kStreamVecs vectors at a time (the loads issued before any is used: 8 x 16 B in flight per
// thread, as the kernel keeps 2 blocks per SM), then the head, the
// tail and [MASK]'s item element by element (threads 0, 1, 2).
// With prefix, only the first kPrefixVecs x kThreads body items (16 KB of the row: the
// speculative bound's sample).
constexpr int kPrefixVecs = 4;
template <typename T, int kThreads, typename Visit>
EDLM_DEVICE void for_each_logit(const RowView<T>& rv, int64_t mask_id, const Visit& visit, bool prefix = false) {
  constexpr int kVec = VecTraits<T>::kVec, kStreamVecs = 8;
  const int64_t mask_item = mask_id < rv.head ? 0 : 1 + (mask_id - rv.head) / kVec;
  const int64_t last = prefix && rv.nbody > kPrefixVecs * kThreads ? kPrefixVecs * kThreads : rv.nbody;
  for (int64_t w0 = 1 + threadIdx.x; w0 <= last; w0 += kStreamVecs * kThreads) {
    uint4 raw[kStreamVecs];
    bool have[kStreamVecs];
#pragma unroll
    for (int j = 0; j < kStreamVecs; ++j) {
      const int64_t w = w0 + j * kThreads;
      have[j] = w <= last && w != mask_item;
      raw[j] = have[j] ? rv.body(w) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kStreamVecs; ++j) {
      if (!have[j]) continue;
      const int64_t start = rv.item_start(w0 + j * kThreads);
#pragma unroll
      for (int e = 0; e < kVec; ++e) visit(start + e, VecTraits<T>::element(raw[j], e));
    }
  }
  if (prefix) return;
  // (a select, not an array indexed by the thread: that would live in local memory)
  const int64_t w = threadIdx.x == 0   ? 0
                    : threadIdx.x == 1 ? (rv.nitems - 1 > rv.nbody ? rv.nitems - 1 : -1)
                    : threadIdx.x == 2 ? (mask_item >= 1 && mask_item <= rv.nbody ? mask_item : -1)
                                       : -1;
  if (w >= 0) {
    const int64_t start = rv.item_start(w), end = w == 0 ? rv.head : rv.V;
    for (int e = 0; e < kVec; ++e)
      if (start + e < end && start + e != mask_id) visit(start + e, rv.at(start + e));
  }
}

// The candidate path: sorts the n gathered candidates, cuts the thresholds, draws among the
// survivors; writes every output of the row.
template <typename T, int kThreads, bool greedy>
EDLM_DEVICE void sample_candidates(uint64_t* cand, int n, float m, const Filter& f, float c, double inv_t,
                                   const int64_t* rng, const RowOutput& out, FilterShared<kThreads>& sh) {
  constexpr int kWarps = kThreads / 32;
  const int tid = threadIdx.x;
  const int npow = next_pow2(n);
  for (int i = n + tid; i < npow; i += kThreads) cand[i] = ~0ull;
  __syncthreads();
  block_bitonic_sort<kThreads>(cand, npow);  // (key descending, index ascending)
  auto value = [&](int p) { return key_value(candidate_key(cand[p])); };
  // the first position q in [from, to) whose key is below key(p): the end of p's ties
  auto end_of_ties = [&](int p, int from, int to) {
    const uint32_t kp = candidate_key(cand[p]);
    int64_t first = to;
    for (int q = from + tid; q < to; q += kThreads)
      if (candidate_key(cand[q]) < kp && q < first) first = q;
    return static_cast<int>(block_min_index<kThreads>(first, sh.iscratch));
  };
  int keep = n;
  if (f.top_k > 0 && f.top_k <= n) keep = end_of_ties(static_cast<int>(f.top_k) - 1, static_cast<int>(f.top_k), n);
  if (f.top_p < 1.0) {  // the masses of top_k's survivors (all candidates here: filter.h)
    const int per = (keep + kThreads - 1) / kThreads, p0 = tid * per, p1 = p0 + per < keep ? p0 + per : keep;
    auto mass = [&](int p) { return token_mass(exp2_ftz((value(p) - m) * c)); };
    uint64_t local = 0;
    for (int p = p0; p < p1; ++p) local += mass(p);
    uint64_t total;
    const uint64_t below = block_exclusive_scan<kThreads>(local, &total, sh.uscratch);
    const uint64_t target = topp_target(f.top_p, total);
    if (topp_applies(target, total)) {
      int64_t cut = INT64_MAX;  // the first position whose inclusive sum reaches target
      uint64_t cum = below;
      for (int p = p0; p < p1 && cut == INT64_MAX; ++p) {
        cum += mass(p);
        if (cum >= target) cut = p;
      }
      const int at = static_cast<int>(block_min_index<kThreads>(cut, sh.iscratch));
      keep = end_of_ties(at, at + 1, keep);
    }
  }
  if (f.min_p > 0.0) {
    const float tau_min = min_p_threshold(m, f.min_p, inv_t);
    int64_t first = keep;
    for (int p = 1 + tid; p < keep; p += kThreads)
      if (value(p) < tau_min && p < first) first = p;
    keep = static_cast<int>(block_min_index<kThreads>(first, sh.iscratch));  // the max always passes
  }
  const int64_t best = candidate_index(cand[0]);  // greedy: the max, lowest index
  __syncthreads();
  // the survivors by index
  const int kpow = next_pow2(keep);
  for (int p = tid; p < kpow; p += kThreads)
    cand[p] = p < keep ? (static_cast<uint64_t>(candidate_index(cand[p])) << 32) | candidate_key(cand[p]) : ~0ull;
  __syncthreads();
  block_bitonic_sort<kThreads>(cand, kpow);
  // terms relative to the row max (a tile's rule, edlm::tile_ref), thread-contiguous chunks
  const TileRef ref = tile_ref(m, c);
  auto token = [&](int p) { return static_cast<int64_t>(cand[p] >> 32); };
  auto logit = [&](int p) { return key_value(static_cast<uint32_t>(cand[p])); };
  auto term = [&](int p) {
    const float v = logit(p);
    return static_cast<double>(exp2_ftz(ref.fused ? fmaf(v, c, -ref.b) : (v - ref.b) * c));
  };
  const int per = (keep + kThreads - 1) / kThreads, p0 = tid * per, p1 = p0 + per < keep ? p0 + per : keep;
  double mass = 0.0, weighted = 0.0;
  for (int p = p0; p < p1; ++p) {
    const double e = term(p);
    mass += e;
    if (out.entropy != nullptr && e > 0.0) weighted += e * ((static_cast<double>(logit(p)) - m) * inv_t);
  }
  SampleShared<kThreads>& bs = sh.base;
  if (tid == 0) bs.last_nonzero = -1;
  __syncthreads();
  if (mass > 0.0) atomicMax(&bs.last_nonzero, tid);
  double z;
  const double below = block_exclusive_scan<kThreads>(mass, &z, bs.dscratch);
  const double wtotal = out.entropy != nullptr ? block_sum<kThreads>(weighted, bs.dscratch) : 0.0;
  const double log_z = row_log_z(z, tile_ref_offset(m, c, ref));
  const float h = out.entropy != nullptr ? static_cast<float>(log_z - wtotal / z) : 0.0f;
  if constexpr (greedy) {
    out.write_all<kThreads>(best, token_logp(m, m, inv_t, log_z), h);
  } else {
    if (out.entropy != nullptr && tid == 0) out.entropy[out.row] = h;
    const RngKey key = load_rng_key(rng);
    for (int64_t j0 = 0; j0 < out.k; j0 += kWarps) {
      const int nj = out.k - j0 < kWarps ? static_cast<int>(out.k - j0) : kWarps;
      if (tid < nj) {
        const uint64_t stream = kDomainSample + key.offset + static_cast<uint64_t>(j0 + tid);
        bs.target[tid] = row_uniform(key, static_cast<uint64_t>(out.row), stream) * z;
        bs.winner[tid] = kThreads;
      }
      __syncthreads();
      if (mass > 0.0)
        for (int jj = 0; jj < nj; ++jj)
          if (bs.target[jj] >= below && bs.target[jj] < below + mass) atomicMin(&bs.winner[jj], tid);
      __syncthreads();
      for (int jj = 0; jj < nj; ++jj) {
        const bool hit = bs.winner[jj] < kThreads;
        if (tid != (hit ? bs.winner[jj] : bs.last_nonzero)) continue;
        double cum = below;
        int pick = -1, last = -1;
        for (int p = p0; p < p1; ++p) {
          const double e = term(p);
          if (e <= 0.0) continue;
          last = p;
          cum += e;
          if (hit && cum > bs.target[jj]) {
            pick = p;
            break;
          }
        }
        if (pick < 0) pick = last;
        out.tok[(j0 + jj) * out.L] = token(pick);
        out.logp[(j0 + jj) * out.L] = token_logp(logit(pick), m, inv_t, log_z);
      }
      __syncthreads();  // the next chunk rewrites bs.target / winner
    }
  }
}

// The general path's thresholds: tau (keep key >= tau) from radix selects over the whole
// row, and min_p's; as one float threshold (-inf: keep all).
template <typename T, int kThreads>
EDLM_DEVICE float general_threshold(const RowView<T>& rv, int64_t mask_id, float m, const Filter& f, double inv_t,
                                    FilterShared<kThreads>& sh) {
  const float c = static_cast<float>(inv_t * kLog2e);
  int64_t finite = 0;
  for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t, float v) { finite += v != -INFINITY; });
  finite = block_sum<kThreads>(finite, sh.iscratch);
  uint32_t tau = 0;
  if (f.top_k > 0 && f.top_k < finite) {
    tau = block_radix_select<kThreads, uint32_t>(
              [&](auto add) {
                for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t, float v) { add(order_key(v), v != -INFINITY); });
              },
              static_cast<uint64_t>(f.top_k), sh.radix)
              .tau;
  }
  if (f.top_p < 1.0) {
    const uint32_t tau_k = tau;
    auto mass = [&](float v) { return order_key(v) >= tau_k ? token_mass(exp2_ftz((v - m) * c)) : uint64_t{0}; };
    uint64_t total = 0;
    for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t, float v) { total += mass(v); });
    total = block_sum<kThreads>(total, sh.uscratch);
    const uint64_t target = topp_target(f.top_p, total);
    if (topp_applies(target, total)) {
      const uint32_t tau_p =
          block_radix_select<kThreads, uint32_t>(
              [&](auto add) { for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t, float v) { add(order_key(v), mass(v)); }); },
              target, sh.radix)
              .tau;
      tau = tau_p > tau ? tau_p : tau;
    }
  }
  float thr = tau == 0 ? -INFINITY : key_value(tau);
  if (f.min_p > 0.0) thr = fmaxf(thr, min_p_threshold(m, f.min_p, inv_t));
  return thr;
}

// One block per row, for calls with a filter (Filter::active()); the parameters, outputs
// and rules of sample_kernel (edlm/masked_sample_cuda.cuh). Dynamic shared memory:
// filtered_smem_bytes (the candidates, or the general path's tile statistics).
template <typename T, int kThreads, bool greedy>
__global__ void __launch_bounds__(kThreads, 2)
    filtered_sample_kernel(const T* __restrict__ logits, int64_t sb, int64_t sl, const int64_t* __restrict__ xt,
                           int64_t xsb, int64_t xsl, int64_t L, int64_t V, int64_t mask_id, int64_t k, Filter f,
                           float c, double inv_t, const int64_t* __restrict__ rng, int64_t* __restrict__ out_tok,
                           float* __restrict__ out_logp, float* __restrict__ entropy) {
  EDLM_SHARED(FilterShared<kThreads>, sh);
  EDLM_DYNAMIC_SHARED(float4, dyn);
  const int64_t row = blockIdx.x;
  const int64_t b = row / L, l = row % L;
  const RowOutput out{out_tok + b * k * L + l, out_logp + b * k * L + l, entropy, row, k, L};
  if (out.write_carried_over<kThreads>(xt[b * xsb + l * xsl], mask_id, V)) return;
  const T* row_ptr = logits + b * sb + l * sl;
  const RowView<T> rv(row_ptr, V);
  const int64_t cap = candidate_capacity(V);
  uint64_t* cand = reinterpret_cast<uint64_t*>(dyn);
  // (the top_k-th largest of the thread maxima: top_k tokens are >= it)
  auto kth_thread_max = [&](float tm) {
    float lb_k = -INFINITY;
    if (f.top_k > 0 && f.top_k <= kThreads) {
      const int64_t finite = block_sum<kThreads>(static_cast<int64_t>(tm != -INFINITY), sh.iscratch);
      if (f.top_k <= finite)
        lb_k = key_value(block_radix_select<kThreads, uint32_t>(
                             [&](auto add) { add(order_key(tm), tm != -INFINITY); }, static_cast<uint64_t>(f.top_k),
                             sh.radix)
                             .tau);
    }
    return lb_k;
  };
  auto gather = [&](float lb, int64_t i, float v) {
    if (v >= lb) {
      const int slot = atomicAdd(&sh.count, 1);
      if (slot < cap) cand[slot] = candidate_word(order_key(v), static_cast<int32_t>(i));
    }
  };
  // the speculative bound, from a prefix of the row (each thread's first kPrefixVecs
  // vectors): a valid bound for the whole row, that pass 1 gathers against
  float lb0 = -INFINITY;
  if ((f.top_k > 0 && f.top_k <= kThreads) || (f.min_p > 0.0 && f.top_p == 1.0)) {
    float t0 = -INFINITY;
    for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t, float v) { t0 = fmaxf(t0, v); }, true);
    const float m0 = block_max<kThreads>(t0, sh.base.fscratch);
    lb0 = m0 == -INFINITY ? -INFINITY : candidate_bound(f, kth_thread_max(t0), m0, inv_t);
  }
  // pass 1: the thread maxima, the row max, validity (NaN / +inf), the candidates >= lb0
  float tmax = -INFINITY;
  bool nan = false;
  if (threadIdx.x == 0) {
    sh.base.flag = 0;
    sh.count = 0;
  }
  __syncthreads();
  if (lb0 != -INFINITY) {
    for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t i, float v) {
      nan |= v != v;
      tmax = fmaxf(tmax, v);
      gather(lb0, i, v);
    });
  } else {
    for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t, float v) {
      nan |= v != v;
      tmax = fmaxf(tmax, v);
    });
  }
  const float m = block_max<kThreads>(tmax, sh.base.fscratch);  // syncs: flag and count are visible after
  if (nan) atomicOr(&sh.base.flag, 1);
  __syncthreads();
  const int n0 = sh.count;
  const bool bad = sh.base.flag != 0;
  __syncthreads();  // (every thread has read sh.count and sh.base.flag)
  if (bad || m == -INFINITY || m == INFINITY) {
    out.write_all<kThreads>(mask_id, NAN, NAN);
    return;
  }
  if (lb0 != -INFINITY && n0 <= cap) {  // the row read once
    sample_candidates<T, kThreads, greedy>(cand, n0, m, f, c, inv_t, rng, out, sh);
    return;
  }
  const float lb = candidate_bound(f, kth_thread_max(tmax), m, inv_t);
  if (lb != -INFINITY) {
    // pass 2: gather the candidates against the whole row's bound
    if (threadIdx.x == 0) sh.count = 0;
    __syncthreads();
    for_each_logit<T, kThreads>(rv, mask_id, [&](int64_t i, float v) { gather(lb, i, v); });
    __syncthreads();
    const int n = sh.count;
    __syncthreads();  // (every thread has read sh.count)
    if (n <= cap) {
      sample_candidates<T, kThreads, greedy>(cand, n, m, f, c, inv_t, rng, out, sh);
      return;
    }
  }
  // the general path
  const float thr = general_threshold<T, kThreads>(rv, mask_id, m, f, inv_t, sh);
  const SampleRow<T, true> srow(row_ptr, V, mask_id, thr);
  sample_tiles<T, kThreads, greedy>(srow, c, inv_t, rng, out, dyn, sh.base);
}

}  // namespace cuda
}  // namespace edlm
