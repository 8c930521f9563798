#!/usr/bin/env bash
# padec plan: the summary over the repository's workloads file (and the predicted time per worker
# of every policy, side by side), --policy cost (with and without --cost-model), and --dump as
# valid JSON with the six metadata buffers, consistent with the header counts.
set -u
padec=${1:?usage: plan_dump.sh PADEC_BINARY SOURCE_DIR}
src=${2:?usage: plan_dump.sh PADEC_BINARY SOURCE_DIR}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# The default FILE is bench/workloads.txt relative to the current directory.
out=$(cd "$src" && "$padec" plan --workers 264) || fail "plan over bench/workloads.txt exited $?"
expected=$(grep -cvE '^[[:space:]]*(#|$)' "$src/bench/workloads.txt")
rows=$(grep -cE '^[a-z0-9].* [0-9]+ +264 ' <<<"$out")
[[ $rows -eq $expected ]] || { fail "plan printed $rows rows for $expected workloads"; echo "$out"; }
# The predicted table: a row per workload, a min/mean/max and max/mean cell per policy.
grep -qE '^workload +even +batch_invariant +cost' <<<"$out" || fail "no predicted-time table header"
cell='[0-9.]+/[0-9.]+/[0-9.]+ [0-9.]+'
predicted=$(grep -cE "^[a-z0-9][^ ]* +$cell +$cell +$cell *\$" <<<"$out")
[[ $predicted -eq $expected ]] || { fail "predicted table has $predicted rows for $expected workloads"; echo "$out"; }
out=$(cd "$src" && "$padec" plan --workers 264 --policy cost) || fail "plan --policy cost exited $?"
grep -q "policy cost" <<<"$out" || fail "plan --policy cost does not say so"
rows=$(grep -cE '^[a-z0-9].* [0-9]+ +264 ' <<<"$out")
[[ $rows -eq $expected ]] || { fail "plan --policy cost printed $rows rows for $expected workloads"; echo "$out"; }

# --cost-model: the cost plan follows the given model (a large item_ns gathers a skewed batch's
# short sequences into fewer items than the default does) and the predicted table says so.
skew='name=skew q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=4000,30x7'
works() { grep -E '^skew +8 ' <<<"$1" | awk '{print $6}'; }
default_plan=$("$padec" plan --policy cost --workers 16 --workload "$skew") || fail "plan --policy cost (skew) exited $?"
given_plan=$("$padec" plan --policy cost --workers 16 --cost-model 5000,20000,30000 --workload "$skew") ||
  fail "plan --cost-model exited $?"
grep -q 'under the given cost model (--cost-model 5000,20000,30000)' <<<"$given_plan" ||
  fail "plan --cost-model: the predicted table does not name the given model"
[[ -n "$(works "$default_plan")" && -n "$(works "$given_plan")" &&
  $(works "$given_plan") -lt $(works "$default_plan") ]] ||
  { fail "plan --cost-model: work items $(works "$given_plan") against $(works "$default_plan") by default"; echo "$given_plan"; }

command -v python3 >/dev/null || { echo "python3 not found: skipping the JSON part"; exit 77; }
json=$(mktemp)
trap 'rm -f "$json"' EXIT
for policy in even cost; do
"$padec" plan --dump --workers 12 --partition 16 --policy $policy \
  --workload 'name=a q_heads=8 kv_heads=2 head_dim=64 page=4 kv=bf16 lens=1,17,300,0,1000x3' \
  --workload 'name=b q_heads=32 kv_heads=8 head_dim=128 page=16 kv=fp8 window=64 q_len=2 lens=5000,10' \
  >"$json" || fail "plan --dump --policy $policy exited $?"
python3 -m json.tool "$json" >/dev/null || fail "plan --dump --policy $policy is not valid JSON"
for name in work_indptr work_info reduce_indptr reduce_final_map reduce_partial_map partition_indptr; do
  grep -q "\"$name\"" "$json" || fail "plan --dump --policy $policy has no $name"
