/*
 * The persistent split-KV decode kernel: one CTA per worker of the plan walks its work items.
 *
 * A work item (one sequence, one KV head, a range of partitions) is processed in segments of 8
 * query rows (16 when the KV head has more than 8 rows: q_len x group). A segment streams the
 * item's K/V tokens through shared memory with cp.async (3 stages of 32 KiB: 64 bf16 tokens or
 * 128 fp8 tokens of head_dim 128; 2 or 3 tiles in flight, launch.cu's pick), gathering rows
 * through the page table. The loads form one stream over all of the worker's segments: the
 * next segment's first tiles are issued while this one's last tiles are consumed, and are in
 * flight during its combine and epilogue. KV tokens sit on the M side of m16n8k16 tensor-core
 * MMAs and the query rows on N, so every K/V byte is read once for the whole GQA group. Each
 * of the 4 warps owns a quarter of every tile's tokens and keeps its own online-softmax state;
 * the four states are combined in shared memory at the end of the segment.
 *
 * Register-level layout tricks, so that shared memory is read with wide, conflict-free loads:
 *  - QK (S^T = K Q^T): the head_dim axis is permuted. In k-step j, lane quad c reads 4
 *    consecutive dims of a K row (one 8-byte or 4-byte word of a 16-byte chunk) for the A
 *    fragment, and Q is staged in the same permuted order for the B fragment.
 *  - PV (O^T += V^T P): P's C fragment becomes the B fragment through movmatrix.trans. The output
 *    dim axis is permuted: lane row n owns chunks n, n + 8, ... of a V row, reads them for 4
 *    token rows and byte-permutes them into (token, token) pairs; fp8 pairs then become f16x2
 *    with one cvt.
 *  - Rows of a tile are 16-byte-chunk swizzled so that both access patterns are conflict-free.
 *
 * Numerics: fp32 accumulation; scores in base 2; bf16 caches use bf16 MMAs with P (and, for an
 * fp16 query, Q) split into a high and a low bf16 part so that rounding P does not cost 8 bits;
 * fp16 and fp8 caches use f16 MMAs (fp8 -> f16 is exact) with Q scaled per row by a power of
 * two into f16's range, and P split for fp16 and fp32 outputs; per-token V scales ride on a
 * per-warp power of two that keeps P * v_scale in f16's normal range. The softmax rescales
 * lazily (see the tile loop), so P reaches 256.
 */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "decode_params.h"

namespace padec_cuda {

/* The cache's element type; fp8 caches with per-token scales are a kind of their own, so that the
 * other instances carry no scale loads (predicated off, they would still take issue slots in the
 * tile loop). */
enum KvKind { KV_BF16 = 0, KV_F16 = 1, KV_E4M3 = 2, KV_E4M3_PER_TOKEN = 3 };

constexpr int kThreads = 128;
constexpr int kWarps = 4;

template <int HeadDim, int Kind, int NTiles>
struct DecodeConfig {
  static constexpr int kElemBytes = Kind >= KV_E4M3 ? 1 : 2;
  static constexpr int kRowBytes = HeadDim * kElemBytes;
  static constexpr int kPitch = kRowBytes < 128 ? 128 : kRowBytes; /* swizzle needs 8 chunks */
  static constexpr int kChunksPerRow = kRowBytes / 16;
  /* 32 KiB of K+V a stage, at least 64 tokens, and a stage must hold the combine buffer. */
  static constexpr int kCombineBytes = kWarps * 8 * NTiles * HeadDim * 4;
  static constexpr int kTileTokensForBytes = (16384 / kPitch) < 64 ? 64 : 16384 / kPitch;
  static constexpr int kTileTokensForCombine = kCombineBytes / (2 * kPitch);
  static constexpr int kTileTokens =
      kTileTokensForBytes > kTileTokensForCombine ? kTileTokensForBytes : kTileTokensForCombine;
  static constexpr int kTileBytes = kTileTokens * kPitch;
  static constexpr int kStageBytes = 2 * kTileBytes; /* K then V */
  static constexpr int kStages = kStageBytes <= 32768 ? 3 : 2;
  static constexpr int kWarpTokens = kTileTokens / kWarps;
  static constexpr int kMTiles = kWarpTokens / 16;
  static constexpr int kRowsPerPass = 8 * NTiles;
  static constexpr int kKSteps = HeadDim / 16;
  static constexpr int kElemsPerChunk = 16 / kElemBytes;
  static constexpr int kKStepsPerChunk = kElemsPerChunk / 4;
  static constexpr int kTokensPerThread = kTileTokens * kChunksPerRow / kThreads;
  static constexpr int kTokenStride = kThreads / kChunksPerRow;
  static constexpr int kQPitch = HeadDim * 2 + 16; /* bytes; +16 keeps the B-fragment loads conflict-free */
  static constexpr int kQBytes = kRowsPerPass * kQPitch;
  static constexpr int kScaleBytes = 2 * kTileTokens * 4; /* per-token K and V scales */
  static constexpr int kPipeBytes = kStages * kStageBytes;
  static_assert(kCombineBytes <= kStageBytes, "the combine buffer is the pipeline's last stage");
  /* row multipliers [rows], each warp's row max [4][rows] and row sum [4][rows], the merge's
   * claim [3] (and one int of padding) */
  static constexpr int kRowStatBytes = (kRowsPerPass + 2 * kWarps * kRowsPerPass + 4) * 4;
  static constexpr int kBarrierOffset = kPipeBytes + kStages * kScaleBytes + 2 * kQBytes + kRowStatBytes;
  static_assert(kBarrierOffset % 8 == 0, "mbarriers are 8-byte aligned");
  static constexpr int kSmemBytes = kBarrierOffset + kStages * 8; /* a stage's "landed" mbarrier */
  static_assert(kThreads % kChunksPerRow == 0, "a thread keeps one chunk column");
  static_assert(kWarpTokens % 16 == 0, "a warp's tokens form whole m16 tiles");
  /* PV: each lane row owns HeadDim / 8 dims of V, read in pieces of up to 16 bytes. */
  static constexpr int kLaneDimBytes = HeadDim / 8 * kElemBytes;
  static constexpr int kPieceBytes = kLaneDimBytes < 16 ? kLaneDimBytes : 16;
  static constexpr int kPiecesPerLane = kLaneDimBytes / kPieceBytes;
  static constexpr int kDimTilesPerPiece = kPieceBytes / kElemBytes / 2;
};

__device__ __forceinline__ uint32_t smem_u32(const void *ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_4(uint32_t dst, const void *src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0));
}

/* The stage's mbarrier counts one arrival from each thread when all of that thread's earlier
 * cp.async copies have landed (.noinc: the arrivals are part of the expected count). */
__device__ __forceinline__ void cp_async_arrive(uint32_t barrier) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(barrier) : "memory");
}

__device__ __forceinline__ void mbarrier_init(uint32_t barrier, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(barrier), "r"(count) : "memory");
}

/* Waits until the phase of the given parity has completed (acquire: every arriving thread's
 * copies are visible after it). */
__device__ __forceinline__ void mbarrier_wait(uint32_t barrier, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(barrier),
      "r"(parity)
      : "memory");
}

/* Chunk swizzle of a tile row: rows 2m and 2m+1 land in different halves of the 128-byte bank
 * window (the QK pattern) and rows 0, 2, 4, 6 in four different 32-byte quarters (the PV
 * pattern). */
__device__ __forceinline__ int swizzle(int row) { return (((row >> 1) & 3) << 1) ^ ((row & 1) << 2); }

template <bool Bf16>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  if constexpr (Bf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/* Bytes 0 and 1 (Low) or 2 and 3 (High) of an e4m3 word to f16x2, exactly. The half is named
 * inside the asm so that the conversion reads it in place (a shift in C++ costs an instruction
 * per pair). */
__device__ __forceinline__ uint32_t e4m3x2_low_to_f16x2(uint32_t word) {
  uint32_t out;
  asm("{ .reg .b16 low, high; mov.b32 {low, high}, %1; cvt.rn.f16x2.e4m3x2 %0, low; }\n"
      : "=r"(out) : "r"(word));
  return out;
}
__device__ __forceinline__ uint32_t e4m3x2_high_to_f16x2(uint32_t word) {
  uint32_t out;
  asm("{ .reg .b16 low, high; mov.b32 {low, high}, %1; cvt.rn.f16x2.e4m3x2 %0, high; }\n"
      : "=r"(out) : "r"(word));
  return out;
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t out;
  asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(out) : "r"(a), "r"(b), "r"(selector));
  return out;
}

template <bool Bf16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (Bf16) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
  }
}

