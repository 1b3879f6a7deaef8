"""MDLM (kuleshov-group/mdlm) integration: exact drop-in sampling functions and a
loader for local MDLM DiT checkpoints.

* :func:`sample_categorical` replaces MDLM's ``_sample_categorical(categorical_probs)``
  (a float32/float64 "probs / exponential noise" argmax) with one exact draw per row
  from edlm_ext's kernel.
* :func:`ddpm_caching_update` replaces the method ``_ddpm_caching_update(x, t, dt,
  p_x0=None)`` as a function that takes the denoiser and the mask id explicitly.
  It draws x0 ~ p_x0 at masked positions and unmasks each with probability dt / t
  (MDLM's posterior under the log-linear schedule, where the masking probability
  at time t is t) — the same distribution as MDLM's draw over V + 1 outcomes, with
  two of our kernels and no full-vocabulary noise tensor.
* :func:`load_mdlm` turns a checkpoint directory (``config.json`` with MDLM's Hugging
  Face config fields + ``model.safetensors`` or ``pytorch_model.bin``) into an
  :class:`MDLMDenoiser`, a ``denoiser(x_t, t) -> log-probs`` for :func:`edlm_ext.sample`.

The network (:class:`DiT`) follows MDLM's published architecture: token embedding,
sinusoidal embedding of sigma through an MLP, rotary self-attention blocks modulated
by adaLN (shift, scale, gate for attention and MLP), a final adaLN layer; state-dict
names follow MDLM's Hugging Face checkpoints (prefix ``backbone.``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import masked_sample, unmask

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
STATE_PREFIX = "backbone."


# --------------------------------------------------------------------------- sampling


def sample_categorical(categorical_probs: torch.Tensor, *, generator: torch.Generator | None = None,
                       seed: int | None = None) -> torch.Tensor:
    """Drop-in for MDLM's ``_sample_categorical``: one exact draw per row.

    Args:
        categorical_probs: [..., V] non-negative (possibly unnormalized) weights,
            float32 or float64 (MDLM passes float64). A row must have a positive entry.
        generator / seed: the random stream (as :func:`edlm_ext.masked_sample`).

    Returns:
        int64 indices [...] with P(index = v) = probs[v] / sum(probs) for every v
        (zero-weight entries are never drawn).
    """
    if not isinstance(categorical_probs, torch.Tensor):
        raise TypeError(f"categorical_probs must be a torch.Tensor, got {type(categorical_probs).__name__}")
    if not categorical_probs.is_floating_point():
        raise TypeError(f"categorical_probs must be floating point, got {categorical_probs.dtype}")
    if categorical_probs.dim() < 1 or categorical_probs.shape[-1] == 0:
        raise ValueError(f"categorical_probs must be [..., V] with V >= 1, got {tuple(categorical_probs.shape)}")
    lead, V = categorical_probs.shape[:-1], categorical_probs.shape[-1]
    rows = categorical_probs.reshape(-1, V)
    # Log-weights in float32 plus one extra column of -inf that plays [MASK]: every
    # row is "masked", so the kernel draws all of them and never the extra column.
    logits = torch.empty(1, rows.shape[0], V + 1, dtype=torch.float32, device=rows.device)
    logits[0, :, :V].copy_(rows.log())  # log in the input's precision (float64 keeps tiny weights)
    logits[0, :, V] = float("-inf")
    x_t = torch.full((1, rows.shape[0]), V, dtype=torch.int64, device=rows.device)
    try:
        idx, _ = masked_sample(logits, x_t, V, generator=generator, seed=seed)
    except ValueError as err:
        raise ValueError(f"sample_categorical: every row needs a finite positive weight and no NaN ({err})") from None
    return idx.reshape(lead)


def _as_row_times(x: torch.Tensor, value, name: str) -> torch.Tensor:
    """t or dt as a float64 tensor [B] (MDLM passes [B, 1] tensors or floats)."""
    v = torch.as_tensor(value, dtype=torch.float64, device=x.device)
    if v.dim() == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.dim() == 0:
        v = v.expand(x.shape[0])
    if v.shape != (x.shape[0],):
        raise ValueError(f"{name} must be a float, [B] or [B, 1] with B = {x.shape[0]}, got {tuple(v.shape)}")
    return v


def ddpm_caching_update(denoiser, x: torch.Tensor, t, dt, p_x0: torch.Tensor | None = None, *, mask_id: int,
                        generator: torch.Generator | None = None, seed: int | None = None):
    """Drop-in for MDLM's ``_ddpm_caching_update(x, t, dt, p_x0=None)`` (log-linear schedule).

    Args:
        denoiser: ``denoiser(x [B, L], t [B]) -> log-probs or logits [B, L, V]`` (an
            :class:`MDLMDenoiser` or any 'subs' denoiser); called only when ``p_x0`` is None.
        x: [B, L] int64, ``mask_id`` at masked positions.
        t, dt: current time and step (floats, [B] or [B, 1]); the masking probability
            is t, so a masked position unmasks with probability dt / t.
        p_x0: cached probabilities [B, L, V] from the previous call, or None.
        mask_id: the [MASK] id (MDLM's ``mask_index``).
        generator / seed: the random stream.

    Returns:
        (p_x0, x_next): the probabilities used (to pass back as the cache while x does
        not change, as MDLM's loop does) and the next sequence; unmasked positions of
        x never change and [MASK] is never drawn.
    """
    if not isinstance(x, torch.Tensor) or x.dtype != torch.int64 or x.dim() != 2:
        raise TypeError("x must be an int64 tensor [B, L]")
    t = _as_row_times(x, t, "t")
    dt = _as_row_times(x, dt, "dt")
    if bool(((t <= 0) | (t > 1) | (dt < 0) | (dt > t)).any()):
        raise ValueError("need 0 < t <= 1 and 0 <= dt <= t")
    if generator is None and seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    if p_x0 is None:
        log_p = denoiser(x, t.to(torch.float32)).float()
        p_x0 = log_p.exp()
    else:
        if p_x0.shape[:2] != x.shape:
            raise ValueError(f"p_x0 must be [B, L, V] with [B, L] = {tuple(x.shape)}, got {tuple(p_x0.shape)}")
        log_p = p_x0.float().log()
    x0, _ = masked_sample(log_p, x, mask_id, generator=generator)
    x_next = unmask(x, x0, mask_id, dt / t, generator=generator)
    return p_x0, x_next


# --------------------------------------------------------------------------- the network


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

    @torch.no_grad()
    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.config.time_conditioning:
            sigma = -torch.log1p(-(1 - self.noise_eps) * t.float())
        else:
            sigma = torch.zeros(x_t.shape[0], device=x_t.device)
        logits = self.backbone(x_t, sigma).float()
        logits[..., self.mask_id] = float("-inf")
        return torch.log_softmax(logits, dim=-1)


# --------------------------------------------------------------------------- checkpoints


def save_mdlm(denoiser: MDLMDenoiser, path: str | os.PathLike) -> None:
    """Write ``config.json`` + ``model.safetensors`` in MDLM's Hugging Face layout
    (each file atomically: edlm_ext.atomic)."""
    from safetensors.torch import save

    from .. import atomic

    state = {STATE_PREFIX + k: v.detach().contiguous() for k, v in denoiser.backbone.state_dict().items()}
    atomic.write_bytes(os.path.join(path, WEIGHT_FILES[0]), save(state))
    atomic.write_text(os.path.join(path, CONFIG_FILE), json.dumps({"model_type": "mdlm", **asdict(denoiser.config)},
                                                                   indent=1))


def _read_state(path: str) -> dict:
    for name in WEIGHT_FILES:
        f = os.path.join(path, name)
        if os.path.isfile(f):
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(f)
            return torch.load(f, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no weights in {path}: expected one of {WEIGHT_FILES}")


def load_mdlm(path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
              noise_eps: float = 1e-3) -> MDLMDenoiser:
    """Load a local MDLM DiT checkpoint directory as a denoiser (no network access).

    Args:
        path: a directory with ``config.json`` (MDLM's fields: vocab_size, hidden_dim,
            cond_dim, n_blocks, n_heads, and optionally model_length, dropout,
            time_conditioning, mask_index) and ``model.safetensors`` or
            ``pytorch_model.bin`` (keys ``backbone.*``; other keys, e.g. EMA copies
            under another prefix, are ignored).
        device, dtype: where and in what precision the weights live.
        noise_eps: eps of MDLM's log-linear noise (used with time conditioning).

    Returns:
        an :class:`MDLMDenoiser` in eval mode; ``.mask_id`` is the [MASK] id.

    Raises:
        FileNotFoundError: missing directory, config or weights.
        ValueError: a config without the needed fields, or weights that do not match it.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"MDLM checkpoint directory not found: {path}")
    cfg_file = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {path}")
    with open(cfg_file) as f:
        config = MDLMConfig.from_dict(json.load(f))
    raw = _read_state(path)
    state = {k[len(STATE_PREFIX):]: v for k, v in raw.items() if k.startswith(STATE_PREFIX)}
    if not state:
        raise ValueError(f"no '{STATE_PREFIX}*' weights in {path}")
    model = MDLMDenoiser(config, noise_eps=noise_eps)
    expected = model.backbone.state_dict()
    state.setdefault("rotary_emb.inv_freq", expected["rotary_emb.inv_freq"])  # some exports drop the buffer
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"checkpoint weight {key} has shape {tuple(value.shape)}, "
                             f"the config needs {tuple(expected[key].shape)}")
    model.backbone.load_state_dict(state)
    return model.to(device=device, dtype=dtype).eval()
