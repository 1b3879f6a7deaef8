"""Model folders: how the shipped models (edlm_ext/assets) and those ``train`` writes are
stored, built and loaded.

A folder holds ``config.json`` (kind, [MASK] id, tokenizer name and the
:class:`ModelConfig` fields) and ``model.safetensors`` (bf16 weights whose metadata
repeat the config, so a pair from two runs is refused).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import InputError
from .transformer import ARModel, Denoiser, EnergyNet, ModelConfig

KINDS = ("denoiser", "ar", "nce")
MODEL_FORMAT = "edlm-model/1"
_NOT_MODEL_FIELDS = ("kind", "mask_id", "tokenizer")


def build_model(kind: str, cfg: ModelConfig, mask_id: int):
    """A fresh model of `kind`: the MDLM denoiser, the AR model or the NCE energy network."""
    if kind == "denoiser":
        return Denoiser(cfg, mask_id)
    if kind == "ar":
        return ARModel(cfg)
    if kind == "nce":
        return EnergyNet(cfg, mask_id)
    raise InputError(f"kind must be one of {KINDS}, got {kind!r}")


def check_model_config(cfg: ModelConfig, where: str = "") -> None:
    """Raise InputError for a model config that cannot be built or run."""
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{where}{name} must be an int >= 1, got {v!r}")
    if cfg.d_model % cfg.n_heads:
        raise InputError(f"{where}n_heads = {cfg.n_heads} (--heads) does not divide d_model = {cfg.d_model} (--d-model)")
    if (cfg.d_model // cfg.n_heads) % 2:
        raise InputError(f"{where}the head width d_model / n_heads = {cfg.d_model // cfg.n_heads} must be even "
                         "(rotary embeddings rotate pairs)")
    if not isinstance(cfg.rope_base, (int, float)) or not (math.isfinite(cfg.rope_base) and cfg.rope_base > 1):
        raise InputError(f"{where}rope_base must be a finite number > 1, got {cfg.rope_base!r}")


def _model_config(conf: dict) -> ModelConfig:
    return ModelConfig(**{k: v for k, v in conf.items() if k not in _NOT_MODEL_FIELDS})


def _model_file_error(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}. Shipped models come with edlm_ext (reinstall, or `git checkout "
                      f"edlm_ext/assets` in a source checkout); your own: python -m edlm_ext train "
                      f"denoiser|ar|nce --out {path.parent}")


def read_model_config(path: Path | str) -> dict:
    """config.json of a model folder, checked (InputError naming the file otherwise)."""
    path = Path(path)
    cfile = path / "config.json"
    if not path.is_dir():
        raise _model_file_error(path, "no such model folder") if not path.exists() else \
            InputError(f"{path} is not a model folder (a directory with config.json and model.safetensors)")
    if not cfile.is_file():
        raise _model_file_error(cfile, "missing")
    try:
        conf = json.loads(cfile.read_text())
        if not isinstance(conf, dict):
            raise ValueError("not a JSON object")
        kind, mask_id = conf["kind"], conf["mask_id"]
        model_cfg = _model_config(conf)
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise InputError(f"{cfile} is corrupt ({type(e).__name__}: {e})") from None
    if kind not in KINDS:
        raise InputError(f"{cfile} is corrupt (kind must be one of {KINDS}, got {kind!r})")
    check_model_config(model_cfg, where=f"{cfile}: ")
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or not 0 <= mask_id < model_cfg.vocab_size:
        raise InputError(f"{cfile} is corrupt (mask_id {mask_id!r} outside [0, vocab_size = {model_cfg.vocab_size}))")
    return conf


def load_model(path: Path | str, dtype=torch.float32):
    """A trained model from a folder written by :func:`save_model` (eval mode). Raises
    InputError naming the file for a missing folder, a missing, truncated or corrupt
    config.json or model.safetensors, or two files written by different runs."""
    from safetensors import safe_open

    path = Path(path)
    conf = read_model_config(path)
    wfile = path / "model.safetensors"
    if not wfile.is_file():
        raise _model_file_error(wfile, "missing")
    try:
        with safe_open(str(wfile), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).to(dtype) for k in f.keys()}
    except Exception as e:  # safetensors' own error types for truncated / garbage files
        raise InputError(f"{wfile} is truncated or not a safetensors file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if "config" in meta and json.loads(meta["config"]) != conf:
        raise InputError(f"{path / 'config.json'} does not match {wfile} (written by different runs); "
                         "retrain, or restore the pair")
    model = build_model(conf["kind"], _model_config(conf), conf["mask_id"])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise InputError(f"{wfile} does not fit {path / 'config.json'} ({first})") from None
    return model.eval()


def save_model(path: Path | str, model: torch.nn.Module, conf: dict, step: int) -> None:
    """Write a model folder atomically: model.safetensors (bf16, with the config and the
    training step in its metadata), then config.json."""
    from safetensors.torch import save as safetensors_bytes

    from .. import atomic

    path = Path(path)
    weights = {k: v.detach().to(torch.bfloat16).cpu().contiguous() for k, v in model.state_dict().items()}
    atomic.write_bytes(path / "model.safetensors", safetensors_bytes(weights, metadata={
        "format": MODEL_FORMAT, "config": json.dumps(conf, sort_keys=True), "step": str(step)}))
    atomic.write_json(path / "config.json", conf)


def model_tokenizer(path: Path | str):
    """The tokenizer a model folder was trained with (config.json; default the Austen BPE)."""
    from ..data import get_tokenizer

    conf = read_model_config(path)
    return get_tokenizer(conf.get("tokenizer", "austen-bpe-8k"))