template <bool Bf16>
__device__ __forceinline__ float2 unpack2(uint32_t bits) {
  if constexpr (Bf16) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&bits));
  } else {
    return __half22float2(*reinterpret_cast<const __half2 *>(&bits));
  }
}

/* max.NaN: the larger of a and b, NaN if either is (fmaxf returns the other), one instruction
 * as fmaxf: a NaN partial LSE then spoils its row's merge instead of vanishing from it. */
__device__ __forceinline__ float max_keeping_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

/* 2^x by the special-function unit, results below 2^-126 flushed to zero. exp2f is the same
 * approximation plus a denormal-range fix-up of three instructions a call, 30 a warp and tile in
 * the tile loop. A probability or rescale below 2^-126 of the row's maximum is below every
 * output's rounding. -inf gives 0. */
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/* Transposes the warp's 8x8 matrix of 16-bit elements held in the standard fragment layout. */
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t x) {
  uint32_t out;
  asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(out) : "r"(x));
  return out;
}

__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}

/* A bf16 (dtype 0) or fp16 input element's bits as a float. */
__device__ __forceinline__ float input_bits_to_float(uint16_t bits, int dtype) {
  if (dtype == 0) return bf16_bits_to_float(bits);
  return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ void store_output(void *base, int64_t index, int dtype, float value) {
  if (dtype == 0) {
    static_cast<__nv_bfloat16 *>(base)[index] = __float2bfloat16_rn(value);
  } else if (dtype == 1) {
    static_cast<__half *>(base)[index] = __float2half_rn(value);
  } else {
    static_cast<float *>(base)[index] = value;
  }
}

/*
 * One warp merges one (output row, q head) of a reduce group: the splits' LSEs give the weights
 * (up to 64 splits, each lane fetches the rows and LSEs of two slots in one go), then every lane
 * walks the splits in slot order, the same additions in the same order on every run, with up
 * to 16 row loads in flight. Partials are read with
 * ld.global.cg: other CTAs wrote them during this launch, so L1 may not hold them.
 */
__device__ __forceinline__ int64_t merge_source_row(const padec_decode_params &p, int s,
                                                   int row_offset) {
  return p.reduce_partial_map ? (int64_t)p.reduce_partial_map[s] + row_offset
                              : s * p.shard_rows + row_offset;
}

template <int HeadDim>
__device__ __forceinline__ void merge_row_warp(const padec_decode_params &p, int slot_begin,
                                               int slot_end, int row_offset, int out_row,
                                               int head, int lane) {
  constexpr int kPerLane = HeadDim / 32;
  float out[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) out[i] = 0.f;
  float weight_sum = 0.f;
  /* Adds consecutive slots whose partial row and weight lane k holds, in order, a batch at a
   * time: a batch's loads all leave before the first is used (written as one loop, ptxas kept
   * two in flight), one L2 round trip a batch, since the merge sits on the critical path at the
   * end of a launch. 16 rows a batch, 8 at head_dim 256 (against spills). */
  constexpr int kBatch = HeadDim <= 128 ? 16 : 8;
  constexpr int kVectors = kPerLane % 4 == 0 ? kPerLane / 4 : 1;
  struct Batch {
    float4 rows[kBatch][kVectors];
  };
  /* Slots [first, first + kBatch) of the lanes' `count` (<= 32); rows past count read nothing. */
  auto load_batch = [&](Batch &batch, int first, int count, int64_t lane_row) {
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int k = first + j;
      const int64_t prow = __shfl_sync(0xffffffffu, lane_row, k & 31);
      const float *src = p.partial_o + (prow * p.num_q_heads + head) * HeadDim + lane * kPerLane;
#pragma unroll
      for (int v = 0; v < kVectors; ++v) {
        if (k >= count) {
          batch.rows[j][v] = make_float4(0.f, 0.f, 0.f, 0.f);
        } else if constexpr (kPerLane % 4 == 0) {
          batch.rows[j][v] = __ldcg(reinterpret_cast<const float4 *>(src) + v);
        } else {
          const float2 pair = __ldcg(reinterpret_cast<const float2 *>(src));
          batch.rows[j][v] = make_float4(pair.x, pair.y, 0.f, 0.f);
        }
      }
    }
  };
  auto add_batch = [&](const Batch &batch, int first, int count, float lane_weight) {
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const float weight = __shfl_sync(0xffffffffu, lane_weight, (first + j) & 31);
      if (first + j >= count) break;
      weight_sum += weight;
#pragma unroll
      for (int v = 0; v < kVectors; ++v) {
        out[4 * v] += weight * batch.rows[j][v].x;
        out[4 * v + 1] += weight * batch.rows[j][v].y;
        if constexpr (kPerLane % 4 == 0) {
          out[4 * v + 2] += weight * batch.rows[j][v].z;
          out[4 * v + 3] += weight * batch.rows[j][v].w;
        }
      }
    }
  };
  /* Slots [first, count) of the lanes' `count` (<= 32). */
  auto accumulate = [&](int first, int count, int64_t lane_row, float lane_weight) {
    for (; first < count; first += kBatch) {
      Batch batch;
      load_batch(batch, first, count, lane_row);
      add_batch(batch, first, count, lane_weight);
    }
  };
  auto warp_max = [&](float value) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      value = max_keeping_nan(value, __shfl_xor_sync(0xffffffffu, value, off));
    return value;
  };
  const int slots = slot_end - slot_begin;
  float max_lse = -INFINITY;
  if (slots <= 64) {
    /* Every lane holds the rows and LSEs of slots lane and lane + 32: one round of row lookups,
     * one of LSE loads and the first partial rows, then the other partial rows. */
    const bool has0 = lane < slots, has1 = lane + 32 < slots;
    const int64_t row0 = has0 ? merge_source_row(p, slot_begin + lane, row_offset) : 0;
    const int64_t row1 = has1 ? merge_source_row(p, slot_begin + 32 + lane, row_offset) : 0;
    /* The first batch of partial rows leaves with the LSEs: its addresses do not need them. */
    const int count0 = slots < 32 ? slots : 32;
    Batch head_batch;
    load_batch(head_batch, 0, count0, row0);
    const float lse0 = has0 ? __ldcg(p.partial_lse + row0 * p.num_q_heads + head) : -INFINITY;
    const float lse1 = has1 ? __ldcg(p.partial_lse + row1 * p.num_q_heads + head) : -INFINITY;
    max_lse = warp_max(max_keeping_nan(lse0, lse1));
    if (max_lse != -INFINITY) {
      const float weight0 = lse0 == -INFINITY ? 0.f : expf(lse0 - max_lse);
      add_batch(head_batch, 0, count0, weight0);
      accumulate(kBatch, count0, row0, weight0);
      if (slots > 32) accumulate(0, slots - 32, row1, lse1 == -INFINITY ? 0.f : expf(lse1 - max_lse));
    }
  } else {
    /* Any number of splits: the LSEs twice, 32 slots at a time. */
    for (int s = slot_begin + lane; s < slot_end; s += 32)
      max_lse = max_keeping_nan(max_lse, __ldcg(p.partial_lse + merge_source_row(p, s, row_offset) * p.num_q_heads + head));
    max_lse = warp_max(max_lse);
    if (max_lse != -INFINITY) {
      for (int base = slot_begin; base < slot_end; base += 32) {
        const int s = base + lane;
        int64_t lane_row = 0;
        float lane_weight = 0.f;
        if (s < slot_end) {
          lane_row = merge_source_row(p, s, row_offset);
          const float lse = __ldcg(p.partial_lse + lane_row * p.num_q_heads + head);
          lane_weight = lse == -INFINITY ? 0.f : expf(lse - max_lse);
        }
        accumulate(0, slot_end - base < 32 ? slot_end - base : 32, lane_row, lane_weight);
      }
    }
  }
  const float inv = weight_sum > 0.f ? 1.f / weight_sum : 0.f;
  const int64_t o_base = (int64_t)out_row * p.o_stride_token + head * p.o_stride_head + lane * kPerLane;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) store_output(p.o, o_base + i, p.o_dtype, out[i] * inv);
  if (p.lse && lane == 0)
    p.lse[(int64_t)out_row * p.num_q_heads + head] = weight_sum != 0.f ? max_lse + logf(weight_sum) : -INFINITY;
}

/* The reduce group of a split item: partial rows are slot * q_len in every padec schedule, and
 * reduce_indptr is non-decreasing, so the group is the last g with reduce_indptr[g] <= slot.
 * A warp searches 32 points of the range at once, so a batch of up to 32 groups takes one round
 * of loads and 1024 two (a binary search took one dependent load per halving, on the critical
 * path of the launch's last merges). The first round's load is group_probe_load, apart so
 * that a caller can have it in flight long before the search; find_group_warp takes it as
 * `probe`. Every lane returns the group. */
