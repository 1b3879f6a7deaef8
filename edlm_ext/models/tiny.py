"""Tiny transformers (a few thousand parameters) for tests, examples and smoke runs:
a bidirectional 'subs' denoiser, a causal AR model and an NCE energy network."""
from __future__ import annotations

import torch
from torch import nn


class _Encoder(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, d_model: int, n_layers: int, n_heads: int):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, ids: torch.Tensor, causal: bool = False) -> torch.Tensor:
        L = ids.shape[1]
        h = self.tok(ids) + self.pos(torch.arange(L, device=ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=ids.device) if causal else None
        return self.norm(self.blocks(h, mask=mask, is_causal=causal))


class TinyDenoiser(nn.Module):
    """Bidirectional denoiser with 'subs' output: the [MASK] logit is -inf.
    ``forward(x_t [B, L], t [B]) -> logits [B, L, V]`` (t is accepted, unused)."""

    time_independent = True  # the output ignores t: edlm_ext.sample may reuse logits

    def __init__(self, vocab_size: int, mask_id: int, max_len: int = 128, d_model: int = 32, n_layers: int = 2,
                 n_heads: int = 4):
        super().__init__()
        self.mask_id = mask_id
        self.enc = _Encoder(vocab_size, max_len, d_model, n_layers, n_heads)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.out(self.enc(x_t))
        logits[..., self.mask_id] = float("-inf")
        return logits


class TinyAR(nn.Module):
    """Causal LM: ``forward(ids [N, L]) -> logits [N, L, V]``, logits[:, i] predicts token i + 1."""

    def __init__(self, vocab_size: int, max_len: int = 128, d_model: int = 32, n_layers: int = 2, n_heads: int = 4):
        super().__init__()
        self.enc = _Encoder(vocab_size, max_len, d_model, n_layers, n_heads)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.enc(ids, causal=True))


class TinyEnergyNet(nn.Module):
    """NCE energy: ``forward(x0 [N, L], x_t [N, L]) -> E [N]`` from a bidirectional
    encoder over x0 tokens plus an embedding of which positions were masked in x_t."""

    def __init__(self, vocab_size: int, mask_id: int, max_len: int = 128, d_model: int = 32, n_layers: int = 2,
                 n_heads: int = 4):
        super().__init__()
        self.mask_id = mask_id
        self.enc = _Encoder(vocab_size, max_len, d_model, n_layers, n_heads)
        self.was_masked = nn.Embedding(2, d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x0: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        h = self.enc(x0) + self.was_masked((x_t == self.mask_id).long())
        return self.head(h.mean(1)).squeeze(-1)