done
python3 - "$json" "$policy" <<'PY' || fail "plan --dump --policy $policy buffers disagree with their header"
import json, sys
doc = json.load(open(sys.argv[1]))
assert len(doc["plans"]) == 2, "want 2 plans"
for p in doc["plans"]:
    assert p["path"] == "persistent", "path"
    assert p["header"]["policy"] == sys.argv[2], "header policy"
    pred = p["predicted_us"]
    assert 0 <= pred["min"] <= pred["mean"] <= pred["max"], "predicted_us"

    h = p["header"]
    assert len(p["work_indptr"]) == h["num_workers"] + 1
    assert p["work_indptr"][-1] == h["num_works"] == len(p["work_info"])
    assert all(len(row) == 8 for row in p["work_info"])
    assert len(p["reduce_indptr"]) == h["batch"] + 1 == len(p["partition_indptr"])
    assert len(p["reduce_final_map"]) == h["num_groups"]
    assert len(p["reduce_partial_map"]) == h["num_partial_slots"] == p["reduce_indptr"][-1]
    assert p["partition_indptr"][-1] == h["num_partitions"]
PY
done

# --policy auto: each plan row names the policy picked, and a row's items per worker is min-max.
auto_plan=$("$padec" plan --policy auto --workers 16 --workload "$skew") || fail "plan --policy auto exited $?"
grep -qE '^skew +8 +16 +(even|cost|batch_invariant) +[0-9]+ +[0-9]+ +[0-9]+-[0-9]+ ' <<<"$auto_plan" ||
  { fail "plan --policy auto: the row does not name the picked policy and items per worker"; echo "$auto_plan"; }

# --dump --policy auto: a workload auto sends to the grid path keeps its entry (path "grid", its
# split count), beside the persistent plans.
"$padec" plan --dump --policy auto --workers 16 --workload "$skew" \
  --workload 'name=even q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=300x64' >"$json" ||
  fail "plan --dump --policy auto exited $?"
python3 - "$json" <<'PY' || fail "plan --dump --policy auto does not list both workloads by path"
import json, sys
plans = {p["name"]: p for p in json.load(open(sys.argv[1]))["plans"]}
assert set(plans) == {"skew", "even"}, sorted(plans)
assert plans["skew"]["path"] == "persistent" and "work_info" in plans["skew"]
assert plans["even"]["path"] == "grid" and plans["even"]["grid_splits"] == 1
assert plans["even"]["kv_lens"] == [300] * 64
PY

# A name of any bytes still gives valid JSON (bytes that are not UTF-8 become U+FFFD), and a
# model whose predictions are not finite says why: under each row, and as predicted_error.
names=$(mktemp)
printf 'name=a\xff\xc3\xa9 q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=100\n' >"$names"
"$padec" plan --dump "$names" >"$json" || fail "plan --dump of a non-UTF-8 name exited $?"
rm -f "$names"
python3 - "$json" <<'PY' || fail "plan --dump of a non-UTF-8 name is not valid JSON with U+FFFD"
import json, sys
assert [p["name"] for p in json.load(open(sys.argv[1], encoding="utf-8"))["plans"]] == ["a\ufffd\u00e9"]
PY
absurd='name=t q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=100,3000,50'
out=$("$padec" plan --cost-model 1e308,1e308,1e308 --workload "$absurd") || fail "plan with an absurd model exited $?"
grep -qE '^ +cost: predict: .*predicted time is not finite' <<<"$out" || { fail "plan hides why a prediction failed"; echo "$out"; }
"$padec" plan --dump --cost-model 1e308,1e308,1e308 --workload "$absurd" >"$json" || fail "plan --dump with an absurd model exited $?"
python3 - "$json" <<'PY' || fail "plan --dump with an absurd model has no predicted_error"
import json, sys
plan = json.load(open(sys.argv[1]))["plans"][0]
assert "predicted_us" not in plan and "not finite" in plan["predicted_error"], plan.keys()
PY

if ((failures)); then exit 1; fi
echo "plan_dump: ok"