__device__ __forceinline__ int group_probe_load(const padec_decode_params &p, int lane) {
  const int g = (lane + 1) * ((p.batch + 31) >> 5);
  return g <= p.batch ? __ldg(p.reduce_indptr + g) : INT_MAX;
}

__device__ __forceinline__ int find_group_warp(const padec_decode_params &p, int slot, int lane, int probe) {
  int lo = 0, hi = p.batch; /* reduce_indptr[lo] <= slot (reduce_indptr[0] is 0); group <= hi */
  bool first_round = true;
  while (lo < hi) {
    const int step = (hi - lo + 31) >> 5;
    const int g = lo + (lane + 1) * step;
    const int value = first_round ? probe : (g <= hi ? __ldg(p.reduce_indptr + g) : INT_MAX);
    first_round = false;
    const bool at_or_below = g <= hi && value <= slot;
    /* reduce_indptr is non-decreasing: the lanes that hold are a prefix. */
    const int holding = __popc(__ballot_sync(0xffffffffu, at_or_below));
    const int next_hi = lo + (holding + 1) * step - 1;
    lo += holding * step;
    if (next_hi < hi) hi = next_hi;
  }
  return lo;
}

/* The slot range [x, y) of `group` (warp-wide, every lane gets it). Up to 32 groups the probe
 * holds every reduce_indptr[g], g >= 1, in lane g - 1: no load. */
__device__ __forceinline__ int2 group_slots_warp(const padec_decode_params &p, int group, int probe) {
  if (p.batch <= 32) {
    const int end = __shfl_sync(0xffffffffu, probe, group & 31);
    const int begin = __shfl_sync(0xffffffffu, probe, (group - 1) & 31);
    return make_int2(group > 0 ? begin : 0, end);
  }
  return make_int2(__ldg(p.reduce_indptr + group), __ldg(p.reduce_indptr + group + 1));
}

/* Release (the CTA's earlier writes, ordered before by a block barrier) and acquire (the
 * arrivals before it, for the reads after the next block barrier) at device scope, in one. */
__device__ __forceinline__ int atomic_add_acq_rel(int32_t *address, int32_t value) {
  int32_t old;
  asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], %2;\n" : "=r"(old) : "l"(address), "r"(value) : "memory");
  return old;
}

/* Byte offset within a V row of piece q of lane row n (PV's A fragments): with 16-byte pieces,
 * lane row n owns chunks n, n + 8, n + 16, ...; with 8-byte pieces (fp8, head_dim 64) bytes
 * [8n, 8n + 8). Dim tile j of a piece covers its elements 2j, 2j + 1. */
template <class Cfg>
__device__ __forceinline__ int piece_byte(int lane_row, int q) {
  if constexpr (Cfg::kPieceBytes == 16) {
    return (q * 8 + lane_row) * 16;
  } else {
    return lane_row * Cfg::kPieceBytes;
  }
}

