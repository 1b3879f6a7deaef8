"""CPU/CUDA agreement: one table of op calls, run on the CPU ops and on a CUDA backend
(the real GPU in tests/test_cuda.py, the CPU simulation of the CUDA execution model in
tests/test_cuda_sim.py), and one comparison rule per op.

The rules (README, "same seed, same tokens"):
* token ids, indices and unmasking decisions are equal, except that a draw whose
  uniform lies within float rounding of a CDF boundary may land on the neighbouring
  token: tile sizes and exp2 differ between the backends. Such a mismatch is accepted
  only when the float64 reference CDF puts the uniform within BOUNDARY_EPS of the
  boundary between the two tokens, and at most max_boundary_mismatches(n, rate) of
  them per call (a bound derived from the rate measured in the simulation, below);
* floats (logp, entropy, weights, log_z, ess) follow the flash-attention rule: the
  backend's max error against the float64 reference is at most twice the CPU op's
  own, plus two float32 ulps of the largest magnitude (the outputs' rounding);
* invalid rows (NaN / +inf, nothing drawable) come back as [MASK] with NaN on both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from scipy import stats

from edlm_ext import reference

from . import cuda_sim

# ---------------------------------------------------------------------------------
# Legitimate CPU/CUDA differences in sampling.

# How far (as a fraction of the row's total mass) the CPU's and a CUDA kernel's CDF
# can sit from the float64 one: float32 tile sums of <= 1024 terms, each within 2 ulp.
BOUNDARY_EPS = 1e-4

# Boundary mismatches per draw, measured in the simulation on 480k draws
# (python/bench/sim_mismatch_rate.py; python/bench/results/sim_mismatch_rate.md, measured
# again after issue 14 changed the kernels' tiles and exp2): the rate grows with V (more,
# narrower intervals) from ~3e-5 at V = 999 to ~5e-4 at V = 126464 with peaked rows. The bound per vocabulary range is the measured 99.9% upper
# confidence limit, times GPU_MARGIN for the exp2f bits of a real GPU, which the
# simulation does not model; the count allowed for n draws is the Poisson(n * rate)
# quantile at 1 - 1e-9, so a correct backend fails a call with probability < 1e-9.
MEASURED_RATE_UPPER = ((8192, 4.9e-4), (50258, 8.1e-4), (126464, 1.0e-3))  # (V up to, rate)
GPU_MARGIN = 2.0
MISMATCH_FAIL_PROB = 1e-9


def mismatch_rate_bound(V: int) -> float:
    """Boundary mismatches per draw a correct CUDA backend stays below, at vocabulary V."""
    for v_max, rate in MEASURED_RATE_UPPER:
        if V <= v_max:
            return rate * GPU_MARGIN
    v_max, rate = MEASURED_RATE_UPPER[-1]
    return rate * GPU_MARGIN * V / v_max  # beyond the measurements: proportional to V


def max_boundary_mismatches(n_draws: int, rate: float) -> int:
    """The most boundary mismatches a correct backend shows in n_draws draws at this rate."""
    if n_draws <= 0:
        return 0
    return int(stats.poisson.isf(MISMATCH_FAIL_PROB, n_draws * rate))


def boundary_distance(cdf: torch.Tensor, u: float, token: int) -> float:
    """Distance of the point u (in [0, 1)) from token's interval [cdf[token-1], cdf[token])
    of a normalized float64 CDF."""
    lo = float(cdf[token - 1]) if token > 0 else 0.0
    hi = float(cdf[token])
    return 0.0 if lo <= u < hi else min(abs(u - lo), abs(u - hi))


# ---------------------------------------------------------------------------------
# The table.


@dataclass
class Case:
    """One raw-op call: op in OPS, args in torch.ops.edlm_ext.<op> order (CPU tensors)."""
    name: str
    op: str
    args: dict
    tsan: bool = False  # also in the small ThreadSanitizer set
    notes: dict = field(default_factory=dict)


OPS = ("masked_sample", "sample_proposals", "importance_resample", "unmask", "unmask_confident")


def _rng(seed: int, offset: int = 0) -> torch.Tensor:
    def wrap(v):
        v &= 2**64 - 1
        return v - 2**64 if v >= 2**63 else v
    return torch.tensor([wrap(seed), wrap(offset)], dtype=torch.int64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _masked_x(B, L, V, mask_id, frac, g, invalid_ids=False):
    x = torch.randint(0, V, (B, L), generator=g)
    x[torch.rand(B, L, generator=g) < frac] = mask_id
    if invalid_ids and B * L > 2:
        x.view(-1)[1] = V + 3  # an unmasked id outside [0, V): an invalid row
        x.view(-1)[2] = -1
    return x


def _sample_args(logits, x_t, mask_id, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, entropy=True, rng=None):
    return dict(logits=logits, x_t=x_t, mask_id=mask_id, temperature=temperature, top_k=top_k, top_p=top_p,
                min_p=min_p, want_entropy=entropy, rng=_rng(7) if rng is None else rng)


def _proposal_args(logits, x_t, mask_id, k, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, rng=None):
    return dict(logits=logits, x_t=x_t, mask_id=mask_id, k=k, temperature=temperature, top_k=top_k, top_p=top_p,
                min_p=min_p, rng=_rng(11) if rng is None else rng)


def _special_rows(V: int, g: torch.Generator) -> torch.Tensor:
    """[8, V] rows that exercise the edge rules (mask_id = 3)."""
    rows = torch.randn(8, V, generator=g) * 3
    rows[0, V // 2] = float("nan")                       # invalid: NaN
    rows[1, V // 3] = float("inf")                       # invalid: +inf
    rows[2] = float("-inf")                              # invalid: nothing but [MASK]
    rows[2, 3] = 5.0
    rows[3] = 1.25                                       # all tied
    rows[4, ::2] = float("-inf")                         # half impossible
    rows[5] = float("-inf")                              # a single drawable token
    rows[5, V - 1] = 0.0
    rows[6, : V // 2] = -1e30                            # far below the max, but finite
    rows[7, 3] = 1e4                                     # [MASK] has the top logit (never drawn)
    return rows


def _misaligned(B, L, V, dtype, offset, g):
    flat = (torch.randn(B * L * V + 8, generator=g) * 4).to(dtype)
    return flat[offset: offset + B * L * V].view(B, L, V)


def _signed_zero_rows(B: int, V: int) -> torch.Tensor:
    """Rows whose top logits are +0.0 and -0.0 (ties at a top_k / top_p threshold)."""
    rows = torch.full((B, V), -6.0)
    rows[:, 10:14] = 0.0
    rows[:, 14:18] = -0.0
    return rows


def sampling_cases() -> list[Case]:
    cs: list[Case] = []
    dts = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    for i, (dn, dt) in enumerate(dts.items()):
        g = _gen(100 + i)
        # vocabulary sizes and row counts (rows x V kept small enough for the simulation)
        for V, B, L, T in ((1, 2, 3, 1.0), (2, 4, 64, 1.0), (7, 2, 1024 if dn == "f32" else 128, 0.7),
                           (999, 2, 32, 1.0), (8192, 2, 8, 1.3), (50258, 1, 4, 1.0), (126464, 1, 3, 0.9)):
            logits = (torch.randn(B, L, V, generator=g) * 4).to(dt)
            x = _masked_x(B, L, V, min(3, V - 1), 0.8, g, invalid_ids=V > 2)
            cs.append(Case(f"ms_{dn}_V{V}_T{T}", "masked_sample", _sample_args(logits, x, min(3, V - 1), T),
                           tsan=V == 999 and dn == "f32"))
            if V in (7, 999, 50258):
                cs.append(Case(f"ms_{dn}_V{V}_greedy", "masked_sample", _sample_args(logits, x, min(3, V - 1), 0.0),
                               tsan=V == 999 and dn == "bf16"))
        one_row = (torch.randn(1, 1, 999, generator=g) * 4).to(dt)
        cs.append(Case(f"ms_{dn}_one_row", "masked_sample",
                       _sample_args(one_row, torch.full((1, 1), 3, dtype=torch.long), 3, 1.0)))
        # edge rows, greedy and sampling
        for V in (999, 8192):
            rows = _special_rows(V, g).to(dt).view(2, 4, V)
            x = torch.full((2, 4), 3, dtype=torch.long)
            for T in (1.0, 0.0):
                cs.append(Case(f"ms_{dn}_special_V{V}_T{T}", "masked_sample", _sample_args(rows, x, 3, T)))
        # misaligned rows (storage offsets 1, 3, 5 elements)
        for off in (1, 3, 5):
            logits = _misaligned(3, 5, 1003, dt, off, g)
            cs.append(Case(f"ms_{dn}_offset{off}", "masked_sample",
                           _sample_args(logits, torch.full((3, 5), 5, dtype=torch.long), 5, 1.0)))
        # non-contiguous and expanded logits, non-contiguous x_t
        base = (torch.randn(4, 10, 1001, generator=g) * 3).to(dt)
        xb = torch.full((10, 4), 2, dtype=torch.long)
        cs.append(Case(f"ms_{dn}_sliced", "masked_sample", _sample_args(base[:, 1::2], xb.t()[:, 1::2], 2)))
        cs.append(Case(f"ms_{dn}_permuted", "masked_sample", _sample_args(base.permute(1, 0, 2), xb, 2, 0.8)))
        one = (torch.randn(1, 1, 4097, generator=g) * 2).to(dt)
        cs.append(Case(f"ms_{dn}_expanded", "masked_sample",
                       _sample_args(one.expand(3, 6, 4097), torch.full((3, 6), 9, dtype=torch.long), 9)))
    # seeds and offsets: negative seeds, large offsets (stream wrap-around)
    g = _gen(5)
    logits = torch.randn(2, 16, 513, generator=g) * 3
    x = torch.full((2, 16), 0, dtype=torch.long)
    for i, (seed, off) in enumerate(((-1, 0), (-(2**63), 2**62 + 3), (2**63 - 1, 2**64 - 2), (123, 2**40))):
        cs.append(Case(f"ms_rng{i}", "masked_sample", _sample_args(logits, x, 0, rng=_rng(seed, off))))
        cs.append(Case(f"sp_rng{i}", "sample_proposals", _proposal_args(logits, x, 0, 5, rng=_rng(seed, off))))
    # filters: each, combined, with temperature and greedy
    for dn, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        g = _gen(17)
        for V, B, L in ((999, 2, 16), (50258, 1, 3)):
            logits = (torch.randn(B, L, V, generator=g) * 3).to(dt)
            x = torch.full((B, L), 7, dtype=torch.long)
            x[0, 0] = 1  # one unmasked position
            for fn, f in (("k1", dict(top_k=1)), ("k10", dict(top_k=10)), ("kV", dict(top_k=V - 1)),
                          ("p09", dict(top_p=0.9)), ("p05", dict(top_p=0.5)), ("ptiny", dict(top_p=1e-6)),
                          ("m005", dict(min_p=0.05)), ("m09", dict(min_p=0.9)),
                          ("k50p09", dict(top_k=50, top_p=0.9)), ("k10m01", dict(top_k=10, min_p=0.1)),
                          ("k40p08m002", dict(top_k=40, top_p=0.8, min_p=0.02))):
                if V > 1000 and fn not in ("k10", "p09", "k50p09", "k40p08m002"):
                    continue
                for T in (0.8, 0.0):
                    cs.append(Case(f"filt_{dn}_V{V}_{fn}_T{T}", "masked_sample", _sample_args(logits, x, 7, T, **f),
                                   tsan=(V == 999 and dn == "f32" and fn == "k50p09" and T == 0.8)))
        # ties at the threshold, signed zeros among them
        rows = _signed_zero_rows(64, 257).to(dt).view(4, 16, 257)
        x = torch.full((4, 16), 0, dtype=torch.long)
        for fn, f in (("k3", dict(top_k=3)), ("k8", dict(top_k=8)), ("p03", dict(top_p=0.3)),
                      ("k6p05", dict(top_k=6, top_p=0.5))):
            cs.append(Case(f"zeros_{dn}_{fn}", "masked_sample", _sample_args(rows, x, 0, 1.0, **f)))
    # proposals: k up to 300, filters, dtypes
    g = _gen(23)
    for name, V, B, L, k, dt, f in (("k300", 7, 1, 2, 300, torch.float32, {}),
                                    ("k8", 999, 2, 8, 8, torch.float32, {}),
                                    ("k8bf16", 999, 2, 8, 8, torch.bfloat16, {}),
                                    ("k9f16", 2000, 1, 4, 9, torch.float16, {}),
                                    ("k33", 50258, 1, 2, 33, torch.bfloat16, {}),
                                    ("k16filt", 999, 1, 8, 16, torch.float32, dict(top_k=20, top_p=0.9))):
        logits = (torch.randn(B, L, V, generator=g) * 3).to(dt)
        x = _masked_x(B, L, V, 1, 0.7, g)
        cs.append(Case(f"sp_{name}", "sample_proposals", _proposal_args(logits, x, 1, k, 1.1, **f),
                       tsan=name == "k8"))
    cs.append(Case("sp_greedy", "sample_proposals",
                   _proposal_args(torch.randn(2, 8, 999, generator=g), torch.full((2, 8), 1, dtype=torch.long), 1, 4,
                                  0.0)))
    return cs


def resample_cases() -> list[Case]:
    cs: list[Case] = []
    g = _gen(31)
    for dt in (torch.float64, torch.float32):
        dn = "f64" if dt == torch.float64 else "f32"
        for B, k, L in ((1, 1, 5), (7, 8, 33), (2048, 4, 3), (3, 300, 17), (16, 33, 64)):
            lw = (torch.randn(B, k, generator=g) * 5).to(dt)
            props = torch.randint(0, 1000, (B, k, L), generator=g)
            cs.append(Case(f"ir_{dn}_B{B}_k{k}", "importance_resample", dict(log_w=lw, proposals=props, rng=_rng(B + k)),
                           tsan=B == 7))
        lw = (torch.randn(8, 6, generator=g) * 2).to(dt)
        lw[0, :3] = float("-inf")
        lw[1] = float("-inf")          # invalid: all -inf
        lw[2, 4] = float("nan")        # invalid
        lw[3, 0] = float("inf")        # invalid
        lw[4] = 0.5                    # ties
        lw[5, 1] = 800.0               # one dominates
        props = torch.randint(0, 50, (6, 8, 12), generator=g).permute(1, 0, 2)  # strided proposals
        cs.append(Case(f"ir_{dn}_special", "importance_resample", dict(log_w=lw, proposals=props, rng=_rng(-5, 9))))
        cs.append(Case(f"ir_{dn}_noncontig_lw", "importance_resample",
                       dict(log_w=(torch.randn(6, 8, generator=g)).to(dt).t(), proposals=torch.randint(0, 9, (8, 6, 4)),
                            rng=_rng(2**63 - 1, 2**62))))
    return cs


def unmask_cases() -> list[Case]:
    cs: list[Case] = []
    g = _gen(41)
    for B, L in ((1, 1), (4, 100), (64, 32), (2, 2048)):
        x_t = _masked_x(B, L, 500, 499, 0.6, g)
        x0 = torch.randint(0, 499, (B, L), generator=g)
        for pn, p in (("f64", torch.rand(B, generator=g, dtype=torch.float64)),
                      ("f32", torch.rand(B, generator=g)),
                      ("edges", torch.tensor([0.0, 1.0, float("nan"), 0.5] * B, dtype=torch.float64)[:B])):
            cs.append(Case(f"um_B{B}_L{L}_{pn}", "unmask", dict(x_t=x_t, x0=x0, mask_id=499, p=p, rng=_rng(B * L)),
                           tsan=(B, L, pn) == (4, 100, "f64")))
    x_t = _masked_x(6, 40, 100, 0, 0.5, g)
    cs.append(Case("um_strided", "unmask", dict(x_t=x_t.t().contiguous().t(), x0=torch.randint(1, 100, (40, 6)).t(),
                                                mask_id=0, p=torch.tensor(0.3, dtype=torch.float64).expand(6),
                                                rng=_rng(-3, 2**61))))
    # unmask_confident: counts and thresholds, ties, every confidence dtype, rows > 256
    for cdt in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        dn = str(cdt).split(".")[-1]
        for B, L in ((3, 7), (8, 300), (2, 2048)):
            x_t = _masked_x(B, L, 100, 99, 0.7, g)
            x0 = torch.randint(0, 99, (B, L), generator=g)
            conf = torch.rand(B, L, generator=g).to(cdt)
            conf[:, ::5] = 0.5              # ties
            conf[:, 1::7] = -0.0            # -0 == +0
            conf[:, 2::7] = 0.0
            n = torch.randint(-1, L + 2, (B,), generator=g)
            n[0] = 0
            cs.append(Case(f"uc_{dn}_B{B}_L{L}_n", "unmask_confident",
                           dict(x_t=x_t, x0=x0, confidence=conf, mask_id=99, n=n, threshold=None),
                           tsan=(B, L) == (8, 300) and cdt == torch.float32))
            for thr in (0.9, 2.0, 0.5):
                cs.append(Case(f"uc_{dn}_B{B}_L{L}_t{thr}", "unmask_confident",
                               dict(x_t=x_t, x0=x0, confidence=conf, mask_id=99, n=None, threshold=thr),
                               tsan=(B, L, thr) == (8, 300, 0.9) and cdt == torch.float32))
    conf = torch.rand(40, 6, generator=g).t()  # strided confidence
    cs.append(Case("uc_strided", "unmask_confident",
                   dict(x_t=_masked_x(6, 40, 50, 49, 0.5, g), x0=torch.randint(0, 49, (6, 40)), confidence=conf,
                        mask_id=49, n=torch.tensor([3]).expand(6), threshold=None)))
    return cs


def cases() -> list[Case]:
    return sampling_cases() + resample_cases() + unmask_cases()


# ---------------------------------------------------------------------------------
# Running a case.


def _same_layout(t: torch.Tensor, device) -> torch.Tensor:
    """t on device with the same storage offset and strides (so the same alignment)."""
    if not isinstance(t, torch.Tensor):
        return t
    storage = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage(), 0, (t.untyped_storage().nbytes() // t.element_size(),))
    moved = storage.to(device)
    return moved.as_strided(t.shape, t.stride(), t.storage_offset())


def run_op(case: Case, device="cpu"):
    """torch.ops.edlm_ext.<op> on device (tensors keep their layout); outputs on the CPU."""
    args = {k: _same_layout(v, device) for k, v in case.args.items()}
    out = getattr(torch.ops.edlm_ext, case.op)(*args.values())
    return tuple(o.cpu() for o in out) if isinstance(out, (tuple, list)) else (out.cpu(),)


def sim_case(case: Case) -> cuda_sim.SimCase:
    a = case.args
    if case.op == "masked_sample":
        return cuda_sim.masked_sample_case(case.name, *a.values())
    if case.op == "sample_proposals":
        return cuda_sim.masked_sample_case(case.name, a["logits"], a["x_t"], a["mask_id"], a["temperature"], a["top_k"],
                                           a["top_p"], a["min_p"], False, a["rng"], k=a["k"])
    if case.op == "importance_resample":
        return cuda_sim.importance_resample_case(case.name, *a.values())
    if case.op == "unmask":
        return cuda_sim.unmask_case(case.name, *a.values())
    return cuda_sim.unmask_confident_case(case.name, *a.values())


def sim_outputs(case: Case, res: dict):
    """The simulator's result in the raw op's output form (or the rejection message)."""
    if res["status"] != "ok":
        return res["status"]
    if case.op == "masked_sample":
        B, L = case.args["x_t"].shape
        ent = res.get("entropy", torch.empty(0, L))
        return res["tokens"][:, 0], res["logp"][:, 0], ent
    if case.op == "sample_proposals":
        return res["tokens"], res["logp"]
    if case.op == "importance_resample":
        return tuple(res[k] for k in ("weights", "log_z", "ess", "index", "chosen"))
    return (res["out"],)


# ---------------------------------------------------------------------------------
# Comparing.


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-equal values, NaN equal to NaN."""
    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def _ulp_floor(ref: torch.Tensor) -> float:
    finite = ref[torch.isfinite(ref)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    return 2 * torch.finfo(torch.float32).eps * scale


def check_close(name: str, what: str, cpu: torch.Tensor, other: torch.Tensor, ref: torch.Tensor) -> None:
    """The flash-attention rule on the finite reference entries; NaN where the CPU has NaN."""
    cpu, other, ref = cpu.double(), other.double(), ref.double()
    nan = torch.isnan(cpu)
    assert torch.equal(nan, torch.isnan(other)), f"{name}: {what}: NaN at different places"
    ok = ~nan & torch.isfinite(ref)
    if not bool(ok.any()):
        return
    err_cpu = float((cpu[ok] - ref[ok]).abs().max())
    err = float((other[ok] - ref[ok]).abs().max())
    tol = 2 * err_cpu + _ulp_floor(ref[ok])
    assert err <= tol, f"{name}: {what}: max error {err:.3g} vs the float64 reference > 2 x CPU's {err_cpu:.3g} + floor"


def _filters(a: dict) -> dict:
    return dict(top_k=a["top_k"], top_p=a["top_p"], min_p=a["min_p"])


def compare_sampling(case: Case, cpu, other, max_mismatches: int | None = None) -> dict:
    """Token-for-token comparison of masked_sample / sample_proposals; returns counts.
    max_mismatches: the boundary mismatches allowed (default: max_boundary_mismatches)."""
    a = case.args
    logits, x_t, mask_id, T = a["logits"], a["x_t"], a["mask_id"], a["temperature"]
    proposals = case.op == "sample_proposals"
    tok_c, lp_c = (cpu[0], cpu[1]) if proposals else (cpu[0].unsqueeze(1), cpu[1].unsqueeze(1))
    tok_o, lp_o = (other[0], other[1]) if proposals else (other[0].unsqueeze(1), other[1].unsqueeze(1))
    B, k, L = tok_c.shape
    V = logits.shape[-1]
    assert tok_o.shape == tok_c.shape and lp_o.shape == lp_c.shape, f"{case.name}: output shapes differ"
    masked = (x_t == mask_id).unsqueeze(1).expand(B, k, L)
    # copied and invalid positions: identical
    invalid = torch.isnan(lp_c)
    fixed = ~masked | invalid
    assert torch.equal(tok_c[fixed], tok_o[fixed]), f"{case.name}: copied / invalid positions differ"
    assert torch.equal(torch.isnan(lp_o), invalid), f"{case.name}: invalid rows differ"
    assert _same(lp_c[~masked], lp_o[~masked]), f"{case.name}: logp of copied positions"
    draws = masked & ~invalid
    ref_lp = reference.tempered_log_probs(logits, mask_id, T, **_filters(a)) if V > 1 else None
    n_draws = int(draws.sum())
    diff = draws & (tok_c != tok_o)
    n_diff = int(diff.sum())
    if n_diff:
        assert T != 0, f"{case.name}: greedy draws differ at {n_diff} of {n_draws} positions"
        u = torch.stack([reference.row_uniforms(a["rng"], B * L, stream=j) for j in range(k)]).view(k, B, L)
        for b, j, l in diff.nonzero().tolist():
            cdf = torch.cumsum(ref_lp[b, l].exp(), 0)
            cdf = cdf / cdf[-1]
            uu = float(u[j, b, l])
            dc = boundary_distance(cdf, uu, int(tok_c[b, j, l]))
            do = boundary_distance(cdf, uu, int(tok_o[b, j, l]))
            assert max(dc, do) <= BOUNDARY_EPS, (
                f"{case.name}: draw (b={b}, j={j}, l={l}) is {int(tok_c[b, j, l])} on the CPU and "
                f"{int(tok_o[b, j, l])} on the other backend, and u = {uu:.17g} is not at a CDF boundary "
                f"(distances {dc:.3g}, {do:.3g})")
        bound = max_boundary_mismatches(n_draws, mismatch_rate_bound(V)) if max_mismatches is None else max_mismatches
        assert n_diff <= bound, f"{case.name}: {n_diff} boundary mismatches in {n_draws} draws (bound {bound})"
    same = draws & (tok_c == tok_o)
    if bool(same.any()):
        ref_tok = ref_lp.unsqueeze(1).expand(B, k, L, V).gather(-1, tok_c.clamp(0, V - 1).unsqueeze(-1)).squeeze(-1)
        check_close(case.name, "logp", lp_c[same], lp_o[same], ref_tok[same])
    if not proposals and a["want_entropy"]:
        ent_c, ent_o = cpu[2], other[2]
        rows = (x_t == mask_id) & ~torch.isnan(ent_c)
        assert torch.equal(torch.isnan(ent_c), torch.isnan(ent_o)), f"{case.name}: entropy NaN at different places"
        assert _same(ent_c[x_t != mask_id], ent_o[x_t != mask_id]), f"{case.name}: entropy of copied positions"
        if bool(rows.any()):
            ref_h = reference.entropy(logits, mask_id, T, **_filters(a))
            check_close(case.name, "entropy", ent_c[rows], ent_o[rows], ref_h[rows])
    return {"draws": n_draws, "boundary_mismatches": n_diff}


def compare_resample(case: Case, cpu, other) -> dict:
    lw, props = case.args["log_w"], case.args["proposals"]
    B, k = lw.shape
    weights, log_z, ess, index, chosen = other
    w_c, lz_c, ess_c, idx_c, ch_c = cpu
    valid = ~torch.isnan(lz_c)
    assert torch.equal(valid, ~torch.isnan(log_z)), f"{case.name}: invalid rows differ"
    assert torch.equal(idx_c[~valid], index[~valid]), f"{case.name}: index of invalid rows"
    ref = reference.importance_resample(lw, props, uniforms=reference.row_uniforms(case.args["rng"], B,
                                                                                 reference.DOMAIN_RESAMPLE))
    n_diff = int((idx_c[valid] != index[valid]).sum())
    if n_diff:  # the float64 CDF boundary rule, at float64 accuracy
        u = reference.row_uniforms(case.args["rng"], B, reference.DOMAIN_RESAMPLE)
        for b in (valid & (idx_c != index)).nonzero().flatten().tolist():
            cdf = torch.cumsum(ref[0][b], 0)
            d = max(boundary_distance(cdf, float(u[b]), int(idx_c[b])), boundary_distance(cdf, float(u[b]), int(index[b])))
            assert d <= 1e-12, f"{case.name}: row {b} resampled {int(idx_c[b])} vs {int(index[b])} away from a boundary"
        assert n_diff <= max_boundary_mismatches(int(valid.sum()), 1e-9), f"{case.name}: {n_diff} index mismatches"
    gathered = props.gather(1, index.clamp(0, k - 1).view(B, 1, 1).expand(B, 1, props.shape[2])).squeeze(1)
    assert torch.equal(chosen, gathered), f"{case.name}: chosen is not proposals[b, index[b]]"
    for what, c_, o_, r_ in (("weights", w_c, weights, ref[0]), ("log_z", lz_c, log_z, ref[1]), ("ess", ess_c, ess, ref[2])):
        rv = valid.view(-1, *([1] * (c_.dim() - 1))).expand_as(c_)
        assert torch.equal(torch.isnan(c_), torch.isnan(o_)), f"{case.name}: {what} NaN at different places"
        check_close(case.name, what, c_[rv], o_[rv], r_.to(c_.device)[rv])
    return {"draws": int(valid.sum()), "boundary_mismatches": n_diff}


def compare(case: Case, cpu, other) -> dict:
    """Asserts that `other` (a CUDA backend's outputs) agrees with `cpu` under the op's rule."""
    assert not isinstance(other, str), f"{case.name}: the CUDA launch logic rejected the call: {other}"
    if case.op in ("masked_sample", "sample_proposals"):
        return compare_sampling(case, cpu, other)
    if case.op == "importance_resample":
        return compare_resample(case, cpu, other)
    assert torch.equal(cpu[0], other[0]), (
        f"{case.name}: {int((cpu[0] != other[0]).sum())} of {cpu[0].numel()} positions differ")
    return {"draws": cpu[0].numel(), "boundary_mismatches": 0}


def describe(case: Case) -> str:
    parts = []
    for k, v in case.args.items():
        if isinstance(v, torch.Tensor):
            parts.append(f"{k}={tuple(v.shape)}:{str(v.dtype).split('.')[-1]}")
        else:
            parts.append(f"{k}={v}")
    return f"{case.op}({', '.join(parts)})"


