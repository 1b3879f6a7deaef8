"""Command line: ``python -m edlm_ext sample ...`` (also under ``torchrun``).

``sample`` uses the models shipped in edlm_ext/assets (trained on the Austen corpus:
prints texts) when present, else (or with ``--models tiny``) the tiny randomly
initialised models of :mod:`edlm_ext.models` (the same weights on every rank, from
``--model-seed``). ``eval`` scores a JSONL of samples; ``train`` runs :mod:`edlm_ext.train`;
``bench`` runs a kernel microbenchmark of python/bench (source checkouts). Under ``torchrun --nproc-per-node N``
the samples are split across ranks (gloo on CPU, nccl on GPU) and rank 0 writes all of
them to ``--output``: one JSON object per line, ``{"index": i, "rank": r, "tokens": [...]}``, in index
order. Each rank draws from its own stream (seed, rank), so samples depend on N.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

METHODS = ("mdlm", "edlm-ar", "edlm-nce")
BENCHES = ("sampling", "proposals", "unmask", "generation")
BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python", "bench")
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")


def _shipped_available() -> bool:
    return all(os.path.exists(os.path.join(ASSETS, m, "model.safetensors")) for m in ("denoiser", "ar"))


def _build(method: str, vocab_size: int, seq_len: int, model_seed: int, device: torch.device, models: str):
    """(denoiser, energy or None, mask_id, text tools or None) for a method: the models
    shipped in edlm_ext/assets (trained on the Austen corpus), or tiny random ones."""
    from .energy import AREnergy, NCEEnergy

    if models == "shipped":
        from .data import load_tokenizer, special_ids
        from .train import load_model

        tok = load_tokenizer()
        eot, mask_id = special_ids(tok)
        denoiser = load_model(os.path.join(ASSETS, "denoiser")).to(device)
        energy = None
        if method == "edlm-ar":
            energy = AREnergy(load_model(os.path.join(ASSETS, "ar")).to(device), bos_id=eot)
        elif method == "edlm-nce":
            path = os.path.join(ASSETS, "nce")
            if not os.path.exists(os.path.join(path, "model.safetensors")):
                raise SystemExit("edlm-nce: no trained NCE energy in edlm_ext/assets/nce yet "
                                 "(python -m edlm_ext train nce --out edlm_ext/assets/nce)")
            energy = NCEEnergy(load_model(path).to(device))
        return denoiser, energy, mask_id, (tok, eot)
    from .models import TinyAR, TinyDenoiser

    if method == "edlm-nce":
        raise SystemExit("edlm-nce needs --models shipped")
    mask_id = vocab_size - 1
    torch.manual_seed(model_seed)
    denoiser = TinyDenoiser(vocab_size, mask_id, max_len=seq_len).to(device).eval()
    energy = None
    if method == "edlm-ar":
        ar = TinyAR(vocab_size, max_len=seq_len).to(device).eval()
        energy = AREnergy(ar, bos_id=mask_id)  # the untrained AR reads [MASK] as its BOS
    return denoiser, energy, mask_id, None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edlm_ext", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="sample texts (shipped Austen models) or token sequences (tiny models)")
    s.add_argument("--method", choices=METHODS, default="mdlm")
    s.add_argument("--steps", type=int, default=32)
    s.add_argument("--k", type=int, default=4, help="proposals per importance-sampling step (edlm-ar)")
    s.add_argument("--window", type=float, default=0.2, help="importance sampling at t >= 1 - window (edlm-ar)")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--num-samples", type=int, default=8)
    s.add_argument("--seq-len", type=int, default=32)
    s.add_argument("--batch-size", type=int, default=16, help="samples per sampler call on each rank")
    s.add_argument("--vocab-size", type=int, default=64, help="tiny models: vocabulary size ([MASK] = last id)")
    s.add_argument("--model-seed", type=int, default=0, help="tiny models: initialisation seed")
    s.add_argument("--device", default="cpu", help="cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    s.add_argument("--models", choices=("shipped", "tiny"), default=None,
                   help="shipped: the models trained on the Austen corpus (default when present); tiny: random")
    s.add_argument("--prompt", default=None, help="shipped models: text the samples continue (fixed prefix)")
    s.add_argument("--output", default=None, help="JSONL file written by rank 0 (default: print only)")
    e = sub.add_parser("eval", help="metrics of samples in a JSONL file (entropy, Gen PPL under our AR / SmolLM2)")
    e.add_argument("input", help="JSONL written by `sample` (shipped models: token ids of the Austen BPE)")
    e.add_argument("--judge", action="store_true", help="also Gen PPL under SmolLM2-135M (optional extra)")
    t = sub.add_parser("train", help="train a model on the Austen corpus (see python -m edlm_ext.train -h)")
    t.add_argument("args", nargs=argparse.REMAINDER)
    b = sub.add_parser("bench", help="a microbenchmark of python/bench: ours side by side with today's samplers")
    b.add_argument("which", choices=BENCHES, help="sampling: masked_sample vs MDLM/LLaDA float64 steps; proposals: "
                   "k draws + resample; unmask: the unmasking ops; generation: whole sampling loops")
    b.add_argument("args", nargs=argparse.REMAINDER, help="passed on (e.g. --quick, --device cuda, --csv FILE)")
    return p


def _distributed(device: str):
    """(rank, world size, device), initialising torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world == 1:
        return 0, 1, dev
    import torch.distributed as dist

    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def _check_args(a) -> None:
    for name in ("steps", "k", "num_samples", "seq_len", "batch_size"):
        if getattr(a, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.models is None:
        a.models = "shipped" if _shipped_available() else "tiny"
    if a.models == "shipped" and not _shipped_available():
        raise SystemExit("--models shipped: no trained models in edlm_ext/assets")
    if a.prompt is not None and a.models != "shipped":
        raise SystemExit("--prompt needs --models shipped")
    if a.vocab_size < 2:
        raise SystemExit(f"--vocab-size must be >= 2, got {a.vocab_size}")
    if not 0.0 <= a.window <= 1.0:
        raise SystemExit(f"--window must be in [0, 1], got {a.window}")
    if a.temperature < 0:
        raise SystemExit(f"--temperature must be >= 0, got {a.temperature}")


def cmd_sample(a) -> int:
    from .sampler import sample

    _check_args(a)
    rank, world, device = _distributed(a.device)
    lo, hi = rank * a.num_samples // world, (rank + 1) * a.num_samples // world
    denoiser, energy, mask_id, text = _build(a.method, a.vocab_size, a.seq_len, a.model_seed, device, a.models)
    prefix = None
    if text is not None:
        tok, eot = text
        prefix = torch.tensor([eot] + (tok.encode(a.prompt).ids if a.prompt else []))[: a.seq_len]
    gen = torch.Generator(device=device).manual_seed(a.seed * 65537 + rank)
    records, stats = [], []
    for start in range(lo, hi, a.batch_size):
        n = min(a.batch_size, hi - start)
        with torch.no_grad():
            out = sample(denoiser, batch_size=n, seq_len=a.seq_len, mask_id=mask_id, steps=a.steps, energy=energy,
                         k=a.k if energy is not None else 1, window=a.window if energy is not None else 0.0,
                         temperature=a.temperature, prefix=prefix, device=device, generator=gen)
        stats.append(out.stats)
        for i, row in enumerate(out.tokens.tolist()):
            rec = {"index": start + i, "rank": rank, "tokens": row}
            if text is not None:
                from .evaluate import decode

                rec["text"] = decode(torch.tensor([row]), text[0], text[1])[0]
            records.append(rec)
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world if rank == 0 else None
        dist.gather_object(records, gathered, dst=0)
        if rank == 0:
            records = [r for part in gathered for r in part]
        dist.destroy_process_group()
    if rank == 0:
        records.sort(key=lambda r: r["index"])
        if a.output:
            os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
            with open(a.output, "w") as f:
                for r in records:
                    f.write(json.dumps(r) + "\n")
            print(f"wrote {len(records)} samples from {world} rank(s) to {a.output}", file=sys.stderr)
        _report(records, stats, text, a)
    return 0


def _report(records, stats, text, a) -> None:
    """Print the texts (shipped models) and one metrics line."""
    from .evaluate import unigram_entropy

    if text is not None:
        for r in records:
            print(f"--- sample {r['index']}\n{r['text']}")
    toks = torch.tensor([r["tokens"] for r in records])
    ent = unigram_entropy(toks)["entropy_nats"]
    secs = sum(s.time_total for s in stats)
    ess = [e for s in stats for e in s.ess]
    print(f"method={a.method} models={a.models} steps={a.steps} samples={len(records)} "
          f"denoiser_calls={sum(s.denoiser_calls for s in stats)} energy_calls={sum(s.energy_calls for s in stats)} "
          f"mean_ess={(sum(ess) / len(ess)) if ess else float('nan'):.2f} entropy={ent:.3f} nats "
          f"seconds_per_sample={secs / max(1, len(records)):.3f}")


def cmd_eval(a) -> int:
    from .data import load_tokenizer, special_ids
    from .evaluate import evaluate
    from .train import load_model

    if not _shipped_available():
        raise SystemExit("eval needs the shipped models in edlm_ext/assets")
    with open(a.input) as f:
        tokens = torch.tensor([json.loads(line)["tokens"] for line in f if line.strip()])
    tok = load_tokenizer()
    eot, _ = special_ids(tok)
    if int(tokens.max()) >= tok.get_vocab_size():
        raise SystemExit(f"{a.input}: token ids beyond the Austen vocabulary (samples of --models tiny?)")
    judge = None
    if a.judge:
        from .judge import SmolLM2Judge

        judge = SmolLM2Judge()
    m = evaluate(tokens, tok, eot, ar_model=load_model(os.path.join(ASSETS, "ar")), judge=judge)
    print(f"samples={tokens.shape[0]} " + " ".join(f"{k}={v:.3f}" for k, v in m.items()))
    return 0


def cmd_train(a) -> int:
    from .train import main as train_main

    train_main(a.args)
    return 0


def cmd_bench(a) -> int:
    """Run python/bench/bench_<which>.py's main with the remaining arguments."""
    import importlib.util

    path = os.path.join(BENCH_DIR, f"bench_{a.which}.py")
    if not os.path.exists(path):
        raise SystemExit(f"bench: {path} not found; the benchmarks live in the source checkout "
                         "(git clone, then python -m edlm_ext bench ... from it)")
    spec = importlib.util.spec_from_file_location(f"edlm_bench_{a.which}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses in the script look their module up there
    spec.loader.exec_module(mod)
    return mod.main(a.args) or 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"sample": cmd_sample, "eval": cmd_eval, "train": cmd_train, "bench": cmd_bench}[args.command](args)