template <int HeadDim, int Kind, int NTiles, bool PSplit>
__global__ void __launch_bounds__(kThreads, 2)
    decode_kernel(const __grid_constant__ padec_decode_params p) {
  using Cfg = DecodeConfig<HeadDim, Kind, NTiles>;
  constexpr bool kBf16Mma = Kind == KV_BF16;
  constexpr int kRows = Cfg::kRowsPerPass;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t *pipe = smem;
  float *scales = reinterpret_cast<float *>(smem + Cfg::kPipeBytes);
  uint8_t *q_hi = smem + Cfg::kPipeBytes + Cfg::kStages * Cfg::kScaleBytes;
  uint8_t *q_lo = q_hi + Cfg::kQBytes;
  float *row_multiplier = reinterpret_cast<float *>(q_lo + Cfg::kQBytes); /* [kRows] */
  float *warp_row_max = row_multiplier + kRows;                            /* [4][kRows] */
  float *warp_row_sum = warp_row_max + kWarps * kRows;                     /* [4][kRows] */
  /* The fused merge's claim: the group this CTA merges (-1: none), then its slot range. */
  int *merge_claim = reinterpret_cast<int *>(warp_row_sum + kWarps * kRows); /* [3] */

  /* On the grid path the first metadata loads leave before anything else: the sequence's
   * length and first page, whose round trip the first tile's page ids wait for. The setup
   * below (the barriers, the scales, the strides) runs under it. */
  const bool grid = p.grid_splits > 0;
  const unsigned ctas_per_sequence = (unsigned)p.grid_splits * (unsigned)p.num_kv_heads;
  const int grid_b = grid ? (int)(blockIdx.x / ctas_per_sequence) : 0;
  const int grid_kv_len = grid ? p.kv_lens[grid_b] : 0;
  const int grid_page_start = grid ? p.page_indptr[grid_b] : 0;

  const uint32_t landed = smem_u32(smem + Cfg::kBarrierOffset); /* [kStages] mbarriers */
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  if (tid == 0) {
    for (int stage = 0; stage < Cfg::kStages; ++stage) mbarrier_init(landed + stage * 8, kThreads);
  }
  __syncthreads(); /* the barriers are initialised before any copy arrives on them */
  const int quad = lane & 3, lane_row = lane >> 2;
  auto trace = [&](int event) {
    if (p.trace && tid == 0) {
      uint64_t now;
      asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(now));
      p.trace[(int64_t)blockIdx.x * PADEC_TRACE_EVENTS + event] = now;
    }
  };
  trace(PADEC_TRACE_ENTRY);
  constexpr bool per_token = Kind == KV_E4M3_PER_TOKEN;
  float k_scale = p.k_scale, v_scale = p.v_scale;
  if (p.scale_mode == 2) {
    k_scale = __ldg(p.k_scales);
    v_scale = __ldg(p.v_scales);
  }
  const bool q_split = kBf16Mma && p.q_dtype == 1; /* fp16 query on a bf16 cache */
  /* P rounded to bf16 (8 bits) costs as much as a bf16 output's rounding, so bf16 caches always
   * carry P's low part; f16 (11 bits) is below a bf16 output's rounding but level with an fp16
   * output's (the soak found fp16 outputs 2.6 half-ulps off), so only bf16 outputs go without.
   * PSplit is the instance's: predicated off at run time, the low part's MMAs, transposes and
   * conversions would still take issue slots in the tile loop. */
  constexpr bool p_split = PSplit;
  static_assert(PSplit || !kBf16Mma, "bf16 caches always split P");
  const int page_shift = __ffs(p.page_size) - 1;
  const int page_mask = p.page_size - 1;
  /* Byte strides of the pools: a page, a token within a page, a KV head. */
  const int64_t token_stride = (int64_t)(p.layout_hnd ? 1 : p.num_kv_heads) * HeadDim * Cfg::kElemBytes;
  const int64_t head_stride = (int64_t)(p.layout_hnd ? p.page_size : 1) * HeadDim * Cfg::kElemBytes;

  /* The K/V tokens one segment streams: [token_begin, token_end) of a sequence's pages, one KV
   * head, in num_tiles tiles. */
  struct Stream {
    int token_begin, token_end, num_tiles, kv_head;
    const int32_t *pages;
    int64_t kv_head_offset;
  };
  /* A segment is one pass (up to kRows query rows) over one work item's tokens. */
  struct Segment {
    bool valid;
    int work, pass_row;
    int b, partial_loc, qo_start, q_head_start;
    int query_end; /* query positions end here, counted from the first cached token */
    Stream s;
  };
  /* The grid path: this CTA is the one work item (sequence, KV head, split) of its index. */
  const int work_end = grid ? 1 : p.work_indptr[blockIdx.x + 1];
  auto load_segment = [&](int work) {
    Segment g;
    g.valid = work < work_end;
    g.work = work;
    g.pass_row = 0;
    g.b = g.partial_loc = g.qo_start = g.q_head_start = g.query_end = 0;
    g.s.token_begin = g.s.token_end = g.s.num_tiles = g.s.kv_head = 0;
    g.s.pages = p.page_indices;
    g.s.kv_head_offset = 0;
    if (!g.valid) return g;
    int4 w1 = make_int4(0, 0, 0, 0);
    /* The grid path's CTAs of a sequence are consecutive: one division finds its sequence
     * (grid_b, at the kernel's entry). */
    if (grid) {
      g.b = grid_b;
    } else {
      const int4 w0 = *reinterpret_cast<const int4 *>(p.work_info + (int64_t)work * 8);
      w1 = *reinterpret_cast<const int4 *>(p.work_info + (int64_t)work * 8 + 4);
      g.b = w0.x;
      g.partial_loc = w0.y;
      g.qo_start = w0.z;
      g.q_head_start = w1.w & 0xffff;
    }
    /* The sequence's metadata leaves in one round trip. A load written after the arithmetic
     * below, whose divisions branch, was issued only once the length was back: one more round
     * trip before the first tile's page ids (the SASS of the prologue). */
    const int kv_len = grid ? grid_kv_len : p.kv_lens[g.b];
    const int page_start = grid ? grid_page_start : p.page_indptr[g.b];
    const int partition_start = grid ? 0 : p.partition_indptr[g.b];
    g.query_end = p.seq_lens ? p.seq_lens[g.b] - p.shard_starts[g.b] : kv_len;
    int split = 0;
    if (grid) {
      const unsigned within = blockIdx.x - (unsigned)g.b * ctas_per_sequence;
      split = (int)(within % (unsigned)p.grid_splits);
      g.s.kv_head = (int)(within / (unsigned)p.grid_splits);
      g.q_head_start = g.s.kv_head * p.group;
      g.partial_loc = p.grid_splits > 1 ? (g.b * p.grid_splits + split) * p.q_len : -1;
      g.qo_start = g.b * p.q_len;
    } else {
      g.s.kv_head = g.q_head_start / p.group;
    }
    /* A power of two (padec__partition_tokens): partitions by shifts, off the path between the
     * length's arrival and the page-id loads. */
    const int T = p.partition_tokens;
    const int partition_shift = __ffs(T) - 1;
    int first_partition = 0;
    if (p.window_left > 0) {
      const int64_t first_token = (int64_t)g.query_end - p.q_len - p.window_left;
      first_partition = first_token > 0 ? (int)(first_token >> partition_shift) : 0;
    }
    int64_t local = (int64_t)w1.x - partition_start;
    int64_t count = w1.y - w1.x;
    if (grid) {
      /* padec__shard_num_partitions: the sequence's scheduled partitions, cut in grid_splits. */
      const int64_t end = ((int64_t)kv_len + T - 1) >> partition_shift;
      const int64_t parts = kv_len > 0 && end > first_partition ? end - first_partition : 0;
      const int64_t per_split = (parts + p.grid_splits - 1) / p.grid_splits;
      local = split * per_split;
      count = local < parts ? min(parts - local, per_split) : 0;
    }
    /* Clamped to kv_len, the stream's ends fit in int32 (kv_len is an int32 token count); the
     * positions of its last tile may not (stream_pos). */
    const int64_t begin = (first_partition + local) * T;
    g.s.token_begin = begin < kv_len ? (int)begin : kv_len;
    /* No row sees a token before the first window: don't load the partition's head. */
    if (p.window_left > 0 && (int64_t)g.query_end - p.q_len - p.window_left > g.s.token_begin)
      g.s.token_begin = (int)min((int64_t)g.query_end - p.q_len - p.window_left, (int64_t)kv_len);
    const int64_t item_end = (first_partition + local + count) * (int64_t)T;
    g.s.token_end = item_end < kv_len ? (int)item_end : kv_len;
    /* Unsigned: a stream of nearly 2^31 tokens rounds up past INT32_MAX. */
    g.s.num_tiles = g.s.token_end > g.s.token_begin
                        ? (int)(((uint32_t)(g.s.token_end - g.s.token_begin) + Cfg::kTileTokens - 1) /
                                Cfg::kTileTokens)
                        : 0;
    g.s.pages = p.page_indices + page_start;
    g.s.kv_head_offset = (int64_t)g.s.kv_head * head_stride;
    return g;
  };
  auto next_segment = [&](const Segment &g) {
    if (g.pass_row + kRows < p.rows) {
      Segment n = g;
      n.pass_row += kRows;
      return n;
    }
    return load_segment(g.work + 1);
  };

  /* ---- the cp.async pipeline: one stream of tiles over all of the worker's segments --------
   * The producer runs up to depth - 1 tiles ahead of the consumer (depth = p.pipeline_depth,
   * 2 to kStages, launch.cu's pick) and crosses into the next segment while the current one's
   * last tiles are still being consumed, so the worker's loads do not stop at an item boundary.
   * The n-th tile of the worker (issued and consumed in the same order) sits in stage
   * n % kStages whatever the depth; every thread's copies of it arrive on the stage's mbarrier,
   * whose (n / kStages)-th phase completes when they have all landed. At the top of the tile
   * loop a block barrier frees the previous tile's stage and it is refilled before the warps
   * wait for their tile, so up to depth tiles are in flight during that wait (with the wait
   * before the barrier, as a cp.async group, the refill waited for the tile too). Outside the
   * consumer's tile loop at most depth - 1 tiles are in the pipeline, so the stage of the last
   * consumed tile is free: the combine uses it. */
  const int my_chunk = tid % Cfg::kChunksPerRow;
  const int my_first_token = tid / Cfg::kChunksPerRow;
  /* Token positions are unsigned: a stream's last tile runs up to kTileTokens - 1 rows past its
   * end, which is past INT32_MAX for a kv_len near it (kv_lens are int32, validate_kv admits any);
   * in 32 unsigned bits every position of a stream, rows past its end included, is below 2^32
   * and compares right against the stream's end. */
  auto stream_pos = [&](const Stream &g, int tile, int token) -> uint32_t {
    return (uint32_t)g.token_begin + (uint32_t)tile * Cfg::kTileTokens + (uint32_t)token;
  };
  typedef int32_t PageIds[Cfg::kTokensPerThread];
  auto load_page_ids = [&](const Stream &g, int tile, PageIds &ids) {
#pragma unroll
    for (int i = 0; i < Cfg::kTokensPerThread; ++i) {
      const uint32_t pos = stream_pos(g, tile, my_first_token + i * Cfg::kTokenStride);
      ids[i] = (tile < g.num_tiles && pos < (uint32_t)g.token_end) ? __ldg(g.pages + (pos >> page_shift)) : 0;
    }
  };
  /* This thread's chunk of token row my_first_token + i * kTokenStride, in bytes from a tile's
   * start. With a token stride of 8 or more every row of the thread has the same swizzle, so the
   * rows differ by a constant the copies carry as an immediate. */
  const uint32_t my_row_dst = my_first_token * Cfg::kPitch + ((my_chunk ^ swizzle(my_first_token)) << 4);
  auto row_dst = [&](int i) -> uint32_t {
    if constexpr (Cfg::kTokenStride % 8 == 0) {
      return my_row_dst + i * Cfg::kTokenStride * Cfg::kPitch;
    } else {
      const int token = my_first_token + i * Cfg::kTokenStride;
      return token * Cfg::kPitch + ((my_chunk ^ swizzle(token)) << 4);
    }
  };
  /* A page is at most 2 GiB (1024 tokens x 4096 KV heads x 256 dims x 2 bytes: params.c caps
   * the heads at 4096) and the distance between pages below 4 GiB (params.c), so offsets within
   * a page and the page stride fit in 32 bits and a row's K address is two 32 x 32 -> 64-bit
   * multiply-adds (issue_tile), on the issue path of every cp.async. */
  static_assert(1024LL * 4096 * 256 * 2 <= UINT32_MAX, "a page's byte offsets fit in 32 bits");
  const uint32_t page_bytes = p.kv_page_bytes, row_bytes = (uint32_t)token_stride;
  auto issue_tile = [&](const Stream &g, int tile, int stage, const PageIds &ids) {
    const uint32_t k_dst = smem_u32(pipe + stage * Cfg::kStageBytes);
    const uint32_t pos0 = stream_pos(g, tile, my_first_token), end = (uint32_t)g.token_end;
    /* A row's K address is two wide multiply-adds (the row within its page onto the head's
     * base, then the page), its V address one 64-bit add of the pools' distance: this path runs
     * for every row of every tile, and each 64-bit add is two instructions. */
    const uint64_t k_src = reinterpret_cast<uint64_t>(p.k_pages + g.kv_head_offset + my_chunk * 16);
    const uint64_t v_minus_k = reinterpret_cast<uint64_t>(p.v_pages) - reinterpret_cast<uint64_t>(p.k_pages);
    /* Rows past the stream's end copy nothing (src-size 0); their page id is 0. */
#pragma unroll
    for (int i = 0; i < Cfg::kTokensPerThread; ++i) {
      const uint32_t pos = pos0 + i * Cfg::kTokenStride;
      const uint64_t row_src = (uint64_t)(pos & page_mask) * row_bytes + k_src;
      const uint64_t k_row = (uint64_t)(uint32_t)ids[i] * page_bytes + row_src;
      const uint32_t dst = k_dst + row_dst(i);
      cp_async_16(dst, reinterpret_cast<const void *>(k_row), pos < end);
      cp_async_16(dst + Cfg::kTileBytes, reinterpret_cast<const void *>(k_row + v_minus_k), pos < end);
    }
    if (per_token && my_chunk == 0) {
      float *k_scale_dst = scales + stage * 2 * Cfg::kTileTokens;
#pragma unroll
      for (int i = 0; i < Cfg::kTokensPerThread; ++i) {
        const int token = my_first_token + i * Cfg::kTokenStride;
        const uint32_t pos = pos0 + i * Cfg::kTokenStride;
        const int64_t s = ((int64_t)ids[i] * p.num_kv_heads + g.kv_head) * p.page_size + (pos & page_mask);
        cp_async_4(smem_u32(k_scale_dst + token), p.k_scales + s, pos < end);
        cp_async_4(smem_u32(k_scale_dst + Cfg::kTileTokens + token), p.v_scales + s, pos < end);
      }
    }
    cp_async_arrive(landed + stage * 8);
  };

  Segment cur = load_segment(grid ? 0 : p.work_indptr[blockIdx.x]);
  Segment nxt = cur;
  nxt.valid = false; /* loaded once cur's first tiles are in flight */
  /* The producer's position: tile producer_tile of cur's stream, or of nxt's. */
  bool producer_on_next = false;
  int producer_tile = 0;
  int issued = 0, consumed = 0; /* tiles of this worker */
  auto producer_stream = [&]() {
    const Stream g = producer_on_next ? nxt.s : cur.s;
    return g;
  };
  auto producer_has_tile = [&]() { return producer_tile < producer_stream().num_tiles; };
  /* Hands the producer over to nxt once cur's tiles are all issued; true if it moved. */
  auto producer_settle = [&]() {
    if (producer_on_next || !nxt.valid || producer_tile < cur.s.num_tiles) return false;
    producer_on_next = true;
    producer_tile = 0;
    return true;
  };
  PageIds page_ids; /* of the producer's next tile, fetched one tile ahead */
  auto issue_next = [&]() {
    issue_tile(producer_stream(), producer_tile, issued % Cfg::kStages, page_ids);
    ++issued;
    ++producer_tile;
    producer_settle();
    load_page_ids(producer_stream(), producer_tile, page_ids);
  };
  /* The prologue: cur's first depth - 1 tiles go out before anything else is fetched (the
   * page ids of two tiles together), then nxt's metadata, then the rest up to depth - 1. */
  if (Cfg::kStages == 3 && p.pipeline_depth == 3 && cur.s.num_tiles >= 2) {
    PageIds second_ids;
    load_page_ids(cur.s, 0, page_ids);
    load_page_ids(cur.s, 1, second_ids);
    issue_tile(cur.s, 0, 0, page_ids);
    issue_tile(cur.s, 1, 1, second_ids);
    issued = producer_tile = 2;
  } else if (cur.s.num_tiles >= 1) {
    load_page_ids(cur.s, 0, page_ids);
    issue_tile(cur.s, 0, 0, page_ids);
    issued = producer_tile = 1;
  }
  trace(PADEC_TRACE_ISSUED);
  if (cur.valid) nxt = next_segment(cur);
  producer_settle();
  load_page_ids(producer_stream(), producer_tile, page_ids);
  while (issued < p.pipeline_depth - 1 && producer_has_tile()) issue_next();

  /* A pass's query rows as loaded (16-bit values): this warp's rows warp, warp + 4, ... For fp8
   * caches up to head_dim 128 the next segment's are loaded when the consumer moves on, before
   * the combine and the epilogue, so that their latency is spent there and not at the next
   * segment's start, where the fp8 consumer, the slower side of its pipeline, would wait
   * (b256-1k-fp8 and skew-b64-fp8 +5 to 7% on an H200). bf16 caches, whose loads are the slower
   * side, lost up to 4% with it (the registers held through the merge); at head_dim 256 those
   * registers spill. */
  constexpr bool kPrefetchQ = Kind >= KV_E4M3 && HeadDim <= 128;
  constexpr int kWarpQRows = kRows / kWarps;
  static_assert(kRows % kWarps == 0, "every warp stages as many query rows");
  typedef uint16_t QRows[kWarpQRows][HeadDim / 32];
  auto load_q = [&](const Segment &g, QRows &bits) {
#pragma unroll
    for (int rr = 0; rr < kWarpQRows; ++rr) {
      const int row = g.pass_row + warp + rr * kWarps;
      const bool live = row < p.rows;
      const int qi = live ? row / p.group : 0;
      const int head = g.q_head_start + (live ? row % p.group : 0);
      const int64_t base = (int64_t)(g.qo_start + qi) * p.q_stride_token + head * p.q_stride_head;
#pragma unroll
      for (int i = 0; i < HeadDim / 32; ++i)
        bits[rr][i] = live ? static_cast<const uint16_t *>(p.q)[base + lane + 32 * i] : 0;
    }
  };
  QRows q_rows;
  bool q_rows_loaded = false;

  while (cur.valid) {
    const int pass_row = cur.pass_row;
    const int partial_loc = cur.partial_loc, qo_start = cur.qo_start;
    const int q_head_start = cur.q_head_start, query_end = cur.query_end;
    const int token_begin = cur.s.token_begin, token_end = cur.s.token_end, num_tiles = cur.s.num_tiles;
    /* ---- stage the pass's query rows in the permuted k order ------------------------- */
    if (!q_rows_loaded) load_q(cur, q_rows);
    q_rows_loaded = false;
#pragma unroll
    for (int rr = 0; rr < kWarpQRows; ++rr) {
      const int r = warp + rr * kWarps;
      float values[HeadDim / 32];
      float amax = 0.f;
#pragma unroll
      for (int i = 0; i < HeadDim / 32; ++i) {
        values[i] = input_bits_to_float(q_rows[rr][i], p.q_dtype);
        amax = fmaxf(amax, fabsf(values[i]));
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
      /* f16 MMAs: scale the row by 2^e so that its largest element lands in [2^14, 2^15). The
       * scale stops at 2^126 (rows below 2^-111; bf16 reaches 2^-133): below 2^-113 the power
       * 2^(15 - exponent) would be inf and the row NaN, and scores that small are 0 to f32. */
      float row_scale = 1.f;
      if (!kBf16Mma && amax > 0.f) {
        int exponent;
        frexpf(amax, &exponent); /* amax in [2^(exponent-1), 2^exponent) */
        row_scale = ldexpf(1.f, min(15 - exponent, 126));
      }
      if (lane == 0) row_multiplier[r] = p.score_scale_log2 * k_scale / row_scale;
#pragma unroll
      for (int i = 0; i < HeadDim / 32; ++i) {
        const int d = lane + 32 * i;
        const int chunk = d / Cfg::kElemsPerChunk, within = d % Cfg::kElemsPerChunk;
        const int kstep = (chunk / 4) * Cfg::kKStepsPerChunk + within / 4;
        const int t = within % 4;
        const int col = 16 * kstep + 2 * (chunk % 4) + (t / 2) * 8 + (t % 2);
        const float v = values[i] * row_scale;
        uint16_t *hi = reinterpret_cast<uint16_t *>(q_hi + r * Cfg::kQPitch) + col;
        uint16_t *lo = reinterpret_cast<uint16_t *>(q_lo + r * Cfg::kQPitch) + col;
        if constexpr (kBf16Mma) {
          const __nv_bfloat16 h = __float2bfloat16_rn(v);
          *hi = __bfloat16_as_ushort(h);
          *lo = __bfloat16_as_ushort(__float2bfloat16_rn(v - __bfloat162float(h)));
        } else {
          *hi = __half_as_ushort(__float2half_rn(v));
        }
      }
    }

    /* This lane's C-fragment columns: query rows 8 * nt + 2 * quad + {0, 1} of the pass. */
    /* Unsigned as the positions they bound (stream_pos); a row that sees nothing has hi 0. */
    uint32_t visible_lo[NTiles][2], visible_hi[NTiles][2];
#pragma unroll
    for (int nt = 0; nt < NTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int row = pass_row + 8 * nt + 2 * quad + e;
        visible_lo[nt][e] = 0;
        visible_hi[nt][e] = 0;
        if (row < p.rows) {
          const int last = query_end - p.q_len + row / p.group;
          /* 64-bit: a window near INT32_MAX must not wrap around. */
          const int64_t lo = p.window_left > 0 ? (int64_t)last - p.window_left : 0;
          visible_lo[nt][e] = (uint32_t)(lo > token_begin ? (int)lo : token_begin);
          visible_hi[nt][e] = (uint32_t)max(0, last + 1 < token_end ? last + 1 : token_end);
        }
      }
    }

    /* Every live row of the pass sees [all_visible_begin, all_visible_end): a warp whose tokens
     * of a tile lie inside skips the mask (the rows' visible ranges move with row / group). */
    uint32_t all_visible_begin, all_visible_end;
    {
      const int last_row = (pass_row + kRows < p.rows ? pass_row + kRows : p.rows) - 1;
      const int first_last = query_end - p.q_len + pass_row / p.group;
      const int last_last = query_end - p.q_len + last_row / p.group;
      all_visible_end = (uint32_t)max(0, first_last + 1 < token_end ? first_last + 1 : token_end);
      const int64_t lo = p.window_left > 0 ? (int64_t)last_last - p.window_left : 0;
      all_visible_begin = (uint32_t)(lo > token_begin ? (int)lo : token_begin);
    }

    /* O^T accumulators: dim m-tile dt, row n-tile nt. */
    float acc[HeadDim / 16][NTiles][4];
#pragma unroll
    for (int dt = 0; dt < HeadDim / 16; ++dt)
#pragma unroll
      for (int nt = 0; nt < NTiles; ++nt) acc[dt][nt][0] = acc[dt][nt][1] = acc[dt][nt][2] = acc[dt][nt][3] = 0.f;
    /* Per-token V scales: P * v_scale is scaled by 2^v_exponent (from the largest scale of the
     * warp's tokens in the tile) so that it stays in f16's normal range; the accumulators carry
     * the same factor, changed exactly with the softmax rescale, and drop it at the end. */
    int v_exponent = 0;
    float row_max[NTiles][2], row_sum[NTiles][2];
#pragma unroll
    for (int nt = 0; nt < NTiles; ++nt) {
      row_max[nt][0] = row_max[nt][1] = -INFINITY;
      row_sum[nt][0] = row_sum[nt][1] = 0.f;
    }

    for (int tile = 0; tile < num_tiles; ++tile, ++consumed) {
      /* Every warp is done with the previous tile: its stage is refilled at once, before this
       * tile is waited for, so that up to p.pipeline_depth tiles are in flight while a warp
       * waits. */
      __syncthreads();
      if (issued < consumed + p.pipeline_depth && producer_has_tile()) issue_next();
      /* Tile `consumed` is the (consumed / kStages)-th phase of its stage's barrier. */
      const int stage = consumed % Cfg::kStages;
      mbarrier_wait(landed + stage * 8, (consumed / Cfg::kStages) & 1);
      if (consumed == 0) trace(PADEC_TRACE_FIRST_TILE);

      const uint8_t *k_tile = pipe + stage * Cfg::kStageBytes;
      const uint8_t *v_tile = k_tile + Cfg::kTileBytes;
      const float *k_tok_scale = scales + stage * 2 * Cfg::kTileTokens;
      const float *v_tok_scale = k_tok_scale + Cfg::kTileTokens;
      const int warp_token0 = warp * Cfg::kWarpTokens;
      const uint32_t tile_pos0 = (uint32_t)token_begin + (uint32_t)tile * Cfg::kTileTokens + warp_token0;

      /* ---- S^T = K Q^T: this warp's tokens on M, query rows on N ------------------------ */
      /* With one m-tile and one n-tile a warp's scores are one chain of dependent MMAs; two
       * chains (even and odd k-steps, added at the end) halve its latency. */
      constexpr int kChains = Cfg::kMTiles * NTiles == 1 && Cfg::kKStepsPerChunk % 2 == 0 ? 2 : 1;
      float s_chain[kChains][Cfg::kMTiles][NTiles][4];
#pragma unroll
      for (int c = 0; c < kChains; ++c)
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
          for (int nt = 0; nt < NTiles; ++nt)
            s_chain[c][mt][nt][0] = s_chain[c][mt][nt][1] = s_chain[c][mt][nt][2] = s_chain[c][mt][nt][3] = 0.f;
      /* Unrolled up to head_dim 128, so that ptxas can move the next chunk's loads ahead of this
       * one's MMAs (with the two chains: b256-1k-bf16 0.89 -> 0.95); head_dim 256 stays rolled,
       * against spills. */
#pragma unroll(HeadDim <= 128 ? 8 : 1)
      for (int cg = 0; cg < Cfg::kKSteps / Cfg::kKStepsPerChunk; ++cg) {
        uint4 k_chunk[Cfg::kMTiles][2];
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int token = warp_token0 + 16 * mt + 8 * h + lane_row;
            const int chunk = 4 * cg + quad;
            k_chunk[mt][h] = *reinterpret_cast<const uint4 *>(k_tile + token * Cfg::kPitch + ((chunk ^ swizzle(token)) << 4));
          }
#pragma unroll
        for (int sub = 0; sub < Cfg::kKStepsPerChunk; ++sub) {
          const int kstep = cg * Cfg::kKStepsPerChunk + sub;
          uint32_t b[NTiles][2], b_lo[NTiles][2];
#pragma unroll
          for (int nt = 0; nt < NTiles; ++nt) {
            const int offset = (8 * nt + lane_row) * Cfg::kQPitch + (16 * kstep + 2 * quad) * 2;
            b[nt][0] = *reinterpret_cast<const uint32_t *>(q_hi + offset);
            b[nt][1] = *reinterpret_cast<const uint32_t *>(q_hi + offset + 16);
            if (q_split) {
              b_lo[nt][0] = *reinterpret_cast<const uint32_t *>(q_lo + offset);
              b_lo[nt][1] = *reinterpret_cast<const uint32_t *>(q_lo + offset + 16);
            }
          }
#pragma unroll
          for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
            const uint32_t *w_lo = reinterpret_cast<const uint32_t *>(&k_chunk[mt][0]);
            const uint32_t *w_hi = reinterpret_cast<const uint32_t *>(&k_chunk[mt][1]);
            uint32_t a[4];
            if constexpr (Kind >= KV_E4M3) {
              a[0] = e4m3x2_low_to_f16x2(w_lo[sub]);
              a[1] = e4m3x2_low_to_f16x2(w_hi[sub]);
              a[2] = e4m3x2_high_to_f16x2(w_lo[sub]);
              a[3] = e4m3x2_high_to_f16x2(w_hi[sub]);
            } else {
              a[0] = w_lo[2 * sub];
              a[1] = w_hi[2 * sub];
              a[2] = w_lo[2 * sub + 1];
              a[3] = w_hi[2 * sub + 1];
            }
#pragma unroll
            for (int nt = 0; nt < NTiles; ++nt) {
              mma16816<kBf16Mma>(s_chain[sub % kChains][mt][nt], a, b[nt][0], b[nt][1]);
              if (q_split) mma16816<kBf16Mma>(s_chain[sub % kChains][mt][nt], a, b_lo[nt][0], b_lo[nt][1]);
            }
          }
        }
      }

      float s[Cfg::kMTiles][NTiles][4];
