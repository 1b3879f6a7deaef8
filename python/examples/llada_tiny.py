"""LLaDA-style and Dream-style generation with edlm_ext's kernels (tiny random
Hugging Face models, CPU): low-confidence remasking, Fast-dLLM's threshold, and EDLM
importance sampling.

    python python/examples/llada_tiny.py
"""
import sys
from pathlib import Path

import torch
import transformers

try:
    import edlm_ext
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import edlm_ext
from edlm_ext.integrations import hf

V, MASK = 200, 199


def main() -> None:
    torch.manual_seed(0)
    llada = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128)).eval()
    dream = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, max_position_embeddings=128)).eval()
    prompt = torch.randint(0, MASK, (2, 8), generator=torch.Generator().manual_seed(0))
    common = dict(mask_id=MASK, gen_length=32, block_length=8)

    runs = {
        "LLaDA low-confidence, greedy": lambda: hf.generate(llada, prompt, steps=32, temperature=0.0, **common),
        "LLaDA low-confidence, T=1": lambda: hf.generate(llada, prompt, steps=16, temperature=1.0, seed=0, **common),
        "Fast-dLLM threshold 0.05": lambda: hf.generate(llada, prompt, threshold=0.05, temperature=0.0, **common),
        "Dream-style (shifted logits)": lambda: hf.generate(dream, prompt, steps=32, shift_logits=True, seed=0,
                                                            temperature=1.0, **common),
        "LLaDA + EDLM-AR (k=4, 2 IS steps per block)": lambda: hf.generate(
            llada, prompt, steps=16, temperature=1.0, seed=0, k=4, is_steps=2,
            energy=edlm_ext.AREnergy(lambda ids: dream(ids).logits), **common),
    }
    for name, run in runs.items():
        out = run()
        print(f"{name:45s} calls={out.model_calls:3d} model {out.time_model * 1e3:7.1f} ms, "
              f"sampling {out.time_sampling * 1e3:6.1f} ms  answer[0]={out.tokens[0, 8:20].tolist()}")


if __name__ == "__main__":
    main()
