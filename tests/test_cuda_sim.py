"""The CUDA kernels, run on the CPU simulation of the CUDA execution model (csrc/sim),
agree with the CPU ops on every case of tests/agreement.py: under the ASan + UBSan
build in two fiber orders, and (a small set) under ThreadSanitizer in a random order
with zero reports. The same table runs on a real GPU in tests/test_cuda.py.

Regressions found by this simulation, each failing here before its fix:
* filt_*_k50p09*, filt_*_k40p08m002*, sp_k16filt: block_radix_select's thread 0 reset
  the shared result for the top-p select while other threads still read the top-k one
  (wrong top-p thresholds, every top_k + top_p call on a GPU);
* zeros_*: the CPU filter ordered -0.0 below +0.0 and dropped tied -0.0 tokens at a
  top_k / top_p threshold that the CUDA kernel kept;
* test_shared_memory_limit_counts_static_shared: the launcher's shared-memory check left
  out the kernel's static shared memory;
* every sample_kernel case: RowView read 16-bit elements of a vector by type punning a
  uint4 (undefined behaviour that g++ -O2 miscompiles; now bit operations).
"""
import pytest
import torch

import edlm_ext

from . import agreement, cuda_sim

CASES = agreement.cases()
BY_NAME = {c.name: c for c in CASES}
RUNS = {("asan", "forward"): CASES, ("asan", "reverse"): CASES,
        ("tsan", "random"): [c for c in CASES if c.tsan]}
_results: dict = {}
_cpu: dict = {}


def _cpu_out(case):
    if case.name not in _cpu:
        _cpu[case.name] = agreement.run_op(case, "cpu")
    return _cpu[case.name]


def _sim_out(case, variant, order):
    key = (variant, order)
    if key not in _results:  # one simulator process per build and order, all its cases
        _results[key] = cuda_sim.run([agreement.sim_case(c) for c in RUNS[key]], variant, order, seed=2026)
    return agreement.sim_outputs(case, _results[key][case.name])


def test_table_covers_the_issue():
    ops = {c.op for c in CASES}
    assert ops == set(agreement.OPS)
    Vs = {c.args["logits"].shape[-1] for c in CASES if "logits" in c.args}
    assert {1, 2, 7, 999, 8192, 50258, 126464} <= Vs
    dts = {c.args["logits"].dtype for c in CASES if "logits" in c.args}
    assert dts == {torch.float32, torch.bfloat16, torch.float16}
    assert max(c.args.get("k", 1) for c in CASES) >= 300
    rows = [c.args["x_t"].numel() for c in CASES if c.op == "masked_sample"]
    assert min(rows) == 1 and max(rows) >= 2048
    offsets = {c.args["logits"].storage_offset() % 8 for c in CASES if "logits" in c.args}
    assert {1, 3, 5} <= offsets
    assert any(0 in c.args["logits"].stride() for c in CASES if "logits" in c.args)  # expanded
    assert any(int(c.args["rng"][0]) < 0 for c in CASES if "rng" in c.args)
    assert len(RUNS[("tsan", "random")]) >= 8


@pytest.mark.parametrize("name", sorted(BY_NAME))
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_simulated_cuda_agrees_with_cpu(name, order):
    case = BY_NAME[name]
    agreement.compare(case, _cpu_out(case), _sim_out(case, "asan", order))


@pytest.mark.parametrize("name", sorted(c.name for c in RUNS[("tsan", "random")]))
def test_simulated_cuda_agrees_under_tsan(name):
    case = BY_NAME[name]
    agreement.compare(case, _cpu_out(case), _sim_out(case, "tsan", "random"))


def test_boundary_mismatches_stay_within_the_measured_rate():
    # Over the whole table, token mismatches are the rare boundary cases only: no more
    # than the measured rate allows at the table's largest vocabulary.
    draws = mismatches = 0
    for case in CASES:
        if case.op in ("masked_sample", "sample_proposals"):
            r = agreement.compare(case, _cpu_out(case), _sim_out(case, "asan", "forward"))
            draws += r["draws"]
            mismatches += r["boundary_mismatches"]
    assert draws > 5_000
    assert mismatches <= agreement.max_boundary_mismatches(draws, agreement.mismatch_rate_bound(126464))


def test_boundary_rule_has_power():
    # A backend that is off by one token must fail the comparison (not be excused as a
    # boundary case), and so must one that ignores the temperature.
    case = BY_NAME["ms_f32_V999_T1.0"]
    cpu = _cpu_out(case)
    x0, logp, ent = cpu
    shifted = torch.where(case.args["x_t"] == case.args["mask_id"], (x0 + 1) % 999, x0)
    with pytest.raises(AssertionError, match="not at a CDF boundary"):
        agreement.compare(case, cpu, (shifted, logp, ent))
    hot = agreement.Case(case.name, case.op, dict(case.args, temperature=0.5))
    with pytest.raises(AssertionError):
        agreement.compare(hot, agreement.run_op(hot), cpu)


def _limit_case(V: int):
    logits = torch.randn(1, 1, V)
    return agreement.Case(f"smem_V{V}", "masked_sample",
                          agreement._sample_args(logits, torch.zeros(1, 1, dtype=torch.long), 0, 1.0, entropy=False))


def test_shared_memory_limit_counts_static_shared():
    # sample_kernel's dynamic shared memory is one float4 per tile of 512 fp32 logits.
    # At V = 1572600 it is 49152 bytes (exactly 48 KiB) -- under the limit alone, over it
    # with the kernel's static BlockShared: the launch logic must refuse the call
    # (the GPU would refuse the launch) and accept one row of V = 1559000.
    over, under = _limit_case(1_572_600), _limit_case(1_559_000)
    res = cuda_sim.run([agreement.sim_case(over), agreement.sim_case(under)], "asan")
    assert res[over.name]["status"].startswith("rejected sample: V = 1572600 is too large for the CUDA kernel")
    agreement.compare(under, agreement.run_op(under), agreement.sim_outputs(under, res[under.name]))


def test_launch_rejections_name_the_cause():
    # The launch logic's own checks, as the CUDA launcher raises them (ValueError there).
    case = agreement.sim_case(BY_NAME["ms_f32_one_row"])
    case.name = "float64_logits"
    case.ints["dtype"] = 1  # edlm::DType::kFloat64: no sampling kernel for it
    res = cuda_sim.run([case], "asan")
    assert res["float64_logits"]["status"] == "rejected sample: logits must be float32, bfloat16 or float16"


def test_signed_zero_ties_are_kept_on_cpu():
    # Four +0.0 and four -0.0 logits on top, everything else far below: top_k = 3 keeps
    # all eight (ties at the threshold are kept, -0.0 == +0.0), so the -0.0 tokens are
    # drawn about half the time. Before the fix the CPU never drew them.
    rows = agreement._signed_zero_rows(4000, 257).view(1, 4000, 257)
    x_t = torch.zeros(1, 4000, dtype=torch.long)
    for f in (dict(top_k=3), dict(top_p=0.3), dict(top_k=6, top_p=0.5)):
        x0, _ = edlm_ext.masked_sample(rows, x_t, 0, seed=3, **f)
        neg = int(((x0 >= 14) & (x0 < 18)).sum())
        pos = int(((x0 >= 10) & (x0 < 14)).sum())
        assert pos + neg == 4000
        assert abs(neg - 2000) < 6 * 2000**0.5, (f, neg)  # binomial(4000, 1/2), 6 sigma
