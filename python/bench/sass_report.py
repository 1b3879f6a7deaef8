"""SASS report: what the CUDA kernels' machine code says about their speed, with no GPU.

Builds the project's kernels for sm_90 and sm_80 with nvcc, disassembles them with
nvdisasm, and prints per kernel and dtype: registers, spill bytes, static shared
memory, stack, launch bounds; for each streaming loop (a loop that issues 16-byte
global loads): instructions per element, the 16-byte loads in flight per thread and
MUFU (special-function) instructions per element; then, for sm_90, a Little's-law and
issue-rate estimate of the DRAM bandwidth each streaming loop can reach on an H100
and an H200, with every assumption printed.

    python python/bench/sass_report.py                       # report to stdout
    python python/bench/sass_report.py --out report.txt      # and to a file
    python python/bench/sass_report.py --so build/cuda-lib/edlm_ext/_C.cpython-311-x86_64-linux-gnu.so
    make sass-report                                          # records it in python/bench/results/

Needs nvcc (CUDA 12.x or 13.x; default /usr/local/bin/nvcc, else $CUDA_HOME or PATH)
and the PyPI packages nvidia-cuda-nvdisasm and nvidia-cuda-cuobjdump (or those tools
on PATH). No GPU, no torch.

What is disassembled
--------------------
By default a torch-free translation unit (written to a temp dir) that includes the
kernel headers csrc/include/edlm/*_cuda.cuh and takes the address of exactly the
template instances the launchers in csrc/cuda/*.cu launch (the KERNELS table below),
compiled with the CUDA flags of CMakeLists.txt plus the Release -DNDEBUG. Why: it
builds in seconds with nvcc alone (no CUDA build of torch, which `make cuda-build`
needs), so the report and its test run anywhere `make test` runs, and `ptxas -v`
gives the compiler's own register / spill / stack figures to check the SASS against.
With --so the report disassembles the shipped extension (built by `make cuda-build`)
instead; tests/test_sass_report.py checks, when that artifact is present and fresh,
that both hold the same kernels with the same registers, stack and shared memory, so
the table below cannot drift from the launchers unnoticed.

How the streaming loop is found (no hard-coded offsets)
-------------------------------------------------------
The SASS of each kernel is split into basic blocks (leaders: branch targets, the
instruction after a branch or EXIT). Dominators give the back edges (u -> h with h
dominating u) and each back edge its natural loop. A *streaming loop* is the
innermost loop enclosing a block that issues a 16-byte global load (LDG.E.128*); the
loops inside it (e.g. the compare-and-swap retry loop of a 64-bit shared atomic) are
counted once, as if each ran one iteration. BRA.DIV edges (taken only when a warp
is diverged) are not followed: the path assumes a converged warp, as the kernels are
written.

The *hot path* of a streaming loop is the shortest path (in instructions) from the
loop header back to the header that executes every block of the loop holding a
16-byte load, i.e. one iteration over full, aligned vectors: the scalar head/tail
loads, the [MASK] patch and other rare branches fall off it because they are longer.
A conditional branch on the hot path whose predicate is loop-invariant (its backward
slice along the path reaches only registers not written in the loop, constants and
kernel parameters) is a *mode switch*, e.g. `entropy != nullptr`; the slice names the
kernel parameter(s) it reads (the constant-bank offsets, the ELF's KPARAM_INFO and
the kernel's signature in the header). The hot path takes the cheaper side of every
mode switch; for each mode the report also gives the path forced to its other side,
and, where the hot path skips the loop's shared-memory atomics (a data-dependent
histogram update), the path through all of them. A loop with a block barrier inside
(kind 'synced', e.g. sample_kernel's per-draw pass 3) is listed but not estimated:
it does not stream the row.

Instructions per element = instructions on the hot path (every issued instruction,
predicated-off ones too, NOPs excluded) / elements loaded on it (16-byte loads on the
path x 16 / element size).

Loads in flight = the largest number of 16-byte global loads issued, along the hot
path taken cyclically (so that loads issued for the next iteration count), before
the first instruction that reads or overwrites the destination registers of any of
them, starting at each such load in turn. Register operands are read conservatively
(a 64-bit operation reads register pairs), so the count can only come out low.

Spill bytes: the sum of the widths of the STL (stores) and LDL (loads) instructions
in the kernel, which is how ptxas counts its "spill stores / spill loads" (the report
prints ptxas's figure next to it when it compiled the code itself).

The estimate
------------
Per GPU, for a streaming loop: resident blocks per SM from registers (allocated in
units of 256 per warp), static + dynamic shared memory (+1 KB the driver reserves per
block), threads and the 32-block limit. Then
  Little's law   bytes in flight per SM = resident threads x loads in flight x 16 B;
                 bandwidth = SMs x that / DRAM latency (printed for a low and a high
                 latency: DRAM latency under load is an assumption, not measured here);
  issue rate     4 warp instructions per SM per clock: SMs x clock x 128 / ipe
                 elements per second, x element bytes;
  MUFU rate      16 per SM per clock: SMs x clock x 16 / MUFU per element;
and the reachable bandwidth is the least of these and the HBM peak, printed as a
fraction of the datasheet HBM bandwidth.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = ROOT / "csrc" / "include"

# ----------------------------------------------------------------------------
# What the launchers launch (csrc/cuda/*.cu). One row per template instance.


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    name: str        # kernel function name in namespace edlm::cuda
    targs: str       # template arguments as written in C++
    dtype: str       # label of the streamed element type
    elem_bytes: int  # size of one streamed element
    threads: int     # block size the launcher uses
    variant: str = ""
    # dynamic shared memory in bytes, given the vocabulary size V and the elements per 16 bytes
    dyn_smem: Callable[[int, int], int] = lambda V, vec: 0

    @property
    def label(self) -> str:
        return f"{self.name}<{self.targs}>"


def _sample_smem(V: int, vec: int) -> int:
    """sample_tile_smem_bytes of edlm/masked_sample_launch.cuh: one float4 per tile of 128 items."""
    return math.ceil((V // vec + 2) / 128) * 16


def _filtered_smem(V: int, vec: int) -> int:
    """filtered_smem_bytes of edlm/masked_sample_launch.cuh: the candidates (8 B each, up to 2048)
    or the tile statistics, whichever is larger."""
    cap = 1
    while cap < V and cap < 2048:
        cap *= 2
    return max(8 * cap, _sample_smem(V, vec))


SAMPLE_DTYPES = (("float", "fp32", 4), ("Bf16", "bf16", 2), ("F16", "f16", 2))
KERNELS = [
    *(KernelSpec("sample_kernel", f"{t}, 256, {g}", d, b, 256, "greedy" if g == "true" else "sample", _sample_smem)
      for g in ("false", "true") for t, d, b in SAMPLE_DTYPES),
    *(KernelSpec("filtered_sample_kernel", f"{t}, 256, {g}", d, b, 256, "greedy" if g == "true" else "sample",
                 _filtered_smem)
      for g in ("false", "true") for t, d, b in SAMPLE_DTYPES),
    *(KernelSpec("importance_resample_kernel", f"{t}, 128", d, b, 128) for t, d, b in (("float", "fp32", 4),
                                                                                       ("double", "fp64", 8))),
    *(KernelSpec("unmask_kernel", t, d, b, 256) for t, d, b in (("float", "fp32", 4), ("double", "fp64", 8))),
    *(KernelSpec("unmask_confident_kernel", t, d, b, 256)
      for t, d, b in (("float", "fp32", 4), ("double", "fp64", 8), ("__nv_bfloat16", "bf16", 2),
                      ("__half", "f16", 2))),
]
HEADERS = ["edlm/masked_sample_cuda.cuh", "edlm/filter_cuda.cuh", "edlm/importance_resample_cuda.cuh",
           "edlm/unmask_cuda.cuh", "edlm/unmask_confident_cuda.cuh"]

# ----------------------------------------------------------------------------
# GPUs of the estimate. Facts are datasheet values unless marked.


@dataclasses.dataclass(frozen=True)
class Gpu:
    name: str
    arch: int
    sms: int
    clock_ghz: float
    hbm_tbs: float
    regs_per_sm: int = 65536
    threads_per_sm: int = 2048
    blocks_per_sm: int = 32
    smem_per_sm: int = 228 * 1024
    smem_reserved_per_block: int = 1024
    note: str = ""


GPUS = [
    Gpu("H100 SXM", 90, 132, 1.98, 3.35, note="80 GB HBM3 3.35 TB/s; 1.98 GHz max boost"),
    Gpu("H200", 90, 132, 1.98, 4.8, note="141 GB HBM3e 4.8 TB/s (datasheet; a device copy measured ~4.3 TB/s "
                                        "here, KINDS.md 2026-10-28); SM clock 1980 MHz seen under load"),
]
WARP_ISSUE_PER_SM_CLK = 4   # 4 schedulers, one warp instruction each per clock
MUFU_PER_SM_CLK = 16        # special-function results per SM per clock (4 per scheduler)
REG_ALLOC_UNIT = 256        # registers are allocated per warp in units of 256
DEFAULT_LATENCY_NS = (600.0, 1000.0)  # assumed DRAM latency under load, low and high
DEFAULT_V = 126464          # vocabulary for dynamic shared memory (LLaDA's)

# ----------------------------------------------------------------------------
# Tools


def find_tool(name: str) -> str | None:
    """Path of a CUDA tool: nvcc from the toolkit; nvdisasm / cuobjdump from the PyPI wheels first."""
    cands: list[Path] = []
    if name == "nvcc":
        cands.append(Path("/usr/local/bin/nvcc"))
        if os.environ.get("CUDA_HOME"):
            cands.append(Path(os.environ["CUDA_HOME"]) / "bin" / name)
    else:
        for sp in sys.path:
            for sub in ("nvidia/cu13/bin", "nvidia/cuda_nvdisasm/bin", "nvidia/cuda_cuobjdump/bin"):
                cands.append(Path(sp) / sub / name)
    which = shutil.which(name)
    if which:
        cands.append(Path(which))
    cands.append(Path("/usr/local/cuda/bin") / name)
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        hint = {"nvcc": "install the CUDA toolkit or set CUDA_HOME",
                "nvdisasm": "pip install nvidia-cuda-nvdisasm",
                "cuobjdump": "pip install nvidia-cuda-cuobjdump",
                "c++filt": "install binutils"}[name]
        raise SystemExit(f"sass_report: {name} not found ({hint})")
    return path


def run(cmd: list[str], **kw) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return res.stdout + res.stderr


def tool_version(path: str) -> str:
    out = run([path, "--version"])
    m = re.search(r"release [\d.]+, V([\d.]+)", out)
    return m.group(1) if m else out.strip().splitlines()[-1]


# ----------------------------------------------------------------------------
# Building the torch-free translation unit


def cuda_flags() -> list[str]:
    """The CUDA compile options of CMakeLists.txt's _C target, plus Release's -O3 -DNDEBUG."""
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"\$<\$<COMPILE_LANGUAGE:CUDA>:(.*?)>\)", text, re.S)
    if not m:
        raise RuntimeError("sass_report: no CUDA compile options found in CMakeLists.txt")
    return m.group(1).split() + ["-O3", "-DNDEBUG"]


def translation_unit(specs: list[KernelSpec]) -> str:
    lines = ["// Generated by python/bench/sass_report.py: the kernels the launchers launch.",
             "#include <cuda_bf16.h>", "#include <cuda_fp16.h>"]
    lines += [f'#include "{h}"' for h in HEADERS]
    lines += ["namespace edlm {", "namespace cuda {", "void* edlm_sass_report_kernels[] = {"]
    lines += [f"    reinterpret_cast<void*>(&{s.name}<{s.targs}>)," for s in specs]
    lines += ["};", "}  // namespace cuda", "}  // namespace edlm", ""]
    return "\n".join(lines)


def parse_ptxas(text: str) -> dict[str, dict]:
    """ptxas -v output -> {mangled: {regs, stack, spill_stores, spill_loads, smem}}."""
    out: dict[str, dict] = {}
    cur = None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and cur is not None:
            cur.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and cur is not None:
            cur["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(s.group(1)) if s else 0
            cur = None
    return out


def build_tu(specs: list[KernelSpec], archs: list[int], workdir: Path, nvcc: str) -> tuple[dict[int, list[Path]], dict]:
    """Compiles the TU once per arch -> ({arch: [cubin]}, {arch: ptxas figures})."""
    tu = workdir / "edlm_sass_kernels.cu"
    tu.write_text(translation_unit(specs))
    cubins: dict[int, list[Path]] = {}
    ptxas: dict[int, dict] = {}
    for arch in archs:
        cubin = workdir / f"edlm_sass_kernels.sm_{arch}.cubin"
        out = run([nvcc, "-cubin", f"-arch=sm_{arch}", *cuda_flags(), f"-I{INCLUDE}", "-Xptxas", "-v",
                   "-o", str(cubin), str(tu)])
        cubins[arch] = [cubin]
        ptxas[arch] = parse_ptxas(out)
    return cubins, ptxas


def extract_so(so: Path, archs: list[int], workdir: Path, cuobjdump: str) -> dict[int, list[Path]]:
    """The cubins embedded in a shared object, by arch."""
    run([cuobjdump, "-xelf", "all", str(so.resolve())], cwd=workdir)
    cubins: dict[int, list[Path]] = {a: [] for a in archs}
    for f in sorted(workdir.glob("*.cubin")):
        m = re.search(r"\.sm_(\d+)\w*\.cubin$", f.name)
        if m and int(m.group(1)) in cubins:
            cubins[int(m.group(1))].append(f)
    return cubins


# ----------------------------------------------------------------------------
# ELF facts (cuobjdump -elf)


@dataclasses.dataclass
class ElfFunc:
    regs: int = 0
    stack: int = 0            # frame size
    shared_section: int = 0   # size of .nv.shared.<f>
    max_threads: int = 0      # __launch_bounds__ threads (0: none)
    maxreg: int = 0           # register cap (launch bounds or -maxrregcount; 0: none)
    param_base: int = 0       # constant-bank offset of the parameters
    params: list = dataclasses.field(default_factory=list)  # [(ordinal, offset, size)]


def parse_elf(text: str) -> dict[str, ElfFunc]:
    funcs: dict[str, ElfFunc] = {}
    for line in text.splitlines():
        m = re.match(r"\s*\w+\s+[0-9a-f]+\s+([0-9a-f]+)\s+.*\sNOBITS\s.*\s\.nv\.shared\.(_Z\S+)\s*$", line)
        if m:
            funcs.setdefault(m.group(2), ElfFunc()).shared_section = int(m.group(1), 16)
    for m in re.finditer(r"EIATTR_REGCOUNT.*?function: (\S+)\(0x[0-9a-f]+\)\s+register count: (\d+)", text, re.S):
        funcs.setdefault(m.group(1), ElfFunc()).regs = int(m.group(2))
    for m in re.finditer(r"EIATTR_FRAME_SIZE.*?function: (\S+)\(0x[0-9a-f]+\)\s+frame size: (0x[0-9a-f]+)", text, re.S):
        if m.group(1).startswith("_Z"):
            funcs.setdefault(m.group(1), ElfFunc()).stack = int(m.group(2), 16)
    for sec in re.split(r"\n\s*\n(?=\.)", text):
        head, _, body = sec.strip("\n").partition("\n")
        if not head.startswith(".nv.info._Z"):
            continue
        f = funcs.setdefault(head[len(".nv.info."):].strip(), ElfFunc())
        m = re.search(r"EIATTR_MAX_THREADS\s+Format:\s+\S+\s+Value:\s+(0x[0-9a-f]+)", body)
        if m:
            f.max_threads = int(m.group(1), 16)
        m = re.search(r"EIATTR_MAXREG_COUNT\s+Format:\s+\S+\s+Value:\s+(0x[0-9a-f]+)", body)
        if m:
            f.maxreg = int(m.group(1), 16)
        m = re.search(r"EIATTR_PARAM_CBANK\s+Format:\s+\S+\s+Value:\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)", body)
        if m:
            f.param_base = int(m.group(1), 16) & 0xFFFF
        f.params = sorted((int(o, 16), int(off, 16), int(sz, 16)) for o, off, sz in re.findall(
            r"Ordinal\s*:\s*(0x[0-9a-f]+)\s+Offset\s*:\s*(0x[0-9a-f]+)\s+Size\s*:\s*(0x[0-9a-f]+)", body))
    return funcs


def demangle(names: list[str], cxxfilt: str) -> dict[str, str]:
    out = run([cxxfilt], input="\n".join(names) + "\n").splitlines()
    return dict(zip(names, out))


def spec_key(demangled: str) -> tuple[str, str] | None:
    """'void edlm::cuda::sample_kernel<edlm::cuda::Bf16, 256, false>(...)' -> ('sample_kernel', 'Bf16,256,false')."""
    m = re.match(r"void edlm::cuda::(\w+)<(.*)>\(", demangled)
    if not m:
        return None
    return m.group(1), normalize_targs(m.group(2))


def normalize_targs(targs: str) -> str:
    return targs.replace("edlm::cuda::", "").replace(" ", "")


def kernel_param_names(name: str) -> list[str]:
    """Parameter names of a __global__ kernel, read from its header's signature."""
    for h in sorted((INCLUDE / "edlm").glob("*_cuda.cuh")):
        text = h.read_text()
        m = re.search(r"__global__[^;{]*?\b" + re.escape(name) + r"\s*\(", text)
        if not m:
            continue
        depth, i, start = 1, m.end(), m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        params, cur, d = [], "", 0
        for ch in text[start:i - 1]:
            d += {"<": 1, "(": 1, ">": -1, ")": -1}.get(ch, 0)
            if ch == "," and d == 0:
                params.append(cur)
                cur = ""
            else:
                cur += ch
        params.append(cur)
        return [re.findall(r"\w+", p)[-1] for p in params if p.strip()]
    return []


