"""Models: tiny randomly initialised transformers for tests and examples."""
from .tiny import TinyAR, TinyDenoiser, TinyEnergyNet

__all__ = ["TinyDenoiser", "TinyAR", "TinyEnergyNet"]