#pragma unroll
      for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][nt][e] = kChains == 1 ? s_chain[0][mt][nt][e] : s_chain[0][mt][nt][e] + s_chain[kChains - 1][mt][nt][e];

      /* ---- scale, mask, online softmax (element e: token lane_row + 8 (e >> 1), row 2 quad + (e & 1)) */
#pragma unroll
      for (int nt = 0; nt < NTiles; ++nt) {
        const float mult[2] = {row_multiplier[8 * nt + 2 * quad], row_multiplier[8 * nt + 2 * quad + 1]};
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            s[mt][nt][e] *= mult[e & 1];
            if constexpr (per_token) s[mt][nt][e] *= k_tok_scale[warp_token0 + 16 * mt + lane_row + 8 * (e >> 1)];
          }
      }
      /* After the scaling, so that a zero scale cannot turn a masked -inf into NaN. */
      if (tile_pos0 < all_visible_begin || tile_pos0 + Cfg::kWarpTokens > all_visible_end) {
#pragma unroll
        for (int nt = 0; nt < NTiles; ++nt)
#pragma unroll
          for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int r = e & 1;
              const uint32_t pos = tile_pos0 + 16 * mt + lane_row + 8 * (e >> 1);
              if (pos < visible_lo[nt][r] || pos >= visible_hi[nt][r]) s[mt][nt][e] = -INFINITY;
            }
      }
      float tile_max[NTiles][2];
