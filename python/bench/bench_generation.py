"""Whole generation loops with a tiny model: the stock PyTorch sampling vs edlm_ext's.

Loops (the same tiny MDLM DiT, random weights, for both; only the sampling differs):

* mdlm   MDLM's ancestral loop with caching (t from 1 to 1e-5, ``--steps`` steps).
         stock: p_x0 in float64, q_xs = p_x0 dt with q_xs[MASK] = t - dt, argmax of
                q_xs / Exp(1) noise from float64 uniforms (edlm_ext.integrations.stock)
         ours:  edlm_ext.integrations.mdlm.ddpm_caching_update (exact draw + unmask kernels)
         Both reuse p_x0 while x does not change, as MDLM's loop does.
* llada  LLaDA's block-wise semi-autoregressive loop (prompt 16, blocks of gen_length/2,
         low-confidence remasking, temperature 1).
         stock: float64 Gumbel argmax, float64 softmax confidence, top-k transfer
         ours:  edlm_ext.integrations.hf.generate

Per loop step: model ms (denoiser calls, timed around the model) and sampling ms
(everything else). One warm-up run, then the median of ``--repeats`` runs.

    python python/bench/bench_generation.py                       # CPU, V = 50258 and 126464
    python python/bench/bench_generation.py --device cuda --batch 16 --seq-len 1024

Table to stdout, CSV to python/bench/results/bench_generation_<device>.csv.
"""
from __future__ import annotations

import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

try:
    import edlm_ext  # noqa: F401
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from edlm_ext import atomic  # noqa: E402
from edlm_ext._cli_util import ArgumentParser, run as run_cli  # noqa: E402
from edlm_ext.integrations import hf, mdlm, stock  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = ("device", "device_name", "torch_version", "date", "loop", "V", "B", "L", "steps", "impl",
           "model_ms_per_step", "sampling_ms_per_step", "total_ms_per_step", "sampling_speedup", "repeats")


class TimedModel:
    """Wraps a model and adds up the wall time of its calls (synchronizing CUDA)."""

    def __init__(self, model, device: torch.device):
        self.model, self.cuda, self.seconds = model, device.type == "cuda", 0.0

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, *args):
        self._sync()
        t0 = time.perf_counter()
        out = self.model(*args)
        self._sync()
        self.seconds += time.perf_counter() - t0
        return out


def tiny_model(vocab_size: int, seq_len: int, device: torch.device) -> mdlm.MDLMDenoiser:
    torch.manual_seed(0)
    cfg = mdlm.MDLMConfig(vocab_size=vocab_size, model_length=seq_len, hidden_dim=64, cond_dim=32, n_blocks=1,
                          n_heads=2, dropout=0.0)
    return mdlm.MDLMDenoiser(cfg).to(device).eval()


def mdlm_loop(impl: str, den, B: int, L: int, steps: int, device, seed: int) -> None:
    """MDLM's sampling loop: caching while x does not change, final step to t = eps."""
    mask_id, eps = den.mask_id, 1e-5
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.full((B, L), mask_id, dtype=torch.long, device=device)
    dt = (1 - eps) / steps
    cache = None
    for i in range(steps):
        t = 1 - i * dt
        if impl == "stock":
            cache, x_next = stock.mdlm_ddpm_update(den, x, t, dt, mask_id, cache, generator=gen)
        else:
            cache, x_next = mdlm.ddpm_caching_update(den, x, t, dt, cache, mask_id=mask_id, generator=gen)
        if not torch.equal(x_next, x):
            cache = None
        x = x_next


def llada_loop(impl: str, model, B: int, L: int, steps: int, device, seed: int) -> None:
    prompt_len = 16
    gen_length = L - prompt_len
    prompt = torch.randint(0, model.mask_id, (B, prompt_len), device=device,
                           generator=torch.Generator(device=device).manual_seed(seed))
    kw = dict(mask_id=model.mask_id, gen_length=gen_length, block_length=gen_length // 2, steps=steps,
              temperature=1.0)
    if impl == "stock":
        stock.llada_generate(model, prompt, generator=torch.Generator(device=device).manual_seed(seed), **kw)
    else:
        hf.generate(model, prompt, seed=seed, **kw)


class LogitsModel:
    """LLaDA-style model from the tiny DiT: ``model(ids).logits`` (t unused); keeps mask_id."""

    def __init__(self, den):
        self.den, self.mask_id = den, den.mask_id

    def __call__(self, ids):
        return SimpleNamespace(logits=self.den(ids, torch.zeros(ids.shape[0], device=ids.device)))


def run(loop: str, impl: str, V: int, B: int, L: int, steps: int, device, repeats: int) -> dict:
    den = tiny_model(V, L, device)
    timed = TimedModel(den if loop == "mdlm" else LogitsModel(den), device)
    timed.mask_id = den.mask_id
    fn = mdlm_loop if loop == "mdlm" else llada_loop
    totals, models = [], []
    for r in range(repeats + 1):
        timed.seconds = 0.0
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(impl, timed, B, L, steps, device, seed=r)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if r:  # r = 0 is the warm-up
            totals.append(time.perf_counter() - t0)
            models.append(timed.seconds)
    total, model = statistics.median(totals), statistics.median(models)
    return dict(model_ms_per_step=1e3 * model / steps, sampling_ms_per_step=1e3 * (total - model) / steps,
                total_ms_per_step=1e3 * total / steps)


def main(argv=None) -> int:
    ap = ArgumentParser(prog="bench_generation.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vocab", default="50258,126464")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--loops", default="mdlm,llada")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads; 1 is steadiest on a shared machine)")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    out = atomic.check_output_file(RESULTS_DIR / f"bench_generation_{device.type}.csv", "the CSV")
    if device.type == "cpu":
        torch.set_num_threads(a.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    meta = dict(device=device.type, device_name=name, torch_version=torch.__version__,
                date=datetime.date.today().isoformat(), repeats=a.repeats)
    rows = []
    print(f"{'loop':6} {'V':>7} {'impl':9} {'model ms/step':>14} {'sampling ms/step':>17} {'total ms/step':>14} "
          f"{'sampling speedup':>17}")
    for loop in a.loops.split(","):
        for V in (int(v) for v in a.vocab.split(",")):
            res = {impl: run(loop, impl, V, a.batch, a.seq_len, a.steps, device, a.repeats)
                   for impl in ("stock", "edlm_ext")}
            speedup = res["stock"]["sampling_ms_per_step"] / res["edlm_ext"]["sampling_ms_per_step"]
            for impl, r in res.items():
                row = dict(meta, loop=loop, V=V, B=a.batch, L=a.seq_len, steps=a.steps, impl=impl, **r,
                           sampling_speedup=round(speedup, 2) if impl == "edlm_ext" else 1.0)
                rows.append(row)
                print(f"{loop:6} {V:>7} {impl:9} {r['model_ms_per_step']:>14.2f} {r['sampling_ms_per_step']:>17.2f} "
                      f"{r['total_ms_per_step']:>14.2f} {row['sampling_speedup']:>17.2f}")
    atomic.write_csv(out, [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
                           for row in rows], COLUMNS)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("bench_generation.py", main))