# ----------------------------------------------------------------------------
# SASS parsing


@dataclasses.dataclass
class Instr:
    addr: int
    guard: str | None   # 'P0', '!P0', 'UP1', ... or None
    op: str             # opcode with modifiers, e.g. 'LDG.E.128.CONSTANT'
    operands: list[str]
    text: str

    @property
    def base(self) -> str:
        return self.op.split(".")[0]


@dataclasses.dataclass
class Function:
    name: str
    instrs: list[Instr]
    labels: dict[str, int]  # label -> index into instrs


_INSTR_RE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL_RE = re.compile(r"^([.$\w]+):\s*$")
_SECTION_RE = re.compile(r"^\s*\.section\s+\.text\.([^,\s]+)")


def parse_instr(addr: int, text: str) -> Instr:
    guard = None
    m = re.match(r"@(!?U?P[T\d])\s+(.*)$", text)
    if m:
        guard, text = m.group(1), m.group(2)
    parts = text.split(None, 1)
    op = parts[0]
    operands = [o.strip() for o in parts[1].split(",")] if len(parts) > 1 else []
    return Instr(addr, guard, op, operands, text)


def parse_sass(text: str) -> dict[str, Function]:
    """nvdisasm output -> {function name: Function}; functions start at `.section .text.<name>`."""
    funcs: dict[str, Function] = {}
    cur: Function | None = None
    for line in text.splitlines():
        m = _SECTION_RE.match(line)
        if m:
            cur = funcs.setdefault(m.group(1), Function(m.group(1), [], {}))
            continue
        if cur is None:
            continue
        m = _LABEL_RE.match(line.strip()) if not line.lstrip().startswith(("/*", "//")) else None
        if m:
            cur.labels[m.group(1)] = len(cur.instrs)
            continue
        m = _INSTR_RE.match(line)
        if m:
            cur.instrs.append(parse_instr(int(m.group(1), 16), m.group(2)))
    return funcs


