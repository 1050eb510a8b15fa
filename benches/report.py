#!/usr/bin/env python3
"""Merges bench row files (benches/bench_rows.py) into one results file and
prints them as tables, with ratios against the baselines of the same run:
a direct call, and the C++ std::mutex + std::unordered_map invoked under
its lock. Then docs/contract.md section 5's targets, met or not.

    benches/report.py [--out RESULTS] [--markdown] [--check] FILE...

A FILE that does not exist is skipped with a note (the Python rows need
the Python package built). --markdown prints the tables for BENCHMARKS.md.
--check exits 1 when a target on instruction counts (the figures noise
cannot move) is missed. --guard exits 1 when one of GUARDS, the instruction
counts `make test` holds the code to, is missed.
"""
import argparse
import os
import sys

import bench_rows

DIRECT = "direct"
MUTEX_MAP = "cpp_mutex_map_under_lock"

# (group, row, metric, comparison, bound, text); rows not measured are left out.
TARGETS = [
    ("invoke", "cbreg_c_abi", "instructions", "<=", 90, "invoke through the C ABI: at most 90 instructions"),
    ("invoke", "cbreg_site", "instructions", "<=", 60, "invoke through a call-site handle: at most 60 instructions"),
    ("invoke", "cbreg_site", "instructions_over_best_peer", "<", 1,
     "invoke through a call-site handle: fewer instructions than every peer"),
    ("writers", "cbreg_register_unregister", "pairs_per_s", ">=", 5e6,
     "register + unregister: at least 5 M pairs/s"),
    ("writers", "cbreg_register_unregister_invoker_alive", "pairs_per_s", ">=", 5e6,
     "register + unregister, another invoker alive: at least 5 M pairs/s"),
    ("writers", "cbreg_clear_1m", "ms", "<", 30, "clear of 1 M entries: under 30 ms"),
    ("invoke", "cbreg_c_abi", "threads_ratio", "<=", 1.5,
     "invoke on several threads at once: within 1.5x of one thread (where the cores are free)"),
    ("python", "native cbreg (440.0)/native kept by hand (440.0)", "ns_ratio", "<=", 1.3,
     "a Python callback fired from a native thread: within 1.3x the hand-written kept thread state"),
    ("python", "native per-call Ensure (440.0)/native cbreg (440.0)", "ns_ratio", ">=", 50,
     "a Python callback fired from a native thread: at least 50x faster than a per-call PyGILState_Ensure"),
    ("python", "python cbreg.invoke (440.0)/python direct call (440.0)", "ns_ratio", "<=", 4,
     "cbreg.invoke(id, x) from Python: at most 4x a direct call"),
]


# What `make test` holds the invoke path to (instructions, so no noise):
# the C ABI target, fewer than the mutex map peer, and the call-site
# target, fewer than every peer. (row, bound: a number, another row or
# BEST_PEER, text)
BEST_PEER = "the fewest of a peer"
GUARDS = [
    ("cbreg_c_abi", 90, "cbreg_invoke: at most 90 instructions"),
    ("cbreg_c_abi", MUTEX_MAP, "cbreg_invoke: fewer instructions than the C++ mutex map"),
    ("cbreg_site", 60, "cbreg_site_invoke: at most 60 instructions"),
    ("cbreg_site", BEST_PEER, "cbreg_site_invoke: fewer instructions than every peer"),
    ("cbreg_rust_site", BEST_PEER, "Site::call: fewer instructions than every peer"),
]


def guards(rows):
    """(text, measured, bound, met) for each guard whose rows were measured."""
    out = []
    for row, bound, text in GUARDS:
        v = value(rows, "invoke", row, "instructions")
        if bound == BEST_PEER:
            b = best_peer(rows, "invoke")
        elif isinstance(bound, str):
            b = value(rows, "invoke", bound, "instructions")
        else:
            b = bound
        if v is not None and b is not None:
            met = v <= b if isinstance(bound, (int, float)) else v < b
            out.append((text, v, b, met))
    return out


def best_peer(rows, group):
    """The fewest instructions of a peer (not cbreg, not the direct call)."""
    peers = [value(rows, group, n, "instructions") for n in names(rows, group)
             if n != DIRECT and not n.startswith("cbreg")]
    return min((p for p in peers if p is not None), default=None)


def value(rows, group, row, metric, threads=1):
    if metric == "instructions_over_best_peer":
        return ratio(value(rows, group, row, "instructions"), best_peer(rows, group))
    if metric == "ns_ratio":
        top, bottom = row.split("/")
        return ratio(value(rows, group, top, "ns"), value(rows, group, bottom, "ns"))
    if metric == "threads_ratio":
        most = max((r["threads"] for r in rows if (r["group"], r["row"]) == (group, row)), default=1)
        return None if most == 1 else ratio(value(rows, group, row, "ns", most), value(rows, group, row, "ns"))
    for r in rows:
        if (r["group"], r["row"], r["metric"], r["threads"]) == (group, row, metric, threads):
            return r["value"]
    return None


