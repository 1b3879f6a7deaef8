"""Training checkpoints as ONE safetensors file, written atomically (edlm_ext.atomic).

A checkpoint holds the fp32 weights (``model/NAME``), the optimizer's tensors
(``optim/PARAM_INDEX/KEY``), the random states (``rng/NAME``, uint8) and, in the
safetensors metadata, what it belongs to and where training stood:

* ``format``: :data:`FORMAT`;
* ``identity``: JSON — the model kind, its config, the tokenizer (name and a
  SHA-256 of its JSON) and the [MASK] id; a resume with any other identity is refused;
* ``state``: JSON — step, elapsed seconds, history, commands, the optimizer's
  param groups and non-tensor state;
* ``sha256``: a digest of every tensor (name, dtype, shape, bytes), so a corrupt
  file is refused even where safetensors' own header checks pass.

Because the file is replaced atomically, a kill at any instant leaves either the
previous checkpoint or the new one, never a mix of two steps.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import atomic
from .errors import CheckpointError

FORMAT = "edlm-train-checkpoint/1"
FILE = "checkpoint.safetensors"
LEGACY_FILES = ("resume.pt", "resume.safetensors")  # the two-file format of earlier versions


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    optimizer: dict  # torch.optim state_dict
    rng: dict[str, torch.Tensor]
    state: dict  # step, elapsed, history, commands, ...


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _split_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch.optim state_dict -> (tensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for idx, entry in opt_state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in rest["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


def save(path: str | os.PathLike, *, model: dict[str, torch.Tensor], optimizer: dict, rng: dict[str, torch.Tensor],
         identity: dict, state: dict) -> Path:
    """Write one checkpoint atomically (see the module docstring). Returns its path."""
    from safetensors.torch import save as to_bytes

    opt_tensors, opt_rest = _split_optimizer(optimizer)
    tensors = {f"model/{k}": v.detach().contiguous().cpu() for k, v in model.items()}
    tensors.update(opt_tensors)
    tensors.update({f"rng/{k}": v.contiguous().cpu() for k, v in rng.items()})
    meta = {
        "format": FORMAT,
        "identity": json.dumps(identity, sort_keys=True),
        "state": json.dumps({**state, "optimizer": opt_rest}),
        "sha256": digest(tensors),
    }
    return atomic.write_bytes(path, to_bytes(tensors, metadata=meta))


def describe_mismatch(stored: dict, wanted: dict) -> list[str]:
    """The fields where a checkpoint's identity differs from this run's."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{d}" for d in describe_mismatch(a, b)]
        elif a != b:
            out.append(f"{key} {a!r} (this run: {b!r})")
    return out


def load(path: str | os.PathLike, identity: dict) -> Checkpoint:
    """Read and verify a checkpoint: format, digest, and that it belongs to a run of
    this identity. Raises CheckpointError (one line: what is wrong, what to do)."""
    from safetensors import safe_open

    path = Path(path)
    fix = f"delete {path} to start afresh, or restore an intact copy"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated / garbage files
        raise CheckpointError(f"checkpoint {path} is truncated or not a safetensors file "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); {fix}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an edlm_ext training checkpoint "
                              f"(format {meta.get('format')!r}, want {FORMAT!r}); {fix}")
    if digest(tensors) != meta.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt (its tensors do not match their SHA-256); {fix}")
    try:
        stored = json.loads(meta["identity"])
        state = json.loads(meta["state"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata ({e}); {fix}") from None
    diff = describe_mismatch(stored, identity)
    if diff:
        raise CheckpointError(f"checkpoint {path} belongs to another run: {'; '.join(diff)}. Resume with the "
                              f"settings that wrote it, or train into another --out")
    model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    rng = {k[len("rng/"):]: v for k, v in tensors.items() if k.startswith("rng/")}
    opt = _join_optimizer({k: v for k, v in tensors.items() if k.startswith("optim/")}, state.pop("optimizer"))
    return Checkpoint(model=model, optimizer=opt, rng=rng, state=state)
