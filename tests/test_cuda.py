"""CPU/CUDA agreement: the same seed draws the same tokens on both (skipped without a GPU)."""
import pytest
import torch

import edlm_ext

from .conftest import requires_cuda

pytestmark = requires_cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("V", [2, 999, 4097, 50258, 126464])
@pytest.mark.parametrize("temperature", [1.0, 0.0, 0.7])
def test_cpu_and_cuda_draw_the_same_tokens(dtype, V, temperature):
    B, L = (2, 200) if V > 10000 else (4, 500)
    g = torch.Generator().manual_seed(V)
    logits = (torch.randn(B, L, V, generator=g) * 4).to(dtype)
    x_t = torch.randint(0, V, (B, L), generator=g)
    x_t[torch.rand(B, L, generator=g) < 0.8] = V // 2
    cpu = edlm_ext.masked_sample(logits, x_t, V // 2, temperature=temperature, seed=2024)
    gpu = edlm_ext.masked_sample(logits.cuda(), x_t.cuda(), V // 2, temperature=temperature, seed=2024)
    differ = int((cpu[0] != gpu[0].cpu()).sum())
    assert differ <= max(1, B * L // 10000), f"{differ} of {B * L} tokens differ between CPU and CUDA"
    same = cpu[0] == gpu[0].cpu()
    assert torch.allclose(cpu[1][same], gpu[1].cpu()[same], atol=2e-5, rtol=1e-5)


def test_misaligned_rows_and_strides():
    # Row starts that are not 16-byte aligned exercise the kernel's head/tail items.
    base = torch.randn(3, 7, 1003, dtype=torch.bfloat16)
    for logits in (base, base[:, 1::2], base.permute(1, 0, 2)):
        x_t = torch.full(logits.shape[:2], 5, dtype=torch.long)
        cpu = edlm_ext.masked_sample(logits, x_t, 5, seed=1)
        gpu = edlm_ext.masked_sample(logits.cuda(), x_t.cuda(), 5, seed=1)
        assert torch.equal(cpu[0], gpu[0].cpu())


def test_cuda_graph_capture():
    logits = torch.randn(4, 64, 1000, device="cuda")
    x_t = torch.zeros(4, 64, dtype=torch.long, device="cuda")
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        edlm_ext.masked_sample(logits, x_t, 0, check=False)  # warm-up outside capture
        with torch.cuda.graph(graph):
            x0, logp = edlm_ext.masked_sample(logits, x_t, 0, check=False)
    graph.replay()
    first = x0.clone()
    graph.replay()
    torch.cuda.synchronize()
    assert not torch.equal(first, x0), "replays reused the same noise"
    assert bool(((x0 > 0) & (x0 < 1000)).all()) and bool(torch.isfinite(logp).all())


@pytest.mark.parametrize("filters", [{"top_k": 10}, {"top_p": 0.8}, {"min_p": 0.05}, {"top_k": 40, "top_p": 0.9}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_filters_and_entropy_agree(filters, dtype):
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 100, 50258, generator=g) * 3).to(dtype)
    x_t = torch.full((3, 100), 7, dtype=torch.long)
    for temperature in (0.8, 0.0):
        cpu = edlm_ext.masked_sample(logits, x_t, 7, temperature=temperature, seed=5, return_entropy=True, **filters)
        gpu = edlm_ext.masked_sample(logits.cuda(), x_t.cuda(), 7, temperature=temperature, seed=5,
                                     return_entropy=True, **filters)
        assert int((cpu[0] != gpu[0].cpu()).sum()) <= 1
        assert torch.allclose(cpu[2], gpu[2].cpu(), atol=1e-4)


def test_proposals_and_resample_agree():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 64, 30522, generator=g) * 2
    x_t = torch.full((4, 64), 3, dtype=torch.long)
    x_t[:, ::3] = 11
    cpu = edlm_ext.sample_proposals(logits, x_t, 3, 8, seed=9)
    gpu = edlm_ext.sample_proposals(logits.cuda(), x_t.cuda(), 3, 8, seed=9)
    assert int((cpu[0] != gpu[0].cpu()).sum()) <= 1
    assert torch.allclose(cpu[1], gpu[1].cpu(), atol=1e-3)
    log_w = torch.randn(4, 8, dtype=torch.float64, generator=g) * 3
    a = edlm_ext.importance_resample(log_w, cpu[0], seed=3)
    b = edlm_ext.importance_resample(log_w.cuda(), cpu[0].cuda(), seed=3)
    assert torch.equal(a.index, b.index.cpu()) and torch.equal(a.chosen, b.chosen.cpu())
    assert torch.allclose(a.weights, b.weights.cpu()) and torch.allclose(a.ess, b.ess.cpu())
