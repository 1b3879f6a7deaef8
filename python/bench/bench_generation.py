"""Whole generation loops, upstream code vs the edlm_ext drop-in, with the same tiny model.

For each upstream project the loop as its code runs it (edlm_ext.integrations.stock, a
re-implementation of the published algorithm) is timed beside the drop-in, on one model
(a random MDLM DiT, one block, whose logits any loop can read):

* mdlm       ``Diffusion._sample`` (ddpm_cache, eps 1e-5), unpatched vs ``mdlm.patch``
* llada      LLaDA's ``generate`` vs ``hf.generate`` (2 blocks, low confidence, T = 1)
* fast_dllm  Fast-dLLM's ``generate`` vs ``fast_dllm.generate`` (threshold 0.9, greedy)
* dream      Dream's ``diffusion_generate`` vs ``dream.diffusion_generate`` (entropy, top_p 0.95, T = 0.2)

Per generation: model ms (the model's calls, timed around them), sampling ms
(everything else) and their total; "sampling x" is the ratio of the sampling time (the
loops make the same steps, so it is the sampling step's speed-up), "loop x" the ratio
of the whole loop's time. One warm-up run, then the median of ``--repeats`` runs.

    python python/bench/bench_generation.py --device cpu          # CPU, one thread
    python python/bench/bench_generation.py --device cuda --batch 16 --seq-len 1024

Table to stdout, CSV to python/bench/results/bench_generation_<device>.csv.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (device, timer, CSV, the common options)

from edlm_ext._cli_util import ArgumentParser, run as run_cli  # noqa: E402
from edlm_ext.integrations import dream, fast_dllm, hf, mdlm, stock  # noqa: E402

COLUMNS = ("device", "device_name", "threads", "torch_version", "date", "loop", "V", "B", "L", "steps", "impl",
           "model_calls", "model_ms", "sampling_ms", "total_ms", "sampling_speedup",
           "loop_speedup", "repeats")
PROMPT = 16


class Clock:
    """Adds up the wall time of the model's calls (synchronizing CUDA)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.calls = device, 0.0, 0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            common.synchronize(self.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            common.synchronize(self.device)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            return out
        return timed


def tiny_dit(vocab_size: int, seq_len: int, device: torch.device) -> mdlm.MDLMDenoiser:
    torch.manual_seed(0)
    cfg = mdlm.MDLMConfig(vocab_size=vocab_size, model_length=seq_len, hidden_dim=64, cond_dim=32, n_blocks=1,
                          n_heads=2, dropout=0.0)
    return mdlm.MDLMDenoiser(cfg).to(device).eval()


def _logits(den, ids):
    with torch.no_grad():
        lg = den.backbone(ids, torch.zeros(ids.shape[0], device=ids.device)).float()
    lg[..., den.mask_id] = torch.finfo(lg.dtype).min  # a trained model never predicts [MASK]
    return lg


