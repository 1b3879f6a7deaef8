"""Client of the CPU simulation of the CUDA execution model (csrc/sim): builds the
simulator, writes op calls as a case file, runs it, reads the outputs back as tensors.

A case is one call of a raw op (``torch.ops.edlm_ext.<op>`` argument order) whose
tensors are sent as their whole storage plus storage offset and strides, so the
simulated kernels see the same alignment, strides and expanded (stride-0) dimensions
as on a GPU. The CUDA launchers make the same tensors contiguous where they do
(log_w, rng); the simulator runs the very launch logic of csrc/include/edlm/*_launch.cuh.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "sim"
VARIANTS = ("asan", "tsan", "plain")
ORDERS = ("forward", "reverse", "random")
# edlm::DType (csrc/include/edlm/common.h)
DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}

# Sanitizer settings of every run: stop at the first report, with a non-zero status.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=23",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=24",
    "TSAN_OPTIONS": "halt_on_error=1:exitcode=66:report_signal_unsafe=0",
}


def build(variant: str) -> Path:
    """Builds (or brings up to date) one variant of the simulator; returns its executable."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown simulator build {variant!r}; one of {VARIANTS}")
    subprocess.run(["make", "-s", "-C", str(ROOT / "csrc" / "sim"), f"-j{os.cpu_count() or 2}", variant,
                    f"BUILD={BUILD}"], check=True)
    return BUILD / variant / "edlm_sim"


def _storage(t: torch.Tensor) -> tuple[bytes, int]:
    """The whole storage of t as bytes, and t's storage offset (elements)."""
    raw = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())
    return raw.numpy().tobytes(), t.storage_offset()


@dataclass
class SimCase:
    """One op call for the simulator: op is sample | importance_resample | unmask | unmask_confident."""
    name: str
    op: str
    ints: dict = field(default_factory=dict)
    floats: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)  # key -> (bytes, offset)
    outputs: dict = field(default_factory=dict)  # key -> (dtype, shape) of what comes back

    def tensor(self, key: str, t: torch.Tensor) -> None:
        self.arrays[key] = _storage(t.detach().cpu() if t.device.type != "cpu" else t)

    def write(self, f) -> None:
        f.write(f"case {self.name} {self.op}\n".encode())
        for k, v in self.ints.items():
            f.write(f"i {k} {int(v)}\n".encode())
        for k, v in self.floats.items():
            f.write(f"f {k} {float(v).hex()}\n".encode())
        for k, (data, offset) in self.arrays.items():
            f.write(f"a {k} {len(data)}\n".encode())
            f.write(data)
            f.write(b"\n")
            f.write(f"i {k}_offset {offset}\n".encode())
        f.write(b"end\n")


def _check_rng(rng: torch.Tensor) -> torch.Tensor:
    return rng.contiguous()  # the CUDA launchers pass rng.contiguous()


def masked_sample_case(name, logits, x_t, mask_id, temperature, top_k, top_p, min_p, want_entropy, rng, k=None):
    """masked_sample (k None: outputs [B, L]) or sample_proposals (k draws: [B, k, L])."""
    B, L, V = logits.shape
    kk = 1 if k is None else k
    c = SimCase(name, "sample")
    c.ints.update(B=B, L=L, V=V, k=kk, sb=logits.stride(0), sl=logits.stride(1), xsb=x_t.stride(0),
                  xsl=x_t.stride(1), mask_id=mask_id, top_k=top_k, want_entropy=int(want_entropy),
                  dtype=DTYPE_CODE[logits.dtype])
    c.floats.update(temperature=temperature, top_p=top_p, min_p=min_p)
    c.tensor("logits", logits)
    c.tensor("xt", x_t)
    c.tensor("rng", _check_rng(rng))
    c.outputs = {"tokens": (torch.int64, (B, kk, L)), "logp": (torch.float32, (B, kk, L))}
    if want_entropy:
        c.outputs["entropy"] = (torch.float32, (B, L))
    return c


def importance_resample_case(name, log_w, proposals, rng):
    B, k, L = proposals.shape
    lw = log_w.contiguous()  # as the CUDA launcher does
    c = SimCase(name, "importance_resample")
    c.ints.update(B=B, k=k, L=L, dtype=DTYPE_CODE[lw.dtype], ps0=proposals.stride(0), ps1=proposals.stride(1),
                  ps2=proposals.stride(2))
    c.tensor("log_w", lw)
    c.tensor("props", proposals)
    c.tensor("rng", _check_rng(rng))
    c.outputs = {"weights": (lw.dtype, (B, k)), "log_z": (lw.dtype, (B,)), "ess": (lw.dtype, (B,)),
                 "index": (torch.int64, (B,)), "chosen": (torch.int64, (B, L))}
    return c


