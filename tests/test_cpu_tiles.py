"""The CPU samplers' inner loops (csrc/cpu/cpu_tiles.cpp) and the kernel paths built on them.

* tests/cpu_tiles_driver.cpp runs every tile function on fixed inputs under each instruction
  set this CPU has (EDLM_CPU_SIMD): the paths agree bit for bit, exp2 is within 1e-7 relative
  of 2^x (and exactly 0 below 2^-126), maxima, group maxima, sums, decoders, gathers, top-p
  masses and the candidates' sort are right; each check is shown to fail on a known-wrong input.
* masked_sample under each instruction set gives bit-identical outputs (subprocesses).
* the sampler's rarer paths against the float64 reference: tiles whose reference b = m c is
  past 2^22 (the unfused argument), and a filtered row whose candidates overflow (the general
  radix-select path).
"""
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext import reference

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("scalar", "avx2", "avx512")
REL_EXP2 = 1e-7  # the polynomial's 1.03 ulp (6.2e-8) with margin; 3 ulp must fail


def _read_records(path: Path) -> dict:
    out, data, i = {}, path.read_bytes(), 0
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        name = data[i + 4: i + 4 + n].decode()
        i += 4 + n
        code, count = struct.unpack_from("<iQ", data, i)
        i += 12
        dt = {0: np.float32, 1: np.uint16, 2: np.int32}[code]
        size = np.dtype(dt).itemsize * count
        out[name] = np.frombuffer(data[i: i + size], dtype=dt)
        i += size
    return out


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("needs a C++ compiler")
    d = tmp_path_factory.mktemp("cpu_tiles")
    exe = d / "cpu_tiles_driver"
    subprocess.run([cxx, "-std=c++20", "-O2", f"-I{ROOT / 'csrc/include'}", str(ROOT / "tests/cpu_tiles_driver.cpp"),
                    str(ROOT / "csrc/cpu/cpu_tiles.cpp"), str(ROOT / "csrc/cpu/cpu_simd.cpp"), "-o", str(exe)],
                   check=True, capture_output=True)
    results = {}
    for p in PATHS:
        subprocess.run([str(exe), p, str(d / f"{p}.bin")], check=True)
        rec = _read_records(d / f"{p}.bin")
        got = "".join(map(chr, rec["simd"]))
        if got == p:  # a path this CPU lacks reports a narrower one: skip it
            results[p] = rec
    return results


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != np.float32:
        return np.array_equal(a, b)
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a.view(np.uint32)[~nan], b.view(np.uint32)[~nan]))


def test_every_path_gives_the_same_bits(driver):
    assert "scalar" in driver and len(driver) >= 1
    base = driver["scalar"]
    for p, rec in driver.items():
        for name, arr in rec.items():
            if name != "simd":
                assert _same_bits(arr, base[name]), f"{p} differs from scalar in {name}"
    # the check sees a one-ulp difference
    bad = base["exp2_sums"].copy()
    bad.view(np.uint32)[3] += 1
    assert not _same_bits(bad, base["exp2_sums"])


