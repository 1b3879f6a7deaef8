"""MDLM's diffusion transformer (kuleshov-group/mdlm, ``models/dit.py``) and its 'subs'
denoiser, written from the published architecture: token embedding, sinusoidal embedding
of sigma through an MLP, rotary self-attention blocks modulated by adaLN (shift, scale,
gate for attention and MLP), a final adaLN layer. Parameter names and registration order
follow MDLM's (state-dict prefix ``backbone.``; EMA shadow lists follow the same order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

@dataclass
class MDLMConfig:
    """The fields of MDLM's Hugging Face ``config.json`` that define the DiT backbone."""

    vocab_size: int = 50258
    model_length: int = 1024
    hidden_dim: int = 768
    cond_dim: int = 128
    n_blocks: int = 12
    n_heads: int = 12
    dropout: float = 0.1
    time_conditioning: bool = False
    mask_index: int | None = None  # default: vocab_size - 1 (MDLM appends [MASK] to the tokenizer)

    @classmethod
    def from_dict(cls, d: dict) -> "MDLMConfig":
        known = {f.name for f in fields(cls)}
        required = {"vocab_size", "hidden_dim", "cond_dim", "n_blocks", "n_heads"}
        missing = sorted(required - d.keys())
        if missing:
            raise ValueError(f"MDLM config is missing {missing}")
        cfg = cls(**{key: v for key, v in d.items() if key in known})
        if cfg.hidden_dim % cfg.n_heads or (cfg.hidden_dim // cfg.n_heads) % 2:
            raise ValueError(f"hidden_dim = {cfg.hidden_dim} must split into n_heads = {cfg.n_heads} even-sized heads")
        return cfg

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1 if self.mask_index is None else int(self.mask_index)


class _NormNoBias(nn.Module):
    """LayerNorm with a weight and no bias, computed in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), (x.shape[-1],), self.weight.float()).to(x.dtype)


class _SigmaEmbedding(nn.Module):
    """Sinusoidal features of sigma (256 of them) through Linear - SiLU - Linear."""

    n_freq = 256

    def __init__(self, cond_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(self.n_freq, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.n_freq // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
        angles = sigma.float()[:, None] * freqs[None]
        feats = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class _Rotary(nn.Module):
    """Rotary position embedding over the two halves of each head (rotate-half form)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L = q.shape[-2]
        ang = torch.outer(torch.arange(L, device=q.device, dtype=torch.float32), self.inv_freq.float())
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1).to(q.dtype), torch.cat([ang.sin(), ang.sin()], -1).to(q.dtype)

        def rotate(v):
            a, b = v.chunk(2, dim=-1)
            return v * cos + torch.cat([-b, a], dim=-1) * sin

        return rotate(q), rotate(k)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class _Block(nn.Module):
    """Bidirectional rotary attention + GELU MLP, each modulated and gated by adaLN(c)."""

    def __init__(self, dim: int, n_heads: int, cond_dim: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = _NormNoBias(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = _NormNoBias(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, c: torch.Tensor, rotary: _Rotary) -> torch.Tensor:
        B, L, D = x.shape
        sh_a, sc_a, g_a, sh_m, sc_m, g_m = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        qkv = self.attn_qkv(_modulate(self.norm1(x), sh_a, sc_a)).view(B, L, 3, self.n_heads, D // self.n_heads)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # [B, H, L, Dh]
        q, k = rotary(q, k)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, D)
        x = x + g_a * F.dropout(self.attn_out(a), self.dropout, self.training)
        h = self.mlp(_modulate(self.norm2(x), sh_m, sc_m))
        return x + g_m * F.dropout(h, self.dropout, self.training)


class _Embedding(nn.Module):
    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(vocab_size, dim) / math.sqrt(dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding[ids]


class _FinalLayer(nn.Module):
    def __init__(self, dim: int, vocab_size: int, cond_dim: int):
        super().__init__()
        self.norm_final = _NormNoBias(dim)
        self.linear = nn.Linear(dim, vocab_size)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """MDLM's diffusion transformer: ``forward(ids [B, L], sigma [B]) -> logits [B, L, V]``."""

    def __init__(self, config: MDLMConfig):
        super().__init__()
        c = config
        self.config = c
        self.vocab_embed = _Embedding(c.vocab_size, c.hidden_dim)
        self.sigma_map = _SigmaEmbedding(c.cond_dim)
        self.rotary_emb = _Rotary(c.hidden_dim // c.n_heads)
        self.blocks = nn.ModuleList(_Block(c.hidden_dim, c.n_heads, c.cond_dim, c.dropout) for _ in range(c.n_blocks))
        self.output_layer = _FinalLayer(c.hidden_dim, c.vocab_size, c.cond_dim)

    def forward(self, ids: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = self.vocab_embed(ids)
        c = F.silu(self.sigma_map(sigma))
        for block in self.blocks:
            x = block(x, c, self.rotary_emb)
        return self.output_layer(x, c)


class MDLMDenoiser(nn.Module):
    """A DiT with MDLM's 'subs' output, as ``denoiser(x_t [B, L], t [B]) -> log-probs [B, L, V]``.

    The [MASK] log-prob is -inf and each row is normalized (log-softmax). sigma is
    ``-log1p(-(1 - eps) t)`` (MDLM's log-linear noise) when the config conditions on
    time, else 0 as in MDLM. Rows at unmasked positions are returned as computed
    (samplers copy those positions and never read them).
    """

    def __init__(self, config: MDLMConfig, noise_eps: float = 1e-3):
        super().__init__()
        self.config = config
        self.mask_id = config.mask_id
        self.noise_eps = noise_eps
        self.backbone = DiT(config)

    @property
    def time_independent(self) -> bool:
        """True without time conditioning: the output depends on x_t only, so
        :func:`edlm_ext.sample` may reuse it across steps (as MDLM's cache does)."""
        return not self.config.time_conditioning

    @torch.no_grad()
    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.config.time_conditioning:
            sigma = -torch.log1p(-(1 - self.noise_eps) * t.float())
        else:
            sigma = torch.zeros(x_t.shape[0], device=x_t.device)
        logits = self.backbone(x_t, sigma).float()
        logits[..., self.mask_id] = float("-inf")
        return torch.log_softmax(logits, dim=-1)