def unmask_case(name, x_t, x0, mask_id, p, rng):
    B, L = x_t.shape
    c = SimCase(name, "unmask")
    c.ints.update(B=B, L=L, xsb=x_t.stride(0), xsl=x_t.stride(1), zsb=x0.stride(0), zsl=x0.stride(1),
                  ps=p.stride(0), mask_id=mask_id, p_dtype=DTYPE_CODE[p.dtype])
    c.tensor("xt", x_t)
    c.tensor("x0", x0)
    c.tensor("p", p)
    c.tensor("rng", _check_rng(rng))
    c.outputs = {"out": (torch.int64, (B, L))}
    return c


def unmask_confident_case(name, x_t, x0, confidence, mask_id, n, threshold):
    B, L = x_t.shape
    c = SimCase(name, "unmask_confident")
    c.ints.update(B=B, L=L, xsb=x_t.stride(0), xsl=x_t.stride(1), zsb=x0.stride(0), zsl=x0.stride(1),
                  csb=confidence.stride(0), csl=confidence.stride(1), mask_id=mask_id,
                  conf_dtype=DTYPE_CODE[confidence.dtype], use_threshold=int(threshold is not None))
    c.tensor("xt", x_t)
    c.tensor("x0", x0)
    c.tensor("conf", confidence)
    if threshold is None:
        c.ints["ns"] = n.stride(0)
        c.tensor("n", n)
    else:
        c.floats["threshold"] = threshold
    c.outputs = {"out": (torch.int64, (B, L))}
    return c


class SimError(RuntimeError):
    """The simulator (or a sanitizer in it) stopped with an error; .stderr has the report."""

    def __init__(self, msg, returncode, stderr):
        super().__init__(msg)
        self.returncode, self.stderr = returncode, stderr


def _read_results(path: Path, cases: list[SimCase]) -> dict:
    by_name = {c.name: c for c in cases}
    out = {}
    with open(path, "rb") as f:
        if f.readline() != b"EDLMSIM1\n":
            raise SimError("bad result file", 0, "")
        while line := f.readline():
            _, name, status = line.decode().rstrip("\n").split(" ", 2)
            res = {"status": status}
            while (line := f.readline().decode().rstrip("\n")) != "end":
                _, key, nbytes = line.split(" ")
                data = f.read(int(nbytes))
                f.read(1)
                dtype, shape = by_name[name].outputs[key]
                res[key] = torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape).clone()
            out[name] = res
    return out


def run(cases: list[SimCase], variant: str = "asan", order: str = "forward", seed: int = 0,
        poison: int = 0xFF, timeout: float = 900) -> dict:
    """Runs the cases on one simulator build and fiber order; returns name -> outputs
    ({"status": "ok" | "rejected <why>", key: tensor, ...}). Raises SimError when the
    simulator or a sanitizer reports an error (the message ends with its report)."""
    exe = build(variant)
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError("case names must be unique")
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "cases.bin", Path(tmp) / "results.bin"
        with open(inp, "wb") as f:
            f.write(b"EDLMSIM1\n")
            for c in cases:
                c.write(f)
        env = dict(os.environ, **SANITIZER_ENV)
        proc = subprocess.run([str(exe), "run", str(inp), str(outp), "--order", order, "--seed", str(seed),
                               "--poison", hex(poison)], capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.splitlines()[-40:])
            raise SimError(f"edlm_sim ({variant}, {order}) exited with {proc.returncode}:\n{tail}", proc.returncode,
                           proc.stderr)
        reports = [ln for ln in proc.stderr.splitlines() if "runtime error" in ln or "Sanitizer" in ln]
        if reports:
            raise SimError(f"edlm_sim ({variant}, {order}) sanitizer reports:\n" + "\n".join(reports[:20]), 0,
                           proc.stderr)
        return _read_results(outp, cases)


def selftest(name: str, variant: str, order: str = "forward", timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs one self-test kernel of csrc/sim/selftest.cpp; returns the finished process."""
    exe = build(variant)
    env = dict(os.environ, **SANITIZER_ENV)
    return subprocess.run([str(exe), "selftest", name, "--order", order], capture_output=True, text=True, env=env,
                          timeout=timeout)


def selftests() -> dict[str, list[str]]:
    """Self-test name -> its detectors (sim, asan, tsan, order, none)."""
    out = subprocess.run([str(build("asan")), "list-selftests"], capture_output=True, text=True, check=True).stdout
    return {name: det.split(",") for name, det in (ln.split() for ln in out.splitlines())}