#pragma unroll
      for (int nt = 0; nt < NTiles; ++nt) {
        tile_max[nt][0] = tile_max[nt][1] = -INFINITY;
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) tile_max[nt][e & 1] = fmaxf(tile_max[nt][e & 1], s[mt][nt][e]);
      }
      float v_multiplier = 1.f, v_exponent_step = 1.f;
      if constexpr (per_token) {
        float vmax = 0.f;
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt)
          vmax = fmaxf(vmax, fmaxf(v_tok_scale[warp_token0 + 16 * mt + lane_row],
                                   v_tok_scale[warp_token0 + 16 * mt + lane_row + 8]));
#pragma unroll
        for (int off = 16; off >= 4; off >>= 1) vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, off));
        int exponent = v_exponent;
        if (vmax > 0.f) {
          frexpf(vmax, &exponent); /* vmax in [2^(exponent-1), 2^exponent) */
          exponent = -exponent;
        }
        v_multiplier = ldexpf(1.f, exponent);
        v_exponent_step = ldexpf(1.f, exponent - v_exponent); /* folded into the rescale */
        v_exponent = exponent;
      }
      /* Lazy rescaling: a row's reference max moves only when a tile's max passes it by more
       * than kLazyRescaleLog2, so probabilities reach 2^kLazyRescaleLog2 (256: inside f16's
       * range, also times a per-token V scale, whose product with 2^v_exponent stays below 1)
       * and most tiles leave the accumulators alone. The row sums, the combine and the LSE all
       * use the reference max, so the result is the same softmax. A warp rescales its
       * accumulators only when one of its rows moved (or, per token, the V exponent did); the
       * others' factors are then 1. */
      constexpr float kLazyRescaleLog2 = 8.f;
      float rescale[NTiles][2], base[NTiles][2];
      bool moved = false;