_CONST_REGS = {"RZ", "URZ", "PT", "UPT"}
_NO_DEST = {"RED", "REDG", "BAR", "BRA", "BRX", "JMP", "JMX", "EXIT", "RET", "CALL", "BSSY", "BSYNC", "WARPSYNC",
            "NOP", "MEMBAR", "FENCE", "ERRBAR", "CCTL", "YIELD", "BREAK", "BPT", "KILL", "DEPBAR", "ARRIVES"}
_REG_TOKEN = re.compile(r"(?<![\w.])(U?R\d+|U?P\d)((?:\.\w+)*)")
_PRED = re.compile(r"^!?U?P[T\d]$")


def _wide(instr: Instr) -> int:
    """Registers per operand this opcode reads/writes at most (conservative)."""
    op = instr.op
    if ".128" in op:
        return 4
    if ".64" in op or ".WIDE" in op or ".F64" in op or (instr.base.startswith("D") and instr.base != "DEPBAR"):
        return 2
    return 1


def _expand(tok: str, suffix: str, width: int) -> list[str]:
    if tok.startswith(("P", "UP")):
        return [tok]
    if ".64" in suffix:
        width = max(width, 2)
    kind, num = re.match(r"(U?R)(\d+)", tok).groups()
    return [f"{kind}{int(num) + k}" for k in range(width)]


def dest_count(instr: Instr) -> int:
    """Leading operands that the instruction writes."""
    b = instr.base
    if b in _NO_DEST or b.startswith("ST") or not instr.operands:
        return 0
    if b == "SHFL":
        return 2
    n = 1
    if len(instr.operands) > 1 and _PRED.match(instr.operands[1].lstrip("!")):
        n = 2
    return n


def regs_written(instr: Instr) -> set[str]:
    out: set[str] = set()
    width = _wide(instr)
    for o in instr.operands[:dest_count(instr)]:
        for tok, suf in _REG_TOKEN.findall(o):
            if tok not in _CONST_REGS:
                out.update(_expand(tok, suf, 1 if tok.startswith(("P", "UP")) else width))
    return out


def regs_read(instr: Instr) -> set[str]:
    out: set[str] = set()
    width = 2 if _wide(instr) >= 2 and not instr.base.startswith(("LD", "ST")) else 1
    srcs = list(instr.operands[dest_count(instr):])
    if instr.base.startswith("ST"):  # stores read their data operand at full width
        srcs, width = instr.operands, _wide(instr)
    if instr.guard:
        srcs.append(instr.guard)
    for o in srcs:
        for tok, suf in _REG_TOKEN.findall(o):
            if tok in _CONST_REGS:
                continue
            inside = "[" in o
            out.update(_expand(tok, suf, 1 if inside else width))
    return out


def cbank_offsets(instr: Instr) -> set[int]:
    return {int(x, 16) for x in re.findall(r"c\[0x0\]\[(0x[0-9a-f]+)\]", instr.text)}


