"""importance_resample: normalization against float64, index frequencies match the
weights, the gather, invalid rows, one launch (CUDA graph when a GPU is present)."""
import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext import reference

from .conftest import requires_cuda
from .helpers import resample_case as _case
from .stats import CHI2_ALPHA, chisquare_pvalue


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,k", [(1, 1), (16, 8), (5, 33), (3, 100)])
def test_matches_reference(device, dtype, B, k):
    log_w, proposals = _case(B, k, 17, device, dtype)
    if k > 1:
        log_w[0, 0] = float("-inf")  # allowed, weight 0
        log_w[-1, 1] = log_w[-1, 1] + 700.0  # large magnitudes stay stable
    out = edlm_ext.importance_resample(log_w, proposals, seed=11)
    u = reference.row_uniforms((11, 0), B, reference.DOMAIN_RESAMPLE)
    w, lz, ess, idx, chosen = reference.importance_resample(log_w.cpu(), proposals.cpu(), uniforms=u)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert out.weights.dtype == dtype and out.log_z.dtype == dtype and out.ess.dtype == dtype
    assert torch.allclose(out.weights.cpu().double(), w, rtol=tol, atol=tol)
    assert torch.allclose(out.log_z.cpu().double(), lz, rtol=tol, atol=tol)
    assert torch.allclose(out.ess.cpu().double(), ess, rtol=tol, atol=tol)
    assert torch.equal(out.index.cpu(), idx)
    assert torch.equal(out.chosen.cpu(), chosen)
    assert torch.equal(out.chosen, proposals[torch.arange(B, device=device), out.index])
    if k > 1:
        assert bool((out.index[0] != 0).all()), "a -inf candidate was chosen"


def test_index_frequencies_match_the_weights(device):
    k, n = 6, 200_000
    log_w = torch.tensor([0.0, -1.0, 2.0, float("-inf"), -8.0, 0.5], dtype=torch.float64)
    rows = log_w.view(1, k).expand(n, k).contiguous().to(device)
    proposals = torch.arange(k).view(1, k, 1).expand(n, k, 1).contiguous().to(device)
    out = edlm_ext.importance_resample(rows, proposals, seed=4)
    counts = np.bincount(out.index.cpu().numpy(), minlength=k)
    p = torch.softmax(log_w, 0).numpy()
    assert counts[3] == 0
    assert chisquare_pvalue(counts, p) > CHI2_ALPHA
    assert torch.equal(out.chosen[:, 0], out.index)
    # The same check rejects softmax(+log_w) (the sign bug of docs/DESIGN.md §1).
    assert chisquare_pvalue(counts, torch.softmax(-log_w.nan_to_num(neginf=-50), 0).numpy()) < CHI2_ALPHA


def test_ess_limits(device):
    proposals = torch.zeros(2, 4, 3, dtype=torch.long, device=device)
    log_w = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, -1e4, float("-inf"), -1e4]], device=device)
    out = edlm_ext.importance_resample(log_w, proposals, seed=0)
    assert torch.allclose(out.ess.cpu(), torch.tensor([4.0, 1.0]))
    assert out.index[1] == 0


def test_generator_advances(device):
    log_w, proposals = _case(64, 8, 2, device, scale=0.1)
    g = torch.Generator(device=device).manual_seed(0)
    a = edlm_ext.importance_resample(log_w, proposals, generator=g).index
    b = edlm_ext.importance_resample(log_w, proposals, generator=g).index
    assert not torch.equal(a, b)
    c = edlm_ext.importance_resample(log_w, proposals, seed=9).index
    assert torch.equal(c, edlm_ext.importance_resample(log_w, proposals, seed=9).index)


@pytest.mark.parametrize("poison,match", [(float("nan"), "NaN"), (float("inf"), r"\+inf"), ("allneg", "all -inf")])
def test_invalid_rows_raise(device, poison, match):
    log_w, proposals = _case(3, 4, 5, device)
    if poison == "allneg":
        log_w[1] = float("-inf")
    else:
        log_w[1, 2] = poison
    with pytest.raises(ValueError, match=rf"log_w\[1\] (contains |is )?{match}"):
        edlm_ext.importance_resample(log_w, proposals, seed=0)
    out = edlm_ext.importance_resample(log_w, proposals, seed=0, check=False)
    assert out.index[1] == 0 and torch.isnan(out.log_z[1]) and bool(torch.isnan(out.weights[1]).all())
    assert torch.equal(out.chosen[1], proposals[1, 0])


def test_bad_arguments():
    log_w, proposals = _case(2, 3, 4, "cpu")
    with pytest.raises(ValueError, match="log_w must have shape"):
        edlm_ext.importance_resample(log_w[:, :2], proposals)
    with pytest.raises(TypeError, match="log_w must be float32 or float64"):
        edlm_ext.importance_resample(log_w.half(), proposals)
    with pytest.raises(TypeError, match="proposals must be int64"):
        edlm_ext.importance_resample(log_w, proposals.int())
    with pytest.raises(ValueError, match=r"proposals must be \[B, k, L\]"):
        edlm_ext.importance_resample(log_w, proposals[..., 0])
    with pytest.raises(ValueError, match="k = 0"):
        edlm_ext.importance_resample(log_w[:, :0], proposals[:, :0])


def test_compile(device):  # (opcheck: tests/test_op_registry.py)
    log_w, proposals = _case(3, 5, 7, device)

    def step(lw, props):
        return edlm_ext.importance_resample(lw, props, seed=5).chosen + 1

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(log_w, proposals), step(log_w, proposals))


@requires_cuda
def test_cuda_graph_capture():
    log_w, proposals = _case(16, 8, 64, "cuda")
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        edlm_ext.importance_resample(log_w, proposals)  # warm-up
        with torch.cuda.graph(graph):
            out = edlm_ext.importance_resample(log_w, proposals)
    graph.replay()
    first = out.index.clone()
    for _ in range(5):
        graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out.chosen, proposals[torch.arange(16, device="cuda"), out.index])
    assert bool(((out.ess >= 1) & (out.ess <= 8)).all())
    assert first.shape == out.index.shape
