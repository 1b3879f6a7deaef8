"""The LLaDA / Fast-dLLM / Dream drop-ins on tiny random models (CPU): each upstream call
as its repository writes it, with only the import changed, plus EDLM importance sampling.

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
from edlm_ext.integrations import dream, fast_dllm, hf, stock

V, MASK = 200, 199


def main() -> None:
    torch.manual_seed(0)
    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, initializer_range=0.5)).eval()
    llada = stock.models.NoMaskPrediction(bert, MASK)  # a stand-in for LLaDA-8B
    dream_model = dream.patch(stock.models.TinyDream(V, MASK))  # model.diffusion_generate is now ours
    ar = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, max_position_embeddings=128)).eval()
    input_ids = torch.randint(0, MASK, (2, 8), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)

    # LLaDA (generate.py): from generate import generate  ->  from edlm_ext.integrations.hf import generate
    out = hf.generate(llada, input_ids, attention_mask, steps=32, gen_length=32, block_length=8, temperature=0.,
                      cfg_scale=0., remasking="low_confidence", mask_id=MASK)
    print("LLaDA greedy      ", out[0, 8:20].tolist())
    # Fast-dLLM (llada/generate.py): from generate import generate  ->  from edlm_ext.integrations.fast_dllm import ...
    out, nfe = fast_dllm.generate(llada, input_ids, steps=32, gen_length=32, block_length=8, temperature=0.,
                                  remasking="low_confidence", mask_id=MASK, threshold=0.05)
    print(f"Fast-dLLM, {nfe:2d} nfe ", out[0, 8:20].tolist())
    # Dream: model.diffusion_generate(...) unchanged after dream.patch(model)
    out = dream_model.diffusion_generate(input_ids, attention_mask=attention_mask, max_new_tokens=32,
                                         output_history=True, return_dict_in_generate=True, steps=32,
                                         temperature=0.2, top_p=0.95, alg="entropy", alg_temp=0., seed=0)
    print("Dream entropy     ", out.sequences[0, 8:20].tolist(), f"({len(out.history)} steps of history)")
    # EDLM importance sampling inside LLaDA's loop: k proposals per step, weighted by an AR energy
    rich = hf.generate(llada, input_ids, attention_mask, 16, 32, 8, 1.0, mask_id=MASK, seed=0, k=4, is_steps=2,
                       energy=edlm_ext.AREnergy(lambda ids: ar(ids).logits), return_dict=True, timing=True)
    print("LLaDA + EDLM-AR   ", rich.tokens[0, 8:20].tolist(),
          f"model {rich.time_model * 1e3:.1f} ms, sampling {rich.time_sampling * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
