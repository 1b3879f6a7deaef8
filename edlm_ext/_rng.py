"""Random streams for the ops and the loops built on them: one seed rule everywhere.

The kernels draw from Philox4x32-10 keyed by a 2-element int64 tensor
``[seed, offset]`` that lives on the op's device (see csrc/include/edlm/philox.h).

* ``seed=int`` (an op): key = (seed, 0), built on the op's device without a
  host-to-device copy (CUDA-graph capturable). The same seed gives the same draws on
  CPU and CUDA.
* ``seed=int`` (a loop of op calls: :func:`edlm_ext.sample`, :func:`edlm_ext.propose_and_resample`,
  the integrations' generate / update functions): the n-th call of the loop draws with
  the seed :func:`derive_seed` (seed, n), so the whole loop draws the same on CPU and
  CUDA too; draws the ops cannot make (uniform confidences, an inverse-CDF row draw) come
  from a CPU generator seeded the same way and are copied to the device.
* ``generator=`` (or neither, for an op: the device's default generator): the key is
  drawn from the generator with ``torch.randint`` on the op's device, so the generator
  advances exactly as it does for torch's own random ops, two calls never share noise,
  no host synchronization happens, and CUDA-graph capture works. Its draws are the
  device's: a CPU and a CUDA generator with the same seed draw differently.

Passing both ``generator=`` and ``seed=`` is an error everywhere.
"""
from __future__ import annotations

import os

import torch

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_M64 = 2**64 - 1


def check_seed(seed) -> int:
    """seed as an int that fits in 64 bits, [-2^63, 2^64) (TypeError / ValueError otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not (_I64_MIN <= seed < 2**64):
        raise ValueError(f"seed must fit in 64 bits, [-2^63, 2^64), got {seed}")
    return seed


def _check_generator(generator, seed) -> None:
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either generator= or seed=, not both")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def rng_tensor(device: torch.device, generator: torch.Generator | None, seed: int | None) -> torch.Tensor:
    """The int64 ``[seed, offset]`` tensor on ``device`` for one op call."""
    _check_generator(generator, seed)
    if seed is not None:
        seed = check_seed(seed)
        if seed > _I64_MAX:
            seed -= 2**64
        # Built on the device from a scalar (a fill kernel), never copied from host
        # memory: the seed path is capturable in a CUDA graph (the seed is then baked
        # into the graph: every replay draws the same tokens, as the same seed should).
        key = torch.zeros(2, dtype=torch.int64, device=device)
        key[0] = seed
        return key
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the op runs on {device}")
    key = torch.randint(_I64_MIN, _I64_MAX, (1,), generator=generator, device=device, dtype=torch.int64)
    return torch.cat([key, key.new_zeros(1)])


def derive_seed(seed: int, n: int) -> int:
    """The seed of call n of a loop seeded with `seed`: SplitMix64 of seed + (n + 1) * golden
    ratio, a bijection of the 64-bit state, so distinct calls get distinct Philox keys."""
    z = (seed + (n + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class RandomStream:
    """The random stream of a loop of op calls, under the one seed rule (module docstring).

    Args:
        device: where the loop's tensors live.
        generator: a torch.Generator on that device type, or None.
        seed: an int instead of ``generator`` (both None: a fresh seed from os.urandom).
    """

    def __init__(self, device: torch.device | str, generator: torch.Generator | None = None,
                 seed: int | None = None):
        _check_generator(generator, seed)
        self.device = torch.device(device)
        if generator is not None and generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device} but the loop runs on {self.device}")
        self.generator = generator
        self.seed = None if generator is not None else (
            check_seed(seed) % 2**64 if seed is not None else int.from_bytes(os.urandom(8), "little"))
        self.calls = 0

    def next(self) -> dict:
        """The keyword arguments (``seed=`` or ``generator=``) of the loop's next op call."""
        if self.generator is not None:
            return {"generator": self.generator}
        self.calls += 1
        return {"seed": derive_seed(self.seed, self.calls - 1)}

    def rand(self, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniforms in [0, 1) of `shape` on the loop's device, for draws the ops do not make:
        from the generator, or (seed rule) from a CPU generator seeded with the next call's
        seed, copied to the device."""
        if self.generator is not None:
            return torch.rand(shape, dtype=dtype, generator=self.generator, device=self.device)
        cpu = torch.Generator().manual_seed(self.next()["seed"])
        return torch.rand(shape, dtype=dtype, generator=cpu).to(self.device)