#pragma unroll
      for (int nt = 0; nt < NTiles; ++nt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          float m = tile_max[nt][r];
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 4));
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 8));
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 16));
          /* The difference, not row_max + margin: near 2^27 and above that sum rounds up to the
           * next float, which would let P pass 2^16 and overflow f16; the difference of two
           * close floats is exact. A row's first finite max moves it (m - -inf = inf); a fully
           * masked tile never does (-inf - x is -inf, -inf - -inf NaN). */
          const bool moves = m - row_max[nt][r] > kLazyRescaleLog2;
          const float new_max = moves ? m : row_max[nt][r];
          base[nt][r] = new_max == -INFINITY ? 0.f : new_max; /* a fully masked row stays at 0 */
          rescale[nt][r] = moves ? exp2_ftz(row_max[nt][r] - base[nt][r]) : 1.f;
          row_max[nt][r] = new_max;
          row_sum[nt][r] *= rescale[nt][r];
          moved |= moves;
        }
      if constexpr (per_token) moved |= v_exponent_step != 1.f;
      if (__any_sync(0xffffffffu, moved)) {
        float acc_rescale[NTiles][2];
#pragma unroll
        for (int nt = 0; nt < NTiles; ++nt) {
          acc_rescale[nt][0] = rescale[nt][0] * v_exponent_step;
          acc_rescale[nt][1] = rescale[nt][1] * v_exponent_step;
        }
#pragma unroll
        for (int dt = 0; dt < HeadDim / 16; ++dt)
#pragma unroll
          for (int nt = 0; nt < NTiles; ++nt) {
            acc[dt][nt][0] *= acc_rescale[nt][0];
            acc[dt][nt][1] *= acc_rescale[nt][1];
            acc[dt][nt][2] *= acc_rescale[nt][0];
            acc[dt][nt][3] *= acc_rescale[nt][1];
          }
      }

      /* ---- O^T += V^T P: dims on M, tokens on K, rows on N ------------------------------- */
#pragma unroll
      for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
        /* P as the B fragment: (token 2 quad + {0,1} (+8), row lane_row), via an 8x8 transpose. */
        uint32_t pb[NTiles][2], pb_lo[NTiles][2];
#pragma unroll
        for (int nt = 0; nt < NTiles; ++nt) {
          float prob[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            prob[e] = exp2_ftz(s[mt][nt][e] - base[nt][e & 1]);
            row_sum[nt][e & 1] += prob[e];
            if constexpr (per_token) prob[e] *= v_tok_scale[warp_token0 + 16 * mt + lane_row + 8 * (e >> 1)] * v_multiplier;
          }
          const uint32_t top = pack2<kBf16Mma>(prob[0], prob[1]);
          const uint32_t bottom = pack2<kBf16Mma>(prob[2], prob[3]);
          pb[nt][0] = movmatrix_trans(top);
          pb[nt][1] = movmatrix_trans(bottom);
          if (p_split) {
            const float2 top_hi = unpack2<kBf16Mma>(top), bottom_hi = unpack2<kBf16Mma>(bottom);
            pb_lo[nt][0] = movmatrix_trans(pack2<kBf16Mma>(prob[0] - top_hi.x, prob[1] - top_hi.y));
            pb_lo[nt][1] = movmatrix_trans(pack2<kBf16Mma>(prob[2] - bottom_hi.x, prob[3] - bottom_hi.y));
          }
        }
        /* V^T as the A fragment: lane_row owns dims [lane_row * D/8, +D/8); pairs of tokens
         * (2 quad, 2 quad + 1) and (2 quad + 8, 2 quad + 9) are byte-permuted together. */
        const int t0 = warp_token0 + 16 * mt + 2 * quad;
#pragma unroll
        for (int q = 0; q < Cfg::kPiecesPerLane; ++q) {
          /* Lane rows 2i and 2i+1 read chunks of opposite parity, which the even swizzle of
           * tokens 2 quad keeps apart: no bank conflicts. */
          const int byte = piece_byte<Cfg>(lane_row, q);
          uint32_t rows[4][Cfg::kPieceBytes / 4];
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int token = t0 + (r & 1) + (r >> 1) * 8;
            const uint8_t *src = v_tile + token * Cfg::kPitch + (((byte >> 4) ^ swizzle(token)) << 4) + (byte & 15);
            if constexpr (Cfg::kPieceBytes == 16) {
              const uint4 v = *reinterpret_cast<const uint4 *>(src);
              rows[r][0] = v.x;
              rows[r][1] = v.y;
              rows[r][2] = v.z;
              rows[r][3] = v.w;
            } else {
              const uint2 v = *reinterpret_cast<const uint2 *>(src);
              rows[r][0] = v.x;
              rows[r][1] = v.y;
            }
          }
