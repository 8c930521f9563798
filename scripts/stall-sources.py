#!/usr/bin/env python3
"""The instructions where a kernel's warps were sampled most, from ncu's source page.

Usage: scripts/stall-sources.py SOURCE_CSV [COUNT]

SOURCE_CSV is `ncu --import REPORT --page source --csv --print-source sass` of a report taken
with `--section SourceCounters` (one kernel). Prints the COUNT (default 25) instructions with the
most warp-state samples: their share of all samples, their offset from the kernel's first
instruction (the offsets `scripts/sass.sh` prints, so a sample can be read in its context), the
instruction, the samples not issued, and the stall reasons that are not zero there (ncu 2025.3
gives a column a reason, as stall_long_sb). Columns are found by name, so that a different ncu
version's order or extra columns do not matter; the header is printed when the expected ones
are missing.
"""
import csv
import sys


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().split("\n\n")[1])
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 25
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
    # The not-issued total and each stall reason's samples (their own not-issued parts and the
    # plain sample count repeat what these say).
    extra = [i for i, n in enumerate(names)
             if i not in (samples, address, source) and ("stall" in n.lower() or "sampl" in n.lower())
             and "(Not Issued)" not in n and n != "# Samples"]
    for r in sorted(body, key=lambda r: -(number(r[samples]) or 0))[:count]:
        share = 100 * (number(r[samples]) or 0) / total
        others = [(names[i], number(r[i])) for i in extra if number(r[i])]
        details = ", ".join(f"{n} {v:.0f}" for n, v in others)
        print(f"{share:5.1f}% {int(r[address], 16) - start:#07x}  {r[source].strip()[:60]:60}  {details}")


if __name__ == "__main__":
    main()
