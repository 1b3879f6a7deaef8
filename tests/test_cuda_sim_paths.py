"""The CUDA sampling kernels' rarer paths, run on the CPU simulation (csrc/sim, ASan build)
and compared with the CPU op by the rules of tests/agreement.py:

* filtered_sample_kernel when the prefix's speculative bound admits more candidates than
  shared memory holds (pass 2 with the whole row's bound), and when that bound does too
  (ties: the general radix path), greedy and not;
* sample_kernel's unfused exp2 argument (tiles whose reference m_t c is past 2^22).
Each case first proves it takes the path it is named for, through a CPU-side count of the
candidates the bounds admit."""
import pytest
import torch

from . import agreement, cuda_sim

CAP = 2048  # edlm::cuda::kCandidateCap
PREFIX = 4 * 256  # kPrefixVecs x kThreads vectors: the prefix's items


def _prefix_overflow_case(greedy: bool) -> agreement.Case:
    # the first 16384 logits (the prefix, bf16: 8 per vector) low, the rest N(0, 3^2): the
    # prefix's bound is low, so pass 1 gathers most of the row (> CAP); the whole row's
    # thread maxima then bound top_k = 50 tightly
    g = torch.Generator().manual_seed(7)
    V, L = 50258, 3
    logits = torch.randn(1, L, V, generator=g) * 3
    logits[..., : PREFIX * 8 + 64] = -20.0
    logits = logits.to(torch.bfloat16)
    x = torch.full((1, L), 5, dtype=torch.long)
    return agreement.Case(f"prefix_overflow_{'greedy' if greedy else 'sample'}", "masked_sample",
                          agreement._sample_args(logits, x, 5, 0.0 if greedy else 0.9, top_k=50, top_p=0.9))


def _tie_overflow_case(greedy: bool) -> agreement.Case:
    V, L = 20001, 4
    logits = torch.full((1, L, V), 1.5)
    logits[..., :50] = -2.0
    x = torch.full((1, L), V - 1, dtype=torch.long)
    return agreement.Case(f"tie_overflow_{'greedy' if greedy else 'sample'}", "masked_sample",
                          agreement._sample_args(logits, x, V - 1, 0.0 if greedy else 1.0, top_k=10, top_p=0.95))


def _unfused_case() -> agreement.Case:
    g = torch.Generator().manual_seed(4)
    V = 3000
    logits = 1e6 + torch.randint(0, 40, (2, 16, V), generator=g).float() * 0.0625
    x = torch.full((2, 16), V - 1, dtype=torch.long)
    return agreement.Case("unfused_tiles", "masked_sample", agreement._sample_args(logits, x, V - 1, 0.05))


CASES = [_prefix_overflow_case(False), _prefix_overflow_case(True), _tie_overflow_case(False),
         _tie_overflow_case(True), _unfused_case()]


def test_cases_take_their_paths():
    c = CASES[0].args
    row = c["logits"][0, 0].float()
    # the prefix bound admits more than CAP; the whole row's (top_k-th largest of 256 thread maxima) fewer
    lb0 = row[: PREFIX * 8].max()  # every prefix thread max is the low value: the bound is it
    assert int((row >= lb0).sum()) > CAP
    # row 0 starts aligned: vector q (8 logits) is thread q % 256's (the tail: thread 1's)
    body = row[: row.numel() // 8 * 8].view(-1, 8).amax(1)
    owner = torch.arange(body.numel()) % 256
    maxima = torch.full((256,), float("-inf")).scatter_reduce(0, owner, body, "amax")
    lb = maxima.topk(50).values[-1]
    assert int((row >= lb).sum()) < CAP
    tie = CASES[2].args["logits"][0, 0]
    assert int((tie == tie.max()).sum()) > CAP  # any bound admits every tie
    big = CASES[4].args["logits"].max() * 1.4426950408889634 / 0.05
    assert float(big) > 2**22  # past the fused reference limit


@pytest.fixture(scope="module")
def sim_results():
    return cuda_sim.run([agreement.sim_case(c) for c in CASES], "asan", "forward")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rare_paths_agree_with_cpu(case, sim_results):
    agreement.compare(case, agreement.run_op(case), agreement.sim_outputs(case, sim_results[case.name]))


TSAN = [c for c in CASES if c.name in ("prefix_overflow_sample", "tie_overflow_sample")]


@pytest.fixture(scope="module")
def tsan_results():
    return cuda_sim.run([agreement.sim_case(c) for c in TSAN], "tsan", "random", seed=14)


@pytest.mark.parametrize("case", TSAN, ids=[c.name for c in TSAN])
def test_rare_paths_race_free(case, tsan_results):
    # ThreadSanitizer in a random fiber order: zero reports (a report fails the run), same draws
    agreement.compare(case, agreement.run_op(case), agreement.sim_outputs(case, tsan_results[case.name]))
