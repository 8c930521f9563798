/* Pieces shared by the scheduling policies: partition counts and the work-item writer. */
#include "../internal.h"
#include "sched.h"

int32_t padec__sched_sequence_partitions(const padec_sched_input *in, int32_t b) {
  const int32_t query_end =
      in->seq_lens ? in->seq_lens[b] - in->shard_starts[b] : in->kv_lens[b];
  return padec__shard_num_partitions(in->kv_lens[b], query_end, in->q_len, in->window_left,
                                     in->partition_tokens);
}

padec_status padec__sched_partitions(const padec_sched_input *in, padec_sched_output *out,
                                     int32_t *num_partitions) {
  int64_t total = 0;
  if (out->partition_indptr) out->partition_indptr[0] = 0;
  for (int32_t b = 0; b < in->batch; ++b) {
    if (in->kv_lens[b] < 0)
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "kv_lens[%d] = %d is negative", b,
                         in->kv_lens[b]);
    total += padec__sched_sequence_partitions(in, b);
    if (total > INT32_MAX)
      return padec__fail(PADEC_STATUS_SIZE_OVERFLOW,
                         "the batch has 2^31 partitions of %d tokens or more", in->partition_tokens);
    if (out->partition_indptr) out->partition_indptr[b + 1] = (int32_t)total;
  }
  *num_partitions = (int32_t)total;
  return PADEC_STATUS_OK;
}

void padec__sched_emit(padec_sched_emitter *e, int32_t batch_index, int32_t partial_qo_loc,
                       int32_t qo_start, int32_t qo_end, int32_t kv_start, int32_t kv_end,
                       int32_t q_head_range) {
  if (e->num_works >= e->out->max_works) {
    e->overflow = true;
    return;
  }
  if (e->out->work_info) {
    int32_t *row = e->out->work_info + (int64_t)e->num_works * 8;
    row[0] = batch_index;
    row[1] = partial_qo_loc;
    row[2] = qo_start;
    row[3] = qo_end;
    row[4] = kv_start;
    row[5] = kv_end;
    row[6] = 0;
    row[7] = q_head_range;
  }
  e->num_works += 1;
}

void padec__sched_set_work_indptr(padec_sched_output *out, int32_t index, int32_t value) {
  if (out->work_indptr) out->work_indptr[index] = value;
}
