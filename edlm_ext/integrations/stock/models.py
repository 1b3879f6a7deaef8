"""Tiny stand-ins with the upstream models' calling conventions, for tests and benchmarks.

* :class:`NoMaskPrediction` wraps a Hugging Face masked LM (LLaDA's convention,
  ``model(ids, attention_mask=...).logits``) and gives [MASK] the lowest logit, as a
  trained LLaDA does in practice: upstream code may draw [MASK], ours never does.
* :class:`TinyDream` follows Dream's ``forward(input_ids, attention_mask, position_ids)``:
  ``attention_mask`` is the string "full" or a [B, 1, N, N] bool mask, ``position_ids``
  None or [B, N]; one bidirectional attention layer; [MASK] gets the lowest logit.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


class NoMaskPrediction(nn.Module):
    def __init__(self, model: nn.Module, mask_id: int):
        super().__init__()
        self.model, self.mask_id = model, mask_id
        self.config = getattr(model, "config", None)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def forward(self, input_ids, attention_mask=None, **kwargs):
        logits = self.model(input_ids, attention_mask=attention_mask, **kwargs).logits.clone()
        logits[..., self.mask_id] = torch.finfo(logits.dtype).min
        return SimpleNamespace(logits=logits)


class TinyDream(nn.Module):
    def __init__(self, vocab_size: int, mask_id: int, d_model: int = 16, max_len: int = 64, seed: int = 0,
                 logit_scale: float = 2.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mask_id, self.logit_scale = mask_id, logit_scale
        self.config = SimpleNamespace(mask_token_id=mask_id, max_position_embeddings=max_len, pad_token_id=None)
        self.generation_config = SimpleNamespace(mask_token_id=mask_id, pad_token_id=None, bos_token_id=None,
                                                 eos_token_id=None)
        self.tok = nn.Parameter(torch.randn(vocab_size, d_model, generator=g))
        self.pos = nn.Parameter(torch.randn(max_len, d_model, generator=g) * 0.5)
        self.qkv = nn.Parameter(torch.randn(d_model, 3 * d_model, generator=g) / math.sqrt(d_model))
        self.out = nn.Parameter(torch.randn(d_model, vocab_size, generator=g) / math.sqrt(d_model))

    def forward(self, input_ids, attention_mask="full", position_ids=None):
        B, N = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(N, device=input_ids.device).expand(B, N)
        dtype = self.tok.dtype
        h = self.tok[input_ids] + self.pos[position_ids]
        q, k, v = (h @ self.qkv).chunk(3, dim=-1)
        mask = None if isinstance(attention_mask, str) else attention_mask[:, 0]
        scores = (q @ k.transpose(1, 2)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(dtype).min)
        h = h + F.softmax(scores.float(), dim=-1).to(dtype) @ v
        logits = (h @ self.out) * self.logit_scale
        logits[..., self.mask_id] = torch.finfo(dtype).min
        return SimpleNamespace(logits=logits)
