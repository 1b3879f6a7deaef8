"""Dream's ``diffusion_generate`` (HKUNLP/Dream, ``generation_utils.py``) on edlm_ext's kernels.

``diffusion_generate(model, input_ids, **kwargs)`` takes what Dream's method takes —
``attention_mask``, ``max_new_tokens`` / ``max_length``, ``steps``, ``eps``, ``alg``
("origin", "maskgit_plus", "topk_margin", "entropy"), ``alg_temp``, ``temperature``,
``top_p``, ``top_k``, ``num_return_sequences``, ``return_dict_in_generate``,
``output_history``, ``mask_token_id``, ``generation_config`` and the two hook functions —
and runs Dream's loop: the prompt padded with [MASK] to ``max_length``, ``steps`` calls
of the model on the whole sequence (``model(x, attention_mask, position_ids)``, with
Dream's 4-D mask and position ids for left padding), logits shifted by one position, and
the time grid ``linspace(1, eps, steps + 1)``:

* "origin": each masked position is drawn with probability 1 - s / t (all at the last step);
* the others: x0 drawn at every masked position, and the ``int(m (1 - s / t))`` most
  confident committed (m: masked positions per row, the batch mean; all at the last
  step), confidence the drawn token's probability ("maskgit_plus"), the top-1 minus
  top-2 probability ("topk_margin") or minus the entropy ("entropy"), all under the
  tempered, filtered distribution; ``alg_temp > 0`` samples the positions instead, with
  probabilities softmax(confidence / alg_temp) without replacement.

``patch(model)`` makes ``model.diffusion_generate(...)`` call this, so Dream's own calls
run unchanged. Differences from Dream's code: the draw is exact (no [MASK] drawn); the
entropy has no 1e-10 inside its log; ranking is in float32, ties to the lower position
(``rank_dtype="model"`` computes probabilities and confidences in the model's dtype and
ranks with ``torch.topk``, as Dream, which reproduces its tokens for bf16 models);
top_p keeps every token tied at its cut (Dream's sort keeps an arbitrary subset); a row
with fewer masked positions than the step's count commits all of them (Dream's code
writes [MASK] over that row's tokens instead).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._rng import RandomStream
from ..ops import masked_sample, unmask_confident
from ..timing import Timer

ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")
DEFAULTS = dict(temperature=0.0, top_p=None, top_k=None, max_length=20, max_new_tokens=None, eps=1e-3, steps=512,
                alg="origin", alg_temp=None, num_return_sequences=1, return_dict_in_generate=False,
                output_history=False, mask_token_id=None, pad_token_id=None, bos_token_id=None, eos_token_id=None)
_SPECIAL = ("mask_token_id", "pad_token_id", "bos_token_id", "eos_token_id")
_OURS = ("generator", "seed", "rank_dtype", "timing")


@dataclass
class DreamOutput:
    """Dream's ``DreamModelOutput``: the sequences [B * n, max_length] and, with
    ``output_history``, the sequence after each step; our counters and (with
    ``timing=True``) timings."""

    sequences: torch.Tensor
    history: tuple | None = None
    model_calls: int = 0
    time_model: float = 0.0
    time_sampling: float = 0.0


def patch(model):
    """Bind :func:`diffusion_generate` as ``model.diffusion_generate``; returns the model."""
    model.diffusion_generate = functools.partial(diffusion_generate, model)
    return model


def _config(model, generation_config, kwargs: dict) -> dict:
    """Dream's config resolution: defaults, special tokens from the model's config; a
    passed generation_config instead (its missing special tokens from the model's
    generation_config); then the keyword arguments."""
    cfg = dict(DEFAULTS)
    if generation_config is None:
        for key in _SPECIAL:
            v = getattr(getattr(model, "config", None), key, None)
            if v is not None:
                cfg[key] = v
    else:
        get = generation_config.get if isinstance(generation_config, dict) else \
            (lambda key, default=None: getattr(generation_config, key, default))
        cfg.update({key: get(key, cfg[key]) for key in DEFAULTS})
        for key in _SPECIAL:
            if cfg[key] is None:
                cfg[key] = getattr(getattr(model, "generation_config", None), key, None)
    unknown = sorted(set(kwargs) - set(DEFAULTS) - set(_OURS))
    if unknown:
        raise TypeError(f"diffusion_generate got unknown arguments {unknown}")
    cfg.update({k: v for k, v in kwargs.items() if k in DEFAULTS})
    return cfg


def diffusion_generate(model, inputs: torch.Tensor | None = None, generation_config=None, **kwargs):
    """Drop-in for Dream's ``model.diffusion_generate(inputs, generation_config=None, **kwargs)``.

    Args:
        model: a Dream-style model, ``model(x, attention_mask, position_ids).logits``
            with ``attention_mask`` the string "full" or a [B, 1, N, N] bool mask.
        inputs: [B, P] prompt ids (any integer dtype).
        generation_config: a DreamGenerationConfig-like object or a dict.
        **kwargs: Dream's arguments (module docstring), ``attention_mask`` [B, P],
            ``generation_tokens_hook_func(step, x, logits) -> x`` and
            ``generation_logits_hook_func(step, x, logits) -> logits``, and ours:
            ``generator`` / ``seed`` (the random stream; ``seed`` draws the same on CPU and
            CUDA), ``rank_dtype`` ("float32" or "model") and ``timing`` (measure the model's
            and the sampling's time, synchronizing CUDA; off by default).

    Returns:
        the sequences [B * num_return_sequences, max_length] int64, or a
        :class:`DreamOutput` with ``return_dict_in_generate=True``.
    """
    attention_mask = kwargs.pop("attention_mask", None)
    tokens_hook = kwargs.pop("generation_tokens_hook_func", None) or (lambda step, x, logits: x)
    logits_hook = kwargs.pop("generation_logits_hook_func", None) or (lambda step, x, logits: logits)
    generator, seed = kwargs.pop("generator", None), kwargs.pop("seed", None)
    rank_dtype = kwargs.pop("rank_dtype", "float32")
    timing = kwargs.pop("timing", False)
    has_default_max_length = kwargs.get("max_length") is None
    cfg = _config(model, generation_config, kwargs)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or inputs.is_floating_point() \
            or inputs.dtype == torch.bool:
        raise TypeError("inputs must be an integer tensor [B, P] of token ids")
    input_ids = inputs.to(torch.int64)
    mask_id = cfg["mask_token_id"]
    if mask_id is None:
        raise ValueError("mask_token_id is not set: pass mask_token_id= (Dream: 151666) or use a model whose "
                         "config has it")
    if cfg["alg"] not in ALGS:
        raise ValueError(f"alg must be one of {ALGS}, got {cfg['alg']!r}")
    if rank_dtype not in ("float32", "model"):
        raise ValueError(f"rank_dtype must be 'float32' or 'model', got {rank_dtype!r}")
    steps, eps, n_ret = cfg["steps"], cfg["eps"], cfg["num_return_sequences"]
    for name, v in (("steps", steps), ("num_return_sequences", n_ret)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if not 0 <= eps < 1:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    top_k = cfg["top_k"]
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    P = input_ids.shape[1]
    max_length = _max_length(model, cfg, has_default_max_length, P)
    pad = cfg["pad_token_id"]
    if pad is not None and attention_mask is None and bool((input_ids == pad).any()):
        warnings.warn("Padding was detected but no attention mask is passed here. For correct generation results, "
                      "please set `attention_mask` when batch-padding inputs.", UserWarning)
    if n_ret > 1:
        input_ids = input_ids.repeat_interleave(n_ret, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(n_ret, dim=0)
    stream = RandomStream(input_ids.device, generator, seed)
    run = _Run(model, cfg, mask_id, rank_dtype, stream, Timer(input_ids.device, enabled=timing))
    return run(input_ids, attention_mask, max_length, tokens_hook, logits_hook)


def _max_length(model, cfg, has_default_max_length, input_len):
    if cfg["max_new_tokens"] is not None:
        max_length = cfg["max_new_tokens"] + input_len
    else:
        max_length = cfg["max_length"]
        if has_default_max_length and max_length == DEFAULTS["max_length"]:
            max_length += input_len
            mpe = getattr(getattr(model, "config", None), "max_position_embeddings", None)
            if mpe is not None:
                max_length = min(max_length, mpe)
    if input_len >= max_length:
        raise ValueError(f"Input length of input_ids is {input_len}, but `max_length` is set to {max_length}. "
                         "Increase `max_length` or set `max_new_tokens`.")
    return max_length


class _Run:
    def __init__(self, model, cfg, mask_id, rank_dtype, stream: RandomStream, timer: Timer):
        self.model, self.cfg, self.mask_id, self.stream, self.timer = model, cfg, int(mask_id), stream, timer
        self.upstream = rank_dtype == "model"
        self.T, self.top_p, self.top_k = float(cfg["temperature"]), cfg["top_p"], cfg["top_k"]
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_p is not None and self.top_p >= 1:
            self.top_p = None  # Dream applies top_p only below 1

    def __call__(self, input_ids, attention_mask, max_length, tokens_hook, logits_hook):
        cfg, mask_id, device = self.cfg, self.mask_id, input_ids.device
        x = F.pad(input_ids, (0, max_length - input_ids.shape[1]), value=mask_id)
        if attention_mask is not None and bool((attention_mask == 0.0).any()):
            attention_mask = F.pad(attention_mask, (0, max_length - attention_mask.shape[1]), value=1.0)
            tok_idx = attention_mask.long().cumsum(-1) - 1
            tok_idx.masked_fill_(attention_mask == 0, 1)
            attention_mask = torch.logical_and(attention_mask.unsqueeze(1).unsqueeze(-2),
                                               attention_mask.unsqueeze(1).unsqueeze(-1))
        else:
            tok_idx, attention_mask = None, "full"
        steps = cfg["steps"]
        timesteps = torch.linspace(1, cfg["eps"], steps + 1, device=device)
        history = [] if (cfg["return_dict_in_generate"] and cfg["output_history"]) else None
        out = DreamOutput(sequences=x)
        x = tokens_hook(None, x, None)
        for i in range(steps):
            with self.timer.section("model"):
                with torch.no_grad():
                    res = self.model(x, attention_mask, tok_idx)
                logits = getattr(res, "logits", res)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[:2] != x.shape:
                    raise ValueError(f"model must return logits [B, L, V] for input {tuple(x.shape)}")
                logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
                logits = logits_hook(i, x, logits)
                out.model_calls += 1
            with self.timer.section("sampling"):
                t, s = timesteps[i], timesteps[i + 1]
                x = self._step(x, logits, i, steps, t, s)
                x = tokens_hook(i, x, logits)
            if history is not None:
                history.append(x.clone())
        out.sequences = x
        out.time_model, out.time_sampling = self.timer.seconds["model"], self.timer.seconds["sampling"]
        out.history = tuple(history) if history is not None else None
        return out if cfg["return_dict_in_generate"] else x

    # ------------------------------------------------------------------ one step

    def _step(self, x, logits, i, steps, t, s):
        mask_id = self.mask_id
        cand = x == mask_id
        if not bool(cand.any()):
            return x
        V = logits.shape[-1]
        if not mask_id < V:
            raise ValueError(f"mask_token_id = {mask_id} is outside the vocabulary [0, {V})")
        lg = self._filtered(logits)
        last = i == steps - 1
        if self.cfg["alg"] == "origin":
            p = 1.0 if last else float(1 - s / t)
            hits = cand & (self.stream.rand(x.shape) < p)  # the positions that unmask, decided first
            if not bool(hits.any()):
                return x
            x0, _ = masked_sample(lg, x, mask_id, temperature=self.T, **self._kernel_filters(), **self.stream.next())
            return torch.where(hits, x0, x)
        num_mask_token = cand.sum() / cand.shape[0]
        n = int(num_mask_token * (1 - s / t)) if not last else int(num_mask_token)
        if n <= 0:
            return x
        x0, conf = self._draw_and_confidence(lg, x, cand)
        alg_temp = self.cfg["alg_temp"]
        if alg_temp:  # positions ~ softmax(conf / alg_temp) without replacement: Gumbel-top-n
            u = self.stream.rand(x.shape, torch.float64)
            score = conf.to(torch.float64) / alg_temp - torch.log(-torch.log(u))
            return unmask_confident(x, x0, torch.where(cand, score, float("-inf")), mask_id, n=n)
        if self.upstream:
            full = torch.where(cand, conf, torch.tensor(float("-inf"), dtype=conf.dtype, device=conf.device))
            chosen = torch.zeros_like(cand)
            chosen.scatter_(1, torch.topk(full, min(n, x.shape[1]), dim=-1).indices, True)
            return torch.where(chosen & cand, x0, x)
        return unmask_confident(x, x0, conf, mask_id, n=n)

    def _kernel_filters(self) -> dict:
        if self.top_p is not None and self.top_k is not None:
            return {}  # applied in Dream's order by _filtered
        return dict(top_p=float(self.top_p) if self.top_p is not None else 1.0, top_k=self.top_k or 0)

    def _filtered(self, logits):
        """Dream filters top_p first, then top_k; the kernel does top_k first. With both,
        the logits are filtered here in Dream's order (on the tempered logits)."""
        if self.top_p is None or self.top_k is None:
            return logits if logits.dtype in (torch.float32, torch.bfloat16, torch.float16) else logits.float()
        z = logits.float() / (self.T if self.T > 0 else 1.0)
        srt, idx = torch.sort(z, dim=-1, descending=True)
        cum = torch.cumsum(F.softmax(srt, dim=-1), dim=-1)
        drop = torch.zeros_like(cum, dtype=torch.bool)
        drop[..., 1:] = cum[..., :-1] > self.top_p
        remove = torch.zeros_like(drop).scatter_(-1, idx, drop)
        kth = torch.topk(z.masked_fill(remove, float("-inf")), min(self.top_k, z.shape[-1]), dim=-1).values[..., -1:]
        remove |= z < kth
        return logits.float().masked_fill(remove, float("-inf"))

    def _draw_and_confidence(self, lg, x, cand):
        alg, T, mask_id = self.cfg["alg"], self.T, self.mask_id
        filters = self._kernel_filters()
        if self.upstream:
            return self._upstream_confidence(lg, x, cand, filters)
        want_entropy = alg == "entropy"
        res = masked_sample(lg, x, mask_id, temperature=T, return_entropy=want_entropy, **filters,
                            **self.stream.next())
        x0, logp = res[0], res[1]
        if alg == "maskgit_plus":
            conf = logp.exp()
        elif alg == "entropy":
            conf = -res[2]
        else:  # topk_margin: top-1 minus top-2 probability of the tempered, filtered distribution
            conf = self._margin(lg, x0, logp, cand)
        return x0, torch.where(cand, conf, torch.zeros_like(conf))

    def _margin(self, lg, x0, logp, cand):
        scale = self.T if self.T > 0 else 1.0
        rows = lg[cand].float()
        rows[:, self.mask_id] = float("-inf")
        top2 = torch.topk(rows, 2, dim=-1).values / scale
        log_z = rows.gather(-1, x0[cand][:, None]).squeeze(-1) / scale - logp[cand]  # the filtered normalizer
        p1, p2 = (top2[:, 0] - log_z).exp(), (top2[:, 1] - log_z).exp()
        keep2 = torch.ones_like(p2, dtype=torch.bool)
        if self.top_p is None or self.top_k is None:  # (with both, _filtered already set dropped logits to -inf)
            if self.top_k == 1:
                keep2 = top2[:, 1] == top2[:, 0]  # top_k keeps ties with the k-th
            if self.top_p is not None:  # Dream keeps the second token iff the first holds <= top_p of the mass
                keep2 &= (top2[:, 0] - torch.logsumexp(rows / scale, dim=-1)).exp() <= self.top_p
        conf = torch.zeros_like(logp)
        conf[cand] = p1 - torch.where(keep2, p2, torch.zeros_like(p2))
        return conf

    def _upstream_confidence(self, lg, x, cand, filters):
        """Probabilities in the logits' dtype, as Dream's sample_tokens: x0 at T = 0 is
        probs.max (which in bf16 can differ from the logits' argmax), confidences from those probs."""
        alg, T = self.cfg["alg"], self.T
        z = lg[cand]
        if T > 0:
            z = z / T
        if filters:  # (with both filters, _filtered applied them already)
            z = self._upstream_filter(z)
        probs = torch.softmax(z, dim=-1)
        x0 = x.clone()
        if T > 0:
            drawn, _ = masked_sample(lg, x, self.mask_id, temperature=T, **filters, **self.stream.next())
            tok = drawn[cand]
            conf = probs.gather(-1, tok[:, None]).squeeze(-1)
        else:
            conf, tok = probs.max(dim=-1)
        x0[cand] = tok
        if alg == "topk_margin":
            top = torch.sort(probs, dim=-1, descending=True).values
            conf = top[:, 0] - top[:, 1]
        elif alg == "entropy":
            conf = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
        full = torch.zeros(x.shape, dtype=conf.dtype, device=x.device)
        full[cand] = conf
        return x0, full

    def _upstream_filter(self, z):
        if self.top_p is not None:
            srt, idx = torch.sort(z, dim=-1, descending=True)
            cum = torch.cumsum(F.softmax(srt, dim=-1), dim=-1)
            drop = torch.zeros_like(cum, dtype=torch.bool)
            drop[..., 1:] = cum[..., :-1] > self.top_p
            z = z.masked_fill(torch.zeros_like(drop).scatter_(-1, idx, drop), torch.finfo(z.dtype).min)
        if self.top_k is not None:
            kth = torch.topk(z, min(self.top_k, z.shape[-1]))[0][..., -1, None]
            z = z.masked_fill(z < kth, torch.finfo(z.dtype).min)
        return z
