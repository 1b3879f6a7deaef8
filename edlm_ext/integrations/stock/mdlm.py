"""MDLM's sampling code (kuleshov-group/mdlm, ``diffusion.py``), re-implemented from its
published algorithm: float32 Gumbel-style ``_sample_categorical``, the log-linear noise,
the 'subs' parameterization, ``_ddpm_caching_update``, ``_ddpm_update`` and the ``_sample``
loop on a float32 ``linspace`` grid. Randomness comes from torch's global generator, as
there. A ``Diffusion`` wraps any backbone ``(ids, sigma) -> logits``; only sampling is here.
"""
from __future__ import annotations

import torch


def _sample_categorical(categorical_probs: torch.Tensor) -> torch.Tensor:
    """argmax(probs / E) with E = 1e-10 - log(u + 1e-10), u uniform in the input's dtype."""
    gumbel_norm = 1e-10 - (torch.rand_like(categorical_probs) + 1e-10).log()
    return (categorical_probs / gumbel_norm).argmax(dim=-1)


class LogLinearNoise(torch.nn.Module):
    """sigma(t) = -log(1 - (1 - eps) t): masking probability (1 - eps) t."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def total_noise(self, t):
        return -torch.log1p(-(1 - self.eps) * t)

    def rate_noise(self, t):
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def forward(self, t):
        return self.total_noise(t), self.rate_noise(t)


class Diffusion(torch.nn.Module):
    """The sampling half of MDLM's ``Diffusion`` (subs parameterization).

    Args:
        backbone: ``(ids [B, L], sigma [B]) -> logits [B, L, V]``, e.g. MDLM's DiT.
        mask_index: the [MASK] id. sampler: "ddpm" or "ddpm_cache".
        time_conditioning: pass sigma to the backbone (else zeros) and never cache.
        length, batch_size: of ``_sample``. noise_removal: final argmax step.
    """

    neg_infinity = -1000000.0

    def __init__(self, backbone, mask_index: int, *, sampler: str = "ddpm_cache", time_conditioning: bool = False,
                 length: int = 16, batch_size: int = 4, noise_removal: bool = True):
        super().__init__()
        self.backbone, self.mask_index, self.sampler = backbone, mask_index, sampler
        self.time_conditioning, self.length, self.batch_size = time_conditioning, length, batch_size
        self.noise_removal = noise_removal
        self.noise = LogLinearNoise()

    @property
    def device(self):
        params = list(self.parameters())
        return params[0].device if params else torch.device("cpu")

    def _process_sigma(self, sigma):
        if sigma.ndim > 1:
            sigma = sigma.squeeze(-1)
        if not self.time_conditioning:
            sigma = torch.zeros_like(sigma)
        return sigma

    def _subs_parameterization(self, logits, xt):
        logits[:, :, self.mask_index] += self.neg_infinity
        logits = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        unmasked = xt != self.mask_index
        logits[unmasked] = self.neg_infinity
        logits[unmasked, xt[unmasked]] = 0
        return logits

    def forward(self, x, sigma):
        logits = self.backbone(x, self._process_sigma(sigma)).float()
        return self._subs_parameterization(logits, x)

    def _sample_prior(self, *batch_dims):
        return self.mask_index * torch.ones(*batch_dims, dtype=torch.int64)

    def _ddpm_caching_update(self, x, t, dt, p_x0=None):
        sigma_t, _ = self.noise(t)
        if t.ndim > 1:
            t = t.squeeze(-1)
        move_chance_t = t[:, None, None]
        move_chance_s = (t - dt)[:, None, None]
        if p_x0 is None:
            p_x0 = self.forward(x, sigma_t).exp()
        q_xs = p_x0 * (move_chance_t - move_chance_s)
        q_xs[:, :, self.mask_index] = move_chance_s[:, :, 0]
        _x = _sample_categorical(q_xs)
        copy_flag = (x != self.mask_index).to(x.dtype)
        return p_x0, copy_flag * x + (1 - copy_flag) * _x

    def _ddpm_update(self, x, t, dt):
        sigma_t, _ = self.noise(t)
        sigma_s, _ = self.noise(t - dt)
        if sigma_t.ndim > 1:
            sigma_t = sigma_t.squeeze(-1)
        if sigma_s.ndim > 1:
            sigma_s = sigma_s.squeeze(-1)
        move_chance_t = (1 - torch.exp(-sigma_t))[:, None, None]
        move_chance_s = (1 - torch.exp(-sigma_s))[:, None, None]
        log_p_x0 = self.forward(x, sigma_t)
        q_xs = log_p_x0.exp() * (move_chance_t - move_chance_s)
        q_xs[:, :, self.mask_index] = move_chance_s[:, :, 0]
        _x = _sample_categorical(q_xs)
        copy_flag = (x != self.mask_index).to(x.dtype)
        return copy_flag * x + (1 - copy_flag) * _x

    @torch.no_grad()
    def _sample(self, num_steps: int = 64, eps: float = 1e-5):
        x = self._sample_prior(self.batch_size, self.length).to(self.device)
        timesteps = torch.linspace(1, eps, num_steps + 1, device=self.device)
        dt = (1 - eps) / num_steps
        p_x0_cache = None
        for i in range(num_steps):
            t = timesteps[i] * torch.ones(x.shape[0], 1, device=self.device)
            if self.sampler == "ddpm":
                x = self._ddpm_update(x, t, dt)
            elif self.sampler == "ddpm_cache":
                p_x0_cache, x_next = self._ddpm_caching_update(x, t, dt, p_x0=p_x0_cache)
                if not torch.allclose(x_next, x) or self.time_conditioning:
                    p_x0_cache = None
                x = x_next
            else:
                raise ValueError(self.sampler)
        if self.noise_removal:
            t = timesteps[-1] * torch.ones(x.shape[0], 1, device=self.device)
            x = self.forward(x, self.noise(t)[0]).argmax(dim=-1)
        return x