def loop_fn(loop: str, impl: str, den, clock: Clock, B: int, L: int, steps: int, device, seed: int):
    """Returns a function that runs one generation."""
    mask = den.mask_id
    prompt = torch.randint(0, mask, (B, PROMPT), device=device, generator=torch.Generator(device).manual_seed(seed))
    gen_len = L - PROMPT
    if loop == "mdlm":
        model = stock.mdlm.Diffusion(den.backbone, mask, sampler="ddpm_cache", length=L, batch_size=B)
        model.forward = clock.wrap(model.forward)
        if impl == "edlm_ext":
            mdlm.patch(model, seed=seed, sample_categorical_too=False)
        return lambda: model._sample(num_steps=steps)
    if loop in ("llada", "fast_dllm"):
        llada_model = clock.wrap(lambda ids, attention_mask=None: SimpleNamespace(logits=_logits(den, ids)))
        if loop == "llada":
            kw = dict(steps=steps, gen_length=gen_len, block_length=gen_len // 2, temperature=1.0, mask_id=mask)
            if impl == "stock":
                return lambda: stock.llada.generate(llada_model, prompt, **kw)
            return lambda: hf.generate(llada_model, prompt, seed=seed, **kw)
        kw = dict(steps=steps, gen_length=gen_len, block_length=gen_len // 2, temperature=0.0, mask_id=mask,
                  threshold=0.9)
        impl_fn = stock.fast_dllm.generate if impl == "stock" else fast_dllm.generate
        return lambda: impl_fn(llada_model, prompt, **kw)
    call = clock.wrap(lambda ids, attention_mask=None, tok_idx=None: SimpleNamespace(logits=_logits(den, ids)))
    kw = dict(max_new_tokens=gen_len, steps=steps, alg="entropy", temperature=0.2, top_p=0.95, mask_token_id=mask)
    if impl == "stock":
        return lambda: stock.dream.diffusion_generate(call, prompt, **kw)
    return lambda: dream.diffusion_generate(call, prompt, seed=seed, **kw)


def mdlm_steps(V: int, B: int, L: int, device, repeats: int) -> list[tuple[str, dict]]:
    """MDLM's sampling step alone, on cached p_x0 (no model call): ``_ddpm_caching_update``
    and ``_sample_categorical`` on its q_xs, upstream vs ours."""
    den = tiny_dit(V, L, device)
    model = stock.mdlm.Diffusion(den.backbone, den.mask_id, length=L, batch_size=B)
    x = torch.full((B, L), den.mask_id, device=device)
    t = torch.full((B, 1), 0.5, device=device)
    p_x0, _ = model._ddpm_caching_update(x, t, 0.01)
    q_xs = p_x0 * 0.01
    q_xs[..., den.mask_id] = 0.49
    ours_cache, _ = mdlm.ddpm_caching_update(den, x, t, 0.01, mask_id=den.mask_id, seed=0)
    cases = {
        "mdlm_step": (lambda: model._ddpm_caching_update(x, t, 0.01, p_x0=p_x0),
                      lambda: mdlm.ddpm_caching_update(den, x, t, 0.01, ours_cache, mask_id=den.mask_id, seed=1)),
        "mdlm_categorical": (lambda: stock.mdlm._sample_categorical(q_xs),
                             lambda: mdlm.sample_categorical(q_xs, seed=2)),
    }
    return [(name, dict(stock=common.time_ms(fns[0], device, 1, repeats), edlm_ext=common.time_ms(fns[1], device, 1, repeats)))
            for name, fns in cases.items()]


def run(loop: str, impl: str, V: int, B: int, L: int, steps: int, device, repeats: int) -> dict:
    den = tiny_dit(V, L, device)
    totals, models, calls = [], [], 0
    for r in range(repeats + 1):
        clock = Clock(device)
        fn = loop_fn(loop, impl, den, clock, B, L, steps, device, seed=r)
        torch.manual_seed(r)  # the upstream loops draw from torch's global generator
        common.synchronize(device)
        t0 = time.perf_counter()
        fn()
        common.synchronize(device)
        if r:  # r = 0 is the warm-up
            totals.append(time.perf_counter() - t0)
            models.append(clock.seconds)
            calls = clock.calls
    total, model = statistics.median(totals), statistics.median(models)
    return dict(model_calls=calls, model_ms=1e3 * model, sampling_ms=1e3 * (total - model), total_ms=1e3 * total)


def main(argv=None) -> int:
    ap = ArgumentParser(prog="bench_generation.py", description=__doc__.split("\n\n")[0])
    common.add_common_args(ap, quick_help="smoke test: V = 1000, 4 steps, one repeat, no CSV unless --csv",
                           threads_default=1)
    ap.add_argument("--vocab", default="50258,126464")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--loops", default="mdlm,llada,fast_dllm,dream")
    a = ap.parse_args(argv)
    device, out = common.resolve(a, ap, "generation")  # (checked before minutes of benchmarking)
    if a.quick:
        a.vocab, a.steps, a.repeats = "1000", 4, 1
    meta = dict(common.common_fields(device), threads=torch.get_num_threads(), repeats=a.repeats)
    rows = []
    print(f"{'loop':9} {'V':>7} {'impl':9} {'calls':>5} {'model ms':>10} {'sampling ms':>12} {'total ms':>10} "
          f"{'sampling x':>10} {'loop x':>7}")
    for loop in a.loops.split(","):
        for V in (int(v) for v in a.vocab.split(",")):
            res = {impl: run(loop, impl, V, a.batch, a.seq_len, a.steps, device, a.repeats)
                   for impl in ("stock", "edlm_ext")}
            s_x = res["stock"]["sampling_ms"] / res["edlm_ext"]["sampling_ms"]
            l_x = res["stock"]["total_ms"] / res["edlm_ext"]["total_ms"]
            for impl, r in res.items():
                ours = impl == "edlm_ext"
                row = dict(meta, loop=loop, V=V, B=a.batch, L=a.seq_len, steps=a.steps, impl=impl, **r,
                           sampling_speedup=round(s_x, 2) if ours else 1.0, loop_speedup=round(l_x, 2) if ours else 1.0)
                rows.append(row)
                print(f"{loop:9} {V:>7} {impl:9} {r['model_calls']:>5} {r['model_ms']:>10.1f} "
                      f"{r['sampling_ms']:>12.1f} {r['total_ms']:>10.1f} "
                      f"{row['sampling_speedup']:>10.2f} {row['loop_speedup']:>7.2f}")
    for V in (int(v) for v in a.vocab.split(",")):
        for name, ms in mdlm_steps(V, a.batch, a.seq_len, device, max(3, a.repeats)):
            x = ms["stock"] / ms["edlm_ext"]
            for impl in ("stock", "edlm_ext"):
                ours = impl == "edlm_ext"
                ratio = round(x, 2) if ours else 1.0
                rows.append(dict(meta, loop=name, V=V, B=a.batch, L=a.seq_len, steps=1, impl=impl, model_calls=0,
                                 model_ms=0.0, sampling_ms=ms[impl], total_ms=ms[impl], sampling_speedup=ratio,
                                 loop_speedup=ratio))
                print(f"{name:17} {V:>7} {impl:9} {'':>5} {'':>10} {ms[impl]:>12.1f} {ms[impl]:>10.1f} "
                      f"{rows[-1]['sampling_speedup']:>10.2f}")
    if out is None:
        return 0
    common.write_csv(out, [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
                     COLUMNS)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("bench_generation.py", main))
