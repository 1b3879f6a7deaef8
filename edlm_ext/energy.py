"""Energies for EDLM (lower = more likely) and NCE training of a learned one.

Every energy follows one protocol, :class:`Energy`:
``energy(candidates [N, L], x_t [N, L], *, log_q [N], mask_id) -> E [N]``, where log_q
is the float64 log-probability of each candidate under the proposal (a sum over the
positions masked in x_t) and mask_id the [MASK] id; an energy uses what it needs
(EDLM-AR uses log_q) and ignores the rest. How many candidates one call receives is
the sampler's ``energy_chunk`` (the one memory knob).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Protocol

import torch
import torch.nn.functional as F

from .ops import sample_proposals


class Energy(Protocol):
    """The energy protocol of :func:`edlm_ext.sample` and :func:`edlm_ext.propose_and_resample`."""

    def __call__(self, candidates: torch.Tensor, x_t: torch.Tensor, *, log_q: torch.Tensor,
                 mask_id: int) -> torch.Tensor:
        """E [N] (any float dtype; lower = more likely) of candidates [N, L] int64 (x_t's
        unmasked tokens copied) given x_t [N, L] and log_q [N] float64."""


class AREnergy:
    """EDLM-AR: E(x0) = -log p_AR(x0) + log q(x0), so exp(-E) = p_AR / q.

    The AR term is the AR log-likelihood of the whole candidate, every position scored
    (the positions already unmasked in x_t included); log q is the proposal's
    log-probability of the candidate, a sum over the positions masked in x_t. All
    candidates of one row share x_t's unmasked tokens, so q · exp(-E) ∝ p_AR(x0)
    restricted to the x0 consistent with x_t: as the number of proposals k grows, the
    importance-resampled x0 converges to p_AR(x0 | x_t), the AR model's conditional
    given every unmasked token (before and after the masked ones).

    The EDLM paper (Xu et al., ICLR 2025, arXiv 2410.21357) also reports "EDLM-coAR"
    (carry-over AR) in its likelihood table (OpenWebText perplexity 17.58 against the
    AR model's 17.56; EDLM-AR ≤ 20.49): the AR conditionals at positions unmasked in x_t
    are replaced by point masses on the x_t token (carried over, as MDLM's 'subs'
    parameterization does for the denoiser), which makes the AR term normalized over
    the masked tokens so that an exact ELBO can be reported. The public reference code
    applies that rule when sampling as well (``sampling.ar_carry_over``, on by default).
    It is not offered here: as an importance-sampling energy it targets
    Π_{i masked} p_AR(x0_i | x0_<i), which ignores how well a candidate fits the
    unmasked tokens after it, and differs from p_AR(x0 | x_t) whenever an unmasked
    position has a masked one before it (tests/test_edlm_exact.py shows the miss).
    Leaving out only the AR terms that are equal for all candidates of a row (unmasked
    positions whose whole prefix is unmasked) would change nothing: the importance
    weights are normalized per row.

    Args:
        ar_logits_fn: ``ids [N, L] -> logits [N, L, V]`` of a causal LM, where
            logits[:, i] predicts token i + 1 (standard next-token convention).
        bos_id: if given, the AR model reads [BOS, x0[:-1]] so that position 0 is
            scored too. Else position 0 has no AR term, which is exact only while
            position 0 is unmasked in x_t (a prompt): a candidate that fills position 0
            is refused (ValueError), since its first token would go unscored.

    ar_logits_fn sees the candidates of one energy call at once; the sampler's
    ``energy_chunk`` bounds how many.
    """

    def __init__(self, ar_logits_fn: Callable[[torch.Tensor], torch.Tensor], bos_id: int | None = None):
        self.ar_logits_fn = ar_logits_fn
        self.bos_id = bos_id

    @torch.no_grad()
    def ar_log_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-position AR log-probabilities [N, L] (position 0 is 0 without a BOS)."""
        N, L = ids.shape
        out = torch.zeros(N, L, dtype=torch.float32, device=ids.device)
        if self.bos_id is not None:
            inp = torch.cat([torch.full_like(ids[:, :1], self.bos_id), ids[:, :-1]], dim=1)
            out[:] = F.log_softmax(self.ar_logits_fn(inp).float(), dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        else:
            logits = self.ar_logits_fn(ids).float()[:, :-1]
            out[:, 1:] = F.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return out

    def __call__(self, candidates: torch.Tensor, x_t: torch.Tensor, *, log_q: torch.Tensor,
                 mask_id: int | None = None) -> torch.Tensor:
        """E [N] float64 of candidates [N, L] (int64, x_t's unmasked tokens copied) given
        x_t [N, L] and log_q [N] (float64; other float dtypes are widened); ``mask_id`` is
        part of the energy protocol and not needed."""
        if candidates.dim() != 2 or x_t.shape != candidates.shape:
            raise ValueError(f"candidates and x_t must both be [N, L], got {tuple(candidates.shape)} and "
                             f"{tuple(x_t.shape)}")
        if log_q.shape != candidates.shape[:1]:
            raise ValueError(f"log_q must be [N] = [{candidates.shape[0]}], got {tuple(log_q.shape)}")
        if self.bos_id is None and candidates.shape[1] > 0 and bool((candidates[:, 0] != x_t[:, 0]).any()):
            raise ValueError("AREnergy(bos_id=None) cannot score position 0, but the candidates fill it (it is "
                             "masked in x_t): pass bos_id= (the id the AR model reads before the first token) "
                             "or keep position 0 fixed (a prompt)")
        lp = self.ar_log_probs(candidates)
        return -lp.sum(-1, dtype=torch.float64) + log_q.to(torch.float64)


class NCEEnergy:
    """EDLM-NCE: E = net(x0, x_t), a trained bidirectional network with a scalar output.

    ``net(x0 [N, L], x_t [N, L]) -> [N]`` (or [N, 1]); evaluated without gradients, on the
    candidates of one energy call at once (the sampler's ``energy_chunk`` bounds how many).
    """

    def __init__(self, net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.net = net

    @torch.no_grad()
    def __call__(self, candidates: torch.Tensor, x_t: torch.Tensor, *, log_q: torch.Tensor | None = None,
                 mask_id: int | None = None) -> torch.Tensor:
        """E [N] float32; log_q and mask_id (the energy protocol) are not needed."""
        return self.net(candidates, x_t).reshape(-1).float()


def nce_loss(e_pos: torch.Tensor, e_neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-log σ(-E(x0)) - log σ(E(x̂0)), averaged; and the classifier accuracy
    (data scored below 0, negatives above)."""
    loss = F.softplus(e_pos).mean() + F.softplus(-e_neg).mean()
    acc = 0.5 * ((e_pos < 0).float().mean() + (e_neg > 0).float().mean())
    return loss, acc


def corrupt(x0: torch.Tensor, mask_id: int, generator: torch.Generator | None = None,
            eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward process: t ~ U(eps, 1) per row, each position masked with probability t."""
    B, L = x0.shape
    t = eps + (1 - eps) * torch.rand(B, generator=generator, device=x0.device)
    masked = torch.rand(B, L, generator=generator, device=x0.device) < t.unsqueeze(1)
    return torch.where(masked, mask_id, x0), t


def nce_batch_loss(denoiser, energy_net, x0: torch.Tensor, mask_id: int, temperature: float = 1.0,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One NCE batch: corrupt x0, draw negatives x̂0 ~ p_θ(· | x_t) from the frozen
    denoiser with :func:`edlm_ext.sample_proposals`, score both; (loss, accuracy)."""
    x_t, t = corrupt(x0, mask_id, generator)
    with torch.no_grad():
        logits = denoiser(x_t, t)
        neg, _ = sample_proposals(logits.float(), x_t, mask_id, 1, temperature=temperature, generator=generator)
    e = energy_net(torch.cat([x0, neg[:, 0]]), torch.cat([x_t, x_t])).reshape(-1)
    return nce_loss(e[: x0.shape[0]], e[x0.shape[0]:])


def train_nce(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    energy_net: torch.nn.Module,
    data: Iterable[torch.Tensor],
    *,
    mask_id: int,
    steps: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 3e-4,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> list[dict]:
    """Train an NCE energy against a frozen denoiser (EDLM-NCE).

    Each step takes a data batch x0 [B, L], corrupts it (t ~ U(0, 1), positions
    masked with probability t), draws negatives x̂0 ~ p_θ(· | x_t) with
    :func:`edlm_ext.sample_proposals` from the frozen denoiser's logits, and
    minimizes -log σ(-E(x0, x_t)) - log σ(E(x̂0, x_t)).

    Args:
        denoiser: ``(x_t, t) -> logits [B, L, V]``, frozen (called without gradients).
        energy_net: ``(x0, x_t) -> [B]`` energies, trained in place.
        data: an iterable of int64 [B, L] batches (cycled while steps remain).
        steps: optimizer steps. optimizer: default AdamW(lr).
        temperature: of the negatives' draw. generator: the random stream.
        progress: tqdm progress bar.

    Returns:
        One dict per step: ``{"step", "loss", "accuracy"}``.
    """
    opt = optimizer or torch.optim.AdamW(energy_net.parameters(), lr=lr)
    history: list[dict] = []
    it: Iterator[torch.Tensor] = iter(data)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="nce", unit="step")
    energy_net.train()
    for step in range(steps):
        try:
            x0 = next(it)
        except StopIteration:
            it = iter(data)
            x0 = next(it)
        loss, acc = nce_batch_loss(denoiser, energy_net, x0, mask_id, temperature, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"step": step, "loss": float(loss.detach()), "accuracy": float(acc)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", acc=f"{float(acc):.2f}")
    if bar is not None:
        bar.close()
    energy_net.eval()
    return history
