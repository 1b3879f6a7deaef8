"""MDLM checkpoint formats: the Hugging Face directory (``config.json`` + weights) and the
Lightning ``.ckpt`` files of MDLM's training runs (``state_dict``, ``ema``, Hydra config).

Reading a ``.ckpt`` never runs code from the file: a plain ``weights_only`` load is tried
first; when the file holds other objects (MDLM saves its OmegaConf config and tokenizer
as hyper-parameters) a restricted unpickler rebuilds tensors with torch's own rebuild
functions and turns every other pickled class into an inert record of its data.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import re
from dataclasses import asdict
from types import SimpleNamespace

import torch

from .mdlm_dit import DiT, MDLMConfig

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
STATE_PREFIX = "backbone."


# --------------------------------------------------------------------------- Hugging Face directory


def save_hf_dir(config: MDLMConfig, backbone_state: dict, path) -> None:
    """config.json + model.safetensors, each written atomically (edlm_ext.atomic)."""
    from safetensors.torch import save

    from .. import atomic

    state = {STATE_PREFIX + k: v.detach().contiguous() for k, v in backbone_state.items()}
    atomic.write_bytes(os.path.join(path, WEIGHT_FILES[0]), save(state))
    atomic.write_text(os.path.join(path, CONFIG_FILE), json.dumps({"model_type": "mdlm", **asdict(config)}, indent=1))


def read_hf_dir(path: str) -> tuple[MDLMConfig, dict]:
    cfg_file = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {path}")
    with open(cfg_file) as f:
        config = MDLMConfig.from_dict(json.load(f))
    for name in WEIGHT_FILES:
        file = os.path.join(path, name)
        if os.path.isfile(file):
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                raw = load_file(file)
            else:
                raw = torch.load(file, map_location="cpu", weights_only=True)
            return config, _backbone_state(raw, path)
    raise FileNotFoundError(f"no weights in {path}: expected one of {WEIGHT_FILES}")


def _backbone_state(raw: dict, where: str) -> dict:
    state = {}
    for key, value in raw.items():
        if isinstance(key, str) and key.startswith(STATE_PREFIX) and isinstance(value, torch.Tensor):
            state[key[len(STATE_PREFIX):].replace("_orig_mod.", "")] = value
    if not state:
        raise ValueError(f"no '{STATE_PREFIX}*' weights in {where}")
    return state


def load_backbone(backbone: DiT, state: dict, where: str) -> None:
    """Load `state` (keys without the prefix) into `backbone`, with clear errors."""
    expected = backbone.state_dict()
    state = dict(state)
    state.setdefault("rotary_emb.inv_freq", expected["rotary_emb.inv_freq"])  # some exports drop the buffer
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"checkpoint {where} does not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"checkpoint weight {key} has shape {tuple(value.shape)}, "
                             f"the config needs {tuple(expected[key].shape)}")
    backbone.load_state_dict(state)


# --------------------------------------------------------------------------- Lightning .ckpt


def read_lightning(path: str, *, ema: bool | None, config) -> tuple[MDLMConfig, dict]:
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    state = _backbone_state(ckpt["state_dict"], path)
    if "vocab_embed.embedding" not in state:
        raise ValueError(f"{path}: no backbone.vocab_embed.embedding (not MDLM's DiT)")
    cfg = config_from_hydra(_find_config(path, ckpt, config), vocab_size=state["vocab_embed.embedding"].shape[0])
    shadow = ckpt.get("ema", {}).get("shadow_params") if isinstance(ckpt.get("ema"), dict) else None
    if ema is True and not shadow:
        raise ValueError(f"ema=True but {path} holds no EMA weights")
    if ema is not False and shadow:
        state = _with_ema(state, list(shadow), cfg, path)
    return cfg, state


def _with_ema(state: dict, shadow: list, cfg: MDLMConfig, where: str) -> dict:
    """Replace the trained weights by the EMA's: MDLM's EMA keeps one tensor per
    parameter of chain(backbone.parameters(), noise.parameters()), in that order."""
    with torch.device("meta"):
        names = [n for n, _ in DiT(cfg).named_parameters()]
    if len(shadow) < len(names):
        raise ValueError(f"{where}: the EMA holds {len(shadow)} tensors, the backbone has {len(names)} parameters")
    out = dict(state)
    for name, value in zip(names, shadow):
        if not isinstance(value, torch.Tensor) or name not in state or value.shape != state[name].shape:
            raise ValueError(f"{where}: the EMA tensor for {name} does not match the weights "
                             f"({getattr(value, 'shape', type(value).__name__)})")
        out[name] = value
    return out


def config_from_hydra(cfg: dict, vocab_size: int) -> MDLMConfig:
    """MDLMConfig from MDLM's Hydra config (``model.hidden_size`` etc.); V comes from the weights."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise ValueError("MDLM's config needs a 'model' section (hidden_size, cond_dim, n_blocks, n_heads)")
    model = cfg["model"]
    missing = [k for k in ("hidden_size", "cond_dim", "n_blocks", "n_heads") if k not in model]
    if missing:
        raise ValueError(f"MDLM's config 'model' section is missing {missing}")
    if cfg.get("backbone", "dit") != "dit":
        raise ValueError(f"only MDLM's DiT backbone loads, the config says backbone = {cfg.get('backbone')!r}")
    if cfg.get("parameterization", "subs") != "subs":
        raise ValueError(f"only the 'subs' parameterization loads, the config says {cfg.get('parameterization')!r}")
    time_conditioning = bool(cfg.get("time_conditioning", False))
    noise = cfg.get("noise") if isinstance(cfg.get("noise"), dict) else {}
    if time_conditioning and noise.get("type", "loglinear") != "loglinear":
        raise ValueError(f"time conditioning is supported with the log-linear noise only, got {noise.get('type')!r}")
    return MDLMConfig.from_dict(dict(vocab_size=int(vocab_size), model_length=int(model.get("length", 1024)),
                                     hidden_dim=int(model["hidden_size"]), cond_dim=int(model["cond_dim"]),
                                     n_blocks=int(model["n_blocks"]), n_heads=int(model["n_heads"]),
                                     dropout=float(model.get("dropout", 0.1)), time_conditioning=time_conditioning,
                                     mask_index=cfg.get("mask_index")))