def is_load128(instr: Instr) -> bool:
    return instr.base == "LDG" and ".128" in instr.op


def local_bytes(instr: Instr) -> int:
    for suf, n in ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1)):
        if suf in instr.op:
            return n
    return 4


# ----------------------------------------------------------------------------
# Control flow graph, dominators, loops


@dataclasses.dataclass
class Block:
    idx: int
    start: int  # instruction indices [start, end)
    end: int
    succs: list = dataclasses.field(default_factory=list)  # [(block idx, kind)] kind: 'fall'|'taken'|'div'


def _target(instr: Instr) -> str | None:
    m = re.search(r"`\(([^)]+)\)", instr.text)
    return m.group(1) if m else None


def build_cfg(fn: Function) -> list[Block]:
    ins = fn.instrs
    leaders = {0} | set(fn.labels.values())
    for i, x in enumerate(ins):
        if x.base in ("BRA", "BRX", "JMP", "JMX", "EXIT", "RET") and i + 1 < len(ins):
            leaders.add(i + 1)
    starts = sorted(s for s in leaders if s < len(ins))
    blocks = [Block(k, s, starts[k + 1] if k + 1 < len(starts) else len(ins)) for k, s in enumerate(starts)]
    at = {b.start: b.idx for b in blocks}
    for b in blocks:
        last = ins[b.end - 1]
        nxt = b.idx + 1 if b.idx + 1 < len(blocks) else None
        cond = last.guard is not None and last.guard != "PT"
        if last.base in ("BRA", "JMP"):
            tgt = _target(last)
            kind = "div" if ".DIV" in last.op else "taken"
            if ".DIV" in last.op or ".U" in last.op and len(last.operands) > 1:
                cond = True
            if tgt in fn.labels and fn.labels[tgt] in at:
                b.succs.append((at[fn.labels[tgt]], kind))
            if cond and nxt is not None:
                b.succs.append((nxt, "fall"))
        elif last.base in ("EXIT", "RET", "BRX", "JMX"):
            if cond and nxt is not None:
                b.succs.append((nxt, "fall"))
        elif nxt is not None:
            b.succs.append((nxt, "fall"))
    return blocks


def dominators(blocks: list[Block], entry: int = 0) -> dict[int, set[int]]:
    preds: dict[int, list[int]] = {b.idx: [] for b in blocks}
    for b in blocks:
        for s, _ in b.succs:
            preds[s].append(b.idx)
    order, seen = [], set()

    def dfs(u):  # iterative post-order
        stack = [(u, iter(blocks[u].succs))]
        seen.add(u)
        while stack:
            v, it = stack[-1]
            for s, _ in it:
                if s not in seen:
                    seen.add(s)
                    stack.append((s, iter(blocks[s].succs)))
                    break
            else:
                order.append(v)
                stack.pop()

    dfs(entry)
    rpo = order[::-1]
    dom = {u: set(rpo) for u in rpo}
    dom[entry] = {entry}
    changed = True
    while changed:
        changed = False
        for u in rpo[1:]:
            ps = [p for p in preds[u] if p in dom]
            new = set.intersection(*(dom[p] for p in ps)) | {u} if ps else {u}
            if new != dom[u]:
                dom[u], changed = new, True
    return dom


@dataclasses.dataclass
class Loop:
    header: int
    body: set
    latches: set


def natural_loops(blocks: list[Block], dom: dict[int, set[int]]) -> list[Loop]:
    preds: dict[int, list[int]] = {b.idx: [] for b in blocks}
    for b in blocks:
        for s, _ in b.succs:
            preds[s].append(b.idx)
    loops: dict[int, Loop] = {}
    for b in blocks:
        if b.idx not in dom:
            continue
        for s, _ in b.succs:
            if s in dom[b.idx]:  # back edge b -> s
                lp = loops.setdefault(s, Loop(s, {s}, set()))
                lp.latches.add(b.idx)
                stack = [b.idx]
                while stack:
                    v = stack.pop()
                    if v not in lp.body:
                        lp.body.add(v)
                        stack.extend(p for p in preds[v] if p in dom)
    return sorted(loops.values(), key=lambda lp: blocks[lp.header].start)


# ----------------------------------------------------------------------------
# Streaming-loop analysis


@dataclasses.dataclass
class LoopReport:
    header_addr: int
    path_instrs: int
    loads128: int
    elements: int
    ipe: float
    in_flight: int
    mufu_pe: float
    atoms_pe: float    # shared-memory atomics per element
    inner_loops: int
    synced: bool       # a block barrier in the loop: runs per draw / per digit, not a free-running stream
    latch_addr: int
    modes: list  # [(label, LoopReport of the path forced to the other side)]
    path: list = dataclasses.field(default_factory=list, repr=False)  # block indices
    local_mem: int = 0  # STL / LDL (spill or stack) instructions anywhere in the loop body


class PathError(RuntimeError):
    pass


def _dag_shortest(blocks, fn, nodes: set, edges: dict, src: int, dst: int) -> list[int]:
    """Shortest (in instructions) path src -> dst in a DAG given as {u: [v]} over nodes."""
    cost = {b: sum(1 for x in fn.instrs[blocks[b].start:blocks[b].end] if x.base != "NOP") for b in nodes}
    best = {src: (cost[src], [src])}
    for u in _topo(nodes, edges, src):
        if u not in best:
            continue
        for v in edges.get(u, ()):
            c = best[u][0] + cost[v]
            if v not in best or c < best[v][0]:
                best[v] = (c, best[u][1] + [v])
    if dst not in best:
        raise PathError(f"no path from block {src} to block {dst}")
    return best[dst][1]


def _topo(nodes, edges, src):
    order, seen = [], set()
    stack = [(src, iter(edges.get(src, ())))]
    seen.add(src)
    while stack:
        v, it = stack[-1]
        for s in it:
            if s not in seen:
                seen.add(s)
                stack.append((s, iter(edges.get(s, ()))))
                break
        else:
            order.append(v)
            stack.pop()
    return order[::-1]


def loop_dag(blocks, dom, loop: Loop) -> dict[int, list[int]]:
    """Edges of the loop body without back edges (inner loops collapse) and without BRA.DIV edges."""
    return {u: [s for s, kind in blocks[u].succs if s in loop.body and kind != "div" and s not in dom[u]]
            for u in loop.body}


def hot_path(blocks, fn, dom, loop: Loop, required: list[int]) -> list[int]:
    """Shortest header -> latch path through the required blocks (in DAG order)."""
    edges = loop_dag(blocks, dom, loop)
    reach = {b for b in _topo(loop.body, edges, loop.header)}
    order = {b: i for i, b in enumerate(_topo(loop.body, edges, loop.header))}
    req = sorted((b for b in required if b in reach), key=order.get)
    path = [loop.header]
    for b in req:
        if b == path[-1]:
            continue
        path += _dag_shortest(blocks, fn, loop.body, edges, path[-1], b)[1:]
    best = None
    for lt in loop.latches:
        if lt not in reach:
            continue
        try:
            tail = _dag_shortest(blocks, fn, loop.body, edges, path[-1], lt)[1:] if lt != path[-1] else []
        except PathError:
            continue
        cand = path + tail
        c = sum(blocks[b].end - blocks[b].start for b in cand)
        if best is None or c < best[0]:
            best = (c, cand)
    if best is None:
        raise PathError("required blocks not on one path to a latch")
    return best[1]


def path_instrs(blocks, fn, path: list[int]) -> list[Instr]:
    return [x for b in path for x in fn.instrs[blocks[b].start:blocks[b].end] if x.base != "NOP"]