#pragma unroll
          for (int j = 0; j < Cfg::kDimTilesPerPiece; ++j) {
            const int dt = q * Cfg::kDimTilesPerPiece + j;
            uint32_t a[4];
            if constexpr (Kind >= KV_E4M3) {
              /* dims 2j, 2j + 1 of the piece are bytes 2 (j % 2), +1 of word j / 2 */
              const uint32_t sel = (j & 1) ? 0x7362u : 0x5140u;
              const uint32_t top = prmt(rows[0][j >> 1], rows[1][j >> 1], sel);
              const uint32_t bottom = prmt(rows[2][j >> 1], rows[3][j >> 1], sel);
              a[0] = e4m3x2_low_to_f16x2(top);
              a[1] = e4m3x2_high_to_f16x2(top);
              a[2] = e4m3x2_low_to_f16x2(bottom);
              a[3] = e4m3x2_high_to_f16x2(bottom);
            } else {
              a[0] = prmt(rows[0][j], rows[1][j], 0x5410u);
              a[1] = prmt(rows[0][j], rows[1][j], 0x7632u);
              a[2] = prmt(rows[2][j], rows[3][j], 0x5410u);
              a[3] = prmt(rows[2][j], rows[3][j], 0x7632u);
            }
#pragma unroll
            for (int nt = 0; nt < NTiles; ++nt) {
              mma16816<kBf16Mma>(acc[dt][nt], a, pb[nt][0], pb[nt][1]);
              if (p_split) mma16816<kBf16Mma>(acc[dt][nt], a, pb_lo[nt][0], pb_lo[nt][1]);
            }
          }
        }
      }
    }
    __syncthreads(); /* every warp is done with the last tile, whose stage takes the combine */
    trace(PADEC_TRACE_LAST_TILE);

    /* The consumer moves on; the producer, already in nxt's tiles, moves into the one after. */
    const int finished_work = cur.work, finished_b = cur.b, finished_kv_head = cur.s.kv_head;
    cur = nxt;
    /* The last pass of a split item checks in with the fused merge below: warp 0's first
     * round of the group search leaves now and is in flight through the combine and write. */
    const bool checks_in = partial_loc >= 0 && p.fused_merge && cur.work != finished_work;
    const int group_probe = checks_in && !grid && warp == 0 ? group_probe_load(p, lane) : 0;
    if (cur.valid) {
      nxt = next_segment(cur);
      if constexpr (kPrefetchQ) {
        load_q(cur, q_rows);
        q_rows_loaded = true;
      }
    }
    if (producer_on_next) {
      producer_on_next = false;
      if (producer_settle()) load_page_ids(producer_stream(), producer_tile, page_ids);
    }
    /* A short nxt may have stalled the producer (it cannot see past nxt): refill up to
     * p.pipeline_depth - 1 tiles, as the prologue does. Every warp is past the last tile, and the
     * stage the combine takes below stays free (depth <= kStages). Outside a stall this issues
     * nothing. */
    while (issued < consumed + p.pipeline_depth - 1 && producer_has_tile()) issue_next();

    /* ---- combine the four warps' states and write -----------------------------------------
     * Each warp stores its accumulators register-major (register i of lane l at [warp][i][l]),
     * and each thread then combines, across the four warps, a quarter of the registers of lane
     * tid % 32: every shared-memory access on both sides is 32 consecutive words, free of bank
     * conflicts. Row-major (one register's rows a multiple of 256 bytes apart across a quad, its
     * dims 8 or 16 apart across the lane rows), 8 to 16 lanes met on one bank at every segment's
     * end. Each output element is the same sum in the same order as row-major, so the results
     * are bitwise the same.
     * A lane's registers hold 2 * NTiles query rows (n-tile nt, r = 0, 1), and the thread's
     * quarter is one of those rows (and, at NTiles = 1, half of its dim tiles), so that each
     * thread works out one row's weights, LSE and output offsets: that part, not the sums, is
     * most of the phase's instructions, and it runs with one warp a scheduler on the critical
     * path at the end of a launch. */
    constexpr int kAccRegs = HeadDim / 16 * NTiles * 4;
    constexpr int kLaneRows = 2 * NTiles;
    constexpr int kRowReaders = kWarps / kLaneRows;             /* threads that share a lane's row */
    constexpr int kReaderDimTiles = HeadDim / 16 / kRowReaders; /* dim tiles a thread combines */
    static_assert(kWarps % kLaneRows == 0 && kReaderDimTiles >= 1, "a thread combines one row");
    float *combine = reinterpret_cast<float *>(pipe + (consumed + Cfg::kStages - 1) % Cfg::kStages * Cfg::kStageBytes);
    const float acc_unscale = ldexpf(1.f, -v_exponent);
#pragma unroll
    for (int nt = 0; nt < NTiles; ++nt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        row_sum[nt][r] += __shfl_xor_sync(0xffffffffu, row_sum[nt][r], 4);
        row_sum[nt][r] += __shfl_xor_sync(0xffffffffu, row_sum[nt][r], 8);
        row_sum[nt][r] += __shfl_xor_sync(0xffffffffu, row_sum[nt][r], 16);
        if (lane_row == 0) {
          warp_row_max[warp * kRows + 8 * nt + 2 * quad + r] = row_max[nt][r];
          warp_row_sum[warp * kRows + 8 * nt + 2 * quad + r] = row_sum[nt][r];
        }
      }
#pragma unroll
    for (int dt = 0; dt < HeadDim / 16; ++dt)
#pragma unroll
      for (int nt = 0; nt < NTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          combine[(warp * kAccRegs + (dt * NTiles + nt) * 4 + e) * 32 + lane] = acc[dt][nt][e] * acc_unscale;
    __syncthreads();
    /* The thread's row: lane tid % 32's C-fragment row 8 nt + 2 quad + r of the pass, with
     * (nt, r) from the warp; the warp's share picks the row's dim tiles. */
    {
      const int lane_row_index = warp % kLaneRows, share = warp / kLaneRows;
      const int nt = lane_row_index >> 1, r = lane_row_index & 1;
      const int row = 8 * nt + 2 * quad + r;
      const int global_row = pass_row + row;
      if (global_row < p.rows) {
        float m = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) m = fmaxf(m, warp_row_max[w * kRows + row]);
        float weights[kWarps], total = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
          const float wm = warp_row_max[w * kRows + row];
          weights[w] = m == -INFINITY ? 0.f : exp2f(wm - m);
          total += weights[w] * warp_row_sum[w * kRows + row];
        }
        const float inv = total > 0.f ? 1.f / total : 0.f;
        /* A NaN score spoiled the row (its probabilities, and so total, are NaN): NaN, not the
         * -inf of a row that sees nothing, or a merge would drop the split as empty. */
        const float lse = total != 0.f ? (m + log2f(total)) * 0.6931471805599453f : -INFINITY;
        const float out_scale = per_token ? inv : inv * v_scale;
        const int qi = global_row / p.group;
        const int head = q_head_start + global_row % p.group;
        const bool writes_lse = share == 0 && lane_row == 0;
        int64_t out_base;
        if (partial_loc < 0) {
          out_base = (int64_t)(qo_start + qi) * p.o_stride_token + head * p.o_stride_head;
          if (p.lse && writes_lse) p.lse[(int64_t)(qo_start + qi) * p.num_q_heads + head] = lse;
        } else {
          const int64_t prow = (int64_t)partial_loc + qi;
          out_base = (prow * p.num_q_heads + head) * HeadDim;
          if (writes_lse) p.partial_lse[prow * p.num_q_heads + head] = lse;
        }
#pragma unroll
        for (int k = 0; k < kReaderDimTiles; ++k) {
          const int dt = share * kReaderDimTiles + k;
          const int group = dt * NTiles + nt;
          /* Registers r and r + 2 of a group hold dims dim and dim + 1 of the row. */
          const int dim = piece_byte<Cfg>(lane_row, dt / Cfg::kDimTilesPerPiece) / Cfg::kElemBytes +
                          2 * (dt % Cfg::kDimTilesPerPiece);
          float v[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            float sum = 0.f;
#pragma unroll
            for (int w = 0; w < kWarps; ++w)
              sum += weights[w] * combine[(w * kAccRegs + group * 4 + r + 2 * h) * 32 + lane];
            v[h] = sum * out_scale;
          }
          if (partial_loc < 0) {
            store_output(p.o, out_base + dim, p.o_dtype, v[0]);
            store_output(p.o, out_base + dim + 1, p.o_dtype, v[1]);
          } else {
            *reinterpret_cast<float2 *>(p.partial_o + out_base + dim) = make_float2(v[0], v[1]);
          }
        }
      }
    }

    trace(PADEC_TRACE_WRITTEN);

    /* ---- fused merge: the last split of a group (for this KV head) to finish merges it ------ */
    if (checks_in) {
      /* The CTA's partials are ordered before thread 0's release by the barrier (the release is
       * cumulative), and the merging CTA's reads after its acquire by the next barrier. */
      __syncthreads();
      /* A grid block's group is its sequence, with grid_splits slots from b * grid_splits. */
      int found_group = finished_b;
      int2 slots = make_int2(finished_b * p.grid_splits, (finished_b + 1) * p.grid_splits);
      if (!grid && warp == 0) {
        found_group = find_group_warp(p, partial_loc / p.q_len, lane, group_probe);
        slots = group_slots_warp(p, found_group, group_probe);
      }
      if (tid == 0) {
        /* Workspace counters were cleared by the grid this launch may overlap (launch.cu). */
        asm volatile("griddepcontrol.wait;\n" ::: "memory");
        int32_t *counter = p.merge_counters + (int64_t)found_group * p.num_kv_heads + finished_kv_head;
        const int arrived = atomic_add_acq_rel(counter, 1) + 1;
        const bool last = arrived == slots.y - slots.x;
        /* The last arrival owns the counter now: no other CTA of this launch touches it, and
         * the next launch on the stream sees the zero (padec_tensors.merge_counters). */
        if (last) *counter = 0;
        merge_claim[0] = last ? found_group : -1;
        merge_claim[1] = slots.x;
        merge_claim[2] = slots.y;
      }
      __syncthreads();
      if (merge_claim[0] >= 0) {
        const int slot_begin = merge_claim[1], slot_end = merge_claim[2];
        for (int r = warp; r < p.rows; r += kWarps) {
          const int qi = r / p.group;
          merge_row_warp<HeadDim>(p, slot_begin, slot_end, qi, qo_start + qi, q_head_start + r % p.group, lane);
        }
        if (p.trace) {
          __syncthreads(); /* every warp's rows are written */
          trace(PADEC_TRACE_MERGED);
        }
      }
    }
  }
  trace(PADEC_TRACE_EXIT);
}

}  // namespace padec_cuda
