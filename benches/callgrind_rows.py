#!/usr/bin/env python3
"""Instructions per operation of every row of a bench program, counted by
callgrind (user-space instructions: repeatable whatever else the machine
is doing, unlike timings).

    benches/callgrind_rows.py PROGRAM [ARG...] > rows.json

PROGRAM is run as `PROGRAM rows ARG...` under callgrind. In that mode it
prints one line per row, `row <symbol> <group> <name> <operations>`, then
runs each row once; a row's count is the inclusive cost of its `<symbol>`
function (loop included) divided by its operations. The output is a JSON
list of rows (benches/bench_rows.py).
"""
import os
import re
import subprocess
import sys
import tempfile

import bench_rows


def manifest(stdout):
    rows = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "row":
            rows.append({"symbol": parts[1], "group": parts[2], "row": parts[3], "ops": int(parts[4])})
    return rows


def inclusive_costs(annotated, symbols):
    """The inclusive cost of each symbol: its largest line (with debug info,
    callgrind_annotate also lists the parts inlined from other files)."""
    patterns = {s: re.compile(r"(?<![A-Za-z0-9_])" + re.escape(s) + r"(?![A-Za-z0-9_])") for s in symbols}
    costs = {}
    for line in annotated.splitlines():
        m = re.match(r"\s*([\d,]+)\s", line)
        if not m:
            continue
        cost = int(m.group(1).replace(",", ""))
        for symbol, pattern in patterns.items():
            if pattern.search(line):
                costs[symbol] = max(costs.get(symbol, 0), cost)
    return costs


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    program, args = sys.argv[1], sys.argv[2:]
    fd, out = tempfile.mkstemp(prefix="callgrind.")
    os.close(fd)
    try:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", program, "rows", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        if run.returncode != 0:
            sys.exit(f"{program} under callgrind failed ({run.returncode}):\n{run.stderr[-2000:]}")
        rows = manifest(run.stdout)
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True,
        ).stdout
    finally:
        os.unlink(out)
    costs = inclusive_costs(annotated, [r["symbol"] for r in rows])
    missing = [r["symbol"] for r in rows if r["symbol"] not in costs]
    if not rows or missing:
        sys.exit(f"{program}: no callgrind count for {missing or 'any row'}")
    bench_rows.dump(
        [
            {"group": r["group"], "row": r["row"], "metric": "instructions",
             "value": round(costs[r["symbol"]] / r["ops"], 1)}
            for r in rows
        ],
        sys.stdout,
    )


if __name__ == "__main__":
    main()
