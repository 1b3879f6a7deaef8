"""Small RoPE transformers trained on the Austen corpus: the MDLM-style 'subs'
denoiser (bidirectional), the AR model that serves as EDLM's energy (causal) and
an NCE energy network. Pre-norm blocks, rotary position embeddings (rotate-half
pairs), tied input/output embeddings. A masked diffusion model with learned
absolute positions stalls on the unigram plateau; RoPE does not (docs/DESIGN.md §7)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    max_len: int = 256
    rope_base: float = 10000.0

    def to_dict(self) -> dict:
        return asdict(self)


def rope_tables(L: int, head_dim: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    ang = torch.arange(L, device=device, dtype=torch.float32)[:, None] * inv[None, :]  # [L, hd/2]
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, hd]: rotate the (first half, second half) pairs by position."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model))

    def forward(self, x: torch.Tensor, cos, sin, causal: bool) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.norm2(x))


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.cfg, self.causal = cfg, causal
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        L = ids.shape[1]
        if L > self.cfg.max_len:
            raise ValueError(f"sequence length {L} > max_len {self.cfg.max_len}")
        cos, sin = rope_tables(L, self.cfg.d_model // self.cfg.n_heads, self.cfg.rope_base, ids.device)
        h = self.embed(ids)
        for blk in self.blocks:
            h = blk(h, cos, sin, self.causal)
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.embed.weight.t()  # tied embeddings


class Denoiser(nn.Module):
    """MDLM 'subs' denoiser: ``(x_t [B, L], t [B] or None) -> logits [B, L, V]`` (float32)
    with the [MASK] logit -inf. No time conditioning (masked diffusion does not need
    it, and it keeps the sampler's logit caching exact)."""

    time_independent = True  # the output ignores t: edlm_ext.sample may reuse logits

    def __init__(self, cfg: ModelConfig, mask_id: int):
        super().__init__()
        self.cfg, self.mask_id = cfg, mask_id
        self.net = Backbone(cfg, causal=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.net.logits(self.net(x_t)).float()
        logits[..., self.mask_id] = float("-inf")
        return logits


class ARModel(nn.Module):
    """Causal LM: ``ids [N, L] -> logits [N, L, V]`` (float32), logits[:, i] predicts token i + 1."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.net = Backbone(cfg, causal=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net.logits(self.net(ids)).float()


class EnergyNet(nn.Module):
    """NCE energy ``(x0 [N, L], x_t [N, L]) -> E [N]``: a bidirectional backbone over
    x0 with an embedding of the positions masked in x_t, mean-pooled to a scalar."""

    def __init__(self, cfg: ModelConfig, mask_id: int):
        super().__init__()
        self.cfg, self.mask_id = cfg, mask_id
        self.net = Backbone(cfg, causal=False)
        self.was_masked = nn.Embedding(2, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, 1)
        nn.init.zeros_(self.was_masked.weight)

    def forward(self, x0: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        h = self.net(x0) + self.was_masked((x_t == self.mask_id).long())
        return self.head(h.mean(1)).squeeze(-1).float()
