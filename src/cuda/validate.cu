/*
 * padec_cuda_validate_kv: padec_validate_kv_host for a block table in device memory.
 *
 * The host check walks the sequences in order and stops at the first failed check. Here every
 * sequence is checked at once, and a fault is ranked by a 64-bit key, (sequence << 32) | rank,
 * where rank is the padec__kv_check value for the checks that read no page id (their values
 * follow the host's order) and PADEC__KV_PAGE_ID + i for the i-th page slot of the sequence. The
 * smallest key is the fault the host reports, so an atomicMin finds it without any ordering
 * between threads. Three launches on the caller's stream:
 *   1. one thread per sequence: page_indptr, kv_len against its pages, the shard; smallest key
 *      into sequence_key;
 *   2. one thread per page slot of the sequences before the first one that failed in 1 (their
 *      page_indptr rises from 0, so their slots are a well-formed range, and a slot finds its
 *      sequence by binary search); smallest key of a used slot with a bad page id into page_key;
 *   3. one thread: the smaller key, decoded into a padec__kv_fault with the values the message
 *      names, re-read from the arrays.
 * Step 2 reads no page slot outside page_indices (its sequences' pages end at or before
 * page_indptr[batch], its documented length, or step 1 refused them), and no slot past a
 * sequence's kv_len (padding pages are never read, as on the host). A sequence of
 * millions of pages is spread over the whole grid instead of one thread.
 */
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "../internal.h"
#include "cuda_status.h"
#include "padec_cuda.h"

namespace padec_cuda_validate {

constexpr int kThreads = 256;
constexpr int64_t kMaxSequenceBlocks = 1024;
/* One wave of the page check on an H100 (132 SMs x 8 resident CTAs of 256 threads); a larger
 * block table is walked with a grid stride. */
constexpr int kPageBlocks = 1024;
constexpr unsigned long long kNoFault = ~0ull;

/* device_scratch. Both keys start as kNoFault (all bits set: one memset). */
struct Scratch {
  unsigned long long sequence_key;
  unsigned long long page_key;
  padec__kv_fault fault;
};
static_assert(sizeof(Scratch) <= PADEC_CUDA_VALIDATE_SCRATCH_BYTES,
              "PADEC_CUDA_VALIDATE_SCRATCH_BYTES is too small");
static_assert(offsetof(Scratch, page_key) == sizeof(unsigned long long),
              "the two keys must be adjacent for the one memset");

struct ValidateArgs {
  const int32_t *page_indptr;  /* [batch + 1] */
  const int32_t *page_indices; /* [page_indptr[batch]] */
  const int32_t *kv_lens;      /* [batch] */
  const int32_t *shard_starts; /* [batch] or NULL */
  const int32_t *seq_lens;     /* [batch] or NULL */
  int64_t num_pages;
  int64_t num_page_indices; /* 0: not given */
  int32_t batch;
  int32_t page_size;
  Scratch *scratch;
};

__device__ __forceinline__ unsigned long long fault_key(int32_t sequence, int64_t rank) {
  return (static_cast<unsigned long long>(sequence) << 32) | static_cast<unsigned long long>(rank);
}

/* A plain read first: when many entries are bad, most candidates lose, and a read costs less
 * than an atomic. */
__device__ __forceinline__ void record(unsigned long long *key_slot, unsigned long long key) {
  if (key < *static_cast<volatile unsigned long long *>(key_slot)) atomicMin(key_slot, key);
}

/* The first check of sequence b that fails before its page ids, in padec_validate_kv_host's
 * order; PADEC__KV_OK if none. In 64 bits: page_indptr entries of a broken table may be anything. */
__device__ int32_t first_failed_check(const ValidateArgs &a, int32_t b) {
  if (b == 0 && a.page_indptr[0] != 0) return PADEC__KV_INDPTR_START;
  if (b == 0 && a.num_page_indices > 0 && a.page_indptr[a.batch] > a.num_page_indices) return PADEC__KV_INDICES_LENGTH;
  const int64_t first = a.page_indptr[b], last = a.page_indptr[b + 1];
  if (last < first) return PADEC__KV_INDPTR_ORDER;
  if (last > a.page_indptr[a.batch]) return PADEC__KV_INDPTR_END;
  const int64_t len = a.kv_lens[b];
  if (len < 0 || len > (last - first) * a.page_size) return PADEC__KV_LEN;
  if (a.shard_starts) {
    const int64_t start = a.shard_starts[b];
    if (start < 0) return PADEC__KV_SHARD_START;
    if (start + len > a.seq_lens[b]) return PADEC__KV_SHARD_END;
  }
  return PADEC__KV_OK;
}

static __global__ void __launch_bounds__(kThreads)
    check_sequences_kernel(const __grid_constant__ ValidateArgs a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < a.batch;
       b += stride) {
    const int32_t check = first_failed_check(a, static_cast<int32_t>(b));
    if (check != PADEC__KV_OK)
      record(&a.scratch->sequence_key, fault_key(static_cast<int32_t>(b), check));
  }
}

