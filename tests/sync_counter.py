"""A counter of host synchronizations, CPU-testable: every call that makes the host wait
for a CUDA device when the tensors live there — a scalar read (``.item()``, ``bool()``,
``int()``, ``float()``), ``.tolist()`` / ``.numpy()``, ``torch.equal``, ``nonzero``,
boolean-mask indexing, ``masked_select``, ``repeat_interleave`` with tensor repeats,
``torch.cuda.synchronize`` — counted on any device, so a CPU run shows how many a CUDA
run makes (the ops' kernels themselves make none)."""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
_SYNCING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.equal.default, aten.masked_select.default,
            aten.repeat_interleave.Tensor, aten._unique2.default, aten.unique_consecutive.default}
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}


def _bool_index(args) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in (args[1] or ()))


class HostSyncCounter(TorchDispatchMode):
    """with HostSyncCounter() as c: ...; c.count (and c.seen, what counted)."""

    def __init__(self):
        super().__init__()
        self.count, self.seen, self._saved = 0, [], []

    def _hit(self, what: str) -> None:
        self.count += 1
        self.seen.append(what)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _SYNCING or (func in _INDEXING and _bool_index(args)):
            self._hit(str(func))
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        counter = self

        def counted(name, original):
            def wrapper(*args, **kwargs):
                counter._hit(name)
                return original(*args, **kwargs)
            return wrapper

        for owner, name in ((torch.Tensor, "tolist"), (torch.Tensor, "numpy"), (torch.cuda, "synchronize")):
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, counted(name, original))
        return super().__enter__()

    def __exit__(self, *exc):
        for owner, name, original in self._saved:
            setattr(owner, name, original)
        self._saved.clear()
        return super().__exit__(*exc)
