"""Models: RoPE transformers for real text (transformer.py) and tiny randomly
initialised ones for tests and examples (tiny.py)."""
from .tiny import TinyAR, TinyDenoiser, TinyEnergyNet
from .transformer import ARModel, Denoiser, EnergyNet, ModelConfig

__all__ = ["ModelConfig", "Denoiser", "ARModel", "EnergyNet", "TinyDenoiser", "TinyAR", "TinyEnergyNet"]
