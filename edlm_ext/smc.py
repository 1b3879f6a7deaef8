"""Sequential Monte Carlo for EDLM-AR: k weighted particles carried across every step
(``edlm_ext.sample(..., proposal="smc", k=N)``; docs/DESIGN.md §9).

The paper's step importance-samples each step afresh and keeps one candidate: the
energy's verdict on a step is forgotten at the next. Here N particles per row move
through the whole trajectory, each with an importance weight updated at every step and
reset when the particles are resampled (their ESS below ``ess_threshold`` · N). The
target is the AR model's own law: the output converges to p_AR(x0 | prefix) as N grows,
and at any N the weighted particles are unbiased for it (below). The energy must be an
:class:`edlm_ext.AREnergy` (its per-position log-probabilities are used).

Construction (an SMC sampler on an extended space with a backward kernel). A particle
at step n is (x_n, y_n): x_n the partly masked sequence, y_n ~ p_θ(· | x_n) one draw
of its masked positions (one ``masked_sample`` call for all particles), which is both
the move's x0 (MDLM's posterior step unmasks positions of x_n to y_n's tokens) and the
context in which the AR model scores x_n's unmasked tokens:

    A(x, y) = Π_{i unmasked in x} p_AR(x_i | y_<i)      (one AR call on y).

The intermediate targets are π_n(x_n, y_n) ∝ ρ_{t_n}(x_n) · p_θ(y_n | x_n) · A(x_n, y_n),
ρ_t the masking pattern's probability at time t (each free position masked with
probability t); at the end nothing is masked and A = p_AR(x). With the backward kernel
that re-masks x_{n+1} by the forward process and re-draws y_n's positions still masked
from p_θ(· | x_n), the pattern and fill factors cancel and the incremental weight is

    w_{n+1} = A(x_{n+1}, y_{n+1}) / [ A(x_n, y_n) · q_N(y_n | x_n) ],     w_0 = A(x_0, y_0),

q_N the proposal's probability of the tokens the move unmasked. The last step unmasks
every position (s = 0) and one more AR call scores the finished particles. With
multinomial resampling (``importance_resample`` on N copies of each row's weights),
Ẑ = Π_n Σ_j W_{n-1,j} w_{n,j} and the normalized weights W satisfy, at any N,
E[Ẑ Σ_j W_j f(x_j)] = Σ_x p_AR(x) f(x) over the x consistent with the prefix
(tests/test_smc.py checks this identity by enumeration, with wrong variants failing it).

The paper's joint step with k -> ∞ also samples p_AR exactly (each step then draws x0 from
p_AR(x0 | x_t)); what SMC changes is finite k: its weights score the tokens the move
keeps (in a random context) instead of ~L fresh tokens of which ~L / steps survive, and
a particle's weight carries over steps. Cost per step: one denoiser call and one AR call
on all B·N particles (the paper's step: one denoiser call on B rows, the energy on B·k).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from .ops import _raise_for_invalid_rows, importance_resample, masked_sample, unmask
from .sampler import SampleOutput, _CachedDenoiser, _read_flags, _Run


@dataclass
class SMCDiagnostics:
    """The particles at the end of an SMC run (B rows, N particles each)."""

    particles: torch.Tensor  # [B, N, L] int64, fully unmasked
    log_weights: torch.Tensor  # [B, N] float64, normalized (log W)
    log_z: torch.Tensor  # [B] float64, log Ẑ: Ẑ is unbiased for p_AR(prefix) (1 without a prefix)
    index: torch.Tensor  # [B] the particle returned as the row's sample
    ess: list  # per weight update (each step, then the finished particles): mean ESS over rows
    resampled: list  # per step: fraction of rows resampled


def _resample(log_w: torch.Tensor, run: _Run) -> torch.Tensor:
    """Multinomial resampling: [B, N] normalized log-weights -> [B, N] ancestor indices
    (N independent draws per row, importance_resample on N copies of the row)."""
    B, N = log_w.shape
    rep = log_w.repeat_interleave(N, dim=0)  # [B*N, N]
    dummy = torch.zeros((B * N, N, 1), dtype=torch.long, device=log_w.device)
    res = importance_resample(rep, dummy, check=False, **run.stream.next())
    return res.index.view(B, N)


def _incremental(log_a: torch.Tensor, carried: torch.Tensor | None) -> torch.Tensor:
    """log w_{n+1} = log A(x_{n+1}, y_{n+1}) - [log A(x_n, y_n) + log q_N(y_n | x_n)] (log w_0 = log A)."""
    return log_a if carried is None else log_a - carried


def _carried(log_a: torch.Tensor, logp: torch.Tensor, newly: torch.Tensor) -> torch.Tensor:
    """log A(x_n, y_n) + log q_N(y_n | x_n): q over the positions the move unmasked only."""
    return log_a + (logp.double() * newly).sum(-1)


def _after_resampling(log_W: torch.Tensor, redo: torch.Tensor, anc: torch.Tensor) -> torch.Tensor:
    """Resampled rows restart from equal weights; the others keep theirs."""
    return torch.where(redo.unsqueeze(1), torch.full_like(log_W, -math.log(log_W.shape[1])), log_W)


def _log_a(energy, y: torch.Tensor, unmasked: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """log A(x, y) [P] float64: the AR log-probabilities of y at the positions unmasked in x."""
    step = y.shape[0] if not chunk else max(1, int(chunk))
    out = [energy.ar_log_probs(y[a:a + step]) for a in range(0, y.shape[0], step)]
    lp = torch.cat(out) if len(out) > 1 else out[0]
    return (lp.double() * unmasked).sum(-1)


def _raise_bad_weights():
    raise ValueError("smc: a row's particle weights are all zero or not finite (an energy of NaN or +-inf?)")


def _gather(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return t.index_select(0, rows)


def run_smc(run: _Run, denoiser, x: torch.Tensor, grid: list[float], iterator, cache: bool,
            t_start: float) -> SampleOutput:
    """The SMC loop of :func:`edlm_ext.sample` (proposal="smc"): x [B, L] the initial
    sequences; returns the sample of each row (one particle drawn by its final weight)."""
    from .energy import AREnergy

    if not isinstance(run.energy, AREnergy):
        raise ValueError(f"proposal='smc' needs an AREnergy (it scores positions), got {type(run.energy).__name__}")
    B, L, N, mask_id = run.B, run.L, run.k, run.mask_id
    stats, dev = run.stats, run.device
    P = B * N
    prun = dataclasses.replace(run, B=P)  # the denoiser sees all particles (stats and timer shared)
    cached = _CachedDenoiser(denoiser, prun, cache)
    x = x.repeat_interleave(N, dim=0)  # particle j of row b: row b*N + j
    log_W = torch.full((B, N), -math.log(N), dtype=torch.float64, device=dev)
    log_z = torch.zeros(B, dtype=torch.float64, device=dev)
    carried = None  # [P] log A(x_n, y_n) + log q_N(y_n | x_n) of the previous step
    ess_steps, resampled_steps = [], []
    base = torch.arange(B, device=dev).unsqueeze(1) * N

    def reweight(log_a):
        nonlocal log_W, log_z
        un = log_W + _incremental(log_a, carried).view(B, N)
        norm = torch.logsumexp(un, dim=-1)
        run.pending.append((~torch.isfinite(norm).all(), _raise_bad_weights))
        log_z = log_z + norm
        log_W = un - norm.unsqueeze(1)
        ess = 1.0 / torch.exp(2 * log_W).sum(-1)
        ess_steps.append(ess.mean())
        return ess

    steps = len(grid) - 1
    for i in iterator:
        t = grid[i]
        s = 0.0 if i == steps - 1 else grid[i + 1]  # the last step unmasks everything
        stats.steps += 1
        (changed,) = _read_flags(run, cached.changed(x))
        lg = cached(x, t, changed)
        with run.timer.section("ops"):
            y, logp = masked_sample(lg, x, mask_id, temperature=run.temperature, check=False, **run.stream.next())
        run.pending.append((torch.isnan(logp).any(),
                            lambda lg=lg, x=x, logp=logp: _raise_for_invalid_rows(lg, x, mask_id, logp,
                                                                                  "masked_sample")))
        with run.timer.section("energy"):
            log_a = _log_a(run.energy, y, x != mask_id, run.energy_chunk)
        stats.energy_calls += 1
        with run.timer.section("ops"):
            ess = reweight(log_a)
            redo = ess < run.ess_threshold * N  # [B]
            resampled_steps.append(redo.double().mean())
            anc = torch.where(redo.unsqueeze(1), _resample(log_W, run), torch.arange(N, device=dev).expand(B, N))
            rows = (base + anc).reshape(P)
            x, y, logp, log_a = _gather(x, rows), _gather(y, rows), _gather(logp, rows), _gather(log_a, rows)
            log_W = _after_resampling(log_W, redo, anc)
            x_next = unmask(x, y, mask_id, (t - s) / t, **run.stream.next())
            carried = _carried(log_a, logp, (x == mask_id) & (x_next != mask_id))
            x = x_next
    with run.timer.section("energy"):  # the finished particles: A = p_AR(x)
        log_a = _log_a(run.energy, x, x != mask_id, run.energy_chunk)
    with run.timer.section("ops"):
        reweight(log_a)
        particles = x.view(B, N, L)
        final = importance_resample(log_W, particles, check=False, **run.stream.next())
    _read_flags(run)  # the last pending checks
    stats.ess = torch.stack(ess_steps).double().tolist() if ess_steps else []  # (one read each: the last syncs)
    resampled = torch.stack(resampled_steps).double().tolist() if resampled_steps else []
    stats.resamples = sum(resampled) * B
    stats.time_total = time.perf_counter() - t_start
    stats.time_denoiser = run.timer.seconds["denoiser"]
    stats.time_energy = run.timer.seconds["energy"]
    stats.time_ops = run.timer.seconds["ops"]
    diag = SMCDiagnostics(particles=particles, log_weights=log_W, log_z=log_z, index=final.index,
                          ess=stats.ess, resampled=resampled)
    return SampleOutput(tokens=final.chosen, stats=stats, smc=diag)