def names(rows, group):
    """The group's rows in order: the peers, then cbreg's."""
    seen = []
    for r in rows:
        if r["group"] == group and r["row"] not in seen:
            seen.append(r["row"])
    return sorted(seen, key=lambda n: (n != DIRECT, "clear" in n, n.startswith("cbreg")))


def fmt(x, spec):
    return "" if x is None else format(x, spec)


def ratio(a, b):
    return None if a is None or not b else a / b


def invoke_table(rows):
    threads = max((r["threads"] for r in rows if r["group"] == "invoke"), default=1)
    header = ["invoke (one f64 argument)", "instr/call", "x direct", "x C++ map",
              "ns/call", "x direct", "x C++ map"]
    if threads > 1:
        header += [f"ns, {threads} threads", "x 1 thread"]
    body = []
    for name in names(rows, "invoke"):
        instr = value(rows, "invoke", name, "instructions")
        ns = value(rows, "invoke", name, "ns")
        line = [
            name,
            fmt(instr, ".1f"),
            fmt(ratio(instr, value(rows, "invoke", DIRECT, "instructions")), ".2f"),
            fmt(ratio(instr, value(rows, "invoke", MUTEX_MAP, "instructions")), ".2f"),
            fmt(ns, ".2f"),
            fmt(ratio(ns, value(rows, "invoke", DIRECT, "ns")), ".2f"),
            fmt(ratio(ns, value(rows, "invoke", MUTEX_MAP, "ns")), ".2f"),
        ]
        if threads > 1:
            ns_mt = value(rows, "invoke", name, "ns", threads)
            line += [fmt(ns_mt, ".2f"), fmt(ratio(ns_mt, ns), ".2f")]
        body.append(line)
    return header, body


def writers_table(rows):
    header = ["writers", "instr/op", "M pairs/s", "ms"]
    body = [
        [
            name,
            fmt(value(rows, "writers", name, "instructions"), ".1f"),
            fmt(ratio(value(rows, "writers", name, "pairs_per_s"), 1e6), ".2f"),
            fmt(value(rows, "writers", name, "ms"), ".1f"),
        ]
        for name in names(rows, "writers")
    ]
    return header, body


def python_table(rows):
    header = ["python", "metric", "value"]
    body = [[r["row"] + (f" ({r['threads']} threads)" if r["threads"] > 1 else ""), r["metric"],
             fmt(r["value"], ".2f")] for r in rows if r["group"] == "python"]
    return header, body


def targets(rows):
    """(text, measured, met) for each target whose row was measured."""
    out = []
    for group, row, metric, op, bound, text in TARGETS:
        v = value(rows, group, row, metric)
        if v is not None:
            out.append((text, v, metric, v <= bound if op == "<=" else v >= bound if op == ">=" else v < bound))
    return out


def without_empty_columns(header, body):
    keep = [i for i in range(len(header)) if i == 0 or any(line[i] for line in body)]
    return [header[i] for i in keep], [[line[i] for i in keep] for line in body]


def render_text(header, body):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for line in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(lines)


def render_markdown(header, body):
    lines = ["| " + " | ".join(header) + " |", "| --- " + "| ---: " * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join([f"`{line[0]}`"] + line[1:]) + " |" for line in body]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--guard", action="store_true")
    args = ap.parse_args()

    rows = []
    for path in args.files:
        if os.path.exists(path):
            rows += bench_rows.load(path)
        else:
            print(f"(no {path}: its rows are left out)", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            bench_rows.dump(rows, f)

    render = render_markdown if args.markdown else render_text
    tables = [without_empty_columns(*t) for t in (invoke_table(rows), writers_table(rows), python_table(rows)) if t[1]]
    print("\n\n".join(render(*t) for t in tables))
    print()
    print("Ratios are against rows of the same run: x direct against a direct call, "
          "x C++ map against std::mutex + std::unordered_map called under the lock; "
          "instr/op is per pair for register + unregister, per entry for a clear.")
    print()
    missed = []
    for text, v, metric, met in targets(rows):
        shown = {"pairs_per_s": f"{v / 1e6:.2f} M", "threads_ratio": f"{v:.2f}x", "ns_ratio": f"{v:.2f}x",
                 "instructions_over_best_peer": f"{v:.2f}x the fewest of a peer"}.get(metric, f"{v:.1f}")
        print(f"{'- ' if args.markdown else '  '}{text}: {shown} ({'met' if met else 'not met'})")
        if metric.startswith("instructions") and not met:
            missed.append(text)
    if args.check and missed:
        sys.exit("instruction targets missed: " + "; ".join(missed))
    if args.guard:
        held = guards(rows)
        for text, v, b, met in held:
            print(f"  guard: {text}: {v:.1f} against {b:.1f} ({'held' if met else 'BROKEN'})")
        if len(held) != len(GUARDS) or not all(met for *_, met in held):
            sys.exit("instruction guards broken (or rows missing)")


if __name__ == "__main__":
    main()
