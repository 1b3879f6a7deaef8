"""A fuzz loop over the raw ops (torch.ops.edlm_ext.*) and their wrappers: random
shapes (empty, V = 1, tile boundaries), dtypes, strides (sliced, expanded, transposed
rows), ids in and out of range, poisoned logits (NaN, +-inf, rows with only [MASK]
finite), temperatures and filters inside and outside their ranges, rng tensors of
any layout and shape, and every op's other arguments at their edges.

Each case either raises a clean error (TypeError / ValueError / RuntimeError from an
argument check) or returns outputs that obey the ops' invariants — every id in
[0, V) (invalid rows: [MASK]), proposals' index in [0, k), chosen = proposals[index],
unmasked positions unchanged. Any other exception, a violated invariant — or, under
`make test-asan`, any sanitizer report (which aborts) — is a failure.

    python python/bench/fuzz_ops.py --seconds 60 [--seed 0] [--cases N]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

try:
    import edlm_ext
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import edlm_ext
from edlm_ext.ops import TEMPERATURE_RANGE

OPS = torch.ops.edlm_ext
CLEAN = (TypeError, ValueError, RuntimeError, NotImplementedError)
T_MIN, T_MAX = TEMPERATURE_RANGE
GOOD_T = [0.0, 1.0, 0.5, 3.0, 1e-3, T_MIN, T_MAX, 1e-12, 1e12]
BAD_T = [4e-39, 2e45, 1e-45, 1e300, -1.0, float("nan"), float("inf")]
VOCABS = [1, 2, 3, 7, 8, 255, 256, 257, 1000, 4097]


def _pick(r: random.Random, good: list, bad: list, p_bad: float = 0.06):
    """A good value, or (with probability p_bad) a bad one."""
    return r.choice(bad) if bad and r.random() < p_bad else r.choice(good)


def _rng(r: random.Random) -> torch.Tensor:
    seed = r.randrange(-(2**63), 2**63)
    kind = r.random()
    if kind < 0.6:
        return torch.tensor([seed, r.randrange(0, 2**62)])
    if kind < 0.75:
        return torch.tensor([seed, 1, r.randrange(0, 2**40), 2])[::2]  # strided view
    if kind < 0.95:
        return torch.tensor([seed]).expand(2)  # expanded: one element in memory
    return r.choice([torch.tensor([seed]), torch.tensor([seed, 1, 2]), torch.tensor([[seed, 1]]),
                     torch.tensor([1.0, 2.0]), torch.tensor([seed, 0], dtype=torch.int32)])


def _logits(r: random.Random, B: int, L: int, V: int) -> torch.Tensor:
    dtype = r.choice([torch.float32, torch.bfloat16, torch.float16])
    g = torch.Generator().manual_seed(r.randrange(2**31))
    scale = r.choice([0.0, 1.0, 3.0, 30.0, 1e4])
    base = torch.randn(B, L + 2, V, generator=g) * scale
    if r.random() < 0.3:  # poison some rows
        for _ in range(r.randrange(1, 4)):
            if B and L:
                b, l, v = r.randrange(B), r.randrange(L), r.randrange(V)
                base[b, l, v] = r.choice([float("nan"), float("inf"), float("-inf")])
                if r.random() < 0.3:
                    base[b, l] = float("-inf")
    x = base.to(dtype)
    layout = r.random()
    if layout < 0.5:
        return x[:, :L].contiguous()
    if layout < 0.8:
        return x[:, 1:L + 1]  # rows not at the start of the storage
    if B and layout < 0.9:
        return x[:1, :L].expand(B, L, V)  # every b the same memory
    return x[:, :L].transpose(0, 1).contiguous().transpose(0, 1)  # B, L strides swapped


def _x_t(r: random.Random, B: int, L: int, V: int, mask_id: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(r.randrange(2**31))
    x = torch.randint(0, max(V, 1), (B, L), generator=g)
    masked = torch.rand(B, L, generator=g) < r.random()
    x = torch.where(masked, torch.full_like(x, mask_id), x)
    if B and L and r.random() < 0.2:
        x[r.randrange(B), r.randrange(L)] = r.choice([-1, V, V + 5, 2**40, -(2**40)])  # invalid row, not an error
    return x


def _check_ids(x0: torch.Tensor, V: int, what: str) -> None:
    if x0.numel() and not bool(((x0 >= 0) & (x0 < V)).all()):
        raise AssertionError(f"{what}: an id outside [0, V = {V}): {x0.min().item()}..{x0.max().item()}")


def case_masked_sample(r: random.Random) -> str:
    B, L, V = r.randrange(0, 4), r.randrange(0, 6), r.choice(VOCABS)
    mask_id = r.randrange(V)
    logits, x_t = _logits(r, B, L, V), None
    x_t = _x_t(r, B, L, V, mask_id)
    T = _pick(r, GOOD_T, BAD_T)
    top_k = _pick(r, [0, 0, 0, 1, 2, V - 1, V, V + 3], [-1])
    top_p = _pick(r, [1.0, 1.0, 1.0, 0.9, 0.5, 1e-9], [0.0, 1.5, float("nan")])
    min_p = _pick(r, [0.0, 0.0, 0.0, 0.1, 1.0], [-0.1, float("nan")])
    entropy = r.random() < 0.5
    raw = r.random() < 0.5
    if raw:
        if logits.stride(-1) != 1:
            logits = logits.contiguous()
        k = r.choice([1, 1, 2, 5, 17])
        if r.random() < 0.5:
            x0, logp, ent = OPS.masked_sample(logits, x_t, mask_id, T, top_k, top_p, min_p, entropy, _rng(r))
            _check_ids(x0, V, "raw masked_sample")
            masked = x_t == mask_id
            if not bool((x0[~masked] == x_t[~masked])[(x_t[~masked] >= 0) & (x_t[~masked] < V)].all()):
                raise AssertionError("raw masked_sample changed an unmasked position")
        else:
            props, logp = OPS.sample_proposals(logits, x_t, mask_id, k, T, top_k, top_p, min_p, _rng(r))
            _check_ids(props, V, "raw sample_proposals")
        return "raw"
    x0, logp, *_ = edlm_ext.masked_sample(logits, x_t, mask_id, temperature=T, top_k=top_k, top_p=top_p,
                                          min_p=min_p, seed=r.randrange(2**63), return_entropy=entropy,
                                          check=r.random() < 0.5)
    _check_ids(x0, V, "masked_sample")
    return "wrapper"


def case_resample(r: random.Random) -> str:
    B, k, L = r.randrange(0, 4), r.randrange(0, 6), r.randrange(0, 5)
    dtype = r.choice([torch.float32, torch.float64])
    log_w = torch.randn(B, k, dtype=dtype) * r.choice([1.0, 100.0, 1e30])
    if B and k and r.random() < 0.4:
        log_w[r.randrange(B)] = r.choice([float("nan"), float("inf"), float("-inf")])
    props = torch.randint(0, 50, (B, k + 1, L))[:, :k] if r.random() < 0.5 else torch.randint(0, 50, (B, k, L))
    if r.random() < 0.2:
        log_w = log_w.t().contiguous().t() if B and k else log_w
    out = OPS.importance_resample(log_w, props, _rng(r))
    weights, log_z, ess, index, chosen = out
    if B and k:
        valid = ~torch.isnan(log_z)
        if not bool(((index >= 0) & (index < k)).all()):
            raise AssertionError("importance_resample: index outside [0, k)")
        picked = props[torch.arange(B), index]
        if not torch.equal(chosen[valid], picked[valid]):
            raise AssertionError("importance_resample: chosen != proposals[index]")
    return "resample"


def case_unmask(r: random.Random) -> str:
    B, L = r.randrange(0, 4), r.randrange(0, 300)
    x_t = torch.randint(0, 4, (B, 2 * L))[:, ::2] if r.random() < 0.5 else torch.randint(0, 4, (B, L))
    x0 = torch.randint(10, 20, (B, L))
    mask_id = r.choice([0, 1, 3, 2**40])
    before = x_t.clone()
    if r.random() < 0.5:
        p = torch.tensor([_pick(r, [0.0, 0.5, 1.0], [-1.0, 2.0, float("nan")]) for _ in range(B)],
                         dtype=r.choice([torch.float32, torch.float64]))
        out = OPS.unmask(x_t, x0, mask_id, p, _rng(r))
    else:
        conf = (torch.rand(B, L) * 3).to(r.choice([torch.float32, torch.float64, torch.bfloat16, torch.float16]))
        if B and L and r.random() < 0.3:
            conf[r.randrange(B), r.randrange(L)] = r.choice([float("nan"), float("inf"), float("-inf")])
        if r.random() < 0.5:
            n = torch.tensor([_pick(r, [0, 1, 5, L, L + 3], [-2]) for _ in range(B)], dtype=torch.long)
            out = OPS.unmask_confident(x_t, x0, conf, mask_id, n, None)
        else:
            out = OPS.unmask_confident(x_t, x0, conf, mask_id, None, r.choice([0.5, 2.0, float("inf"), -1e300]))
    keep = before != mask_id
    if not torch.equal(out[keep], before[keep]):
        raise AssertionError("unmask: an unmasked position changed")
    return "unmask"


CASES = [case_masked_sample, case_masked_sample, case_resample, case_unmask]


def fuzz(seconds: float, seed: int = 0, cases: int | None = None) -> dict:
    """Run cases until `seconds` pass (or `cases` ran); returns counts. Raises on a failure."""
    r = random.Random(seed)
    counts: dict[str, int] = {"ok": 0, "clean_error": 0}
    t0 = time.monotonic()
    i = 0
    while (cases is None or i < cases) and time.monotonic() - t0 < seconds:
        fn = r.choice(CASES)
        state = r.getstate()
        try:
            tag = fn(r)
            counts[tag] = counts.get(tag, 0) + 1
            counts["ok"] += 1
        except CLEAN:
            counts["clean_error"] += 1
        except Exception as e:  # a violated invariant or an unexpected exception type
            r.setstate(state)
            raise AssertionError(f"case {i} ({fn.__name__}, seed {seed}): {type(e).__name__}: {e}") from e
        i += 1
    counts["cases"] = i
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    counts = fuzz(a.seconds, a.seed, a.cases)
    print(f"fuzz_ops: {counts['cases']} cases, {counts['ok']} ran, {counts['clean_error']} clean errors: "
          + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if k not in ("cases", "ok", "clean_error")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