def loads_in_flight(seq: list[Instr]) -> int:
    """Most 16-byte loads issued before a use of any of them, on the cyclic sequence."""
    n = len(seq)
    best = 0
    for s in range(n):
        if not is_load128(seq[s]):
            continue
        pending: set[str] = set()
        count = 0
        for k in range(n):
            x = seq[(s + k) % n]
            if pending and (regs_read(x) & pending or (not is_load128(x) and regs_written(x) & pending)):
                break
            if is_load128(x):
                if regs_read(x) & pending:
                    break
                count += 1
                pending |= regs_written(x)
        best = max(best, count)
    return best


def invariant_params(seq: list[Instr], i: int, loop_start: int, loop_writes: set[str]) -> set[int] | None:
    """Constant-bank offsets that the predicate of the branch seq[i] is computed from, or None when it
    varies in the loop. seq = the instructions of the blocks dominating the loop header (entry first),
    then the loop's hot path from loop_start on."""
    offsets: set[int] = set()
    todo = [(i, r) for r in regs_read(seq[i])]
    seen = set()
    while todo:
        j, r = todo.pop()
        if (j, r) in seen:
            continue
        seen.add((j, r))
        lo = loop_start if j >= loop_start else 0
        d = next((k for k in range(j - 1, lo - 1, -1) if r in regs_written(seq[k])), None)
        if d is None and j >= loop_start:
            if r in loop_writes:
                return None  # carried around the loop
            d = next((k for k in range(loop_start - 1, -1, -1) if r in regs_written(seq[k])), None)
        if d is None:
            continue  # a kernel-entry value, or defined off the dominator chain
        offsets |= cbank_offsets(seq[d])
        todo.extend((d, q) for q in regs_read(seq[d]))
    return offsets


def param_label(offsets: set[int], elf: ElfFunc, names: list[str]) -> str:
    labels = []
    for off in sorted(offsets):
        rel = off - elf.param_base
        for ordinal, poff, size in elf.params:
            if poff <= rel < poff + size:
                labels.append(names[ordinal] if ordinal < len(names) else f"param#{ordinal}")
    return "+".join(dict.fromkeys(labels))


def analyze_loops(fn: Function, elem_bytes: int, elf: ElfFunc | None = None,
                  names: list[str] | None = None) -> list[LoopReport]:
    blocks = build_cfg(fn)
    dom = dominators(blocks)
    loops = natural_loops(blocks, dom)
    load_blocks = [b.idx for b in blocks if b.idx in dom and any(is_load128(x) for x in fn.instrs[b.start:b.end])]
    # the innermost loop enclosing each load block
    chosen: dict[int, Loop] = {}
    for lb in load_blocks:
        encl = [lp for lp in loops if lb in lp.body]
        if encl:
            inner = min(encl, key=lambda lp: len(lp.body))
            chosen[inner.header] = inner
    reports = []
    for lp in sorted(chosen.values(), key=lambda lp: blocks[lp.header].start):
        body_instrs = [x for b in lp.body for x in fn.instrs[blocks[b].start:blocks[b].end]]
        loop_writes = set().union(*(regs_written(x) for x in body_instrs)) if body_instrs else set()
        chain = sorted(dom[lp.header] - {lp.header}, key=lambda d: len(dom[d]))  # entry first
        pre = [x for d in chain for x in fn.instrs[blocks[d].start:blocks[d].end] if x.base != "NOP"]
        required = [b for b in load_blocks if b in lp.body]
        try:
            path = hot_path(blocks, fn, dom, lp, required)
        except PathError as e:  # loads on mutually exclusive branches: no single iteration path
            print(f"sass_report: {fn.name}: loop at {fn.instrs[blocks[lp.header].start].addr:#x} skipped ({e})",
                  file=sys.stderr)
            continue
        rep = _loop_report(blocks, fn, lp, path, elem_bytes, loops)
        if rep.synced:
            reports.append(rep)
            continue
        # mode switches: loop-invariant conditional branches on the hot path
        seq = pre + path_instrs(blocks, fn, path)
        groups: dict[str, list[int]] = {}
        pos = len(pre)
        for k, b in enumerate(path):
            blk = blocks[b]
            n_b = sum(1 for x in fn.instrs[blk.start:blk.end] if x.base != "NOP")
            pos += n_b
            last = fn.instrs[blk.end - 1]
            inner = [s for s, kind in blk.succs if s in lp.body and kind != "div" and s not in dom[b]]
            if last.base != "BRA" or len(inner) != 2 or k + 1 >= len(path):
                continue
            offs = invariant_params(seq, pos - 1, len(pre), loop_writes)
            label = param_label(offs, elf, names or []) if (offs and elf) else ""
            if not label:
                continue  # varies in the loop, or not a kernel parameter (thread index, ...)
            other = inner[0] if inner[1] == path[k + 1] else inner[1]
            groups.setdefault(label, []).append(other)
        for label, others in groups.items():
            try:
                p2 = hot_path(blocks, fn, dom, lp, required + others)
            except PathError:
                continue
            rep.modes.append((f"{label} set", _loop_report(blocks, fn, lp, p2, elem_bytes, loops)))
        # data-dependent shared atomics (histogram updates) that the hot path skips
        atom_blocks = [b for b in lp.body if any(x.base == "ATOMS" for x in fn.instrs[blocks[b].start:blocks[b].end])]
        if atom_blocks and not any(b in path for b in atom_blocks):
            try:
                p2 = hot_path(blocks, fn, dom, lp, required + atom_blocks)
                rep.modes.append(("every shared atomic taken", _loop_report(blocks, fn, lp, p2, elem_bytes, loops)))
            except PathError:
                pass
        reports.append(rep)
    return reports


def _loop_report(blocks, fn, lp: Loop, path, elem_bytes, loops) -> LoopReport:
    seq = path_instrs(blocks, fn, path)
    n128 = sum(1 for x in seq if is_load128(x))
    elements = n128 * 16 // elem_bytes
    mufu = sum(1 for x in seq if x.base == "MUFU")
    atoms = sum(1 for x in seq if x.base == "ATOMS")
    inner = sum(1 for o in loops if o.header != lp.header and o.body < lp.body)
    synced = any(x.base == "BAR" for b in lp.body for x in fn.instrs[blocks[b].start:blocks[b].end])
    local_mem = sum(1 for b in lp.body for x in fn.instrs[blocks[b].start:blocks[b].end] if x.base in ("STL", "LDL"))
    per = (lambda n: n / elements) if elements else (lambda n: float("nan"))
    return LoopReport(header_addr=fn.instrs[blocks[lp.header].start].addr, path_instrs=len(seq), loads128=n128,
                      elements=elements, ipe=per(len(seq)), in_flight=loads_in_flight(seq), mufu_pe=per(mufu),
                      atoms_pe=per(atoms), inner_loops=inner, synced=synced,
                      latch_addr=max(fn.instrs[blocks[b].end - 1].addr for b in lp.latches), modes=[], path=path,
                      local_mem=local_mem)


def shared_atomics_64(fn: Function) -> int:
    """64-bit shared-memory atomics (ATOMS.*.64, compare-and-swap spin loops among them)."""
    return sum(1 for x in fn.instrs if x.base == "ATOMS" and ".64" in x.op)


def spill_bytes(fn: Function) -> tuple[int, int]:
    st = sum(local_bytes(x) for x in fn.instrs if x.base == "STL")
    ld = sum(local_bytes(x) for x in fn.instrs if x.base == "LDL")
    return st, ld


# ----------------------------------------------------------------------------
# Occupancy and the estimate


