"""masked_sample's contract at the edges: clear errors for bad input,
torch.compile(fullgraph=True), build info."""
import pytest
import torch

import edlm_ext


def _ok(B=2, L=3, V=10, device="cpu"):
    return torch.randn(B, L, V, device=device), torch.zeros(B, L, dtype=torch.long, device=device)


def test_build_info():
    info = edlm_ext.build_info()
    assert "cpu" in info["backends"]
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    if "cuda" in info["backends"]:
        assert info["cuda_version"] and info["cuda_archs"]
    else:
        assert info["cuda_version"] is None


@pytest.mark.parametrize(
    "mutate,exc,match",
    [
        (lambda lg, x: (lg.double(), x), TypeError, "logits must be float32"),
        (lambda lg, x: (lg.long(), x), TypeError, "logits must be float32"),
        (lambda lg, x: (lg, x.int()), TypeError, "x_t must be int64"),
        (lambda lg, x: (lg.numpy(), x), TypeError, "logits must be a torch.Tensor"),
        (lambda lg, x: (lg[0], x), ValueError, r"logits must be \[B, L, V\]"),
        (lambda lg, x: (lg, x[:, :2]), ValueError, "x_t must have shape"),
        (lambda lg, x: (lg[..., :0], x), ValueError, "V = 0"),
    ],
)
def test_bad_arguments(mutate, exc, match):
    logits, x_t = mutate(*_ok())
    with pytest.raises(exc, match=match):
        edlm_ext.masked_sample(logits, x_t, 0)


@pytest.mark.parametrize("mask_id", [-1, 10, 99])
def test_mask_id_out_of_range(mask_id):
    with pytest.raises(ValueError, match="mask_id"):
        edlm_ext.masked_sample(*_ok(), mask_id)
    with pytest.raises(TypeError, match="mask_id"):
        edlm_ext.masked_sample(*_ok(), 1.0)


@pytest.mark.parametrize("temperature", [-0.1, float("nan"), float("inf")])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        edlm_ext.masked_sample(*_ok(), 0, temperature=temperature)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"top_k": -1}, ValueError, "top_k"),
        ({"top_k": 2.0}, TypeError, "top_k"),
        ({"top_p": 0.0}, ValueError, "top_p"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"min_p": -0.1}, ValueError, "min_p"),
        ({"min_p": 1.1}, ValueError, "min_p"),
    ],
)
def test_bad_filters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        edlm_ext.masked_sample(*_ok(), 0, **kwargs)
    with pytest.raises(exc, match=match):
        edlm_ext.sample_proposals(*_ok(), 0, 2, **kwargs)


@pytest.mark.parametrize("bad_id", [-3, 10, 2**40])
def test_x_t_ids_out_of_range(device, bad_id):
    logits, x_t = _ok(device=device)
    x_t[1, 2] = bad_id
    with pytest.raises(ValueError, match=r"x_t\[1, 2\] = .* outside \[0, V = 10\)"):
        edlm_ext.masked_sample(logits, x_t, 0)


@pytest.mark.parametrize("poison,match", [(float("nan"), "NaN"), (float("inf"), r"\+inf")])
def test_poisoned_masked_row(device, poison, match):
    for temperature in (1.0, 0.0):
        logits, x_t = _ok(device=device)
        logits[0, 1, 7] = poison
        with pytest.raises(ValueError, match=rf"logits\[0, 1\].*{match}"):
            edlm_ext.masked_sample(logits, x_t, 0, temperature=temperature)


def test_row_with_only_mask_finite(device):
    logits, x_t = _ok(V=5, device=device)
    logits[1, 0] = float("-inf")
    logits[1, 0, 0] = 3.0  # only [MASK] (id 0) is finite
    with pytest.raises(ValueError, match=r"logits\[1, 0\].*no finite logit except \[MASK\]"):
        edlm_ext.masked_sample(logits, x_t, 0)


def test_vocabulary_of_one(device):
    # V = 1: the only token is [MASK]; unmasked rows cannot exist, masked ones cannot be drawn.
    logits, x_t = _ok(V=1, device=device)
    with pytest.raises(ValueError, match=r"logits\[0, 0\].*no finite logit except \[MASK\]"):
        edlm_ext.masked_sample(logits, x_t, 0)
    x0, logp = edlm_ext.masked_sample(logits, x_t, 0, check=False, seed=0)
    assert bool((x0 == 0).all()) and bool(torch.isnan(logp).all())


def test_invalid_rows_without_check_stay_in_range(device):
    logits, x_t = _ok(device=device)
    logits[0, 0, 3] = float("nan")
    x_t[1, 1] = 99
    x0, logp = edlm_ext.masked_sample(logits, x_t, 0, check=False, seed=1)
    assert x0[0, 0] == 0 and x0[1, 1] == 0 and torch.isnan(logp[0, 0]) and torch.isnan(logp[1, 1])
    assert bool(((x0 >= 0) & (x0 < 10)).all())


def test_device_mismatch():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    logits, x_t = _ok()
    with pytest.raises(ValueError, match="x_t is on"):
        edlm_ext.masked_sample(logits.cuda(), x_t, 0)


def test_cuda_tensor_on_cpu_only_build_says_so():
    if "cuda" in edlm_ext.build_info()["backends"] or not torch.cuda.is_available():
        pytest.skip("only meaningful on a CPU-only build with a GPU present")
    with pytest.raises(NotImplementedError, match="CUDA"):
        edlm_ext.masked_sample(*_ok(device="cuda"), 0)


def test_compile_fullgraph(device):
    def step(logits, x_t):
        x0, logp = edlm_ext.masked_sample(logits, x_t, 0, seed=3)
        return x0 * 2, logp.sum(-1)

    logits = torch.randn(2, 6, 50, device=device)
    x_t = torch.zeros(2, 6, dtype=torch.long, device=device)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    a, b = compiled(logits, x_t), step(logits, x_t)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])
