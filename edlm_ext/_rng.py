"""Random streams for the ops: every op takes ``generator=`` or ``seed=``.

The kernels draw from Philox4x32-10 keyed by a 2-element int64 tensor
``[seed, offset]`` that lives on the op's device (see csrc/include/edlm/philox.h).

* ``seed=int``: key = (seed, 0), built on the op's device without a host-to-device copy
  (CUDA-graph capturable). The same seed gives the same draws on CPU and CUDA.
* ``generator=`` (or neither: the device's default generator): the key is drawn
  from the generator with ``torch.randint`` on the op's device, so the generator
  advances exactly as it does for torch's own random ops, two calls never share
  noise, no host synchronization happens, and CUDA-graph capture works.
"""
from __future__ import annotations

import torch

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def check_seed(seed) -> int:
    """seed as an int that fits in 64 bits, [-2^63, 2^64) (TypeError / ValueError otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not (_I64_MIN <= seed < 2**64):
        raise ValueError(f"seed must fit in 64 bits, [-2^63, 2^64), got {seed}")
    return seed


def rng_tensor(device: torch.device, generator: torch.Generator | None, seed: int | None) -> torch.Tensor:
    """The int64 ``[seed, offset]`` tensor on ``device`` for one op call."""
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either generator= or seed=, not both")
        seed = check_seed(seed)
        if seed > _I64_MAX:
            seed -= 2**64
        # Built on the device from a scalar (a fill kernel), never copied from host
        # memory: the seed path is capturable in a CUDA graph (the seed is then baked
        # into the graph: every replay draws the same tokens, as the same seed should).
        key = torch.zeros(2, dtype=torch.int64, device=device)
        key[0] = seed
        return key
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != device.type:
            raise ValueError(f"generator is on {generator.device} but the op runs on {device}")
    key = torch.randint(_I64_MIN, _I64_MAX, (1,), generator=generator, device=device, dtype=torch.int64)
    return torch.cat([key, key.new_zeros(1)])


def resolve_generator(device: torch.device, generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    """One generator for a multi-op loop (sampler, generate): the given one, or a new
    one on `device` seeded with `seed` (or from fresh entropy when seed is None)."""
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either generator= or seed=, not both")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    gen = torch.Generator(device=device)
    if seed is not None:
        gen.manual_seed(check_seed(seed))
    else:
        gen.seed()
    return gen
