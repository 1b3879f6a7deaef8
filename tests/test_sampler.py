"""edlm_ext.sample: caching and first-hitting draw from the same distribution as the
plain ancestral sampler, prefixes never change, seeds reproduce, strategies run,
and an end-to-end EDLM run with tiny random transformers."""
import itertools

import numpy as np
import pytest
import torch
from scipy import stats as sstats

import edlm_ext
from edlm_ext.models import TinyAR, TinyDenoiser, TinyEnergyNet

from .stats import CHI2_ALPHA

T, MASK, V, L = 3, 3, 4, 3
SEQS = torch.tensor(list(itertools.product(range(T), repeat=L)))  # [27, L]


def _joint():
    g = torch.Generator().manual_seed(1)
    j = torch.rand(27, generator=g, dtype=torch.float64) ** 3
    return j / j.sum()


JOINT = _joint()


def exact_denoiser(x_t: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
    """The joint's exact conditional marginals p(x0_i | unmasked tokens of x_t)."""
    consistent = ((x_t.unsqueeze(1) == SEQS.unsqueeze(0)) | (x_t.unsqueeze(1) == MASK)).all(-1)  # [N, 27]
    w = consistent * JOINT  # [N, 27]
    onehot = torch.nn.functional.one_hot(SEQS, T).double()  # [27, L, T]
    marg = torch.einsum("ns,slt->nlt", w, onehot)
    logits = torch.full((x_t.shape[0], L, V), float("-inf"), dtype=torch.float64)
    logits[..., :T] = (marg / marg.sum(-1, keepdim=True)).log()
    return logits.float()


exact_denoiser.time_independent = True  # it ignores t: the sampler may reuse its logits


def _final_counts(out: torch.Tensor) -> np.ndarray:
    idx = out[:, 0] * 9 + out[:, 1] * 3 + out[:, 2]
    return torch.bincount(idx, minlength=27).numpy()


def _homogeneity_p(a: np.ndarray, b: np.ndarray) -> float:
    keep = (a + b) > 0
    return float(sstats.chi2_contingency(np.stack([a[keep], b[keep]]))[1])


N = 20_000


@pytest.fixture(scope="module")
def ancestral_counts():
    out = edlm_ext.sample(exact_denoiser, batch_size=N, seq_len=L, mask_id=MASK, steps=3, cache=False, seed=1)
    assert not bool((out.tokens == MASK).any())
    return _final_counts(out.tokens)


def test_caching_keeps_the_distribution(ancestral_counts):
    out = edlm_ext.sample(exact_denoiser, batch_size=N, seq_len=L, mask_id=MASK, steps=3, cache=True, seed=2)
    assert _homogeneity_p(ancestral_counts, _final_counts(out.tokens)) > CHI2_ALPHA


def test_first_hitting_keeps_the_distribution(ancestral_counts):
    out = edlm_ext.sample(exact_denoiser, batch_size=N, seq_len=L, mask_id=MASK, steps=3, first_hitting=True, seed=3)
    assert _homogeneity_p(ancestral_counts, _final_counts(out.tokens)) > CHI2_ALPHA


def test_the_homogeneity_check_sees_a_different_sampler(ancestral_counts):
    out = edlm_ext.sample(exact_denoiser, batch_size=N, seq_len=L, mask_id=MASK, steps=3, temperature=0.6, seed=4)
    assert _homogeneity_p(ancestral_counts, _final_counts(out.tokens)) < CHI2_ALPHA


def test_caching_skips_denoiser_calls():
    calls = []

    def counting(x, t):
        calls.append(1)
        return exact_denoiser(x, t)

    counting.time_independent = True
    out = edlm_ext.sample(counting, batch_size=1, seq_len=L, mask_id=MASK, steps=64, seed=0)
    assert out.stats.cached_steps > 0
    assert out.stats.denoiser_calls == len(calls) <= L + 1  # one call per change (+ final denoise)
    fh = edlm_ext.sample(counting, batch_size=1, seq_len=L, mask_id=MASK, steps=64, first_hitting=True, seed=0)
    assert fh.stats.skipped_steps > 0 and fh.stats.denoiser_calls <= L + 1


def test_no_cache_unless_the_denoiser_declares_time_independence():
    seen = []

    def undeclared(x, t):  # may depend on t: every step with a masked position calls it
        seen.append(float(t[0]))
        return exact_denoiser(x, t)

    out = edlm_ext.sample(undeclared, batch_size=1, seq_len=L, mask_id=MASK, steps=64, seed=0)
    assert out.stats.cached_steps == 0 and out.stats.denoiser_calls == out.stats.steps - out.stats.skipped_steps
    assert len(set(seen)) == len(seen)  # each call at its own time
    undeclared.time_independent = False
    assert edlm_ext.sample(undeclared, batch_size=1, seq_len=L, mask_id=MASK, steps=64, seed=0).stats.cached_steps == 0


def _tiny(vocab=50, mask_id=49, seed=0):
    torch.manual_seed(seed)
    return TinyDenoiser(vocab, mask_id).eval(), TinyAR(vocab).eval()


def test_prefix_positions_never_change():
    den, _ = _tiny()
    prefix = torch.tensor([5, 6, 7])
    out = edlm_ext.sample(den, batch_size=4, seq_len=16, mask_id=49, steps=8, prefix=prefix, seed=0)
    assert bool((out.tokens[:, :3] == prefix).all())
    infill = torch.full((16,), -1)
    infill[[0, 9, 15]] = torch.tensor([1, 2, 3])
    out = edlm_ext.sample(den, batch_size=4, seq_len=16, mask_id=49, steps=8, prefix=infill, seed=0)
    assert bool((out.tokens[:, [0, 9, 15]] == torch.tensor([1, 2, 3])).all())
    assert not bool((out.tokens == 49).any())


@pytest.mark.parametrize("strategy", ["ancestral", "confidence", "threshold"])
def test_same_seed_same_output(strategy):
    den, ar = _tiny()
    kw = dict(batch_size=3, seq_len=12, mask_id=49, steps=6, strategy=strategy, energy=edlm_ext.AREnergy(ar, bos_id=49), k=4,
              window=0.5)
    a = edlm_ext.sample(den, seed=11, **kw).tokens
    b = edlm_ext.sample(den, seed=11, **kw).tokens
    c = edlm_ext.sample(den, seed=12, **kw).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not bool((a == 49).any())


def test_confidence_strategy_unmasks_evenly():
    den, _ = _tiny()
    seen = []

    def watch(x, t):
        seen.append(int((x == 49).sum()))
        return den(x, t)

    edlm_ext.sample(watch, batch_size=1, seq_len=12, mask_id=49, steps=4, strategy="confidence", cache=False, seed=0)
    assert seen == [12, 9, 6, 3]


def test_edlm_end_to_end_with_tiny_models():
    den, ar = _tiny()
    out = edlm_ext.sample(den, batch_size=4, seq_len=16, mask_id=49, steps=8, energy=edlm_ext.AREnergy(ar, bos_id=49), k=4,
                          window=0.5, seed=0, progress=True, energy_chunk=5)
    st = out.stats
    assert out.tokens.shape == (4, 16) and not bool((out.tokens == 49).any())
    assert st.energy_calls >= 1 and len(st.ess) == st.energy_calls
    assert all(1.0 <= e <= 4.0 + 1e-6 for e in st.ess)
    assert st.denoiser_calls >= 1 and st.time_total > 0 and st.tokens_per_second > 0
    assert "mean_ess" in st.summary()
    nce = edlm_ext.NCEEnergy(TinyEnergyNet(50, 49).eval())
    out = edlm_ext.sample(den, batch_size=2, seq_len=16, mask_id=49, steps=4, energy=nce, k=3, window=1.0, seed=1)
    assert out.stats.energy_calls == 4 and not bool((out.tokens == 49).any())


def test_energy_sees_candidates_grouped_by_row():
    den, _ = _tiny()
    x_t = torch.full((3, 10), 49)
    x_t[:, 0] = torch.tensor([0, 1, 2])  # a row label
    seen = {}

    def energy(c, x, *, log_q, mask_id):
        seen["c"], seen["x"], seen["log_q"], seen["mask_id"] = c, x, log_q, mask_id
        return torch.zeros(c.shape[0])

    edlm_ext.propose_and_resample(den(x_t, None), x_t, 49, energy, 5, seed=0)
    assert torch.equal(seen["x"][:, 0], torch.tensor([0, 1, 2]).repeat_interleave(5))
    assert torch.equal(seen["c"][:, 0], seen["x"][:, 0])
    assert seen["log_q"].dtype == torch.float64 and seen["log_q"].shape == (15,) and seen["mask_id"] == 49


def test_bad_arguments():
    den, _ = _tiny()
    kw = dict(batch_size=1, seq_len=4, mask_id=49)
    with pytest.raises(ValueError, match="strategy"):
        edlm_ext.sample(den, steps=2, strategy="nope", **kw)
    with pytest.raises(ValueError, match="steps"):
        edlm_ext.sample(den, steps=0, **kw)
    with pytest.raises(ValueError, match="window"):
        edlm_ext.sample(den, steps=2, window=1.5, **kw)
    with pytest.raises(ValueError, match="prefix"):
        edlm_ext.sample(den, steps=2, prefix=torch.tensor([49]), **kw)

    def bad_energy(c, x, **_):
        return torch.zeros(1)

    with pytest.raises(ValueError, match="energy must return"):
        edlm_ext.sample(den, steps=2, energy=bad_energy, k=2, window=1.0, **kw)


def test_train_nce_learns_an_easy_energy():
    # Data: constant sequences; the frozen denoiser is uniform, so negatives are noise.
    vocab, mask = 8, 7
    g = torch.Generator().manual_seed(0)

    def data():
        while True:
            yield torch.randint(0, 7, (32, 1), generator=g).expand(32, 12).contiguous()

    def uniform_denoiser(x, t):
        out = torch.zeros(x.shape[0], x.shape[1], vocab)
        out[..., mask] = float("-inf")
        return out

    torch.manual_seed(0)
    net = TinyEnergyNet(vocab, mask, d_model=16, n_layers=1)
    hist = edlm_ext.train_nce(uniform_denoiser, net, data(), mask_id=mask, steps=150, lr=3e-3, generator=g)
    assert len(hist) == 150 and all(np.isfinite(h["loss"]) for h in hist)
    late = np.mean([h["accuracy"] for h in hist[-20:]])
    early = np.mean([h["loss"] for h in hist[:10]])
    assert late > 0.8 and np.mean([h["loss"] for h in hist[-20:]]) < early
