#!/usr/bin/env python3
"""Writes the binary seed inputs of fuzz_params and fuzz_schedule into fuzz/corpus/.

The text seeds of fuzz_workload_parse are plain workload lines and are kept as they are. Rerun
this after changing how a target decodes its input: python3 fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# padec_params field order (include/padec.h): num_q_heads, num_kv_heads, head_dim, page_size,
# kv_layout, q_dtype, kv_dtype, o_dtype, q_len, window_left, softmax_scale, fp8_scale_mode,
# k_scale, v_scale.
def params(q_heads=32, kv_heads=8, head_dim=128, page=16, layout=0, q=0, kv=0, o=0, q_len=1,
           window=0, scale=0.0, mode=0, k_scale=0.0, v_scale=0.0):
    return struct.pack("<10ififf", q_heads, kv_heads, head_dim, page, layout, q, kv, o, q_len,
                       window, scale, mode, k_scale, v_scale)


def params_input(p, batch, workers, partition, policy=0, part_args=(4096, 1, 0, 4), table=b""):
    return (p + struct.pack("<i", batch) + struct.pack("<3i", workers, partition, policy)
            + struct.pack("<4i", *part_args) + table)


def write(target, name, data):
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# fuzz_params: valid layouts of several shapes, and a few invalid ones.
table = bytes([4, 40, 0, 2]) + bytes([2, 0, 0, 3, 5, 0, 0, 0, 0, 1, 0x10, 0]) + bytes(range(64))
write("fuzz_params", "valid-default", params_input(params(), 64, 264, 0, table=table))
write("fuzz_params", "valid-fp8-token", params_input(
    params(q_heads=16, kv_heads=2, head_dim=64, page=1, kv=3, o=2, q_len=4, window=100, mode=3),
    7, 3, 16, part_args=(100, 4, 7, 0), table=table))
write("fuzz_params", "valid-fp8-tensor", params_input(
    params(kv=3, mode=1, k_scale=0.01, v_scale=0.02, page=1024, layout=1), 1 << 24, 65536, 16384))
write("fuzz_params", "invalid-heads", params_input(params(q_heads=12), 4, 8, 256))
write("fuzz_params", "invalid-nan-scale", params_input(params(scale=float("nan")), 4, 8, 256))
write("fuzz_params", "invalid-workers", params_input(params(), 4, 0, 24, policy=3))

# fuzz_schedule: shape word, window word, workers (u16), batch (u16), then (length code, repeat)
# runs; see decode() in fuzz_schedule.c.
# policy: 0 even, 1 batch_invariant, 2 cost (default model), 3 cost with model number `model`.
def shape(kv_heads, q_len, group, head_dim_code=1, page_code=4, q_len_explicit=1, window_kind=0,
          workers_kind=2, partition_code=0, policy=0, model=0):
    return (((kv_heads - 1) % 16) | ((q_len - 1) % 4) << 4 | ((group - 1) % 16) << 6
            | head_dim_code << 10 | page_code << 12 | q_len_explicit << 16 | window_kind << 17
            | workers_kind << 19 | partition_code << 21 | policy << 25 | model << 27)

def schedule_input(shape_word, window, workers, batch, runs):
    data = struct.pack("<IIHH", shape_word, window, workers, batch)
    for code, repeat in runs:
        data += code + bytes([repeat])
    return data

u16 = lambda v: struct.pack("<H", v)
u32 = lambda v: struct.pack("<I", v)
write("fuzz_schedule", "skew", schedule_input(shape(8, 1, 4), 0, 263, 64,
      [(b"\x05" + u32(32768), 0), (b"\x04" + u16(1024), 15), (b"\x04" + u16(1024), 15),
       (b"\x04" + u16(1024), 15), (b"\x04" + u16(1024), 15)]))
write("fuzz_schedule", "window-qlen4", schedule_input(shape(2, 4, 8, window_kind=2), 700, 97, 9,
      [(b"\x02\x07", 0), (b"\x00", 0), (b"\x03\x05\x02", 2), (b"\x04" + u16(5000), 4)]))
write("fuzz_schedule", "few-workers", schedule_input(shape(16, 2, 2, workers_kind=0), 0, 5, 5,
      [(b"\x01\x03", 0), (b"\x04" + u16(20000), 3)]))
write("fuzz_schedule", "near-int32-max", schedule_input(shape(1, 1, 1, partition_code=0), 0, 2, 20,
      [(b"\x07\x00", 15), (b"\x07\x05", 3)]))
write("fuzz_schedule", "many-splits", schedule_input(shape(3, 3, 5, workers_kind=3), 0, 4000, 3,
      [(b"\x05" + u32(1 << 21), 2)]))
write("fuzz_schedule", "skew-cost", schedule_input(shape(8, 1, 4, partition_code=4, policy=2), 0,
      263, 128, [(b"\x05" + u32(32768), 1), (b"\x04" + u16(256), 15), (b"\x04" + u16(256), 15),
                 (b"\x04" + u16(256), 15), (b"\x04" + u16(256), 15), (b"\x02\x80", 15)]))
write("fuzz_schedule", "few-workers-cost", schedule_input(shape(16, 2, 2, workers_kind=0, policy=2),
      0, 5, 7, [(b"\x01\x03", 0), (b"\x04" + u16(20000), 3), (b"\x00", 1)]))
write("fuzz_schedule", "window-cost-dear-items", schedule_input(
      shape(2, 4, 8, window_kind=2, policy=3, model=1), 700, 97, 9,
      [(b"\x02\x07", 0), (b"\x00", 0), (b"\x03\x05\x02", 2), (b"\x04" + u16(5000), 4)]))
write("fuzz_schedule", "many-splits-cost-no-overhead", schedule_input(
      shape(3, 3, 5, workers_kind=3, policy=3, model=0), 0, 4000, 3, [(b"\x05" + u32(1 << 21), 2)]))

# fuzz_params: with the cost policy, a padec_cost_model (three doubles) follows the options.
def cost_params_input(p, batch, workers, partition, model, part_args=(4096, 1, 0, 4), table=b""):
    return (p + struct.pack("<i", batch) + struct.pack("<3i", workers, partition, 1)
            + struct.pack("<3d", *model) + struct.pack("<4i", *part_args) + table)


write("fuzz_params", "valid-cost", cost_params_input(params(), 64, 264, 0, (6000.0, 1500.0, 800.0),
                                                      table=table))
write("fuzz_params", "invalid-cost-nan", cost_params_input(
    params(q_heads=16, kv_heads=4), 9, 33, 16, (float("nan"), 1.0, 1.0), part_args=(100, 2, 5, 1)))

# fuzz_plan_corrupt: a shape word (bits: KV heads, group, q_len, window, batch - 1 at 4, the
# lengths / 9 in nibbles from bit 8, workers - 1 at 24, the policy at 30), then (where, how)
# word pairs that edit the plan's body.
def corrupt_input(kv_heads_2=0, group_2=0, q_len_2=0, window=0, batch=4, lens9=(15, 15, 3, 0),
                  workers=6, policy=0, edits=()):
    shape = (kv_heads_2 | group_2 << 1 | q_len_2 << 2 | window << 3 | (batch - 1) << 4
             | sum(n << (8 + 4 * i) for i, n in enumerate(lens9)) | (workers - 1) << 24
             | policy << 30)
    return u32(shape) + b"".join(u32(w) + u32(h) for w, h in edits)


write("fuzz_plan_corrupt", "as-built", corrupt_input())
write("fuzz_plan_corrupt", "slot-moved", corrupt_input(kv_heads_2=1, edits=[(9, 1 << 30 | 3)]))
write("fuzz_plan_corrupt", "cost-any-value", corrupt_input(q_len_2=1, window=1, policy=1,
                                                           edits=[(20, 0xc0001000), (3, 0x85)]))
