"""The CUDA simulation's self-test: every planted bug in csrc/sim/selftest.cpp is reported
by the detector it is planted for, and the correct control kernels pass everywhere.
A simulator that reports nothing proves nothing; these tests prove it reports."""
import pytest

from . import cuda_sim

# What each planted bug's report must say (the simulation's own checks: exit status 3).
SIM_MESSAGES = {
    "divergent_shuffle": "divergent collective",
    "shuffle_mask_excludes_caller": "does not name the calling lane",
    "shuffle_reads_outside_mask": "which mask 0x0000ffff does not name",
    "exited_lane_in_collective": "which has exited",
    "misaligned_vector_load": "misaligned 16-byte vector load",
    "barrier_not_reached": "never reaches: it has exited",
    "divergent_barrier": "divergent __syncthreads",
}
# AddressSanitizer / UBSan reports of the out-of-bounds accesses.
ASAN_MESSAGES = {
    "dynamic_shared_oob": "heap-buffer-overflow",
    "global_oob": "heap-buffer-overflow",
    "static_shared_oob": "out of bounds",
}
SELFTESTS = cuda_sim.selftests()


def test_every_selftest_has_an_expected_report():
    for name, detectors in SELFTESTS.items():
        if "sim" in detectors:
            assert name in SIM_MESSAGES, name
        if "asan" in detectors:
            assert name in ASAN_MESSAGES, name
    assert {n for n, d in SELFTESTS.items() if d != ["none"]} >= set(SIM_MESSAGES) | set(ASAN_MESSAGES)
    assert any("tsan" in d for d in SELFTESTS.values()) and any("order" in d for d in SELFTESTS.values())


@pytest.mark.parametrize("name", sorted(n for n, d in SELFTESTS.items() if "sim" in d))
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_simulation_reports_planted_bug(name, order):
    p = cuda_sim.selftest(name, "asan", order)
    assert p.returncode == 3, f"{name}: exit {p.returncode}, stderr:\n{p.stderr}"
    assert "edlm_sim: error:" in p.stderr and SIM_MESSAGES[name] in p.stderr, p.stderr
    assert "selftest.cpp:" in p.stderr, "the report names the source line"


@pytest.mark.parametrize("name", sorted(n for n, d in SELFTESTS.items() if "asan" in d))
def test_asan_reports_out_of_bounds(name):
    p = cuda_sim.selftest(name, "asan")
    assert p.returncode in (23, 24), f"{name}: exit {p.returncode}, stderr:\n{p.stderr}"
    assert ASAN_MESSAGES[name] in p.stderr, p.stderr


@pytest.mark.parametrize("name", sorted(n for n, d in SELFTESTS.items() if "tsan" in d))
def test_tsan_reports_shared_memory_race(name):
    p = cuda_sim.selftest(name, "tsan")
    assert p.returncode == 66, f"{name}: exit {p.returncode}, stderr:\n{p.stderr}"
    assert "ThreadSanitizer: data race" in p.stderr, p.stderr


@pytest.mark.parametrize("name", sorted(n for n, d in SELFTESTS.items() if "order" in d))
def test_fiber_order_exposes_race(name):
    # The racy kernel gives the right answer in one fiber order and a wrong one (the
    # poisoned value, or another thread's result) in the other.
    codes = {order: cuda_sim.selftest(name, "asan", order).returncode for order in ("forward", "reverse")}
    assert sorted(codes.values()) == [0, 4], codes


@pytest.mark.parametrize("name", sorted(n for n, d in SELFTESTS.items() if d == ["none"]))
@pytest.mark.parametrize("variant,order", [("asan", "forward"), ("asan", "reverse"), ("asan", "random"),
                                           ("tsan", "random")])
def test_correct_kernels_pass(name, variant, order):
    p = cuda_sim.selftest(name, variant, order)
    assert p.returncode == 0 and "Sanitizer" not in p.stderr and "error" not in p.stderr, p.stderr
