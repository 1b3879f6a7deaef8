"""A sampling step that calls our ops compiles with torch.compile(fullgraph=True) (no graph
breaks from the ops; CPU), and is captured and replayed in a CUDA graph (GPU only).

Under torch.compile the ops draw their noise key from the default generator
(``generator=None``): dynamo cannot trace a ``torch.Generator`` argument.
"""
import pytest
import torch

from edlm_ext.models import TinyDenoiser
from edlm_ext.ops import importance_resample, masked_sample, sample_proposals, unmask, unmask_confident

from .conftest import requires_cuda

V, MASK = 8, 7


def _ops_step(logits, x, p):
    x0, logp = masked_sample(logits, x, MASK, temperature=1.0)
    by_confidence = unmask_confident(x, x0, logp.exp(), MASK, n=2)
    by_threshold = unmask_confident(x, x0, logp.exp(), MASK, threshold=0.5)
    ancestral = unmask(x, x0, MASK, p)
    proposals, log_q = sample_proposals(logits, x, MASK, 3)
    return by_confidence, by_threshold, ancestral, importance_resample(log_q, proposals).chosen


def _inputs(device="cpu"):
    x = torch.full((2, 6), MASK, device=device)
    x[:, 0] = 3
    return x, torch.full((2,), 0.5, dtype=torch.float64, device=device)


def _check_step_outputs(outs, x):
    masked = x == MASK
    by_confidence, by_threshold, ancestral, chosen = outs
    for out in outs:
        assert torch.equal(out[~masked], x[~masked])  # unmasked positions never change
    assert torch.equal((by_confidence != MASK).sum(1), (~masked).sum(1) + 2)
    assert bool(((by_threshold != MASK).sum(1) >= (~masked).sum(1) + 1).all())
    assert not bool((chosen == MASK).any())


def test_model_and_ops_step_compiles_fullgraph_and_matches_eager():
    torch.manual_seed(0)
    den = TinyDenoiser(V, MASK, max_len=16).eval()

    def step(x, p):
        with torch.no_grad():
            logits = den(x)
        return _ops_step(logits, x, p)

    x, p = _inputs()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    torch.manual_seed(1)
    got = compiled(x, p)
    torch.manual_seed(1)
    want = step(x, p)
    _check_step_outputs(got, x)
    for a, b in zip(got, want):  # same default-generator stream: the same draws as eager
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(compiled(x, p), got))  # fresh noise per call


def test_ops_step_compiles_with_inductor():
    torch._dynamo.reset()
    logits = torch.randn(2, 6, V)
    x, p = _inputs()
    compiled = torch.compile(_ops_step, fullgraph=True)
    _check_step_outputs(compiled(logits, x, p), x)


@requires_cuda
def test_step_replays_in_a_cuda_graph():
    logits = torch.randn(2, 6, V, device="cuda")
    x, p = _inputs("cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph
        _ops_step(logits, x, p)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = _ops_step(logits, x, p)
    seen = []
    for _ in range(8):
        graph.replay()
        torch.cuda.synchronize()
        _check_step_outputs(outs, x)
        seen.append(torch.cat([o.flatten() for o in outs]).clone())
    assert len({tuple(s.tolist()) for s in seen}) > 1  # each replay draws fresh noise
