"""The EDLM sampler: masked diffusion sampling with importance sampling under an energy.

Method (EDLM, ICLR 2025; docs/DESIGN.md §1): at each step t -> s the denoiser's
logits give a factorized proposal p_θ(x0 | x_t). Inside the importance-sampling
window (t in [t_lo, t_hi]) we draw k proposals, weight them by exp(-E(x0, x_t) / is_temp)
and resample one, which targets p_θ(x0 | x_t) exp(-E) (is_temp = 1); outside it x0 is
one plain draw. Then an update rule (the ``strategy``) commits some masked positions to
x0: MDLM's posterior q(x_s | x_t, x0) unmasks each with probability (t - s) / t
(log-linear schedule: masking probability t). Sequences never lose a token once unmasked.

Three proposals (``proposal=``, docs/DESIGN.md §9): "joint" is the paper's step above;
"unmask-first" decides first which positions unmask at this step and lets the k
candidates differ only there (:func:`propose_unmask_first`); "smc" carries k weighted
particles across all steps (edlm_ext/smc.py), whose output converges to the energy's
global target (p_AR for EDLM-AR) rather than to a per-step correction.

Everything random goes through edlm_ext's exact kernels under one seed rule
(edlm_ext._rng): ``seed=`` reproduces a run exactly, on CPU and CUDA alike.

Data flow of :func:`sample`: its arguments are checked once (:func:`_check_args`),
the denoiser is wrapped in a :class:`_CachedDenoiser` (the logits of the last call,
reused while x_t is unchanged), and each grid step is one :func:`_step`. A step makes
one host synchronization: a single read of its flags (anything still masked — or, with
first-hitting, anything unmasking at this step —, whether x_t changed since the cached
logits, and whether the previous step met an invalid row, whose diagnosis is then
raised). Timing is opt-in (``timing=True``: edlm_ext.timing synchronizes around each
part). Adding an update rule is one function in :data:`UPDATES`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ._rng import RandomStream
from .energy import Energy
from .ops import (_raise_for_invalid_rows, _raise_for_invalid_weights, check_temperature, importance_resample,
                  masked_sample, sample_proposals, unmask, unmask_confident)
from .timing import NO_TIMER, Timer

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SCHEDULES = ("loglinear",)


@dataclass
class ISDiagnostics:
    """What one importance-sampling step saw (B rows, k candidates each)."""

    ess: torch.Tensor  # [B] effective sample size of the normalized weights, in [1, k]
    weights: torch.Tensor  # [B, k] normalized importance weights
    log_w: torch.Tensor  # [B, k] log-weights, -E (float64)
    log_q: torch.Tensor  # [B, k] proposal log-probabilities (masked positions, float64)
    index: torch.Tensor  # [B] the chosen candidate
    logp: torch.Tensor  # [B, L] per-position log-probability of the chosen candidate


# ---------------------------------------------------------------------------------
# One importance-sampling step


def _energy_call(energy: Energy, candidates: torch.Tensor, x_t: torch.Tensor, log_q: torch.Tensor, mask_id: int,
                 chunk: int | None) -> torch.Tensor:
    """E [N] for every candidate (the energy protocol, edlm_ext.energy.Energy), in calls of
    at most `chunk` candidates."""
    n = candidates.shape[0]
    step = n if not chunk else max(1, int(chunk))
    out = []
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        e = energy(candidates[sl], x_t[sl], log_q=log_q[sl], mask_id=mask_id)
        if not isinstance(e, torch.Tensor) or e.shape != (sl.stop - sl.start,):
            raise ValueError(f"energy must return a tensor of shape [{sl.stop - sl.start}], "
                             f"got {getattr(e, 'shape', type(e).__name__)}")
        out.append(e)
    return torch.cat(out) if len(out) > 1 else out[0]


def _propose_and_resample(logits, x_t, mask_id, energy, k, temperature, stream: RandomStream, energy_chunk,
                          check: bool, timer: Timer = NO_TIMER, pending: list | None = None, is_temp: float = 1.0,
                          hits: torch.Tensor | None = None):
    """propose_and_resample on a stream (hits=None), or propose_unmask_first (hits: the
    positions unmasking at this step). check=False: no host synchronization; the
    invalid-row checks are appended to `pending` as (flag tensor, raise function)."""
    B, L, _ = logits.shape
    with timer.section("ops"):
        if hits is None:
            x_draw, shared_logp = x_t, None
        else:  # one shared draw everywhere, then the k candidates re-draw the hit positions only
            shared, shared_logp = masked_sample(logits, x_t, mask_id, temperature=temperature, check=check,
                                                **stream.next())
            x_draw = torch.where(hits, mask_id, shared)
        proposals, logp = sample_proposals(logits, x_draw, mask_id, k, temperature=temperature, check=check,
                                           _per_position=True, **stream.next())
        log_q = logp.sum(dim=-1, dtype=torch.float64)  # [B, k]: over the positions masked in x_draw
        candidates = proposals.reshape(B * k, L)
        x_rep = x_t.unsqueeze(1).expand(B, k, L).reshape(B * k, L)
    with timer.section("energy"):
        e = _energy_call(energy, candidates, x_rep, log_q.reshape(B * k), mask_id, energy_chunk)
    with timer.section("ops"):
        log_w = (-e.detach().to(torch.float64)).view(B, k)
        if is_temp != 1.0:
            log_w = log_w / is_temp
        res = importance_resample(log_w, proposals, check=check, **stream.next())
        chosen_logp = logp[torch.arange(B, device=logits.device), res.index]
        if shared_logp is not None:  # the chosen candidate's per-position logp, shared fill included
            chosen_logp = torch.where(hits, chosen_logp, shared_logp)
    if pending is not None:
        first = logp[:, 0] if shared_logp is None else shared_logp
        pending.append((torch.isnan(first).any(),
                        lambda: _raise_for_invalid_rows(logits, x_t, mask_id, first, "sample_proposals")))
        pending.append((torch.isnan(res.log_z).any(), lambda: _raise_for_invalid_weights(log_w, res.log_z)))
    diag = ISDiagnostics(ess=res.ess, weights=res.weights, log_w=log_w, log_q=log_q, index=res.index,
                         logp=chosen_logp)
    return res.chosen, diag


def check_is_temp(is_temp, where: str) -> float:
    """is_temp: a finite float > 0 (log w = -E / is_temp)."""
    if isinstance(is_temp, bool) or not isinstance(is_temp, (int, float)) or not 0.0 < is_temp < float("inf"):
        raise ValueError(f"{where}: is_temp must be a finite number > 0, got {is_temp!r}")
    return float(is_temp)


def _check_hits(hits, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    if not isinstance(hits, torch.Tensor) or hits.dtype != torch.bool or hits.shape != x_t.shape:
        raise ValueError(f"hits must be a bool tensor of x_t's shape {tuple(x_t.shape)}, got "
                         f"{getattr(hits, 'dtype', type(hits).__name__)} {tuple(getattr(hits, 'shape', ()))}")
    if hits.device != x_t.device:
        raise ValueError(f"hits is on {hits.device} but x_t is on {x_t.device}")
    if bool((hits & (x_t != mask_id)).any()):
        raise ValueError("hits must mark masked positions of x_t only")
    return hits


def propose_and_resample(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    mask_id: int,
    energy: Energy,
    k: int,
    *,
    temperature: float = 1.0,
    is_temp: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    energy_chunk: int | None = None,
) -> tuple[torch.Tensor, ISDiagnostics]:
    """One EDLM importance-sampling step: k proposals, weights exp(-E / is_temp), one resample.

    Args:
        logits: [B, L, V] denoiser logits for x_t ("subs": [MASK] never drawn).
        x_t: [B, L] int64 current sequence with ``mask_id`` at masked positions.
        energy: ``energy(candidates [B*k, L], x_t [B*k, L], *, log_q [B*k], mask_id) -> E [B*k]``
            (:class:`edlm_ext.energy.Energy`), lower = more likely; log_q is the float64
            proposal log-probability of each candidate. Candidates of row b are rows
            b*k .. b*k+k-1 (x_t rows repeated to match).
        k: proposals per row (k = 1 returns the single proposal).
        temperature: as in :func:`edlm_ext.masked_sample`.
        is_temp: the energy temperature (the public EDLM code's ``sampling.is_temp``):
            log w = -E / is_temp; 1 targets p_θ · exp(-E), < 1 sharpens the pick, large
            values approach a plain draw.
        generator, seed: the random stream (edlm_ext._rng: ``seed`` draws the same on CPU
            and CUDA); not both.
        energy_chunk: at most this many candidates per energy call (memory budget).

    Returns:
        x0: [B, L] int64, the resampled candidate per row.
        diagnostics: :class:`ISDiagnostics` (ESS per row, weights, log_w, log_q, index, logp).

    Raises:
        ValueError: as the ops (invalid rows included), or an energy of the wrong shape.
    """
    is_temp = check_is_temp(is_temp, "propose_and_resample")
    stream = RandomStream(logits.device, generator, seed)
    return _propose_and_resample(logits, x_t, mask_id, energy, k, temperature, stream, energy_chunk, check=True,
                                 is_temp=is_temp)


def propose_unmask_first(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    mask_id: int,
    energy: Energy,
    k: int,
    hits: torch.Tensor,
    *,
    temperature: float = 1.0,
    is_temp: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    energy_chunk: int | None = None,
) -> tuple[torch.Tensor, ISDiagnostics]:
    """The unmask-first EDLM step: importance sampling over the positions that unmask now.

    ``hits`` [B, L] marks the masked positions that unmask at this step (the sampler
    decides them before any token is drawn: MDLM's posterior picks them independently
    of the tokens). One shared draw y ~ p_θ(· | x_t) fills every masked position; then
    k candidates re-draw the hit positions S only (the rest of each candidate is y);
    each is weighted by exp(-E / is_temp) with E the energy of the whole candidate and
    log q over S only (``log_q`` handed to the energy is Σ_{i in S} log p_θ(x_i | x_t));
    one is resampled.

    What it targets (docs/DESIGN.md §9). Given y, the resampled tokens on S converge as
    k grows to ∝ q_S(x_S) exp(-E(x_S, y)); for EDLM-AR (E = -log p_AR + log q_S) that is
    p_AR(x_S | y, x_t's unmasked tokens). Over the shared draw, the law of x_S converges
    to Σ_y p_θ(y | x_t) p_AR(x_S | y, x_t) (y on the masked positions outside S). The
    paper's step (:func:`propose_and_resample`, then the posterior keeps S) converges to
    the AR marginal p_AR(x_S | x_t) = Σ_y p_AR(y | x_t) p_AR(x_S | y, x_t): the two agree
    when the denoiser's law of the other masked tokens is the AR model's. The energy's
    signal is spent on the tokens that survive the step, and ESS is that of |S| tokens,
    not of every masked one (tests/test_unmask_first.py enumerates both targets).

    Args:
        logits, x_t, mask_id, energy, k, temperature, is_temp, generator, seed, energy_chunk:
            as in :func:`propose_and_resample`.
        hits: [B, L] bool, True only at masked positions of x_t.

    Returns:
        x0: [B, L] int64, the chosen candidate (resampled on S, the shared draw elsewhere;
            a sampler keeps only S).
        diagnostics: :class:`ISDiagnostics` (log_q: over S; logp: the chosen candidate's,
            the shared draw's outside S).
    """
    is_temp = check_is_temp(is_temp, "propose_unmask_first")
    hits = _check_hits(hits, x_t, mask_id)
    stream = RandomStream(logits.device, generator, seed)
    return _propose_and_resample(logits, x_t, mask_id, energy, k, temperature, stream, energy_chunk, check=True,
                                 is_temp=is_temp, hits=hits)


# ---------------------------------------------------------------------------------
# sample: results


@dataclass
class SampleStats:
    """Counters and timings of one :func:`sample` run. The time split (denoiser,
    energy, ops) is measured only with ``timing=True`` (0 otherwise); the total always."""

    steps: int = 0  # grid steps visited
    denoiser_calls: int = 0
    energy_calls: int = 0  # IS steps (each scores all B*k candidates)
    skipped_steps: int = 0  # steps with nothing to unmask (first-hitting) or nothing masked
    cached_steps: int = 0  # steps that reused the previous logits
    resamples: float = 0.0  # proposal="smc": rows resampled, summed over steps
    ess: list = field(default_factory=list)  # per IS step: mean ESS over the batch
    time_denoiser: float = 0.0  # seconds
    time_energy: float = 0.0
    time_ops: float = 0.0  # edlm_ext kernels
    time_total: float = 0.0
    tokens: int = 0  # B * L

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.time_total if self.time_total > 0 else float("nan")

    def summary(self) -> str:
        ess = f"{sum(self.ess) / len(self.ess):.2f}" if self.ess else "-"
        return (f"steps={self.steps} denoiser_calls={self.denoiser_calls} energy_calls={self.energy_calls} "
                f"cached={self.cached_steps} skipped={self.skipped_steps} mean_ess={ess} "
                f"time={self.time_total:.3f}s (denoiser {self.time_denoiser:.3f}, energy {self.time_energy:.3f}, "
                f"ops {self.time_ops:.3f}) tokens/s={self.tokens_per_second:.1f}")


@dataclass
class SampleOutput:
    tokens: torch.Tensor  # [B, L] int64, no [MASK] left
    stats: SampleStats
    smc: object | None = None  # proposal="smc": the final particles (edlm_ext.smc.SMCDiagnostics)


# ---------------------------------------------------------------------------------
# sample: its parts


@dataclass
class _Run:
    """A checked sample() call: everything a step needs."""

    B: int
    L: int
    mask_id: int
    steps: int
    energy: Energy | None
    k: int
    window: tuple[float, float] | None  # IS at steps with t_lo <= t <= t_hi; None: never
    temperature: float
    update: Callable
    threshold: float
    first_hitting: bool
    energy_chunk: int | None
    device: torch.device
    stream: RandomStream
    timer: Timer
    stats: SampleStats
    is_temp: float = 1.0
    proposal: str = "joint"
    ess_threshold: float = 0.5
    pending: list = field(default_factory=list)  # (flag, raise function) of the last step's checks

    def importance_sampling(self, t: float) -> bool:
        """Whether the step at time t importance-samples."""
        if self.energy is None or self.k <= 1 or self.window is None:
            return False
        lo, hi = self.window
        return lo - 1e-12 <= t <= hi + 1e-12


#: the proposals of an importance-sampling step (docs/DESIGN.md §9)
PROPOSALS = ("joint", "unmask-first", "smc")
#: the public EDLM code's window defaults (``sampling.is_start`` / ``sampling.is_end``)
PUBLIC_IS_START, PUBLIC_IS_END = 0.6, 0.4


def _unit(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def normalize_window(window, is_start=None, is_end=None) -> tuple[float, float] | None:
    """The importance-sampling window as (t_lo, t_hi), or None (never).

    ``window`` a number w in [0, 1]: t >= 1 - w (0: never, 1: every step); a pair
    (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1: t in [t_lo, t_hi]. ``is_start`` /
    ``is_end`` (the public EDLM code's names: IS while is_end <= t <= is_start) replace
    ``window``, which must then be left at 0; one given alone takes the public code's
    default for the other (is_start 0.6, is_end 0.4)."""
    if is_start is not None or is_end is not None:
        if not (isinstance(window, (int, float)) and not isinstance(window, bool) and window == 0):
            raise ValueError("pass window= or is_start= / is_end=, not both")
        hi = _unit("is_start", PUBLIC_IS_START if is_start is None else is_start)
        lo = _unit("is_end", PUBLIC_IS_END if is_end is None else is_end)
        if lo > hi:
            raise ValueError(f"is_end must be <= is_start (IS while is_end <= t <= is_start), got is_end={lo}, "
                             f"is_start={hi}")
        return lo, hi
    if isinstance(window, (tuple, list)):
        if len(window) != 2:
            raise ValueError(f"window must be a number in [0, 1] or a pair (t_lo, t_hi), got {window!r}")
        lo, hi = _unit("window[0] (t_lo)", window[0]), _unit("window[1] (t_hi)", window[1])
        if lo > hi:
            raise ValueError(f"window (t_lo, t_hi) needs t_lo <= t_hi, got {tuple(window)}")
        return lo, hi
    w = _unit("window", window)
    return None if w == 0 else (1.0 - w, 1.0)


def _check_args(denoiser, batch_size, seq_len, mask_id, steps, energy, k, window, temperature, schedule, strategy,
                first_hitting, eps, device, generator, seed, is_temp=1.0, proposal="joint", is_start=None,
                is_end=None, ess_threshold=0.5):
    """Every check of sample()'s arguments, before any work; (device, random stream, window)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if strategy not in UPDATES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    for name, value, least in (("batch_size", batch_size, 0), ("seq_len", seq_len, 0), ("steps", steps, 1),
                               ("k", k, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"mask_id must be an int >= 0, got {mask_id!r}")
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
    if energy is not None and not callable(energy):
        raise TypeError(f"energy must be callable or None, got {type(energy).__name__}")
    win = normalize_window(window, is_start, is_end)
    check_temperature(temperature, "sample")
    is_temp = check_is_temp(is_temp, "sample")
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if first_hitting and strategy != "ancestral":
        raise ValueError("first_hitting applies to the ancestral strategy only")
    if proposal != "joint" and strategy != "ancestral":
        raise ValueError(f"proposal={proposal!r} needs strategy='ancestral' (the positions that unmask must be "
                         "decided before the tokens are drawn)")
    if proposal == "smc":
        if energy is None:
            raise ValueError("proposal='smc' needs an energy")
        if win != (0.0, 1.0):
            raise ValueError("proposal='smc' weights every step: use window=1.0 (or (0, 1))")
        if is_temp != 1.0:
            raise ValueError("proposal='smc' targets the energy's own distribution: is_temp must be 1")
        if first_hitting:
            raise ValueError("proposal='smc' does not skip steps: first_hitting must be False")
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)) or not 0 <= ess_threshold <= 1:
        raise ValueError(f"ess_threshold must be in [0, 1], got {ess_threshold!r}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if device is None:
        device = generator.device if isinstance(generator, torch.Generator) else torch.device("cpu")
    device = torch.device(device)
    return device, RandomStream(device, generator, seed), win, is_temp


def _initial_sequence(batch_size: int, seq_len: int, mask_id: int, prefix, device) -> torch.Tensor:
    """All [MASK], then the fixed tokens of `prefix` ([P] or [B, P]: the first P
    positions; [L] or [B, L] with -1 at free positions: any fixed positions)."""
    x = torch.full((batch_size, seq_len), mask_id, dtype=torch.long, device=device)
    if prefix is None:
        return x
    p = torch.as_tensor(prefix, dtype=torch.long, device=device)
    if p.dim() == 1:
        p = p.unsqueeze(0).expand(batch_size, -1)
    if p.dim() != 2 or p.shape[0] != batch_size or p.shape[1] > seq_len:
        raise ValueError(f"prefix must be [P], [B, P] or [B, L] with P <= L = {seq_len}, got {tuple(p.shape)}")
    fixed = p >= 0
    if bool((p == mask_id).any()):
        raise ValueError("prefix must not contain mask_id (use -1 for free positions)")
    x[:, : p.shape[1]] = torch.where(fixed, p, x[:, : p.shape[1]])
    return x


def is_time_independent(denoiser) -> bool:
    """Whether a denoiser declares that its output does not depend on t given x_t
    (attribute ``time_independent = True``); only then may logits be reused across steps."""
    return getattr(denoiser, "time_independent", False) is True


def _time_grid(steps: int, eps: float) -> list[float]:
    """Log-linear schedule: t_i = 1 - i (1 - eps) / steps, i = 0..steps (masking probability t)."""
    return [1.0 - i * (1.0 - eps) / steps for i in range(steps + 1)]


class _CachedDenoiser:
    """The denoiser and the logits of its last call. With caching (a time-independent
    denoiser), the logits are reused while x_t is what they were computed for; whether
    it still is stays a device flag (:meth:`changed`), read with the step's other flags."""

    def __init__(self, denoiser: Denoiser, run: _Run, cache: bool):
        self.denoiser, self.run = denoiser, run
        self.cache = cache and is_time_independent(denoiser)
        self.logits, self.input = None, None

    def changed(self, x: torch.Tensor) -> torch.Tensor | bool:
        """Whether x differs from the cached logits' input (True without a cache)."""
        if not self.cache or self.logits is None:
            return True
        return (x != self.input).any()

    def __call__(self, x: torch.Tensor, t: float, changed: bool) -> torch.Tensor:
        run = self.run
        if not changed:
            run.stats.cached_steps += 1
            return self.logits
        with run.timer.section("denoiser"):
            out = self.denoiser(x, torch.full((run.B,), t, device=run.device))
        run.stats.denoiser_calls += 1
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"denoiser must return a torch.Tensor of logits [B, L, V], got {type(out).__name__}")
        if out.dim() != 3 or tuple(out.shape[:2]) != (run.B, run.L):
            raise ValueError(f"denoiser must return logits [B, L, V] = [{run.B}, {run.L}, V], got {tuple(out.shape)}")
        if self.cache:
            self.logits, self.input = out, x.clone()
        return out


def _read_flags(run: _Run, *flags) -> list[bool]:
    """The step's one host synchronization: read its flags and the previous step's
    pending checks together, and raise the first pending check that failed."""
    pending, run.pending = run.pending, []
    tensors = [f for f in (*flags, *(p for p, _ in pending)) if isinstance(f, torch.Tensor)]
    values = iter(torch.stack([t.reshape(()) for t in tensors]).tolist()) if tensors else iter(())
    read = [next(values) if isinstance(f, torch.Tensor) else bool(f) for f in (*flags, *(p for p, _ in pending))]
    for (_, raise_why), bad in zip(pending, read[len(flags):]):
        if bad:
            raise_why()
    return read[: len(flags)]


def _unmasking(run: _Run, x: torch.Tensor, p: float) -> torch.Tensor:
    """The positions MDLM's posterior step unmasks at probability p, decided before x0 is
    drawn: where unmask takes its x0 (any tokens other than [MASK] show it)."""
    with run.timer.section("ops"):
        taken = unmask(x, torch.full_like(x, run.mask_id + 1), run.mask_id, p, **run.stream.next())
        return taken != x


def _step(run: _Run, denoiser: _CachedDenoiser, x: torch.Tensor, t: float, s: float, steps_left: int) -> torch.Tensor:
    """One grid step t -> s: x0 drawn (plain, or importance-sampled in the window), then
    the update rule commits masked positions to it."""
    stats, mask_id = run.stats, run.mask_id
    stats.steps += 1
    masked = x == mask_id
    p_unmask = (t - s) / t
    is_step = run.importance_sampling(t)
    unmask_first = is_step and run.proposal == "unmask-first"
    hits = _unmasking(run, x, p_unmask) if run.first_hitting or unmask_first else None
    go, changed = _read_flags(run, (hits if hits is not None else masked).any(), denoiser.changed(x))
    if not go:  # nothing masked, or (first-hitting / unmask-first) nothing unmasks: no denoiser call
        stats.skipped_steps += 1
        return x
    lg = denoiser(x, t, changed)
    if is_step:
        x0, diag = _propose_and_resample(lg, x, mask_id, run.energy, run.k, run.temperature, run.stream,
                                         run.energy_chunk, check=False, timer=run.timer, pending=run.pending,
                                         is_temp=run.is_temp, hits=hits if unmask_first else None)
        stats.energy_calls += 1
        stats.ess.append(diag.ess.mean())
        logp = diag.logp
    else:
        with run.timer.section("ops"):
            x0, logp = masked_sample(lg, x, mask_id, temperature=run.temperature, check=False, **run.stream.next())
        run.pending.append((torch.isnan(logp).any(),
                            lambda: _raise_for_invalid_rows(lg, x, mask_id, logp, "masked_sample")))
    with run.timer.section("ops"):
        if hits is not None:  # first-hitting: exactly the positions decided before the draw
            return torch.where(hits, x0, x)
        return run.update(run, x, x0, logp, masked, p_unmask, steps_left)


# ---------------------------------------------------------------------------------
# The update rules: x_s from x_t and x0 (unmasked positions never change). One function each.


def _ancestral(run: _Run, x, x0, logp, masked, p_unmask: float, steps_left: int) -> torch.Tensor:
    """MDLM's posterior: each masked position takes x0 with probability (t - s) / t."""
    return unmask(x, x0, run.mask_id, p_unmask, **run.stream.next())


def _confidence(run: _Run, x, x0, logp, masked, p_unmask: float, steps_left: int) -> torch.Tensor:
    """LLaDA: the n most confident masked positions, n = ceil(masked / steps left)."""
    n = torch.div(masked.sum(-1) + steps_left - 1, steps_left, rounding_mode="floor")
    return unmask_confident(x, x0, logp.exp().to(torch.float32), run.mask_id, n=n, check=False)


def _threshold(run: _Run, x, x0, logp, masked, p_unmask: float, steps_left: int) -> torch.Tensor:
    """Fast-dLLM: every masked position with confidence > threshold, at least one per row."""
    return unmask_confident(x, x0, logp.exp().to(torch.float32), run.mask_id, threshold=run.threshold, check=False)


#: strategy name -> update rule (x0's confidence is the drawn token's probability).
UPDATES = {"ancestral": _ancestral, "confidence": _confidence, "threshold": _threshold}
STRATEGIES = tuple(UPDATES)


# ---------------------------------------------------------------------------------
# sample


def sample(
    denoiser: Denoiser,
    *,
    batch_size: int,
    seq_len: int,
    mask_id: int,
    steps: int,
    energy: Energy | None = None,
    k: int = 1,
    window: float | tuple[float, float] = 0.0,
    temperature: float = 1.0,
    is_temp: float = 1.0,
    proposal: str = "joint",
    is_start: float | None = None,
    is_end: float | None = None,
    ess_threshold: float = 0.5,
    schedule: str = "loglinear",
    prefix: torch.Tensor | None = None,
    strategy: str = "ancestral",
    threshold: float = 0.9,
    first_hitting: bool = False,
    cache: bool = True,
    eps: float = 1e-5,
    energy_chunk: int | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    progress: bool = False,
    timing: bool = False,
) -> SampleOutput:
    """Sample sequences from a masked diffusion LM, with EDLM importance sampling.

    Args:
        denoiser: ``denoiser(x_t [B, L] int64, t [B] float) -> logits [B, L, V]``.
        batch_size, seq_len: B and L (ints >= 0). mask_id: the [MASK] id.
        steps: grid steps from t = 1 to t = eps (log-linear schedule).
        energy: None (plain MDLM sampling) or an energy (the protocol of
            :class:`edlm_ext.energy.Energy`; :class:`edlm_ext.AREnergy`, :class:`edlm_ext.NCEEnergy`).
        k: proposals per IS step (particles with ``proposal="smc"``).
        window: where in time to importance-sample: a number w, steps with t >= 1 - w
            (0: never, so the energy is never called; 1: every step), or a pair
            (t_lo, t_hi), steps with t_lo <= t <= t_hi (t runs from 1 down to eps).
        is_start, is_end: the public EDLM code's names for the window (IS while
            is_end <= t <= is_start; its defaults 0.6 / 0.4 fill in the one not given);
            instead of ``window``.
        temperature: of every draw.
        is_temp: the energy temperature: log w = -E / is_temp (1: the EDLM target
            p_θ · exp(-E); < 1 a sharper pick; the public code's ``sampling.is_temp``).
        proposal: "joint" (the paper's step: k candidates over every masked position,
            :func:`propose_and_resample`), "unmask-first" (the positions that unmask at
            this step are decided first and the candidates differ only there,
            :func:`propose_unmask_first`; ancestral only) or "smc" (sequential Monte
            Carlo: k particles carried across every step with incremental weights,
            resampled when their ESS falls below ``ess_threshold`` · k; its output
            converges to the energy's global target, p_AR(x0 | prefix) for EDLM-AR, as k
            grows; :mod:`edlm_ext.smc`; needs window=1, is_temp=1). docs/DESIGN.md §9
            says what each targets and measured: Gen PPL relative to MDLM's temperature
            frontier at equal entropy (shipped models, 128 tokens, SmolLM2 judge) smc 0.81
            at 8 steps and 0.71 at 16 with k = 8 (0.71 / 0.67 with k = 16), unmask-first
            0.89 / 0.97, joint 0.95 at 8.
        ess_threshold: ``proposal="smc"``: resample when ESS < ess_threshold · k
            (1: every step, 0: never).
        schedule: "loglinear".
        prefix: fixed tokens that never change: [P] / [B, P] (the first P positions)
            or [L] / [B, L] with -1 at free positions (infilling).
        strategy: the update rule (:data:`UPDATES`): "ancestral" (MDLM posterior: each
            masked position unmasks with probability (t - s) / t), "confidence" (LLaDA: per
            step the n most confident masked positions, n spreading the masked count evenly
            over the remaining steps) or "threshold" (Fast-dLLM: every masked position with
            confidence > ``threshold``, at least one per row). Confidence is the drawn
            token's probability.
        first_hitting: ancestral only: decide which positions unmask before the step's
            draw (the same decisions as the posterior's); steps where none unmask are
            skipped (no denoiser call).
        cache: reuse the logits when x_t did not change since the last call, for a
            denoiser that declares its output does not depend on t
            (``denoiser.time_independent = True``, as :class:`edlm_ext.models.Denoiser`
            and a :func:`~edlm_ext.integrations.mdlm.load_mdlm` checkpoint without time
            conditioning do). Any other denoiser is called at every step (MDLM turns
            caching off for time-conditioned models too); ``False`` never caches.
        eps: the last time of the grid; anything still masked then takes the
            denoiser's argmax (final denoise).
        energy_chunk: at most this many candidates per energy call (memory budget).
        device: where to sample (default: the generator's device, else CPU).
        generator / seed: the random stream (edlm_ext._rng: ``seed`` draws the same on
            CPU and CUDA; neither: a fresh seed); not both.
        progress: show a tqdm progress bar.
        timing: split the time into denoiser, energy and ops in ``stats`` (on CUDA this
            synchronizes around each part; without it a step makes one host synchronization).

    Returns:
        :class:`SampleOutput` with ``tokens`` [B, L] and ``stats`` (:class:`SampleStats`).

    Raises:
        TypeError / ValueError: bad arguments (before any work); an invalid row (NaN or
            +inf logits, an energy of NaN) as the ops name it, at the step after it occurred.
    """
    device, stream, win, is_temp = _check_args(denoiser, batch_size, seq_len, mask_id, steps, energy, k, window,
                                               temperature, schedule, strategy, first_hitting, eps, device,
                                               generator, seed, is_temp, proposal, is_start, is_end, ess_threshold)
    stats = SampleStats(tokens=batch_size * seq_len)
    t_start = time.perf_counter()
    run = _Run(batch_size, seq_len, mask_id, steps, energy, k, win, temperature, UPDATES[strategy], threshold,
               first_hitting, energy_chunk, device, stream, Timer(device, enabled=timing), stats, is_temp=is_temp,
               proposal=proposal, ess_threshold=float(ess_threshold))
    x = _initial_sequence(batch_size, seq_len, mask_id, prefix, device)
    grid = _time_grid(steps, eps)
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="sampling", unit="step")
    if proposal == "smc" and k > 1:
        from .smc import run_smc

        return run_smc(run, denoiser, x, grid, iterator, cache, t_start)
    cached = _CachedDenoiser(denoiser, run, cache)
    for i in iterator:
        x = _step(run, cached, x, grid[i], grid[i + 1], steps - i)
    # The run's last synchronization: leftovers, the last step's checks, the ESS values.
    ess = torch.stack(stats.ess).double().tolist() if stats.ess else []
    left, changed = _read_flags(run, (x == mask_id).any(), cached.changed(x))
    stats.ess = ess
    if left:  # final denoise: anything still masked takes the argmax
        lg = cached(x, grid[-1], changed)
        with run.timer.section("ops"):
            x, _ = masked_sample(lg, x, mask_id, temperature=0.0)
    stats.time_total = time.perf_counter() - t_start
    stats.time_denoiser = run.timer.seconds["denoiser"]
    stats.time_energy = run.timer.seconds["energy"]
    stats.time_ops = run.timer.seconds["ops"]
    return SampleOutput(tokens=x, stats=stats)
