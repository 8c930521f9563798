"""One decode step over a vLLM-style paged KV cache with padec, checked against PyTorch's
scaled_dot_product_attention on the cache gathered through the block table.

The cache is held the way vLLM's FlashAttention backend holds it: one tensor
[2, num_blocks, block_size, num_kv_heads, head_size] (the K and V pools, NHD layout), a block
table [batch, max_blocks_per_seq] of int32 block ids, and seq_lens. Runs on the GPU when torch
sees one and libpadec was built with CUDA, otherwise on the CPU through numpy arrays.

    pip install .   # once, at the root (or, after `make`, PYTHONPATH=python)
    python python/examples/vllm_style.py [--kv-dtype bf16|fp16|fp8] [--batch N] [--cpu]
"""

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

import padec

NUM_Q_HEADS, NUM_KV_HEADS, HEAD_SIZE, BLOCK_SIZE = 32, 8, 128, 16
CACHE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.float8_e4m3fn}
K_SCALE, V_SCALE = 0.05, 0.04  # fp8 only: per-tensor scales, as vLLM's layer._k_scale/_v_scale


def bits_dtype(dtype: torch.dtype) -> torch.dtype:
    """An integer dtype of the same size: indexing works on it for every cache dtype."""
    return torch.int16 if dtype.itemsize == 2 else torch.uint8


def write_slots(cache: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    """vLLM's reshape_and_cache: row i of values ([tokens, heads, head_size]) goes to slot
    slots[i] of cache ([num_blocks * block_size, heads, head_size])."""
    bits = bits_dtype(cache.dtype)
    cache.view(bits)[slots] = values.to(cache.dtype).view(bits)


def read_slots(cache: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    bits = bits_dtype(cache.dtype)
    return cache.view(bits)[slots].view(cache.dtype).float()


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor as the numpy array padec takes, without a copy (bf16 as uint16 bits)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    if tensor.dtype == torch.float8_e4m3fn:
        return tensor.view(torch.uint8).numpy()
    return tensor.numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kv-dtype", choices=CACHE_DTYPES, default="bf16")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even with a GPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    use_cuda = not args.cpu and torch.cuda.is_available() and padec.built_with_cuda()
    device = torch.device("cuda" if use_cuda else "cpu")
    cache_dtype = CACHE_DTYPES[args.kv_dtype]
    fp8 = cache_dtype == torch.float8_e4m3fn
    k_scale, v_scale = (K_SCALE, V_SCALE) if fp8 else (1.0, 1.0)
    gen = torch.Generator().manual_seed(args.seed)

    # A skewed batch: one long sequence among short ones. seq_lens count the new token.
    seq_lens = torch.randint(20, 600, (args.batch,), generator=gen, dtype=torch.int32)
    seq_lens[0] = 6000
    max_blocks = -(-int(seq_lens.max()) // BLOCK_SIZE)
    num_blocks = args.batch * max_blocks + 32
    block_table = (torch.randperm(num_blocks, generator=gen)[:args.batch * max_blocks]
                   .view(args.batch, max_blocks).to(torch.int32))
    kv_cache = torch.zeros(2, num_blocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_SIZE, dtype=cache_dtype,
                           device=device)
    key_cache = kv_cache[0].view(-1, NUM_KV_HEADS, HEAD_SIZE)
    value_cache = kv_cache[1].view(-1, NUM_KV_HEADS, HEAD_SIZE)

    def slots_of(b: int, positions: torch.Tensor) -> torch.Tensor:
        return (block_table[b, positions // BLOCK_SIZE].long() * BLOCK_SIZE
                + positions % BLOCK_SIZE).to(device)

    # Prefill wrote every earlier token; the decode step writes the new token's K and V, then
    # attends over the whole sequence.
    for positions in ([torch.arange(int(n) - 1) for n in seq_lens],
                      [torch.tensor([int(n) - 1]) for n in seq_lens]):
        for b, pos in enumerate(positions):
            k = torch.randn(len(pos), NUM_KV_HEADS, HEAD_SIZE, generator=gen) / k_scale
            v = torch.randn(len(pos), NUM_KV_HEADS, HEAD_SIZE, generator=gen) / v_scale
            write_slots(key_cache, slots_of(b, pos), k.to(device))
            write_slots(value_cache, slots_of(b, pos), v.to(device))
    query = torch.randn(args.batch, NUM_Q_HEADS, HEAD_SIZE, generator=gen).to(torch.bfloat16)

    params = padec.Params(
        num_q_heads=NUM_Q_HEADS, num_kv_heads=NUM_KV_HEADS, head_dim=HEAD_SIZE,
        page_size=BLOCK_SIZE, kv_dtype=cache_dtype, q_dtype=torch.bfloat16,
        o_dtype=torch.bfloat16,
        fp8_scale_mode=padec.Fp8ScaleMode.PER_TENSOR if fp8 else padec.Fp8ScaleMode.NONE,
        k_scale=k_scale, v_scale=v_scale)
    # The block table as CSR: sequence b owns row b, so page_indptr[b] = b * max_blocks.
    page_indptr = torch.arange(args.batch + 1, dtype=torch.int32) * max_blocks
    workers = padec.recommended_workers(params, torch.cuda.current_device()) if use_cuda else 64
    plan = padec.build_plan(params, seq_lens, num_workers=workers)  # host seq_lens, no sync

    if use_cuda:
        output = padec.run_cuda(params, plan, query.to(device), kv_cache[0], kv_cache[1],
                                page_indptr.to(device), block_table.to(device),
                                seq_lens.to(device))
    else:
        result = padec.run_cpu(params, plan, as_numpy(query), as_numpy(kv_cache[0]),
                               as_numpy(kv_cache[1]), page_indptr.numpy(), block_table.numpy(),
                               seq_lens.numpy())
        output = torch.from_numpy(result.view(np.int16)).view(torch.bfloat16)

    group = NUM_Q_HEADS // NUM_KV_HEADS
    worst, failed = 0.0, False
    for b, n in enumerate(seq_lens.tolist()):
        slots = slots_of(b, torch.arange(n))
        k = (read_slots(key_cache, slots) * k_scale).repeat_interleave(group, dim=1)
        v = (read_slots(value_cache, slots) * v_scale).repeat_interleave(group, dim=1)
        q = query[b].to(device).float()[:, None, :]  # [heads, 1, head_size]
        expected = F.scaled_dot_product_attention(q, k.transpose(0, 1), v.transpose(0, 1))[:, 0]
        error = (output[b].float() - expected).abs()
        # bf16 output rounding (half an ulp) plus the kernel's accumulation error.
        failed |= bool((error > 2**-8 * expected.abs() + 2e-3).any())
        worst = max(worst, float(error.max()))

    lens = seq_lens.tolist()
    print(f"padec {padec.library_version()} on {'GPU' if use_cuda else 'CPU'}: batch {args.batch}, "
          f"{args.kv_dtype} cache, seq_lens {lens[:4]}{'...' if len(lens) > 4 else ''}, {plan}")
    print(f"max |padec - sdpa| = {worst:.3g}: {'FAIL' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
