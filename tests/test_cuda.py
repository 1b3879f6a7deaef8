"""CPU/CUDA agreement on a real GPU (skipped without one): the table of tests/agreement.py
-- the cases the CUDA simulation runs in every test run (tests/test_cuda_sim.py) -- on the
device, under the same rule: the same seed draws the same tokens, up to the measured rate
of boundary mismatches; floats within 2x the CPU op's error against the float64 reference."""
import pytest
import torch

import edlm_ext

from . import agreement
from .conftest import requires_cuda

pytestmark = requires_cuda

CASES = {c.name: c for c in agreement.cases()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_agrees_with_cpu(name):
    case = CASES[name]
    agreement.compare(case, agreement.run_op(case, "cpu"), agreement.run_op(case, "cuda"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("V", [50258, 126464])
def test_boundary_mismatch_rate_on_the_device(V, dtype):
    # 30k draws at a large vocabulary: the count of boundary mismatches stays within the
    # bound derived from the simulation's measured rate (python/bench/results/sim_mismatch_rate.md).
    g = torch.Generator().manual_seed(V)
    logits = (torch.randn(1, 100, V, generator=g) * 2).to(dtype)
    case = agreement.Case(f"rate_{V}", "sample_proposals",
                          agreement._proposal_args(logits, torch.zeros(1, 100, dtype=torch.long), 0, 300, 1.0))
    agreement.compare(case, agreement.run_op(case, "cpu"), agreement.run_op(case, "cuda"))


@pytest.mark.parametrize("seed", [None, 1234])
def test_cuda_graph_capture(seed):
    # generator path: replays draw fresh noise; seed path: capturable (no host copy), and
    # every replay draws the seed's tokens.
    logits = torch.randn(4, 64, 1000, device="cuda")
    x_t = torch.zeros(4, 64, dtype=torch.long, device="cuda")
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        edlm_ext.masked_sample(logits, x_t, 0, seed=seed, check=False)  # warm-up outside capture
        with torch.cuda.graph(graph):
            x0, logp = edlm_ext.masked_sample(logits, x_t, 0, seed=seed, check=False)
    graph.replay()
    first = x0.clone()
    graph.replay()
    torch.cuda.synchronize()
    if seed is None:
        assert not torch.equal(first, x0), "replays reused the same noise"
    else:
        assert torch.equal(first, x0)
        want, _ = edlm_ext.masked_sample(logits.cpu(), x_t.cpu(), 0, seed=seed)
        assert int((want != x0.cpu()).sum()) <= agreement.max_boundary_mismatches(x0.numel(),
                                                                                  agreement.mismatch_rate_bound(1000))
    assert bool(((x0 > 0) & (x0 < 1000)).all()) and bool(torch.isfinite(logp).all())


def test_the_seed_rule_draws_the_same_on_cpu_and_cuda():
    """seed= through whole loops (tests/test_seed_rule.py shows every key comes from the
    seed): the same tokens on both devices. Small V keeps the chance of a CDF-boundary
    draw (the one documented exception, ~1e-5 per draw here) negligible."""
    from edlm_ext.integrations import hf, mdlm

    from .test_seed_rule import AR, MASK, _Table

    def runs(device):
        den = _Table(0).to(device)
        ar = AR.to(device)
        x = torch.full((2, 12), MASK, device=device)
        return [
            edlm_ext.sample(den, batch_size=2, seq_len=12, mask_id=MASK, steps=4, seed=3, device=device,
                            energy=edlm_ext.AREnergy(ar, bos_id=MASK), k=3, window=0.5).tokens,
            edlm_ext.propose_and_resample(den(x), x, MASK, edlm_ext.AREnergy(ar, bos_id=MASK), 4, seed=4)[0],
            mdlm.ddpm_caching_update(lambda y, t: den(y), x, 0.5, 0.25, mask_id=MASK, seed=5)[1],
            hf.generate(lambda y: den(y), torch.tensor([[1, 2]], device=device), steps=4, gen_length=8,
                        block_length=4, temperature=1.0, mask_id=MASK, seed=6),
        ]

    for cpu, cuda in zip(runs("cpu"), runs("cuda")):
        assert torch.equal(cpu, cuda.cpu())
