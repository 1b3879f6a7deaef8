"""Shared fixtures: the devices to run on (CUDA only where a GPU is present)."""
import pytest
import torch

import edlm_ext

HAS_CUDA = torch.cuda.is_available() and "cuda" in edlm_ext.build_info()["backends"]
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and a CUDA build of edlm_ext")


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
