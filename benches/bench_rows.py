"""The row format every bench writes and benches/report.py and
benches/chart.py read: a JSON list of objects

    {"group": "invoke" | "writers" | "python",
     "row": str,                 # what was measured, e.g. "cbreg_c_abi"
     "metric": "instructions" | "ns" | "pairs_per_s" | "ms",
     "value": float,
     "threads": int}             # optional: threads running the row at once (1)

"instructions" are callgrind's per operation (per call, per register +
unregister pair, per entry cleared); "ns" is per call; "pairs_per_s" counts
register + unregister pairs; "ms" is a whole run (a clear of 1 M entries).
"""
import json

GROUPS = ("invoke", "writers", "python")
METRICS = ("instructions", "ns", "pairs_per_s", "ms")


def check(rows, source):
    for r in rows:
        if r.get("group") not in GROUPS or r.get("metric") not in METRICS or not isinstance(r.get("row"), str):
            raise ValueError(f"{source}: not a bench row: {r!r}")
        r["value"] = float(r["value"])
        r["threads"] = int(r.get("threads", 1))
    return rows


def load(path):
    with open(path) as f:
        return check(json.load(f), path)


def dump(rows, stream):
    """One row a line, so that diffs of a results file read as rows."""
    stream.write("[\n" + ",\n".join("  " + json.dumps(r) for r in rows) + "\n]\n")
