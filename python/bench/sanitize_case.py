"""A small CUDA workload for compute-sanitizer (memcheck / racecheck): every code
path of the CUDA kernels on shapes that stress alignment, tiny and large V, greedy,
invalid rows, filters, entropy, k proposals, resampling; unmask and unmask_confident
on rows around the block size.
Run: compute-sanitizer --tool memcheck python python/bench/sanitize_case.py"""
import torch

import edlm_ext


def main():
    dev = "cuda"
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for V in (1, 2, 3, 17, 999, 4097, 50258):
            base = torch.randn(3, 5, V, dtype=dtype, device=dev)
            for logits in (base, base[:, 1::2]):  # aligned and misaligned row starts
                B, L, _ = logits.shape
                mask_id = V // 2
                x_t = torch.randint(0, V, (B, L), device=dev)
                x_t[:, ::2] = mask_id
                for temperature in (1.0, 0.0, 0.5):
                    edlm_ext.masked_sample(logits, x_t, mask_id, temperature=temperature, seed=V, check=False)
    bad = torch.randn(2, 4, 300, device=dev)
    bad[0, 0, 5] = float("nan")
    bad[0, 1] = float("-inf")
    bad[1, 0, 7] = float("inf")
    x_t = torch.zeros(2, 4, dtype=torch.long, device=dev)
    x_t[1, 3] = 1000  # out-of-range id
    edlm_ext.masked_sample(bad, x_t, 0, check=False, seed=1)
    edlm_ext.masked_sample(bad, x_t, 0, check=False, seed=1, top_p=0.9, return_entropy=True)
    proposal_cases(dev)
    unmask_cases(dev)
    torch.cuda.synchronize()
    print("sanitize_case: done")


def proposal_cases(dev):
    """Filters (threshold kernel), entropy, k proposals (several draw chunks), resampling."""
    for dtype in (torch.float32, torch.bfloat16):
        for V in (2, 999, 50258):
            logits = torch.randn(2, 6, V, dtype=dtype, device=dev)[:, 1:]
            x_t = torch.full((2, 5), V - 1, dtype=torch.long, device=dev)
            for filters in ({"top_k": 3}, {"top_p": 0.7}, {"min_p": 0.1}, {"top_k": 50, "top_p": 0.9}):
                for temperature in (1.0, 0.0):
                    edlm_ext.masked_sample(logits, x_t, V - 1, temperature=temperature, seed=2, check=False,
                                           return_entropy=True, **filters)
            for k in (1, 9, 20):
                props, log_q = edlm_ext.sample_proposals(logits, x_t, V - 1, k, seed=3, check=False)
                log_w = torch.randn(2, k, device=dev, dtype=torch.float64)
                log_w[0, 0] = float("-inf")
                edlm_ext.importance_resample(log_w, props, seed=4, check=False)
    bad_w = torch.tensor([[float("nan"), 0.0], [float("-inf"), float("-inf")]], device=dev)
    edlm_ext.importance_resample(bad_w, torch.zeros(2, 2, 3, dtype=torch.long, device=dev), seed=0, check=False)


def unmask_cases(dev):
    """unmask and unmask_confident: row lengths around the block size, strided inputs,
    every confidence dtype, ties, -inf and NaN confidences, both rules."""
    for L in (1, 255, 256, 257, 3000):
        x_t = torch.randint(0, 4, (3, 2 * L), device=dev)[:, ::2]  # strided rows
        x0 = torch.randint(10, 20, (3, L), device=dev)
        edlm_ext.unmask(x_t, x0, 0, torch.tensor([0.0, 0.5, 1.0], device=dev), seed=L)
        for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            conf = (torch.randint(0, 5, (3, L), device=dev) / 4).to(dtype)
            conf[:, ::7] = float("-inf")
            conf[:, 1::11] = float("nan")
            n = torch.tensor([0, L // 3, L], device=dev)
            edlm_ext.unmask_confident(x_t, x0, conf, 0, n=n, check=False)
            for threshold in (0.5, 2.0):
                edlm_ext.unmask_confident(x_t, x0, conf, 0, threshold=threshold, check=False)


if __name__ == "__main__":
    main()