static __global__ void __launch_bounds__(kThreads)
    check_pages_kernel(const __grid_constant__ ValidateArgs a) {
  /* Sequences [0, checked) passed step 1: page_indptr[0] is 0 and rises up to
   * page_indptr[checked], and every kv_len there is within its pages. */
  const unsigned long long first_bad = a.scratch->sequence_key >> 32;
  const int32_t checked = first_bad < static_cast<unsigned long long>(a.batch)
                              ? static_cast<int32_t>(first_bad)
                              : a.batch;
  if (checked == 0) return;
  const int64_t slots = a.page_indptr[checked];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < slots;
       s += stride) {
    /* The sequence b that owns slot s: the last one with page_indptr[b] <= s. */
    int32_t lo = 0, hi = checked;
    while (hi - lo > 1) {
      const int32_t mid = lo + (hi - lo) / 2;
      if (a.page_indptr[mid] <= s)
        lo = mid;
      else
        hi = mid;
    }
    const int64_t slot_in_sequence = s - a.page_indptr[lo];
    const int64_t pages_used = (static_cast<int64_t>(a.kv_lens[lo]) + a.page_size - 1) / a.page_size;
    if (slot_in_sequence >= pages_used) continue;
    const int32_t page = a.page_indices[s];
    if (page < 0 || page >= a.num_pages)
      record(&a.scratch->page_key, fault_key(lo, PADEC__KV_PAGE_ID + slot_in_sequence));
  }
}

static __global__ void report_kernel(const __grid_constant__ ValidateArgs a) {
  Scratch *const scratch = a.scratch;
  const unsigned long long key =
      scratch->sequence_key < scratch->page_key ? scratch->sequence_key : scratch->page_key;
  padec__kv_fault f;
  f.check = PADEC__KV_OK;
  f.sequence = 0;
  f.values[0] = f.values[1] = f.values[2] = 0;
  if (key != kNoFault) {
    const int32_t b = static_cast<int32_t>(key >> 32);
    const int64_t rank = static_cast<int64_t>(key & 0xffffffffull);
    f.sequence = b;
    f.check = rank < PADEC__KV_PAGE_ID ? static_cast<int32_t>(rank) : PADEC__KV_PAGE_ID;
    switch (f.check) {
      case PADEC__KV_INDPTR_START:
        f.values[0] = a.page_indptr[0];
        break;
      case PADEC__KV_INDICES_LENGTH:
        f.values[0] = a.page_indptr[a.batch];
        f.values[1] = a.num_page_indices;
        f.values[2] = a.batch;
        break;
      case PADEC__KV_INDPTR_ORDER:
        f.values[0] = a.page_indptr[b];
        f.values[1] = a.page_indptr[b + 1];
        break;
      case PADEC__KV_INDPTR_END:
        f.values[0] = a.page_indptr[b + 1];
        f.values[1] = a.page_indptr[a.batch];
        f.values[2] = a.batch;
        break;
      case PADEC__KV_LEN: {
        const int64_t pages = static_cast<int64_t>(a.page_indptr[b + 1]) - a.page_indptr[b];
        f.values[0] = a.kv_lens[b];
        f.values[1] = pages;
        f.values[2] = pages * a.page_size;
        break;
      }
      case PADEC__KV_SHARD_START:
        f.values[0] = a.shard_starts[b];
        break;
      case PADEC__KV_SHARD_END:
        f.values[0] = a.shard_starts[b];
        f.values[1] = a.kv_lens[b];
        f.values[2] = a.seq_lens[b];
        break;
      default: {
        const int64_t slot = a.page_indptr[b] + (rank - PADEC__KV_PAGE_ID);
        f.values[0] = slot;
        f.values[1] = a.page_indices[slot];
        f.values[2] = a.num_pages;
        break;
      }
    }
  }
  scratch->fault = f;
}

}  // namespace padec_cuda_validate

using namespace padec_cuda_validate;

static padec_status validate_cuda_fail(cudaError_t error, const char *what) {
  char where[160];
  snprintf(where, sizeof where, "padec_cuda_validate_kv: %s", what);
  return padec__cuda_fail(error, where);
}

/* The call sets device_scratch before its kernels read the caller's arrays: a scratch carved
 * from one of them would change the data under check. page_indices is checked where its length
 * is given (num_page_indices); otherwise only the device knows it. */
