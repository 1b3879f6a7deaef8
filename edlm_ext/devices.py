"""The device flag of the command line and what a record says about the hardware."""
from __future__ import annotations

import platform
from pathlib import Path

import torch

from .errors import InputError


def parse_device(text: str, flag: str = "--device") -> torch.device:
    """`text` as a torch.device this build can run on (InputError naming the flag otherwise)."""
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        raise InputError(f"{flag}: unknown device {text!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise InputError(f"{flag} {text}: edlm_ext runs on cpu or cuda, not {dev.type}")
    from . import build_info

    if not torch.cuda.is_available():
        raise InputError(f"{flag} {text}: no CUDA device is available (torch {torch.__version__}"
                         f"{', a CPU-only build' if torch.version.cuda is None else ''})")
    if "cuda" not in build_info()["backends"]:
        raise InputError(f"{flag} {text}: this edlm_ext was built without its CUDA kernels "
                         "(rebuild with EDLM_CUDA=1, see README 'Building')")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"{flag} {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def describe(device: torch.device | str) -> str:
    """The hardware behind a device: the GPU's name, or the CPU's model and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"