def resident_blocks(gpu: Gpu, regs: int, threads: int, smem: int) -> tuple[int, str]:
    """Resident blocks per SM and what limits them."""
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(max(regs, 1) * 32 / REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    lim = {
        "registers": (gpu.regs_per_sm // per_warp) // warps,
        "threads": gpu.threads_per_sm // threads,
        "blocks": gpu.blocks_per_sm,
        "shared memory": gpu.smem_per_sm // (smem + gpu.smem_reserved_per_block),
    }
    n = min(lim.values())
    return n, "/".join(k for k, v in lim.items() if v == n)


def estimate(gpu: Gpu, blocks_per_sm: int, threads: int, rep: LoopReport, elem_bytes: int,
             latency_ns: float) -> dict:
    inflight_sm = blocks_per_sm * threads * rep.in_flight * 16  # bytes
    little = gpu.sms * inflight_sm / (latency_ns * 1e-9) / 1e12
    clk = gpu.clock_ghz * 1e9
    issue = gpu.sms * clk * WARP_ISSUE_PER_SM_CLK * 32 / rep.ipe * elem_bytes / 1e12
    mufu = gpu.sms * clk * MUFU_PER_SM_CLK / rep.mufu_pe * elem_bytes / 1e12 if rep.mufu_pe > 0 else math.inf
    reach = min(little, issue, mufu, gpu.hbm_tbs)
    return {"inflight_kb": inflight_sm / 1024, "little": little, "issue": issue, "mufu": mufu, "reach": reach,
            "frac": reach / gpu.hbm_tbs}


# ----------------------------------------------------------------------------
# The report


@dataclasses.dataclass
class KernelResult:
    spec: KernelSpec
    arch: int
    mangled: str
    elf: ElfFunc
    spills: tuple
    ptxas: dict
    loops: list
    atoms64: int = 0  # 64-bit shared atomics in the function


def analyze(cubins: dict[int, list[Path]], ptxas: dict, specs: list[KernelSpec], nvdisasm: str, cuobjdump: str,
            cxxfilt: str) -> tuple[list[KernelResult], list[str]]:
    """All kernels of the cubins -> (results in table order, names of kernels not in the table)."""
    by_key = {(s.name, normalize_targs(s.targs)): s for s in specs}
    results, unlisted = [], []
    for arch, files in sorted(cubins.items(), reverse=True):
        for cubin in files:
            sass = parse_sass(run([nvdisasm, "-c", str(cubin)]))
            elf = parse_elf(run([cuobjdump, "-elf", str(cubin)]))
            kernels = [n for n in sass if n in elf and n.startswith("_Z")]
            dem = demangle(kernels, cxxfilt) if kernels else {}
            for mangled in kernels:
                key = spec_key(dem[mangled])
                spec = by_key.get(key) if key else None
                if spec is None:
                    unlisted.append(f"sm_{arch} {dem[mangled]}")
                    continue
                names = kernel_param_names(spec.name)
                loops = analyze_loops(sass[mangled], spec.elem_bytes, elf[mangled], names)
                results.append(KernelResult(spec, arch, mangled, elf[mangled], spill_bytes(sass[mangled]),
                                            ptxas.get(arch, {}).get(mangled, {}), loops,
                                            shared_atomics_64(sass[mangled])))
    order = {s: i for i, s in enumerate(specs)}
    results.sort(key=lambda r: (-r.arch, order[r.spec]))
    return results, unlisted


def static_smem(r: KernelResult) -> int:
    """User static shared memory: ptxas's figure when it compiled the code here, else the .nv.shared
    section (sm_90 cubins count the 1 KB the driver reserves per block in it; the section is rounded
    up to its alignment, so it can exceed ptxas's figure by a few bytes)."""
    return r.ptxas["smem"] if "smem" in r.ptxas else elf_static_smem(r.elf, r.arch)


def elf_static_smem(elf: ElfFunc, arch: int) -> int:
    return max(elf.shared_section - (1024 if arch >= 90 else 0), 0)


def dyn_smem(spec: KernelSpec, V: int) -> int:
    return spec.dyn_smem(V, 16 // spec.elem_bytes)


def format_summary(results: list[KernelResult], V: int, latency: float) -> list[str]:
    """The headline figures: sample_kernel's tile statistics and filtered_sample_kernel's passes on sm_90."""
    rs = [r for r in results if r.arch == 90 and r.spec.name in ("sample_kernel", "filtered_sample_kernel")]
    if not rs:
        return []
    out = [f"## Summary (sm_90; estimate at {latency:.0f} ns DRAM latency)", "",
           "| kernel | variant | dtype | regs | spill st/ld B (in stream loops) | stream loops | instr/elem (first loop) |"
           " with the other side of its mode switches | LDG.128 in flight | est. % of HBM, "
           + ", ".join(g.name for g in GPUS) + " |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rs:
        stream = [lp for lp in r.loops if not lp.synced]
        if not stream:
            continue
        lp = stream[0]
        smem = static_smem(r) + dyn_smem(r.spec, V)
        fr = []
        for g in GPUS:
            nb, _ = resident_blocks(g, r.elf.regs, r.spec.threads, smem)
            fr.append(f"{100 * estimate(g, nb, r.spec.threads, lp, r.spec.elem_bytes, latency)['frac']:.0f}%")
        ipes = " / ".join(f"{x.ipe:.1f}" for x in stream)
        modes = "; ".join(f"{lab}: {m.ipe:.1f}" for lab, m in lp.modes) or "-"
        in_loops = sum(x.local_mem for x in stream)
        out.append(f"| {r.spec.name} | {r.spec.variant or '-'} | {r.spec.dtype} | {r.elf.regs} | "
                   f"{r.spills[0]}/{r.spills[1]} ({in_loops} instr) | {len(stream)} | {ipes} | {modes} | "
                   f"{lp.in_flight} | {', '.join(fr)} |")
    return out + ["", "(instr/elem lists every stream loop of the kernel in code order; the other columns are "
                      "the first one's: sample_kernel's tile statistics, filtered_sample_kernel's pass 1. "
                      "filtered_sample_kernel's loops (in code order, as the compiler placed them): the prefix, pass 1 "
                      "without and with the gather, pass 2, then the general path's finite count, top-k digits, "
                      "top-p total, top-p digits and tile statistics.)", ""]


# Per-row cost model (sm_90), for the issue's targets: entropy, proposals, filters.
ROW_SHAPES_V = (30522, 50258, 126464)  # the issue's vocabularies (BERT, GPT-2, LLaDA)
TILE_BYTES = 128 * 16                  # one warp tile: 32 lanes x 4 vectors of 16 bytes (kTileItems)
DRAWS_PER_CHUNK = 8                    # kWarps: draws located and drawn together
PREFIX_BYTES = 4 * 256 * 16            # filtered_sample_kernel's prefix: kPrefixVecs x kThreads vectors


def _first_stream(r: KernelResult) -> list[LoopReport]:
    return [lp for lp in r.loops if not lp.synced]


def format_row_model(results: list[KernelResult], V: int, latency: float) -> list[str]:
    """Time per row relative to one plain draw, from the stream loops' reachable bandwidth."""
    rs = {(r.spec.name, r.spec.variant, r.spec.dtype): r for r in results if r.arch == 90}
    out = ["## sm_90: per-row cost of entropy, proposals and filters (model)", "",
           "Each stream loop moves the row's bytes at its reachable bandwidth (the estimate above, at the high "
           "latency): a row costs bytes / reach per pass, and the ratios below are against one plain draw "
           "(sample_kernel, sample variant, its tile-statistics loop).",
           "- entropy: the same loop with the entropy side of its mode switch taken.",
           f"- k proposals: the draws re-read one warp tile ({TILE_BYTES} B) each, {DRAWS_PER_CHUNK} at a time "
           "(one chunk: one locate / draw round for k <= 8), so a row moves V x elem + k x tile bytes; counted "
           "from HBM (the tile was read by pass 1, but the row is usually out of L1 by then).",
           "- top_k=50 + top_p=0.9: filtered_sample_kernel's candidate path. Its stream loops are found by "
           "shape: the prefix loop (the first: each thread's first 4 vectors, 16 KB of the row, for the "
           "speculative bound), pass 1 (the first loop after it with a shared atomic, the gather: the row read "
           "once when the candidates fit) and pass 2 (the next one with a shared atomic: the row read again when "
           "they did not). The prefix is counted as extra HBM bytes (an upper bound: pass 1 re-reads it, mostly "
           "from L1). The sort and cuts of the candidates in shared memory stream nothing and are not counted; "
           "sample_kernel does not run.", "",
           "| dtype | GPU | plain reach TB/s | entropy / plain | "
           + " | ".join(f"top_k+top_p / plain, V={v} (fallback bound)" for v in ROW_SHAPES_V) + " | "
           + " | ".join(f"k=8 / k=1, V={v}" for v in ROW_SHAPES_V) + " |",
           "| --- | --- | --- | --- | " + "--- | " * (2 * len(ROW_SHAPES_V))]
    for dtype in ("fp32", "bf16", "f16"):
        plain = rs.get(("sample_kernel", "sample", dtype))
        filt = rs.get(("filtered_sample_kernel", "sample", dtype))
        if plain is None or not _first_stream(plain):
            continue
        lp = _first_stream(plain)[0]
        for g in GPUS:
            smem = static_smem(plain) + dyn_smem(plain.spec, V)
            nb, _ = resident_blocks(g, plain.elf.regs, plain.spec.threads, smem)
            eb = plain.spec.elem_bytes
            r0 = estimate(g, nb, plain.spec.threads, lp, eb, latency)["reach"]
            ent = next((m for lab, m in lp.modes if lab == "entropy set"), None)
            rh = estimate(g, nb, plain.spec.threads, ent, eb, latency)["reach"] if ent else float("nan")
            fcells = ["-"] * len(ROW_SHAPES_V)
            fs = _first_stream(filt) if filt is not None else []
            gathers = [x for x in fs[1:] if any(lab == "every shared atomic taken" for lab, _ in x.modes)]
            if len(fs) >= 3 and len(gathers) >= 2:
                fsmem = static_smem(filt) + dyn_smem(filt.spec, V)
                fnb, _ = resident_blocks(g, filt.elf.regs, filt.spec.threads, fsmem)
                reach = [estimate(g, fnb, filt.spec.threads, x, eb, latency)["reach"] for x in (fs[0], *gathers[:2])]
                fcells = []
                for v in ROW_SHAPES_V:
                    row, prefix = v * eb, min(v * eb, PREFIX_BYTES)
                    once = prefix / reach[0] + row / reach[1]
                    fcells.append(f"{once / (row / r0):.2f}x ({(once + row / reach[2]) / (row / r0):.2f}x)")
            props = [f"{(v * eb + 8 * TILE_BYTES) / (v * eb + TILE_BYTES):.2f}x" for v in ROW_SHAPES_V]
            out.append(f"| {dtype} | {g.name} | {r0:.2f} | {r0 / rh:.2f}x | " + " | ".join(fcells) + " | "
                       + " | ".join(props) + " |")
    return out + ["", "(targets of issue 14: entropy <= 1.15x, k <= 8 proposals <= 1.3x one draw, top_k=50 + "
                      "top_p=0.9 <= 2x plain sampling. The filtered figures assume the candidates fit in shared "
                      "memory (2048), as for top_k <= 256 on rows like the tests': with the prefix's bound "
                      "(~top_k x row / 16 KB candidates), or else with the whole row's (the figure in brackets); "
                      "when neither fits, the general path adds its radix passes and a tile pass.)", ""]


def format_report(results: list[KernelResult], unlisted: list[str], header: list[str], V: int,
                  latencies: tuple[float, ...]) -> str:
    out = [*header, ""] + format_summary(results, V, latencies[-1])
    for arch in sorted({r.arch for r in results}, reverse=True):
        rs = [r for r in results if r.arch == arch]
        out += [f"## sm_{arch}: resources", "",
                "| kernel | variant | dtype | regs | cap | stack B | spill st/ld B (SASS) | ptxas spill st/ld |"
                " static smem B | threads | bounds | 64-bit shared atomics |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rs:
            p = r.ptxas
            pt = f"{p['spill_stores']}/{p['spill_loads']}" if "spill_stores" in p else "-"
            out.append(f"| {r.spec.name} | {r.spec.variant or '-'} | {r.spec.dtype} | {r.elf.regs} | "
                       f"{r.elf.maxreg or '-'} | {r.elf.stack} | {r.spills[0]}/{r.spills[1]} | {pt} | "
                       f"{static_smem(r)} | {r.spec.threads} | {r.elf.max_threads or '-'} | {r.atoms64} |")
        out += ["", "(cap: the register cap from __launch_bounds__, 255 = none; bounds: its thread count; "
                "static smem excludes the 1 KB the driver reserves per block.)",
                "", f"## sm_{arch}: streaming loops (16-byte global loads)", "",
                "| kernel | variant | dtype | loop (header-latch) | kind | instrs/iter | LDG.128/iter | elems/iter |"
                " instr/elem | LDG.128 in flight | MUFU/elem | ATOMS/elem | STL/LDL in loop | inner loops |"
                " mode switches (instr/elem, in flight on the other side) |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rs:
            for k, lp in enumerate(r.loops):
                modes = "; ".join(f"{lab}: {m.ipe:.1f}, {m.in_flight}" + (f", {m.atoms_pe:.2f} ATOMS/elem"
                                                                          if m.atoms_pe else "")
                                  for lab, m in lp.modes) or "-"
                out.append(f"| {r.spec.name} | {r.spec.variant or '-'} | {r.spec.dtype} | #{k + 1} "
                           f"{lp.header_addr:#x}-{lp.latch_addr:#x} | {'synced' if lp.synced else 'stream'} | "
                           f"{lp.path_instrs} | {lp.loads128} | {lp.elements} | {lp.ipe:.1f} | {lp.in_flight} | "
                           f"{lp.mufu_pe:.2f} | {lp.atoms_pe:.2f} | {lp.local_mem} | {lp.inner_loops} | {modes} |")
        if not any(r.loops for r in rs):
            out.append("| (no kernel issues 16-byte global loads) |" + " |" * 14)
        out += ["", "(kind: 'stream' = no block barrier in the loop, 'synced' = one inside, e.g. sample_kernel's "
                "per-draw chunk loop; STL/LDL in loop: local-memory instructions (spills) in the loop's body, so 0 "
                "means the kernel's spills, if any, are off its streaming loops; mode switches: each loop-invariant "
                "branch on a kernel parameter forced to its other side, and the path through every data-dependent "
                "shared atomic, as instr/elem, LDG.128 in flight.)", ""]
        if arch != 90:
            continue
        out += ["## sm_90: reachable DRAM bandwidth of each streaming loop (estimate)", "",
                "Assumptions:"]
        for g in GPUS:
            out.append(f"- {g.name}: {g.sms} SMs, SM clock {g.clock_ghz} GHz, HBM {g.hbm_tbs} TB/s ({g.note}); "
                       f"per SM {g.regs_per_sm} registers (allocated per warp in units of {REG_ALLOC_UNIT}), "
                       f"{g.threads_per_sm} threads, {g.blocks_per_sm} blocks, {g.smem_per_sm // 1024} KB shared "
                       f"memory (+{g.smem_reserved_per_block} B reserved per block).")
        out += [f"- DRAM latency under load: {' and '.join(f'{x:.0f}' for x in latencies)} ns (an assumption, not "
                "measured here; measure it with a pointer chase when a GPU is lent, and pass --latency-ns).",
                f"- Issue: {WARP_ISSUE_PER_SM_CLK} warp instructions per SM per clock; MUFU: {MUFU_PER_SM_CLK} "
                "per SM per clock; every instruction on the hot path issues once per element group (no dual issue).",
                f"- Dynamic shared memory at V = {V}: sample_kernel's tile statistics, filtered_sample_kernel's "
                "candidates or tiles (the launcher's sample_tile_smem_bytes / filtered_smem_bytes); the other "
                "kernels use none.",
                "- Only 'stream' loops (no block barrier inside) are estimated: a 'synced' loop, such as "
                "sample_kernel's per-draw chunk loop (pass 3: one 2 KB tile per draw), does not stream the row. Each "
                "stream loop reads the row once per time it runs: the general filter path's radix-select loops run "
                "once per 8-bit digit (4 times each); the candidate path runs passes 1 and 2 only.",
                "- Reach = min(Little's law, issue, MUFU, HBM). Little is given at each latency; reach and % use "
                "the high latency.", "",
                "| kernel | variant | dtype | loop | GPU | blocks/SM (limit) | KB in flight/SM | "
                + " | ".join(f"Little TB/s @{x:.0f}ns" for x in latencies)
                + " | issue TB/s | MUFU TB/s | reach TB/s | % of HBM |",
                "| --- | --- | --- | --- | --- | --- | --- | " + "--- | " * len(latencies) + "--- | --- | --- | --- |"]
        for r in rs:
            if not r.loops:
                continue
            smem = static_smem(r) + dyn_smem(r.spec, V)
            for g in GPUS:
                nb, why = resident_blocks(g, r.elf.regs, r.spec.threads, smem)
                for k, lp in enumerate(r.loops):
                    if lp.synced:
                        continue
                    for vlabel, v in [("", lp)] + [(f" ({lab})", m) for lab, m in lp.modes]:
                        ests = [estimate(g, nb, r.spec.threads, v, r.spec.elem_bytes, lat) for lat in latencies]
                        e = ests[-1]
                        out.append(f"| {r.spec.name} | {r.spec.variant or '-'} | {r.spec.dtype} | #{k + 1}{vlabel} | "
                                   f"{g.name} | {nb} ({why}) | {e['inflight_kb']:.0f} | "
                                   + " | ".join(f"{x['little']:.2f}" for x in ests)
                                   + f" | {e['issue']:.2f} | {e['mufu']:.2f} | {e['reach']:.2f} | "
                                   f"{100 * e['frac']:.0f}% |")
        out.append("")
        out += format_row_model(results, V, latencies[-1])
    if unlisted:
        out += ["## Kernels in the binary that the KERNELS table does not list", ""] + [f"- {u}" for u in unlisted]
    return "\n".join(out) + "\n"


def git_describe() -> str:
    try:
        rev = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip()
        dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "csrc", "CMakeLists.txt"]).strip()
        return rev + (" (csrc modified)" if dirty else "")
    except (RuntimeError, FileNotFoundError):
        return "unknown"


@dataclasses.dataclass
class Report:
    text: str
    results: list
    unlisted: list
    missing: list


def make_report(archs: list[int], so: Path | None = None, specs: list[KernelSpec] | None = None, V: int = DEFAULT_V,
                latencies: tuple[float, ...] = DEFAULT_LATENCY_NS) -> Report:
    """Builds (or extracts), disassembles and analyzes the kernels; returns the report and its data."""
    specs = KERNELS if specs is None else specs
    nvdisasm, cuobjdump, cxxfilt = require_tool("nvdisasm"), require_tool("cuobjdump"), require_tool("c++filt")
    with tempfile.TemporaryDirectory(prefix="edlm_sass_") as tmp:
        work = Path(tmp)
        if so is not None:
            cubins, ptxas = extract_so(so, archs, work, cuobjdump), {}
            source = f"shipped extension {so}"
            nvcc_line = "nvcc: as built by make cuda-build"
        else:
            nvcc = require_tool("nvcc")
            cubins, ptxas = build_tu(specs, archs, work, nvcc)
            source = "torch-free TU of the KERNELS table (python/bench/sass_report.py)"
            nvcc_line = f"nvcc {tool_version(nvcc)} ({nvcc}), flags: {' '.join(cuda_flags())}"
        results, unlisted = analyze(cubins, ptxas, specs, nvdisasm, cuobjdump, cxxfilt)
    missing = sorted({f"sm_{a} {s.label}" for a in archs for s in specs} -
                     {f"sm_{r.arch} {r.spec.label}" for r in results})
    header = [f"# SASS report, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
              "", f"- source: {source}; git {git_describe()}", f"- {nvcc_line}",
              f"- nvdisasm {tool_version(nvdisasm)}, cuobjdump {tool_version(cuobjdump)}",
              f"- archs: {', '.join(f'sm_{a}' for a in archs)}; how each figure is counted: the docstring of "
              "python/bench/sass_report.py"]
    if missing:
        header.append(f"- MISSING from the binary: {', '.join(missing)}")
    return Report(format_report(results, unlisted, header, V, latencies), results, unlisted, missing)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--so", type=Path, help="disassemble this built extension instead of the torch-free TU")
    ap.add_argument("--arch", default="90,80", help="comma-separated SM versions (default 90,80)")
    ap.add_argument("--vocab", type=int, default=DEFAULT_V, help="V for sample_kernel's dynamic shared memory")
    ap.add_argument("--latency-ns", default=",".join(f"{x:.0f}" for x in DEFAULT_LATENCY_NS),
                    help="DRAM latencies under load for Little's law (ns, comma-separated)")
    ap.add_argument("--kernels", default="", help="only kernels whose name contains one of these (comma-separated)")
    ap.add_argument("--out", type=Path, help="also write the report here (written whole, atomically)")
    args = ap.parse_args(argv)
    try:
        archs = [int(a) for a in args.arch.split(",") if a.strip()]
        latencies = tuple(float(x) for x in args.latency_ns.split(","))
    except ValueError as e:
        ap.error(f"--arch / --latency-ns: {e}")
    if not archs or any(a < 70 for a in archs):
        ap.error(f"--arch: SM versions >= 70 expected, got {args.arch!r}")
    if not latencies or any(not (x > 0 and math.isfinite(x)) for x in latencies):
        ap.error(f"--latency-ns: positive numbers expected, got {args.latency_ns!r}")
    if args.vocab < 1:
        ap.error(f"--vocab must be >= 1, got {args.vocab}")
    specs = [s for s in KERNELS if not args.kernels or any(k and k in s.name for k in args.kernels.split(","))]
    if not specs:
        ap.error(f"--kernels {args.kernels!r} matches no kernel")
    if args.so is not None and not args.so.is_file():
        ap.error(f"--so: no such file {args.so}")
    rep = make_report(archs, args.so, specs, args.vocab, latencies)
    sys.stdout.write(rep.text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(rep.text)
        os.replace(tmp_out, args.out)
    if rep.missing:
        print(f"sass_report: kernels missing from the binary: {', '.join(rep.missing)}", file=sys.stderr)
    return 1 if rep.missing else 0


if __name__ == "__main__":
    sys.exit(main())
