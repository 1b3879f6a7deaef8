"""Models: RoPE transformers for real text (transformer.py), tiny randomly initialised
ones for tests and examples (tiny.py), and model folders — build, save, load (files.py)."""
from .files import KINDS, build_model, load_model, model_tokenizer, read_model_config, save_model
from .tiny import TinyAR, TinyDenoiser, TinyEnergyNet
from .transformer import ARModel, Denoiser, EnergyNet, ModelConfig

__all__ = ["ModelConfig", "Denoiser", "ARModel", "EnergyNet", "TinyDenoiser", "TinyAR", "TinyEnergyNet", "KINDS",
           "build_model", "load_model", "save_model", "read_model_config", "model_tokenizer"]
