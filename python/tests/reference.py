"""Test inputs and a float64 reference for the Python tests.

The reference gathers K and V through the block table with its own loop and computes attention
in double precision from the decoded (rounded) inputs; it shares nothing with padec.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

import padec
from padec import DType, Fp8ScaleMode, Layout

# Bit patterns written where padec must not read: unused pages and slots past kv_len.
POISON = {DType.BF16: 0x7FC0, DType.FP16: 0x7E00, DType.E4M3: 0x7F}
STORAGE = {DType.BF16: np.uint16, DType.FP16: np.float16, DType.FP32: np.float32,
           DType.E4M3: np.uint8}


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """float -> bf16 bits (uint16), round to nearest even."""
    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def e4m3_values(codes: np.ndarray) -> np.ndarray:
    """fp8 e4m3 (OCP "fn") codes -> float64."""
    c = codes.astype(np.int64)
    exponent, mantissa = (c >> 3) & 0xF, c & 7
    magnitude = np.where(exponent == 0, mantissa / 8.0 * 2.0**-6,
                         (1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7))
    magnitude = np.where((c & 0x7F) == 0x7F, np.nan, magnitude)
    return np.where(c & 0x80, -magnitude, magnitude)


def decode(stored: np.ndarray, dtype: DType) -> np.ndarray:
    """padec storage (bf16 bits, float16, float32, e4m3 codes) -> float64."""
    if dtype == DType.BF16:
        return (stored.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype == DType.E4M3:
        return e4m3_values(stored)
    return stored.astype(np.float64)


def random_values(rng: np.random.Generator, shape, dtype: DType) -> np.ndarray:
    """Random storage of a dtype: normal values, or fp8 codes of magnitude below 4."""
    if dtype == DType.E4M3:
        sign = rng.integers(0, 2, shape) << 7
        exponent = rng.integers(0, 9, shape) << 3
        return (sign | exponent | rng.integers(0, 8, shape)).astype(np.uint8)
    values = rng.standard_normal(shape).astype(np.float32)
    return bf16_bits(values) if dtype == DType.BF16 else values.astype(STORAGE[dtype])


@dataclasses.dataclass
class Case:
    """The inputs of one run, as padec takes them (numpy storage arrays)."""

    params: padec.Params
    q: np.ndarray
    k_pages: np.ndarray
    v_pages: np.ndarray
    page_indptr: np.ndarray
    page_indices: np.ndarray
    kv_lens: np.ndarray
    k_scales: np.ndarray | None = None
    v_scales: np.ndarray | None = None

    @property
    def inputs(self) -> tuple:
        return (self.q, self.k_pages, self.v_pages, self.page_indptr, self.page_indices,
                self.kv_lens)

    @property
    def scales(self) -> dict:
        return {"k_scales": self.k_scales, "v_scales": self.v_scales}


def make_case(rng: np.random.Generator, params: padec.Params, kv_lens, *, extra_pages: int = 3,
              block_table: bool = False) -> Case:
    """Random inputs: each sequence gets its pages at random places of a shared pool; the other
    pages and the slots past each kv_len hold NaN patterns. block_table: page_indices as a 2-D
    [batch, S] table (unused entries 0) with page_indptr[b] = b * S."""
    p = params
    kv_lens = np.asarray(kv_lens, dtype=np.int32)
    batch, q_len = len(kv_lens), p.q_len or 1
    pages_per_seq = [max(1, -(-int(n) // p.page_size)) for n in kv_lens]
    num_pages = sum(pages_per_seq) + extra_pages
    order = rng.permutation(num_pages).astype(np.int32)
    if block_table:
        stride = max(pages_per_seq) + 1
        table = np.zeros((batch, stride), dtype=np.int32)
        start = 0
        for b, count in enumerate(pages_per_seq):
            table[b, :count] = order[start:start + count]
            start += count
        page_indptr = (np.arange(batch + 1) * stride).astype(np.int32)
        page_indices = table
    else:
        page_indptr = np.concatenate([[0], np.cumsum(pages_per_seq)]).astype(np.int32)
        page_indices = order[:page_indptr[-1]].copy()

    if p.kv_layout == Layout.NHD:
        pool_shape = (num_pages, p.page_size, p.num_kv_heads, p.head_dim)
    else:
        pool_shape = (num_pages, p.num_kv_heads, p.page_size, p.head_dim)
    k_pages = random_values(rng, pool_shape, p.kv_dtype)
    v_pages = random_values(rng, pool_shape, p.kv_dtype)
    poison = np.array(POISON[p.kv_dtype], dtype=np.uint16 if p.kv_dtype != DType.E4M3 else np.uint8)
    used = np.zeros((num_pages, p.page_size), dtype=bool)
    flat = page_indices.reshape(-1)
    for b, length in enumerate(kv_lens):
        for t in range(int(length)):
            used[flat[page_indptr[b] + t // p.page_size], t % p.page_size] = True
    for pages in (k_pages, v_pages):
        raw = pages.view(poison.dtype)
        if p.kv_layout == Layout.NHD:
            raw[~used] = poison
        else:
            raw.transpose(0, 2, 1, 3)[~used] = poison

    q = random_values(rng, (batch * q_len, p.num_q_heads, p.head_dim), p.q_dtype)
    case = Case(p, q, k_pages, v_pages, page_indptr, page_indices, kv_lens)
    if p.fp8_scale_mode == Fp8ScaleMode.PER_TOKEN:
        shape = (num_pages, p.num_kv_heads, p.page_size)
        case.k_scales = rng.uniform(0.25, 2.0, shape).astype(np.float32)
        case.v_scales = rng.uniform(0.25, 2.0, shape).astype(np.float32)
    elif p.fp8_scale_mode == Fp8ScaleMode.PER_TENSOR_DEVICE:
        case.k_scales = np.array([0.375], dtype=np.float32)
        case.v_scales = np.array([1.75], dtype=np.float32)
    return case


def reference(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """float64 output [tokens, heads, dim] and natural-log LSE [tokens, heads]; rows that see no
    token get 0 and -inf."""
    p = case.params
    q_len, group = p.q_len or 1, p.num_q_heads // p.num_kv_heads
    scale = p.softmax_scale or 1.0 / math.sqrt(p.head_dim)
    q = decode(case.q, p.q_dtype)
    k_pool, v_pool = decode(case.k_pages, p.kv_dtype), decode(case.v_pages, p.kv_dtype)
    out = np.zeros(q.shape)
    lse = np.full(q.shape[:2], -np.inf)
    indices = case.page_indices.reshape(-1)
    for b, length in enumerate(case.kv_lens):
        length = int(length)
        positions = np.arange(length)
        pages = indices[case.page_indptr[b] + positions // p.page_size]
        slots = positions % p.page_size
        if p.kv_layout == Layout.NHD:
            k, v = k_pool[pages, slots], v_pool[pages, slots]  # [length, kv_heads, dim]
        else:
            k, v = k_pool[pages, :, slots], v_pool[pages, :, slots]
        if p.fp8_scale_mode == Fp8ScaleMode.PER_TOKEN:
            k = k * case.k_scales[pages, :, slots][..., None]
            v = v * case.v_scales[pages, :, slots][..., None]
        elif p.fp8_scale_mode == Fp8ScaleMode.PER_TENSOR:
            k, v = k * np.float64(np.float32(p.k_scale)), v * np.float64(np.float32(p.v_scale))
        elif p.fp8_scale_mode == Fp8ScaleMode.PER_TENSOR_DEVICE:
            k, v = k * float(case.k_scales[0]), v * float(case.v_scales[0])
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # [length, q_heads, dim]
        for i in range(q_len):
            token, last = b * q_len + i, length - q_len + i
            first = max(0, last - p.window_left) if p.window_left > 0 else 0
            if last < first:
                continue
            seen = slice(first, last + 1)
            scores = np.einsum("nhd,hd->hn", k[seen], q[token]) * scale
            peak = scores.max(axis=1, keepdims=True)
            weights = np.exp(scores - peak)
            total = weights.sum(axis=1)
            out[token] = np.einsum("hn,nhd->hd", weights, v[seen]) / total[:, None]
            lse[token] = peak[:, 0] + np.log(total)
    return out, lse


# Relative rounding of each output dtype (half an ulp), and the allowance for fp32 accumulation.
OUTPUT_EPS = {DType.BF16: 2.0**-8, DType.FP16: 2.0**-11, DType.FP32: 0.0}


def assert_close(o, lse, case: Case, *, atol: float = 2e-5) -> None:
    """o (storage of params.o_dtype) and lse within rounding of the output plus atol of the
    reference, every element; -inf LSE exactly where the reference has it."""
    expected_o, expected_lse = reference(case)
    got = decode(np.asarray(o), case.params.o_dtype)
    bound = OUTPUT_EPS[case.params.o_dtype] * np.abs(expected_o) + atol
    error = np.abs(got - expected_o)
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert np.all(error <= bound), (
        f"o{list(worst)} = {got[worst]}, reference {expected_o[worst]} "
        f"(error {error[worst]:.3g}, bound {bound[worst]:.3g}) for {case.params}")
    if lse is not None:
        lse = np.asarray(lse, dtype=np.float64)
        assert np.array_equal(np.isneginf(lse), np.isneginf(expected_lse))
        finite = np.isfinite(expected_lse)
        np.testing.assert_allclose(lse[finite], expected_lse[finite], rtol=1e-5, atol=atol)


def shard_bounds(rng: np.random.Generator, kv_lens, num_shards: int) -> np.ndarray:
    """int32 [num_shards + 1, batch] cut positions of context-parallel shards: shard r holds
    positions [bounds[r, b], bounds[r + 1, b]) of sequence b. Random cuts, so some shards are
    empty and some end inside a page or a partition."""
    lens = np.asarray(kv_lens, dtype=np.int64)
    cuts = np.sort(rng.integers(0, lens + 1, size=(num_shards - 1, len(lens))), axis=0)
    return np.vstack([np.zeros((1, len(lens)), np.int64), cuts, lens[None, :]]).astype(np.int32)


def shard_case(rng: np.random.Generator, case: Case, begin: np.ndarray, end: np.ndarray) -> Case:
    """The shard of case that holds positions [begin[b], end[b]) of each sequence: the same q,
    kv_lens = end - begin, and those tokens (and per-token scales) copied into a pool of its own,
    its pages at random places and the rest poisoned as make_case does."""
    p = case.params
    shard = make_case(rng, p, np.asarray(end) - np.asarray(begin))
    shard.q = case.q
    if p.fp8_scale_mode == Fp8ScaleMode.PER_TENSOR_DEVICE:
        shard.k_scales, shard.v_scales = case.k_scales, case.v_scales

    def slots(of: Case, b: int, positions: np.ndarray):
        pages = of.page_indices.reshape(-1)[of.page_indptr[b] + positions // p.page_size]
        return pages, positions % p.page_size

    for b in range(len(shard.kv_lens)):
        positions = np.arange(int(begin[b]), int(end[b]))
        (src_pages, src_slots), (dst_pages, dst_slots) = (slots(case, b, positions),
                                                          slots(shard, b, positions - begin[b]))
        for name in ("k_pages", "v_pages"):
            source, target = getattr(case, name), getattr(shard, name)
            if p.kv_layout == Layout.NHD:
                target[dst_pages, dst_slots] = source[src_pages, src_slots]
            else:
                target[dst_pages, :, dst_slots] = source[src_pages, :, src_slots]
        if p.fp8_scale_mode == Fp8ScaleMode.PER_TOKEN:
            shard.k_scales[dst_pages, :, dst_slots] = case.k_scales[src_pages, :, src_slots]
            shard.v_scales[dst_pages, :, dst_slots] = case.v_scales[src_pages, :, src_slots]
    return shard


def merge_reference(shard_o: np.ndarray, shard_lse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The log-sum-exp combination of stacked shard results in float64: [rows, heads, dim] and
    [rows, heads]; 0 and -inf where every shard's LSE is -inf."""
    lse = np.asarray(shard_lse, np.float64)
    peak = lse.max(axis=0)
    safe = np.where(np.isneginf(peak), 0.0, peak)
    weights = np.exp(lse - safe)  # [R, rows, heads]; 0 for a shard that saw nothing
    total = weights.sum(axis=0)
    out = np.einsum("rth,rthd->thd", weights, np.asarray(shard_o, np.float64))
    seen = total > 0
    out = np.where(seen[..., None], out / np.where(seen, total, 1.0)[..., None], 0.0)
    return out, np.where(seen, safe + np.log(np.where(seen, total, 1.0)), -np.inf)
