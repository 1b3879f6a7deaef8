"""Opt-in wall-clock timing of the parts of a loop (the sampler, ``hf.generate``, the
benchmarks): one small helper instead of a synchronize-and-time class per caller.

On CUDA, work is queued: a section's time is only its own if the device is idle when
it starts and has finished its work when it ends, so :class:`Timer` synchronizes the
device at both ends. Those are host synchronizations that an untimed run does not
make, which is why timing is opt-in: ``Timer(device, enabled=False)`` (or
:data:`NO_TIMER`) times nothing and synchronizes nothing, with the same interface.

    timer = Timer(device)
    with timer.section("model"):
        logits = model(x)
    timed_energy = timer.wrap(energy, "energy")  # every call timed under "energy"
    timer.seconds["model"], timer.calls["model"]
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Callable, Iterator

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (no-op off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Seconds and calls per named section, wall clock (time.perf_counter).

    Sections may nest and repeat; their times add up per name. With ``enabled=False``
    nothing is timed and nothing is synchronized (seconds stay 0)."""

    def __init__(self, device: torch.device | str = "cpu", enabled: bool = True):
        self.device = torch.device(device)
        self.enabled = enabled
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the block under `name` (synchronizing CUDA before and after)."""
        if not self.enabled:
            yield
            return
        synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - t0
            self.calls[name] += 1

    def wrap(self, fn: Callable, name: str) -> Callable:
        """fn with every call timed under `name` (fn itself when timing is off)."""
        if not self.enabled:
            return fn

        def timed(*args, **kwargs):
            with self.section(name):
                return fn(*args, **kwargs)

        return timed


#: A Timer that times nothing (no host synchronization).
NO_TIMER = Timer(enabled=False)