def _exp2_errors(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    keep = (x >= -126) & np.isfinite(x)
    exact = np.exp2(x[keep].astype(np.float64))
    return np.abs(y[keep].astype(np.float64) / exact - 1)


def test_exp2_accuracy_and_edges(driver):
    rec = driver["scalar"]
    x, y = rec["exp2_in"], rec["exp2_out"]
    assert _same_bits(y, rec["exp2_lane"])  # the vector loop and the lane function
    assert float(_exp2_errors(x, y).max()) <= REL_EXP2
    # three ulps off must fail the same check
    assert float(_exp2_errors(x, (y.astype(np.float64) * (1 + 3 * 2.0**-24)).astype(np.float32)).max()) > REL_EXP2
    below = x < -126
    assert bool((y[below & ~np.isnan(x)] == 0).all())
    assert bool((y[~below & np.isfinite(x)] >= 2.0**-126).all())  # every other term is a normal float
    assert bool(np.isnan(y[np.isnan(x)]).all())
    assert y[x == 0].tolist() == [1.0] * int((x == 0).sum())  # 2^0 = 1 exactly (-0 too)


def test_exp2_f64_accuracy_and_edges(driver):
    """exp2_f64 (the row prefix's float64 rescalings) within 1.5 ulp of 2^x (extended
    precision), subnormal results within one unit of 2^-1074, 0 below, NaN for NaN; the same
    bits on every path (test_every_path_gives_the_same_bits). 4 ulps off must fail."""
    w = driver["scalar"]["exp2_f64"].view(np.float64)
    x, y = w[: len(w) // 2], w[len(w) // 2:]
    fin = np.isfinite(x)
    exact = np.exp2(x[fin].astype(np.longdouble))
    normal = exact >= np.longdouble(2.0) ** -1022

    def ulps(got):
        err = np.abs(got.astype(np.longdouble) - exact)
        unit = np.where(normal, np.exp2(np.floor(np.log2(np.where(normal, exact, 1))) - 52), np.longdouble(2.0) ** -1074)
        return err / unit

    e = ulps(y[fin])
    assert float(e[normal].max()) <= 1.5 and float(e[~normal].max()) <= 1.0
    assert float(ulps(y[fin] * (1 + 4 * 2.0**-52))[normal].max()) > 1.5  # power
    assert np.isnan(y[np.isnan(x)]).all() and (y[x == -np.inf] == 0).all() and (y[x <= -1076] == 0).all()
    assert y[x == 0].tolist() == [1.0] * int((x == 0).sum()) and y[x == 1.0][0] == 2.0


def test_tile_max_groups_and_flags(driver):
    rec = driver["scalar"]
    tiles = rec["tiles"].reshape(-1, 256)
    maxima = rec["tile_max"].reshape(-1, 2)
    bads = rec["tile_bad"].reshape(-1, 2)
    ref = np.array([np.nanmax(np.where(np.isnan(t), -np.inf, t)) for t in tiles], dtype=np.float32)
    assert np.array_equal(maxima[:, 0], ref) and np.array_equal(maxima[:, 1], ref)
    has_nan, has_inf = np.isnan(tiles).any(1), np.isposinf(tiles).any(1)
    assert np.array_equal(bads[:, 0] != 0, has_inf)            # tile_max: +inf only
    assert np.array_equal(bads[:, 1] != 0, has_inf | has_nan)  # tile_max_groups: NaN too
    assert np.array_equal(rec["tile_has_nan"] != 0, has_nan)
    assert has_nan.any() and has_inf.any()  # the planted rows are there
    g = np.where(np.isnan(tiles), -np.inf, tiles).reshape(len(tiles), 4, 64).max(-1).reshape(-1)
    assert np.array_equal(rec["group_max"], g.astype(np.float32))


def test_sums_and_terms_against_float64(driver):
    rec = driver["scalar"]
    tiles = rec["tiles"].reshape(-1, 256).astype(np.float64)
    maxima = rec["tile_max"].reshape(-1, 2)[:, 0]
    sums = rec["exp2_sums"].reshape(4, len(tiles), 2, 2)   # (c, tile, fused, [sum, wsum's sum])
    wsums = rec["exp2_wsums"].reshape(4, len(tiles), 2)
    terms = rec["exp2_terms"].reshape(4, len(tiles), 256)
    checked = 0
    for ci, c in enumerate(np.float32([1.4426950, 0.3, 28.853900, 1e-3])):
        for t in range(len(tiles)):
            mt = np.float32(maxima[t])
            if not np.isfinite(mt) or np.isnan(tiles[t]).any():
                continue
            for fi, fused in enumerate((True, False)):
                b = np.float32(mt * c) if fused else mt
                arg = tiles[t] * np.float64(c) - np.float64(b) if fused else \
                    (tiles[t] - np.float64(b)).astype(np.float32).astype(np.float64) * np.float64(c)
                e = np.where(arg >= -126, np.exp2(arg), 0.0)
                ref, wref = e.sum(), (e * np.maximum(arg, -128)).sum()
                assert sums[ci, t, fi, 0] == sums[ci, t, fi, 1]
                assert abs(sums[ci, t, fi, 0] / ref - 1) <= 1e-5, (c, t, fused)
                assert abs(wsums[ci, t, fi] - wref) <= 1e-5 * (e * np.abs(arg)).sum() + 1e-30
                if fused:
                    got = terms[ci, t].astype(np.float64)
                    tol = REL_EXP2 + np.abs(arg) * 2.0**-24 * 0.7  # the argument's own rounding
                    live = e > 2.0**-120
                    assert bool((np.abs(got[live] / e[live] - 1) <= tol[live]).all()), (c, t)
                checked += 1
    assert checked > 100


def test_row_pass_is_the_per_tile_loops(driver):
    """row_tiles_* (one call per row) gives the per-tile loops' maxima, sums, weighted sums
    and flags bit for bit: float32, bfloat16 and half rows with NaN, +inf, all -inf, signed
    zeros and unfused (|m c| > 2^22) tiles, four scales, with and without weights."""
    for rec in driver.values():
        got, want = rec["row_got"], rec["row_want"]
        assert len(got) == len(want) == 3 * 4 * (2 * 24 + 3 * 24)
        assert _same_bits(got, want)
        assert np.array_equal(rec["row_bad_got"], rec["row_bad_want"])
    bad = driver["scalar"]["row_bad_want"].reshape(3, 4, 2, 25)  # (dtype, c, weighted, [row, tile 0..23])
    assert bad[..., 0].all()  # every row holds a NaN and a +inf
    # only tiles 1 (NaN) and 2 (+inf) flag, not 3 (all -inf): the flags are per tile
    assert bad[..., 2:4].all() and not bad[..., 1].any() and not bad[..., 4:].any()
    maxima = driver["scalar"]["tile_max"].reshape(-1, 2)[:, 0]
    assert (np.abs(maxima[5] * np.float32(28.8539)) > 2.0**22)  # an unfused tile is among them
    # a one-ulp change in any sum is seen
    w = driver["scalar"]["row_want"].copy()
    w.view(np.uint32)[24 + 6] += 1
    assert not _same_bits(driver["scalar"]["row_got"], w)


def _radix_records(rec):
    words, i, out = rec["radix"].view(np.uint32), 0, []
    while i < len(words):
        n = int(words[i])
        items = words[i + 1: i + 1 + 3 * n].reshape(n, 3).astype(np.uint64)
        i += 1 + 3 * n
        keys, mass = items[:, 0], items[:, 1] | (items[:, 2] << np.uint64(32))
        for _ in range(4):
            target = int(words[i]) | int(words[i + 1]) << 32
            out.append((keys, mass, target, words[i + 2: i + 5].tolist()))
            i += 5
    return out


def test_radix_select_with_and_without_a_key_range(driver):
    """radix_select's answer, the largest key tau whose items at or above hold the target,
    by brute force; the same given the keys' exact range or a wider one (its digits then
    start below the shared bits)."""
    checked = moved = 0
    for p, rec in driver.items():
        for keys, mass, target, got in _radix_records(rec):
            order = np.argsort(-keys.astype(np.int64), kind="stable")
            cum = np.cumsum(mass[order])
            at = int(np.searchsorted(cum, target))  # the first item (keys descending) reaching it
            want = int(keys[order][at])
            assert got == [want] * 3, (p, len(keys), target)
            checked += 1
            # power: the answer one item further down is another key in most records
            moved += at + 1 < len(keys) and int(keys[order][at + 1]) != want
    assert checked == len(driver) * 3 * 5 * 4 and moved >= checked // 5


def test_draw_pick_is_the_blocked_linear_scan(driver):
    """draw_pick (binary search for the block, then its terms) against the linear scan over
    blocks of 16 in float64 it stands for; never a term without mass."""
    rec = driver["scalar"]
    e = [float(v) for v in rec["draw_terms"]]
    blocks = [sum(e[b * 16: b * 16 + 16], 0.0) for b in range(len(e) // 16)]  # in order, as the C++
    for p, r in driver.items():
        for t, pick in zip(rec["draw_targets"].astype(np.float64), r["draw_picks"]):
            cum, last, ans = 0.0, -1, None
            for b, bs in enumerate(blocks):
                if bs <= 0.0:
                    continue
                if cum + bs <= t:
                    last = max(i for i in range(b * 16, b * 16 + 16) if e[i] > 0)
                    cum += bs
                    continue
                for i in range(b * 16, b * 16 + 16):
                    if e[i] <= 0.0:
                        continue
                    last, cum = i, cum + e[i]
                    if cum > t:
                        ans = i
                        break
                if ans is not None:
                    break
            assert int(pick) == (last if ans is None else ans), (p, t)
            assert e[int(pick)] > 0.0
    picks = rec["draw_picks"]
    assert picks[-5] == next(i for i, v in enumerate(e) if v > 0)  # target 0: the first term with mass
    assert picks[-1] == picks[-2] == max(i for i, v in enumerate(e) if v > 0)  # past the total: the last


def test_decoders_and_gathers(driver):
    rec = driver["scalar"]
    halves = rec["halves"]
    bf = (halves.astype(np.uint32) << 16).view(np.float32)
    f16 = halves.view(np.float16).astype(np.float32)
    for name, ref in (("bf16", bf), ("f16", f16)):
        assert _same_bits(rec[f"{name}_decoded"], ref) and _same_bits(rec[f"{name}_scalar"], ref)
        mx = rec[f"{name}_max"].reshape(-1, 2)
        tiles = np.where(np.isnan(ref), -np.inf, ref).reshape(-1, 256)
        assert np.array_equal(mx[:, 0], tiles.max(1))
        assert np.array_equal(mx[:, 1] != 0, (np.isnan(ref) | np.isposinf(ref)).reshape(-1, 256).any(1))
        assert np.array_equal(rec[f"{name}_group_max"], tiles.reshape(-1, 64).max(1))
    tiles = rec["tiles"]
    g, i = rec["gathered"], 0
    for lb in (2.0, 5.0, 0.0, -np.inf, np.inf):
        n = int(g[i])
        assert np.array_equal(g[i + 1: i + 1 + n], np.nonzero(tiles >= np.float32(lb))[0]), lb
        i += 1 + n
    assert i == len(g)


def test_masses(driver):
    # every path's bits equal the scalar path's (test_every_path_gives_the_same_bits); here each
    # path's masses against token_mass of the terms
    for p, rec in driver.items():
        terms = rec["mass_terms"].astype(np.float64)
        got = rec["masses"].view(np.uint64)
        want = np.where(terms > 0, np.floor(terms * 2.0**40), 0).astype(np.uint64)
        assert np.array_equal(got, want), p
        assert (got == 0).sum() >= 3 and got.max() == 2**40  # -inf, NaN, an underflow; the max's term is 1
        sums = rec["mass_sums"].view(np.uint64)  # each tile's returned sum, exact
        assert sums.tolist() == [int(v) for v in got.reshape(4, 256).sum(1, dtype=np.uint64)], p
        assert sums.tolist() != [int(v) for v in (got.reshape(4, 256)[:, 1:]).sum(1, dtype=np.uint64)]  # power
        # the smallest logit whose mass reaches each rung (+inf when none does)
        x, mins = rec["mass_logits"], rec["mass_mins"]
        for rung, lo in zip([1, 2**20, 2**39, 2**40, 2**41], mins):
            sel = x[got >= rung]
            assert lo == (sel.min() if len(sel) else np.inf), (p, rung)
        assert np.isinf(mins[-1]) and mins[0] < mins[1] < mins[2] <= mins[3]
        # tile_mass_ge_sums: the masses at or above each rung (8 rungs, then 3 used + kNoRung)
        rs = rec["mass_rung_sums"].view(np.uint64).reshape(2, 8, 2)
        for rungs, sums in ((rs[i, :, 0], rs[i, :, 1]) for i in range(2)):
            want = [int(got[got >= r].sum(dtype=np.uint64)) for r in rungs]
            assert sums.tolist() == want, p
        assert rs[0, 0, 1] == got.sum() and rs[1, 3:, 1].tolist() == [0] * 5  # all; the unused rungs
        assert len(set(rs[0, :, 1].tolist())) >= 6  # power: the rungs cut at different places
    # the check's power: rounding instead of truncating fails it
    terms = driver["scalar"]["mass_terms"].astype(np.float64)
    rounded = np.where(terms > 0, np.round(terms * 2.0**40), 0).astype(np.uint64)
    assert not np.array_equal(rounded, driver["scalar"]["masses"].view(np.uint64))


def _sort_records(rec) -> list[tuple[np.ndarray, np.ndarray]]:
    words, out, i = rec["sorts"].view(np.uint32), [], 0
    while i < len(words):
        n = int(words[i])
        w = words[i + 1: i + 1 + 4 * n].view(np.uint64)
        out.append((w[:n], w[n:]))
        i += 1 + 4 * n
    return out


def _sorted_right(inp: np.ndarray, got: np.ndarray) -> bool:
    return bool(np.array_equal(got, np.sort(inp)))


def test_sort_distinct(driver):
    # every path's bits equal the scalar path's (test_every_path_gives_the_same_bits); here the
    # scalar path's (std::sort) and, where the CPU has it, the rank sort's own output
    for p, rec in driver.items():
        records = _sort_records(rec)
        assert len(records) == 28 and max(len(w) for w, _ in records) == 600
        for inp, got in records:
            assert len(np.unique(inp)) == len(inp)  # distinct words, as the candidates'
            assert _sorted_right(inp, got), (p, len(inp))
    # the check's power: one swapped pair fails it, and the full words would be misordered by
    # a signed compare
    inp, got = [r for r in _sort_records(driver["scalar"]) if len(r[0]) == 62][1]
    bad = got.copy()
    bad[[3, 4]] = bad[[4, 3]]
    assert not _sorted_right(inp, bad)
    assert not np.array_equal(np.sort(inp.view(np.int64)).view(np.uint64), got)


# --- masked_sample itself under each instruction set ------------------------------------

_SNIPPET = r"""
import sys, torch, edlm_ext
torch.manual_seed(0)
out = {"simd": edlm_ext._C.cpu_simd()}
g = torch.Generator().manual_seed(3)
for dt in (torch.float32, torch.bfloat16, torch.float16):
    lg = (torch.randn(2, 40, 1500, generator=g) * 3).to(dt)
    x = torch.full((2, 40), 7)
    for kw in ({}, {"temperature": 0.0}, {"temperature": 0.6}, {"top_k": 20, "top_p": 0.8}, {"top_p": 0.7},
               {"min_p": 0.05}):
        r = edlm_ext.masked_sample(lg, x, 7, seed=5, return_entropy=True, **kw)
        out[f"{dt}{sorted(kw.items())}"] = [t.tolist() for t in r]
    out[f"{dt}props"] = [t.tolist() for t in edlm_ext.sample_proposals(lg, x, 7, 6, seed=2)]
torch.save(out, sys.argv[1])
"""


def test_masked_sample_is_the_same_on_every_path(tmp_path):
    outs = {}
    for p in PATHS:
        f = tmp_path / f"{p}.pt"
        env = dict(os.environ, EDLM_CPU_SIMD=p, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-c", _SNIPPET, str(f)], check=True, env=env, cwd=ROOT)
        res = torch.load(f)
        if res.pop("simd") == p:
            outs[p] = res
    assert "scalar" in outs
    for p, res in outs.items():
        assert res == outs["scalar"], f"masked_sample on {p} differs from the scalar path"


# --- the sampler's rarer paths against the float64 reference ----------------------------

def _against_reference(logits, x_t, mask_id, temperature, seed, **filters):
    x0, logp = edlm_ext.masked_sample(logits, x_t, mask_id, temperature=temperature, seed=seed, **filters)
    B, L, _ = logits.shape
    u = reference.row_uniforms((seed, 0), B * L)
    rx, rlp = reference.masked_sample(logits, x_t, mask_id, temperature, uniforms=u, **filters)
    same = x0 == rx
    assert int((~same).sum()) <= 1
    return x0, logp, rx, rlp, same


def test_tiles_past_the_fused_reference_limit():
    # logits near 1e6 at T = 0.05: b = m c ~ 2.9e7 > 2^22, so every tile takes the unfused
    # argument (l - m_t) c; the distribution still spreads over many tokens.
    g = torch.Generator().manual_seed(4)
    V = 3000
    logits = (1e6 + torch.randint(0, 40, (2, 64, V), generator=g).float() * 0.0625)
    x_t = torch.full((2, 64), V - 1)
    x0, logp, rx, rlp, same = _against_reference(logits, x_t, V - 1, 0.05, seed=8)
    assert len(set(x0.flatten().tolist())) > 20  # not a degenerate point mass
    assert float((logp.double() - rlp)[same].abs().max()) < 1e-4
    # the same row shifted to small logits takes the fused path and draws the same tokens
    x1, _ = edlm_ext.masked_sample(logits - 1e6, x_t, V - 1, temperature=0.05, seed=8)
    assert int((x1 != x0).sum()) <= 1


def test_filter_candidates_overflow_to_the_general_path():
    # 20000 tied logits: every group max is the tie, so the candidate bound admits them all
    # (more than the candidate path takes) and top_k = 10 keeps every tie, as the reference.
    V = 20001
    logits = torch.full((1, 300, V), 1.5)
    logits[..., :50] = -2.0
    x_t = torch.full((1, 300), V - 1)
    x0, logp, rx, rlp, same = _against_reference(logits, x_t, V - 1, 1.0, seed=3, top_k=10, top_p=0.95)
    assert int(x0.min()) >= 50  # only tied tokens
    assert len(set(x0.flatten().tolist())) > 250  # ... many of them
    assert torch.allclose(logp.double()[same], rlp[same], atol=1e-5)


def test_prefetch_target_runs_on_into_the_next_row(driver):
    """cpu::prefetch_target: kPrefetchBytes ahead inside the row; past the row's end, the same
    distance into the next row the caller will read (or nothing without one); no end, no
    redirect. Pointer arithmetic only: what a prefetch does is not observable here."""
    ahead = int(re.search(r"kPrefetchBytes = (\d+);", (ROOT / "csrc/include/edlm/cpu_tiles.h").read_text()).group(1))
    end, nxt = 20000, 500000
    want = []
    for p in (0, end - ahead - 1, end - ahead, end - 1):
        a = p + ahead
        want += [a, a if a < end else nxt + a - end, a if a < end else -1]
    for rec in driver.values():
        assert rec["prefetch"].tolist() == want