static padec_status check_scratch_apart(int32_t batch, const padec_tensors *t, const void *scratch) {
  const struct {
    const void *array;
    int64_t count;
    const char *name;
  } read[] = {
      {t->page_indptr, static_cast<int64_t>(batch) + 1, "tensors.page_indptr"},
      {t->kv_lens, batch, "tensors.kv_lens"},
      {t->shard_starts, batch, "tensors.shard_starts"},
      {t->seq_lens, batch, "tensors.seq_lens"},
      {t->page_indices, t->num_page_indices, "tensors.page_indices"},
  };
  for (const auto &array : read) {
    if (padec__int32s_overlap(array.array, array.count, scratch, PADEC_CUDA_VALIDATE_SCRATCH_BYTES))
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "device_scratch overlaps %s, which the check reads",
                         array.name);
  }
  return PADEC_STATUS_OK;
}

extern "C" padec_status padec_cuda_validate_kv(const padec_params *params, int32_t batch,
                                               const padec_tensors *tensors, void *device_scratch,
                                               struct CUstream_st *stream) {
  padec_status status = padec__check_kv_arguments(params, batch, tensors);
  if (status != PADEC_STATUS_OK) return status;
  if (batch == 0) {
    padec__clear_message();
    return PADEC_STATUS_OK;
  }
  if (!device_scratch) return padec__fail(PADEC_STATUS_NULL_POINTER, "device_scratch is NULL");
  status = padec__check_kv_arrays(tensors);
  if (status != PADEC_STATUS_OK) return status;
  if (reinterpret_cast<uintptr_t>(device_scratch) % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "device_scratch must be 16-byte aligned");
  status = check_scratch_apart(batch, tensors, device_scratch);
  if (status != PADEC_STATUS_OK) return status;

  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  /* The call waits for the device; under capture that would invalidate the caller's graph. */
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaError_t error = cudaStreamIsCapturing(s, &capture);
  if (error != cudaSuccess) return validate_cuda_fail(error, "cudaStreamIsCapturing");
  if (capture != cudaStreamCaptureStatusNone)
    return padec__fail(PADEC_STATUS_CUDA_ERROR,
                       "padec_cuda_validate_kv: the stream is being captured, and this call "
                       "synchronises it");

  Scratch *const scratch = static_cast<Scratch *>(device_scratch);
  ValidateArgs a;
  a.page_indptr = tensors->page_indptr;
  a.page_indices = tensors->page_indices;
  a.kv_lens = tensors->kv_lens;
  a.shard_starts = tensors->shard_starts;
  a.seq_lens = tensors->seq_lens;
  a.num_pages = tensors->num_pages;
  a.num_page_indices = tensors->num_page_indices;
  a.batch = batch;
  a.page_size = params->page_size;
  a.scratch = scratch;

  status = padec__cuda_check_no_pending_error("padec_cuda_validate_kv");
  if (status != PADEC_STATUS_OK) return status;
  error = cudaMemsetAsync(&scratch->sequence_key, 0xff, 2 * sizeof(unsigned long long), s);
  if (error != cudaSuccess) return validate_cuda_fail(error, "cudaMemsetAsync(keys)");
  const int64_t sequence_blocks = (static_cast<int64_t>(batch) + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(sequence_blocks < kMaxSequenceBlocks ? sequence_blocks
                                                                           : kMaxSequenceBlocks);
  check_sequences_kernel<<<blocks, kThreads, 0, s>>>(a);
  error = cudaGetLastError();
  if (error != cudaSuccess) return validate_cuda_fail(error, "sequence check launch");
  check_pages_kernel<<<kPageBlocks, kThreads, 0, s>>>(a);
  error = cudaGetLastError();
  if (error != cudaSuccess) return validate_cuda_fail(error, "page check launch");
  report_kernel<<<1, 1, 0, s>>>(a);
  error = cudaGetLastError();
  if (error != cudaSuccess) return validate_cuda_fail(error, "report launch");

  padec__kv_fault fault;
  error = cudaMemcpyAsync(&fault, &scratch->fault, sizeof fault, cudaMemcpyDeviceToHost, s);
  if (error != cudaSuccess) return validate_cuda_fail(error, "cudaMemcpyAsync(result)");
  error = cudaStreamSynchronize(s);
  if (error != cudaSuccess) return validate_cuda_fail(error, "cudaStreamSynchronize");
  if (fault.check == PADEC__KV_OK) {
    padec__clear_message();
    return PADEC_STATUS_OK;
  }
  return padec__kv_fault_report(&fault);
}