def _find_config(path: str, ckpt: dict, config) -> dict:
    if isinstance(config, dict):
        return _resolve(config)
    if config is not None:
        return _read_yaml(os.fspath(config))
    hp = ckpt.get("hyper_parameters")
    if isinstance(hp, dict) and hp.get("config") is not None:
        cfg = _plain(hp["config"])
        if isinstance(cfg, dict):
            return _resolve(cfg)
    here = os.path.dirname(os.path.abspath(path))
    for candidate in (os.path.join(here, "config.yaml"), os.path.join(here, ".hydra", "config.yaml"),
                      os.path.join(os.path.dirname(here), ".hydra", "config.yaml"),
                      os.path.join(os.path.dirname(here), "config.yaml")):
        if os.path.isfile(candidate):
            return _read_yaml(candidate)
    raise FileNotFoundError(f"{path}: no config (no hyper_parameters in the checkpoint and no Hydra config.yaml "
                            "beside it); pass config=")


def _read_yaml(file: str) -> dict:
    import yaml

    if not os.path.isfile(file):
        raise FileNotFoundError(f"config file not found: {file}")
    with open(file) as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ValueError(f"{file} does not hold a mapping")
    return _resolve(cfg)


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def _resolve(cfg: dict) -> dict:
    """Resolve whole-value interpolations ``${a.b}`` against the root (OmegaConf style)."""

    def lookup(dotted: str, depth: int):
        node = cfg
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return "${" + dotted + "}"
            node = node[part]
        return walk(node, depth + 1)

    def walk(node, depth=0):
        if depth > 32:
            raise ValueError("config interpolations nest too deeply (a cycle?)")
        if isinstance(node, dict):
            return {k: walk(v, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, depth) for v in node]
        if isinstance(node, str):
            m = _INTERPOLATION.match(node)
            if m:
                return lookup(m.group(1), depth)
        return node

    return walk(cfg)


# --------------------------------------------------------------------------- restricted unpickling


class _Record:
    """An object of a class we do not import: keeps its constructor arguments and state."""

    _module, _name = "", ""

    def __init__(self, *args, **kwargs):
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state):
        self._state = state

    def __setitem__(self, key, value):
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("_list", []).extend(values)

    def __repr__(self):
        return f"<record of {self._module}.{self._name}>"


_BUILTINS = {name: getattr(__import__("builtins"), name) for name in
             ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes",
              "bytearray", "slice", "range")}
_TORCH_REBUILD = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")
_RECORD_CLASSES: dict = {}


def _safe_global(module: str, name: str):
    if module == "builtins" and name in _BUILTINS:
        return _BUILTINS[name]
    if module == "collections" and name in ("OrderedDict", "defaultdict"):
        return getattr(collections, name)
    if module == "torch._utils" and name in _TORCH_REBUILD:
        return getattr(torch._utils, name)
    if module == "torch":
        obj = getattr(torch, name, None)
        if name.endswith("Storage") or name == "Size" or isinstance(obj, torch.dtype):
            return obj
    key = (module, name)
    if key not in _RECORD_CLASSES:
        _RECORD_CLASSES[key] = type(name, (_Record,), {"_module": module, "_name": name})
    return _RECORD_CLASSES[key]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _safe_global(module, name)


_RESTRICTED = SimpleNamespace(__name__="edlm_restricted_pickle", Unpickler=_RestrictedUnpickler,
                              load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
                              UnpicklingError=pickle.UnpicklingError)


def _torch_load(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED)


def _plain(obj, depth: int = 0):
    """Plain dicts / lists / values from records of OmegaConf containers and nodes
    (state ``_content`` for DictConfig / ListConfig, ``_val`` for value nodes)."""
    if depth > 64:
        raise ValueError("config nests too deeply")
    if isinstance(obj, _Record):
        state = getattr(obj, "_state", None)
        if isinstance(state, dict) and "_content" in state:
            return _plain(state["_content"], depth + 1)
        if isinstance(state, dict) and "_val" in state:
            return _plain(state["_val"], depth + 1)
        return obj
    if isinstance(obj, dict):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    return obj
