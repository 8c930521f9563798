/* Internal helpers shared by the library's C sources (never included by nvcc-compiled kernels
 * except through the launch glue). */
#ifndef PADEC_INTERNAL_H
#define PADEC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "padec.h"

#if defined(__GNUC__) || defined(__clang__)
#define PADEC_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define PADEC_PRINTF(fmt_index, first_arg)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Records the detailed message of a failure (thread-local, and to the log callback) and returns
 * status, so that error paths read `return padec__fail(STATUS, "...", ...)`. */
padec_status padec__fail(padec_status status, const char *format, ...) PADEC_PRINTF(2, 3);

/* Clears this thread's last message (called on entry of public functions that succeed). */
void padec__clear_message(void);

/* params with defaults applied (q_len, softmax_scale). Validate first. */
padec_params padec__params_normalized(const padec_params *params);

/* Scheduled partitions of a sequence (or shard) of kv_len cached tokens whose query tokens end
 * at position query_end counted from its first cached token (query_end = kv_len for a whole
 * sequence; seq_len - shard_start for a shard): partitions of [0, kv_len) that the window of
 * some query reaches. padec_num_partitions(kv_len, ...) is the case query_end = kv_len. */
int32_t padec__shard_num_partitions(int32_t kv_len, int32_t query_end, int32_t q_len,
                                    int32_t window_left, int32_t partition_tokens);

/* Fingerprint of the fields that shape a plan and its buffers. */
uint64_t padec__params_key(const padec_params *params);

/* Bytes of one element of dtype (1, 2 or 4). */
int32_t padec__dtype_bytes(padec_dtype dtype);

/* The shard check of sequence b, shared by the plan builder and the host validation: OK when
 * shard_starts is NULL; else 0 <= shard_starts[b] and shard_starts[b] + kv_lens[b] <= seq_lens[b]
 * (in 64 bits), BAD_ARGUMENT naming the sequence otherwise. */
padec_status padec__check_shard(int32_t b, const int32_t *kv_lens, const int32_t *shard_starts,
                                const int32_t *seq_lens);

/* Argument checks shared by the executors: params, layout, plan header (when plan_host is not
 * NULL), tensor pointers and alignment, workspace size. */
padec_status padec__check_run_arguments(const padec_params *params,
                                        const padec_plan_layout *layout, const void *plan,
                                        const void *plan_host, const padec_tensors *tensors,
                                        const void *workspace, size_t workspace_bytes);

/* Argument checks of the shard merge, shared by the CPU and CUDA entries. */
padec_status padec__check_shard_merge(const padec_params *params,
                                      const padec_shard_merge_tensors *tensors);

/* CUDA builds: 1 makes padec_cuda_run use the stand-alone merge kernel instead of merging in
 * the decode kernel (tests cover both). Not thread-safe; tests only. */
void padec__cuda_set_separate_merge(int separate);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_INTERNAL_H */
