"""The counter-based generator: known-answer vectors, the float64 replay in
edlm_ext.reference, and how seeds and generators pick streams."""
import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext import reference
from edlm_ext._rng import rng_tensor

# Philox4x32-10 known-answer vectors (Random123 kat_vectors): counter, key -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    got = torch.ops.edlm_ext_testing.philox4x32(torch.tensor([ctr]), torch.tensor(key))
    assert tuple(got[0].tolist()) == expected
    assert tuple(int(v) for v in reference.philox4x32_10(np.array([ctr]), key)[0]) == expected


@pytest.mark.parametrize("seed,offset", [(0, 0), (1, 5), (-1, 2**40 + 3), (2**62 + 12345, 7)])
@pytest.mark.parametrize("stream", [0, 3, reference.DOMAIN_UNMASK, reference.DOMAIN_RESAMPLE + 1])
def test_row_uniforms_match_reference(seed, offset, stream):
    rng = torch.tensor([seed, offset])
    got = torch.ops.edlm_ext_testing.row_uniforms(rng, 4096, stream)
    want = reference.row_uniforms(rng, 4096, stream)
    assert torch.equal(got, want)
    assert bool(((got > 0) & (got < 1)).all())


def test_seed_ints_wrap_to_64_bits():
    a = rng_tensor(torch.device("cpu"), None, 2**64 - 1)
    b = rng_tensor(torch.device("cpu"), None, -1)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="64 bits"):
        rng_tensor(torch.device("cpu"), None, 2**64)
    with pytest.raises(TypeError, match="seed"):
        rng_tensor(torch.device("cpu"), None, 1.5)
    with pytest.raises(ValueError, match="not both"):
        rng_tensor(torch.device("cpu"), torch.Generator(), 3)


def _sample(gen=None, seed=None):
    logits = torch.zeros(4, 64, 1000)
    x_t = torch.zeros(4, 64, dtype=torch.long)
    return edlm_ext.masked_sample(logits, x_t, 0, generator=gen, seed=seed)[0]


def test_generator_advances_and_replays():
    g = torch.Generator().manual_seed(11)
    a, b = _sample(g), _sample(g)
    assert not torch.equal(a, b), "two calls on one generator reused noise"
    g.manual_seed(11)
    assert torch.equal(_sample(g), a)
    assert torch.equal(_sample(g), b)


def test_default_generator_follows_manual_seed():
    torch.manual_seed(5)
    a = _sample()
    torch.manual_seed(5)
    assert torch.equal(_sample(), a)
    assert not torch.equal(_sample(), a)


def test_generator_device_must_match():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU for a CUDA generator")
    with pytest.raises(ValueError, match="generator"):
        _sample(torch.Generator(device="cuda"))


def _ops_reading(device: torch.device, fn) -> list[str]:
    """Ops fn dispatches that take a tensor from a device other than `device` (a host copy)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.foreign = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            flat = torch.utils._pytree.tree_leaves((args, kwargs or {}))
            if any(isinstance(a, torch.Tensor) and a.device != device for a in flat):
                self.foreign.append(str(func))
            return func(*args, **(kwargs or {}))

    with Log() as log:
        fn()
    return log.foreign


@pytest.mark.parametrize("seed", [0, -5, 2**63 + 7])
def test_seed_key_is_built_on_device_without_a_host_copy(seed):
    # A CUDA graph cannot capture a host-to-device copy; the seed path builds its key from
    # scalars on the device itself (checked here on the meta device, which has no data).
    meta = torch.device("meta")
    assert _ops_reading(meta, lambda: rng_tensor(meta, None, seed)) == []
    key = rng_tensor(torch.device("cpu"), None, seed)
    assert key.tolist() == [seed - 2**64 if seed >= 2**63 else seed, 0]
    # power: a key made on the host and moved (what torch.tensor(data, device=...) does
    # inside its factory, out of the dispatcher's sight) is flagged
    assert _ops_reading(meta, lambda: torch.tensor([seed % 2**63, 0], dtype=torch.int64).to(meta)) != []
