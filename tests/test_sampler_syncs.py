"""A step of edlm_ext.sample makes one host synchronization (its flags: anything still
masked, x_t changed since the cached logits, the previous step's invalid-row checks),
without timing, for every update rule, first-hitting and importance sampling. Counted
by tests/sync_counter.py on the ops a CUDA run would wait for, so the count holds on
CPU too; each kind of synchronization is shown to be counted, and a sampler that checks
its draws eagerly (the wrappers' default check=True) is shown to fail the count."""
import functools

import pytest
import torch

import edlm_ext
from edlm_ext import sampler

from .sync_counter import HostSyncCounter

V, MASK, L = 24, 23, 16


class _Table(torch.nn.Module):
    """A denoiser / AR model without any synchronization of its own: logits from a
    token table and a position table ([MASK] never predicted)."""

    time_independent = True

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.tok = torch.nn.Parameter(torch.randn(V, V, generator=g), requires_grad=False)
        self.pos = torch.nn.Parameter(torch.randn(L, V, generator=g), requires_grad=False)
        self.register_buffer("blocked", torch.arange(V) == MASK)

    def forward(self, x, t=None):
        out = self.tok[x] + self.pos[: x.shape[1]]
        return out.masked_fill(self.blocked, float("-inf"))


def _per_step_syncs(monkeypatch, **kwargs) -> tuple[list[int], int, edlm_ext.SampleOutput]:
    """(syncs of each grid step, syncs in total, the output) of one sample() call."""
    per_step = []
    step = sampler._step

    def counted_step(*args):
        before = counter.count
        out = step(*args)
        per_step.append(counter.count - before)
        return out

    monkeypatch.setattr(sampler, "_step", counted_step)
    with HostSyncCounter() as counter:
        out = edlm_ext.sample(_Table(0), batch_size=3, seq_len=L, mask_id=MASK, seed=0, **kwargs)
    return per_step, counter.count, out


AR = _Table(1)
CASES = {
    "ancestral": dict(steps=8),
    "ancestral_uncached": dict(steps=8, cache=False),
    "first_hitting": dict(steps=32, first_hitting=True),
    "confidence": dict(steps=8, strategy="confidence"),
    "threshold": dict(steps=8, strategy="threshold", threshold=0.5),
    "edlm_ar": dict(steps=8, energy=edlm_ext.AREnergy(AR, bos_id=MASK), k=4, window=1.0),
    "edlm_ar_first_hitting": dict(steps=16, energy=edlm_ext.AREnergy(AR, bos_id=MASK), k=4, window=0.5,
                                  first_hitting=True),
    "edlm_ar_unmask_first": dict(steps=16, energy=edlm_ext.AREnergy(AR, bos_id=MASK), k=4, window=(0.2, 0.9),
                                 proposal="unmask-first", is_temp=0.5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_sampling_step_makes_one_host_synchronization(monkeypatch, case):
    per_step, total, out = _per_step_syncs(monkeypatch, **CASES[case])
    assert len(per_step) == CASES[case]["steps"]
    assert per_step == [1] * len(per_step), per_step
    assert total - sum(per_step) <= 3  # after the loop: the ESS values, the last flags, a final denoise
    assert not bool((out.tokens == MASK).any())


def test_smc_makes_one_host_synchronization_per_step():
    steps = 8
    with HostSyncCounter() as counter:
        out = edlm_ext.sample(_Table(0), batch_size=3, seq_len=L, mask_id=MASK, seed=0, steps=steps,
                              energy=edlm_ext.AREnergy(AR, bos_id=MASK), k=4, window=1.0, proposal="smc")
    assert counter.count <= steps + 3, counter.count  # after the loop: the last checks, the ESS, the resamples
    assert not bool((out.tokens == MASK).any())


def test_the_counter_sees_every_kind_of_synchronization():
    t = torch.tensor([0.0, 1.0, 2.0])
    calls = [lambda: bool(t.any()), lambda: t.sum().item(), lambda: int(t[1]), lambda: float(t[2]),
             lambda: t.tolist(), lambda: t.numpy(), lambda: torch.equal(t, t), lambda: t.nonzero(),
             lambda: t[t > 0], lambda: t.masked_select(t > 0), lambda: t.repeat_interleave(torch.tensor([1, 2, 1]))]
    for call in calls:
        with HostSyncCounter() as counter:
            call()
        assert counter.count == 1, counter.seen
    with HostSyncCounter() as counter:
        try:
            torch.cuda.synchronize()
        except (RuntimeError, AssertionError):  # no CUDA here: the call still counts
            pass
    assert counter.count == 1
    with HostSyncCounter() as counter:  # not synchronizing: device-side work only
        (t * 2).sum(0)
        torch.where(t > 0, t, -t)
        t.unsqueeze(1).expand(3, 4).reshape(12)
    assert counter.count == 0, counter.seen


def test_an_eagerly_checking_sampler_fails_the_count(monkeypatch):
    """Power: the wrappers' default check=True inside the step (as the sampler had it)
    adds a synchronization per step, which the count above would refuse."""
    eager = functools.partial(edlm_ext.masked_sample, check=True)
    monkeypatch.setattr(sampler, "masked_sample", lambda *a, check=True, **kw: eager(*a, **kw))
    per_step, _, _ = _per_step_syncs(monkeypatch, steps=8)
    assert max(per_step) == 2


def test_timing_is_opt_in_and_splits_the_time():
    untimed = edlm_ext.sample(_Table(0), batch_size=2, seq_len=L, mask_id=MASK, steps=4, seed=0,
                              energy=edlm_ext.AREnergy(AR, bos_id=MASK), k=2, window=1.0)
    assert untimed.stats.time_total > 0
    assert untimed.stats.time_denoiser == untimed.stats.time_energy == untimed.stats.time_ops == 0.0
    timed = edlm_ext.sample(_Table(0), batch_size=2, seq_len=L, mask_id=MASK, steps=4, seed=0,
                            energy=edlm_ext.AREnergy(AR, bos_id=MASK), k=2, window=1.0, timing=True)
    st = timed.stats
    assert st.time_denoiser > 0 and st.time_energy > 0 and st.time_ops > 0
    assert st.time_denoiser + st.time_energy + st.time_ops <= st.time_total
    assert torch.equal(timed.tokens, untimed.tokens)  # timing changes no draw


def test_an_invalid_row_is_named_at_the_next_step():
    """The deferred check: a denoiser that returns NaN logits is reported as the op
    reports it (logits[b, l] contains NaN), before the next denoiser call."""
    calls = []

    def poisoned(x, t):
        calls.append(1)
        out = _Table(0)(x)
        out[1, 3, 5] = float("nan")
        return out

    with pytest.raises(ValueError, match=r"masked_sample: logits\[1, 3\] \(a masked position\) contains NaN"):
        edlm_ext.sample(poisoned, batch_size=2, seq_len=L, mask_id=MASK, steps=8, seed=0, cache=False)
    assert len(calls) == 1

    def nan_energy(c, x, *, log_q, mask_id):
        return torch.where(torch.arange(c.shape[0]) == 2, float("nan"), 0.0)

    with pytest.raises(ValueError, match=r"importance_resample: log_w\[0\] contains NaN"):
        edlm_ext.sample(_Table(0), batch_size=2, seq_len=L, mask_id=MASK, steps=8, seed=0, energy=nan_energy, k=3,
                        window=1.0)
