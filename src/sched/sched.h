/* The host scheduler: pure C11, no allocation, deterministic. Never includes CUDA. */
#ifndef PADEC_SCHED_H
#define PADEC_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "padec.h"

typedef struct padec_sched_input {
  int32_t batch;
  int32_t num_kv_heads;
  int32_t num_q_heads;
  int32_t num_workers;
  int32_t q_len;
  int32_t window_left;
  int32_t partition_tokens;
  const int32_t *kv_lens; /* [batch] */
  const int32_t *shard_starts; /* [batch] or NULL (whole sequences); see padec_tensors */
  const int32_t *seq_lens;     /* [batch] or NULL, given with shard_starts */
  /* The cost policy's model (padec_plan_layout.cost_*): partition in 1..2^16, item and split in
   * 0..2^30; unused by the other policies. */
  int64_t cost_partition, cost_item, cost_split;
} padec_sched_input;

/* Scheduled partitions of sequence b (shard-aware): every policy counts through this. */
int32_t padec__sched_sequence_partitions(const padec_sched_input *in, int32_t b);

/* Output arrays; any may be NULL for a dry run that only counts. Capacities are the layout's. */
typedef struct padec_sched_output {
  int32_t *work_indptr;        /* [num_workers + 1] */
  int32_t *work_info;          /* [max_works][8] */
  int32_t *reduce_indptr;      /* [batch + 1] */
  int32_t *reduce_final_map;   /* [batch][2] */
  int32_t *reduce_partial_map; /* [max_partial_slots] */
  int32_t *partition_indptr;   /* [batch + 1] */
  int32_t max_works;
  int32_t max_partial_slots;
} padec_sched_output;

typedef struct padec_sched_counts {
  int32_t num_works;
  int32_t num_partial_slots;
  int32_t num_groups;
  int32_t num_partitions; /* per KV head */
} padec_sched_counts;

/* Worst-case sizes for (batch, heads, workers); exact in the sense that some input reaches them. */
typedef struct padec_sched_bounds {
  int64_t max_works;
  int64_t max_partial_slots;
} padec_sched_bounds;

padec_sched_bounds padec__sched_bounds(padec_policy policy, int32_t batch, int32_t num_kv_heads,
                                       int32_t num_workers);

/* The `even` policy: the seed's greedy bin filler (equal partitions per worker), generalised to
 * any worker count. Returns OK, SIZE_OVERFLOW, or INTERNAL if a capacity would be exceeded. */
padec_status padec__schedule_even(const padec_sched_input *in, padec_sched_output *out,
                                  padec_sched_counts *counts);

/* Shared by the policies: the partition counts (partition_indptr when present, the total per
 * head in *num_partitions; rejects negative lengths and more than 2^31 partitions), and the
 * work-item writer that counts, checks the capacity, and writes when arrays are present. */
padec_status padec__sched_partitions(const padec_sched_input *in, padec_sched_output *out,
                                     int32_t *num_partitions);

typedef struct padec_sched_emitter {
  padec_sched_output *out;
  int32_t num_works;
  bool overflow;
} padec_sched_emitter;

void padec__sched_emit(padec_sched_emitter *e, int32_t batch_index, int32_t partial_qo_loc,
                       int32_t qo_start, int32_t qo_end, int32_t kv_start, int32_t kv_end,
                       int32_t q_head_range);
void padec__sched_set_work_indptr(padec_sched_output *out, int32_t index, int32_t value);

/* The `batch_invariant` policy (see padec.h): pieces fixed by each sequence alone, dealt to the
 * workers in order. Same contract as padec__schedule_even. */
padec_status padec__schedule_batch_invariant(const padec_sched_input *in, padec_sched_output *out,
                                             padec_sched_counts *counts);

/* The `cost` policy (see padec.h and cost.c): bins of equal cost capacity. Same contract and same
 * bounds as padec__schedule_even. */
padec_status padec__schedule_cost(const padec_sched_input *in, padec_sched_output *out,
                                  padec_sched_counts *counts);

/* The cost model scaled for one layout, in nanoseconds (cost.c). */
typedef struct padec_sched_cost_ns {
  double partition, item, split;
} padec_sched_cost_ns;

/* Checks model (NULL: the default; `name` names it in messages) and scales its partition time by the bytes a partition of
 * partition_tokens tokens moves at head_dim with KV elements of kv_bytes. Returns OK or
 * BAD_ARGUMENT naming the field. */
padec_status padec__cost_model_scaled(const padec_cost_model *model, const char *name,
                                      int32_t head_dim, int32_t kv_bytes,
                                      int32_t partition_tokens, padec_sched_cost_ns *out);

/* The integer units of padec_plan_layout.cost_* for a scaled model. */
void padec__cost_units(const padec_sched_cost_ns *ns, int32_t *partition, int32_t *item,
                       int32_t *split);
/* The cost of one partition in those units: every cost layout carries it. */
enum { PADEC_COST_PARTITION_UNITS = 1024 };

#endif /* PADEC_SCHED_H */
