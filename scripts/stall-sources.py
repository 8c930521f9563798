#!/usr/bin/env python3
"""The instructions where a kernel's warps were sampled most, from ncu's source page.

Usage: scripts/stall-sources.py SOURCE_CSV [COUNT]
       scripts/stall-sources.py REPORT.ncu-rep [COUNT]

SOURCE_CSV is `ncu --import REPORT --page source --csv --print-source sass` of a report taken
with `--section SourceCounters` (one kernel). Prints the COUNT (default 25) instructions with the
most warp-state samples: their share of all samples, their offset from the kernel's first
instruction (the offsets `scripts/sass.sh` prints, so a sample can be read in its context), the
instruction, and every other sampled column that is not zero there (ncu 2025.3 gives one a stall
reason, as stall_long_sb, and its not-issued part). Columns are found by name,
so that a different ncu version's order or extra columns do not matter; the header is printed
when the expected ones are missing.

Given the report itself, the same list comes from Nsight Compute's Python report interface
(ncu_report, found under the installation's extras/python), with the samples of every stall
reason at each instruction (the smsp__pcsamp_* metrics, one instance a PC); the offsets are then
from the lowest sampled instruction, which is the kernel's first where its entry was sampled.
"""
import csv
import glob
import sys


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def from_report(path, count):
    for pattern in ("/opt/nvidia/nsight-compute/*/extras/python", "/usr/local/cuda*/nsight-compute*/extras/python"):
        sys.path.extend(sorted(glob.glob(pattern)))
    import ncu_report  # pylint: disable=import-outside-toplevel

    action = ncu_report.load_report(path).range_by_idx(0).action_by_idx(0)
    prefix = "smsp__pcsamp_"
    per_pc = {}
    for name in action.metric_names():
        if not name.startswith(prefix):
            continue
        metric = action.metric_by_name(name)
        if not metric.has_correlation_ids():
            continue
        pcs = metric.correlation_ids()
        for i in range(metric.num_instances()):
            value = metric.as_uint64(i)
            if value:
                per_pc.setdefault(pcs.as_uint64(i), {})[name[len(prefix):]] = value
    if not per_pc:
        sys.exit(f"{path}: no per-instruction {prefix}* samples; metrics: {sorted(action.metric_names())[:40]}")
    start = min(per_pc)
    total_key = "sample_count" if any("sample_count" in v for v in per_pc.values()) else None

    def samples(values):
        if total_key:
            return values.get(total_key, 0)
        return sum(v for k, v in values.items() if k.startswith("warps_issue_stalled_") and not k.endswith("_not_issued"))

    total = sum(samples(v) for v in per_pc.values()) or 1
    print(f"{total} samples over {len(per_pc)} instructions ({total_key or 'the stall reasons summed'})")
    for pc, values in sorted(per_pc.items(), key=lambda item: -samples(item[1]))[:count]:
        reasons = sorted(((k[len("warps_issue_stalled_"):], v) for k, v in values.items()
                          if k.startswith("warps_issue_stalled_") and not k.endswith("_not_issued")),
                         key=lambda kv: -kv[1])
        try:
            text = action.sass_by_pc(pc)
        except Exception:  # pylint: disable=broad-except
            text = "?"
        details = ", ".join(f"{k} {v}" for k, v in reasons[:4])
        print(f"{100 * samples(values) / total:5.1f}% {pc - start:#07x}  {str(text).strip()[:50]:50}  {details}")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().split("\n\n")[1])
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 25
    if sys.argv[1].endswith(".ncu-rep"):
        from_report(sys.argv[1], count)
        return
    with open(sys.argv[1], newline="", errors="replace") as f:
        rows = list(csv.reader(f))
    header_at = next((i for i, r in enumerate(rows) if "Source" in [c.strip() for c in r]), None)
    if header_at is None:
        sys.exit(f"{sys.argv[1]}: no header with a 'Source' column; first lines: {rows[:3]}")
    names = [c.strip() for c in rows[header_at]]
    body = [r for r in rows[header_at + 1:] if len(r) == len(names)]

    def column(*words):
        return next((i for i, n in enumerate(names) if all(w.lower() in n.lower() for w in words)), None)

    source, address = names.index("Source"), column("Address")
    samples = column("Warp Stall Sampling", "All")
    if samples is None or address is None or not body:
        sys.exit(f"{sys.argv[1]}: no address or sampling column, or no rows; columns: {names}")
    start = min(int(r[address], 16) for r in body)
    total = sum(number(r[samples]) or 0 for r in body) or 1.0
    print(f"{total:.0f} samples over {len(body)} instructions ({names[samples]})")
    # Every other numeric column with samples in it: the not-issued share and the stall reasons.
    extra = [i for i, n in enumerate(names)
             if i not in (samples, address, source) and ("stall" in n.lower() or "sampl" in n.lower())]
    for r in sorted(body, key=lambda r: -(number(r[samples]) or 0))[:count]:
        share = 100 * (number(r[samples]) or 0) / total
        others = [(names[i], number(r[i])) for i in extra if number(r[i])]
        details = ", ".join(f"{n} {v:.0f}" for n, v in others)
        print(f"{share:5.1f}% {int(r[address], 16) - start:#07x}  {r[source].strip()[:60]:60}  {details}")


if __name__ == "__main__":
    main()
