"""The EDLM sampler: masked diffusion sampling with importance sampling under an energy.

Method (EDLM, ICLR 2025; ../shared/DESIGN.md §1): at each step t -> s the
denoiser's logits give a factorized proposal p_θ(x0 | x_t). Inside the
importance-sampling window (t >= 1 - window) we draw k proposals, weight them by
exp(-E(x0, x_t)) and resample one, which targets p_θ(x0 | x_t) exp(-E); outside
it x0 is one plain draw. Then the posterior q(x_s | x_t, x0) unmasks each masked
position with probability (t - s) / t (log-linear schedule: masking probability
t). Sequences never lose a token once unmasked.

Everything random goes through edlm_ext's exact kernels with one torch.Generator,
so a ``seed`` reproduces a run exactly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ._rng import resolve_generator
from .ops import importance_resample, masked_sample, sample_proposals, unmask, unmask_confident

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Energy = Callable[..., torch.Tensor]

STRATEGIES = ("ancestral", "confidence", "threshold")
SCHEDULES = ("loglinear",)


@dataclass
class ISDiagnostics:
    """What one importance-sampling step saw (B rows, k candidates each)."""

    ess: torch.Tensor  # [B] effective sample size of the normalized weights, in [1, k]
    weights: torch.Tensor  # [B, k] normalized importance weights
    log_w: torch.Tensor  # [B, k] log-weights, -E
    log_q: torch.Tensor  # [B, k] proposal log-probabilities (masked positions)
    index: torch.Tensor  # [B] the chosen candidate
    logp: torch.Tensor  # [B, L] per-position log-probability of the chosen candidate


def _energy_call(energy: Energy, candidates: torch.Tensor, x_t: torch.Tensor, log_q: torch.Tensor, mask_id: int,
                 chunk: int | None) -> torch.Tensor:
    """E for every candidate, in chunks of at most `chunk` rows; passes log_q and
    mask_id to energies that ask for them (``needs_log_q = True``, e.g. AREnergy)."""
    n = candidates.shape[0]
    step = n if not chunk else max(1, int(chunk))
    wants_q = getattr(energy, "needs_log_q", False)
    out = []
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        kwargs = {"log_q": log_q[sl], "mask_id": mask_id} if wants_q else {}
        e = energy(candidates[sl], x_t[sl], **kwargs)
        if not isinstance(e, torch.Tensor) or e.shape != (sl.stop - sl.start,):
            raise ValueError(f"energy must return a tensor of shape [{sl.stop - sl.start}], "
                             f"got {getattr(e, 'shape', type(e).__name__)}")
        out.append(e)
    return torch.cat(out) if len(out) > 1 else out[0]


def propose_and_resample(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    mask_id: int,
    energy: Energy,
    k: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    energy_chunk: int | None = None,
) -> tuple[torch.Tensor, ISDiagnostics]:
    """One EDLM importance-sampling step: k proposals, weights exp(-E), one resample.

    Args:
        logits: [B, L, V] denoiser logits for x_t ("subs": [MASK] never drawn).
        x_t: [B, L] int64 current sequence with ``mask_id`` at masked positions.
        energy: ``energy(candidates [B*k, L], x_t [B*k, L]) -> E [B*k]``, lower = more
            likely. Candidates of row b are rows b*k .. b*k+k-1 (x_t rows repeated
            to match). An energy with ``needs_log_q = True`` also gets
            ``log_q=[B*k]`` (the proposal's log-probability) and ``mask_id=``, as
            EDLM-AR needs.
        k: proposals per row (k = 1 returns the single proposal).
        temperature, generator, seed: as in :func:`edlm_ext.masked_sample`.
        energy_chunk: at most this many candidates per energy call (memory budget).

    Returns:
        x0: [B, L] int64, the resampled candidate per row.
        diagnostics: :class:`ISDiagnostics` (ESS per row, weights, log_w, log_q, index, logp).
    """
    if generator is None and seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(seed)
    B, L, _ = logits.shape
    proposals, logp = sample_proposals(logits, x_t, mask_id, k, temperature=temperature, generator=generator,
                                       _per_position=True)
    log_q = logp.sum(dim=-1, dtype=torch.float64)  # [B, k]
    candidates = proposals.reshape(B * k, L)
    x_rep = x_t.repeat_interleave(k, dim=0)
    e = _energy_call(energy, candidates, x_rep, log_q.reshape(B * k).to(torch.float32), mask_id, energy_chunk)
    log_w = (-e.detach().to(torch.float64)).view(B, k)
    res = importance_resample(log_w, proposals, generator=generator)
    chosen_logp = logp[torch.arange(B, device=logits.device), res.index]
    diag = ISDiagnostics(ess=res.ess, weights=res.weights, log_w=log_w, log_q=log_q, index=res.index,
                         logp=chosen_logp)
    return res.chosen, diag


@dataclass
class SampleStats:
    """Counters and timings of one :func:`sample` run."""

    steps: int = 0  # grid steps visited
    denoiser_calls: int = 0
    energy_calls: int = 0  # IS steps (each scores all B*k candidates)
    skipped_steps: int = 0  # steps with nothing to unmask (first-hitting) or nothing masked
    cached_steps: int = 0  # steps that reused the previous logits
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


class _Timer:
    """Adds the wall time of a block to stats.<name>, synchronizing CUDA so work is attributed."""

    def __init__(self, stats: SampleStats, name: str, device: torch.device):
        self.stats, self.name, self.cuda = stats, name, device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        setattr(self.stats, self.name, getattr(self.stats, self.name) + time.perf_counter() - self.t0)


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


def sample(
    denoiser: Denoiser,
    *,
    batch_size: int,
    seq_len: int,
    mask_id: int,
    steps: int,
    energy: Energy | None = None,
    k: int = 1,
    window: float = 0.0,
    temperature: float = 1.0,
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
) -> SampleOutput:
    """Sample sequences from a masked diffusion LM, with EDLM importance sampling.

    Args:
        denoiser: ``denoiser(x_t [B, L] int64, t [B] float) -> logits [B, L, V]``.
        batch_size, seq_len: B and L (ints >= 0). mask_id: the [MASK] id.
        steps: grid steps from t = 1 to t = eps (log-linear schedule).
        energy: None (plain MDLM sampling) or an energy (see :func:`propose_and_resample`,
            :class:`edlm_ext.AREnergy`, :class:`edlm_ext.NCEEnergy`).
        k: proposals per IS step; window: IS at steps with t >= 1 - window (0: never,
            so the energy is never called; 1: every step).
        temperature: of every draw. schedule: "loglinear".
        prefix: fixed tokens that never change: [P] / [B, P] (the first P positions)
            or [L] / [B, L] with -1 at free positions (infilling).
        strategy: "ancestral" (MDLM posterior: each masked position unmasks with
            probability (t - s) / t), "confidence" (LLaDA: per step the n most
            confident masked positions, n spreading the masked count evenly over
            the remaining steps) or "threshold" (Fast-dLLM: every masked position with
            confidence > ``threshold``, at least one per row). Confidence is the
            drawn token's probability.
        first_hitting: ancestral only: decide which positions unmask first and draw
            tokens only there; steps where none unmask are skipped (no denoiser
            call). IS steps still draw full proposals for the energy.
        cache: reuse the logits when x_t did not change since the last call, for a
            denoiser that declares its output does not depend on t
            (``denoiser.time_independent = True``, as :class:`edlm_ext.models.Denoiser`
            and a :func:`~edlm_ext.integrations.mdlm.load_mdlm` checkpoint without time
            conditioning do). Any other denoiser is called at every step (MDLM turns
            caching off for time-conditioned models too); ``False`` never caches.
        eps: the last time of the grid; anything still masked then takes the
            denoiser's argmax (final denoise).
        energy_chunk: at most this many candidates per energy call.
        device: where to sample (default: the generator's device, else CPU).
        generator / seed: the random stream (seed: an int, a fresh generator on ``device``).
        progress: show a tqdm progress bar.

    Returns:
        :class:`SampleOutput` with ``tokens`` [B, L] and ``stats`` (:class:`SampleStats`).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    for name, value, least in (("batch_size", batch_size, 0), ("seq_len", seq_len, 0), ("steps", steps, 1),
                               ("k", k, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
    if energy is not None and not callable(energy):
        raise TypeError(f"energy must be callable or None, got {type(energy).__name__}")
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0.0 <= window <= 1.0:
        raise ValueError(f"window must be in [0, 1], got {window}")
    if first_hitting and strategy != "ancestral":
        raise ValueError("first_hitting applies to the ancestral strategy only")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    generator = resolve_generator(device, generator, seed)

    stats = SampleStats(tokens=batch_size * seq_len)
    t_start = time.perf_counter()
    x = _initial_sequence(batch_size, seq_len, mask_id, prefix, device)
    grid = _time_grid(steps, eps)
    cache = cache and is_time_independent(denoiser)
    logits, logits_for = None, None  # cached logits and the x they were computed for

    def denoise(x_now: torch.Tensor, t: float) -> torch.Tensor:
        nonlocal logits, logits_for
        if cache and logits is not None and torch.equal(x_now, logits_for):
            stats.cached_steps += 1
            return logits
        with _Timer(stats, "time_denoiser", device):
            out = denoiser(x_now, torch.full((batch_size,), t, device=device))
        stats.denoiser_calls += 1
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"denoiser must return a torch.Tensor of logits [B, L, V], got {type(out).__name__}")
        if out.dim() != 3 or tuple(out.shape[:2]) != (batch_size, seq_len):
            raise ValueError(f"denoiser must return logits [B, L, V] = [{batch_size}, {seq_len}, V], got {tuple(out.shape)}")
        logits, logits_for = out, x_now.clone()
        return out

    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="sampling", unit="step")
    for i in iterator:
        t, s = grid[i], grid[i + 1]
        stats.steps += 1
        masked = x == mask_id
        if not bool(masked.any()):
            stats.skipped_steps += 1
            continue
        p_unmask = (t - s) / t
        query = x
        if first_hitting:
            with _Timer(stats, "time_ops", device):
                hits = masked & (torch.rand(x.shape, generator=generator, device=device) < p_unmask)
            if not bool(hits.any()):
                stats.skipped_steps += 1
                continue
        lg = denoise(x, t)
        in_window = energy is not None and k > 1 and window > 0 and t >= 1.0 - window - 1e-12
        if in_window:
            x0, diag = _is_step(lg, x, mask_id, energy, k, temperature, generator, energy_chunk, stats, device)
            logp = diag.logp
        else:
            if first_hitting:  # draw only where a position unmasks: the others read as a plain token
                query = torch.where(masked & ~hits, 1 if mask_id == 0 else 0, x)
            with _Timer(stats, "time_ops", device):
                x0, logp = masked_sample(lg, query, mask_id, temperature=temperature, generator=generator)
        with _Timer(stats, "time_ops", device):
            x = _update(x, x0, logp, masked, mask_id, strategy, threshold, p_unmask, steps - i,
                        hits if first_hitting else None, generator)
    # Final denoise: anything still masked takes the argmax.
    if bool((x == mask_id).any()):
        lg = denoise(x, grid[-1])
        with _Timer(stats, "time_ops", device):
            x, _ = masked_sample(lg, x, mask_id, temperature=0.0)
    stats.time_total = time.perf_counter() - t_start
    return SampleOutput(tokens=x, stats=stats)


def _is_step(lg, x, mask_id, energy, k, temperature, generator, energy_chunk, stats, device):
    """propose_and_resample, its time split into energy and ops."""
    timed = _TimedEnergy(energy, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    x0, diag = propose_and_resample(lg, x, mask_id, timed, k, temperature=temperature, generator=generator,
                                    energy_chunk=energy_chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()
    stats.time_energy += timed.elapsed
    stats.time_ops += time.perf_counter() - t0 - timed.elapsed
    stats.energy_calls += 1
    stats.ess.append(float(diag.ess.mean()))
    return x0, diag


class _TimedEnergy:
    """Wraps an energy to time its calls (keeping its needs_log_q flag)."""

    def __init__(self, energy, device: torch.device):
        self.energy, self.cuda, self.elapsed = energy, device.type == "cuda", 0.0
        self.needs_log_q = getattr(energy, "needs_log_q", False)

    def __call__(self, *args, **kwargs):
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = self.energy(*args, **kwargs)
        if self.cuda:
            torch.cuda.synchronize()
        self.elapsed += time.perf_counter() - t0
        return out


def _update(x, x0, logp, masked, mask_id, strategy, threshold, p_unmask, steps_left, hits, generator):
    """x_s from x_t and x0 under the strategy (unmasked positions never change)."""
    if strategy == "ancestral":
        if hits is not None:  # first-hitting: exactly the chosen positions
            return torch.where(hits, x0, x)
        return unmask(x, x0, mask_id, p_unmask, generator=generator)
    confidence = logp.exp().to(torch.float32)
    if strategy == "confidence":
        n_masked = masked.sum(-1)
        n = torch.div(n_masked + steps_left - 1, steps_left, rounding_mode="floor")  # ceil: done by the last step
        return unmask_confident(x, x0, confidence, mask_id, n=n)
    return unmask_confident(x, x0, confidence, mask_id, threshold=threshold)
