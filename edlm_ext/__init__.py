"""edlm_ext: exact, fast sampling kernels for masked diffusion language models.

Ops (CPU and CUDA, registered under torch.ops.edlm_ext):
    masked_sample(logits, x_t, mask_id, ...) -> (x0, logp)
    sample_proposals(logits, x_t, mask_id, k, ...) -> (proposals, log_q)
    importance_resample(log_w, proposals, ...) -> ResampleResult(weights, log_z, ess, index, chosen)
    unmask(x_t, x0, mask_id, p, ...) -> x_s
    unmask_confident(x_t, x0, confidence, mask_id, n=... | threshold=...) -> x_s
Sampler: sample(denoiser, ...), propose_and_resample(...), propose_unmask_first(...); energies AREnergy, NCEEnergy; train_nce.
Build information: build_info().
Integrations (imported on demand): edlm_ext.integrations.mdlm (MDLM drop-ins, checkpoint
loader), .hf (LLaDA's generate), .fast_dllm, .dream (drop-ins for their generate). Command line:
python -m edlm_ext sample ... (edlm_ext.cli; works under torchrun).
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (registers torch.ops.edlm_ext.*)
from .energy import AREnergy, NCEEnergy, train_nce
from .ops import (
    ResampleResult,
    importance_resample,
    masked_sample,
    sample_proposals,
    unmask,
    unmask_confident,
)
from ._version import __version__
from .sampler import ISDiagnostics, SampleOutput, SampleStats, propose_and_resample, propose_unmask_first, sample


def build_info() -> dict:
    """What this build of edlm_ext contains.

    Returns a dict with ``backends`` (list: "cpu", and "cuda" when the CUDA kernels
    were compiled), ``torch_version`` (the torch it was built against, which must
    match the one imported), ``cuda_version`` (nvcc's version, or None) and
    ``cuda_archs`` (TORCH_CUDA_ARCH_LIST syntax, "" for CPU builds).
    """
    return dict(_C.build_info())


__all__ = [
    "masked_sample",
    "sample_proposals",
    "importance_resample",
    "ResampleResult",
    "unmask",
    "unmask_confident",
    "propose_and_resample",
    "propose_unmask_first",
    "sample",
    "ISDiagnostics",
    "SampleOutput",
    "SampleStats",
    "AREnergy",
    "NCEEnergy",
    "train_nce",
    "build_info",
    "__version__",
]
