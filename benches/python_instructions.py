"""Instructions per call of a Python callback fired from a native thread,
counted by callgrind (repeatable, unlike the nanoseconds of
`python_fire.py`): cbreg's path against the hand-written kept thread state
of `python_fire_ext.c`, one float argument.

Each path runs N and 2N calls in fresh processes under callgrind; the
difference over N is the cost of one call, start-up excluded. For cbreg's
path it also prints where that cost goes, function by function (the
difference of callgrind_annotate's self costs). Addresses without a name
are in the stripped `cbreg._core` (the Python adapter and the copy of the
core that owns the registries once `import cbreg` ran).

    make bench-python-instructions
    .venv/bin/python benches/python_instructions.py [--n N] [--top K]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = """
import ctypes, sys
sys.path.insert(0, {here!r})
import cbreg
from python_fire import build_ext
ext = build_ext()
which, n = sys.argv[1], int(sys.argv[2])
def on_one(freq):
    pass
if which == "cbreg":
    lib = ctypes.CDLL(cbreg.get_library())
    lib.cbreg_default.restype = ctypes.c_uint64
    invoke = ctypes.cast(lib.cbreg_invoke, ctypes.c_void_p).value
    with cbreg.register(on_one) as sub:
        ext.through(invoke, lib.cbreg_default(), sub.id, n, 1)
else:
    ext.kept(on_one, n, 1)
"""


def profile(which, n, out):
    """Runs `which` for n calls under callgrind; returns its total."""
    script = CHILD.format(here=HERE)
    p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, "-c", script, which, str(n)],
                       capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", p.stderr).group(1))


def self_costs(out):
    """Self cost per function of a callgrind output."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", out],
                          capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r" \[.*", "", m.group(2))
            name = re.sub(r"^.*?/(Python|Objects|Include|Modules)/", r"\1/", name)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    n = args.n
    per_call = {}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for which in ("cbreg", "kept"):
            totals = []
            for calls in (n, 2 * n):
                outs[which, calls] = os.path.join(tmp, f"{which}.{calls}")
                totals.append(profile(which, calls, outs[which, calls]))
            per_call[which] = (totals[1] - totals[0]) / n
        small, large = self_costs(outs["cbreg", n]), self_costs(outs["cbreg", 2 * n])
        where = sorted(((large.get(k, 0) - small.get(k, 0)) / n, k) for k in set(small) | set(large))
    print(f"python_instructions: instructions per call, one float, ({2 * n} - {n} calls) / {n}")
    print(f"  native cbreg          {per_call['cbreg']:8.1f}")
    print(f"  native kept by hand  {per_call['kept']:8.1f}")
    print(f"  cbreg / kept by hand {per_call['cbreg'] / per_call['kept']:8.2f}")
    print(f"  cbreg's path, the {args.top} costliest functions (self, per call):")
    for cost, name in sorted(where, reverse=True)[:args.top]:
        print(f"    {cost:8.1f}  {name[:100]}")


if __name__ == "__main__":
    main()
