#!/usr/bin/env python3
"""Draws the bench results (benches/bench_rows.py format) as one PNG:
instructions and nanoseconds per invoke, register + unregister pairs per
second, clear of 1 M entries, and the Python rows when there are any.

    benches/chart.py RESULTS PNG      (matplotlib: benches/requirements.txt)
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bench_rows  # noqa: E402
from report import names, value  # noqa: E402

CBREG = "#d95f02"
PEER = "#7570b3"
DIRECT = "#666666"


def colour(name):
    return DIRECT if name == "direct" else CBREG if "cbreg" in name else PEER


def bars(ax, labels, values, title, unit, target=None, log=False):
    """Horizontal bars, first label on top, each with its value written."""
    ys = range(len(labels))[::-1]
    ax.barh(list(ys), values, color=[colour(n) for n in labels])
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit, fontsize=8)
    if log:
        ax.set_xscale("log")
    for y, v in zip(ys, values):
        ax.text(v, y, f" {v:,.0f}" if v >= 1000 else f" {v:.3g}", va="center", fontsize=7)
    if target is not None:
        ax.axvline(target[0], color=CBREG, linestyle="--", linewidth=1)
        ax.text(target[0], 0.01, f" {target[1]}", color=CBREG, fontsize=7, va="bottom",
                transform=ax.get_xaxis_transform())
    ax.set_xlim(right=max(values + [target[0] if target else 0]) * (3 if log else 1.25))


def measured(rows, group, metric, keep=lambda name: True, threads=1):
    labels = [n for n in names(rows, group) if keep(n) and value(rows, group, n, metric, threads) is not None]
    return labels, [value(rows, group, n, metric, threads) for n in labels]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = bench_rows.load(sys.argv[1])
    panels = []

    labels, instr = measured(rows, "invoke", "instructions")
    if labels:
        panels.append(lambda ax: bars(ax, labels, instr, "invoke: instructions per call (callgrind)",
                                      "instructions, loop included", (90, "C ABI target")))
    ns_labels, ns = measured(rows, "invoke", "ns")
    if ns_labels:
        panels.append(lambda ax: bars(ax, ns_labels, ns, "invoke: ns per call, one thread (best round)",
                                      "ns (log scale)", log=True))
    threads = max((r["threads"] for r in rows if r["group"] == "invoke"), default=1)
    mt_labels, mt = measured(rows, "invoke", "ns", threads=threads)
    if threads > 1 and mt_labels:
        panels.append(lambda ax: bars(ax, mt_labels, mt, f"invoke: ns per call, {threads} threads at once",
                                      "ns (log scale)", log=True))
    pair_labels, pairs = measured(rows, "writers", "pairs_per_s")
    if pair_labels:
        panels.append(lambda ax: bars(ax, pair_labels, [p / 1e6 for p in pairs],
                                      "register + unregister", "M pairs per second", (5, "target")))
    clear_labels, clear = measured(rows, "writers", "ms")
    if clear_labels:
        panels.append(lambda ax: bars(ax, clear_labels, clear, "clear of 1 M entries", "ms", (30, "target")))
    for metric in ("ns", "instructions", "pairs_per_s", "ms"):
        py_labels, py = measured(rows, "python", metric)
        if py_labels:
            panels.append(lambda ax, py_labels=py_labels, py=py, metric=metric: bars(
                ax, py_labels, py, f"Python: {metric}", metric))

    cols = 2
    height = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(height, cols, figsize=(13, 3.4 * height), squeeze=False)
    for draw, ax in zip(panels, axes.flat):
        draw(ax)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.suptitle("cbreg (orange) against its peers (blue) and a direct call (grey), one run of make bench",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
