"""Cost per call of firing a Python callback from a native thread:
through cbreg (cbreg_invoke -> Python adapter) versus the hand-written
baseline (PyGILState_Ensure, build the args tuple, call, release), both
measured in the same run on the same native thread (cbreg_engine.bench),
with the main thread waiting without the GIL.

    make python-bench   (or: .venv/bin/python benches/python_fire.py [N] [ROUNDS])

DESIGN.md section 5 target: ratio at most 1.1.
"""
import os
import statistics
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "build", "engine"))

import cbreg  # noqa: E402
import cbreg_engine  # noqa: E402


def on_tick(tick, freq, note):
    pass


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with cbreg.register(on_tick) as sub:
        cbreg_engine.bench(sub.id, on_tick, n // 10)  # warm up
        results = [cbreg_engine.bench(sub.id, on_tick, n) for _ in range(rounds)]
    via = [r[0] for r in results]
    direct = [r[1] for r in results]
    ratios = [a / b for a, b in results]
    print(f"python_fire: {n} calls x {rounds} rounds, args (tick, 440.0, 'A4'), native thread")
    print(f"  through cbreg         : {statistics.median(via):8.1f} ns/call (median; min {min(via):.1f})")
    print(f"  GIL + direct call     : {statistics.median(direct):8.1f} ns/call (median; min {min(direct):.1f})")
    print(f"  ratio cbreg / direct  : {statistics.median(ratios):8.3f} (median; per round "
          + ", ".join(f"{r:.3f}" for r in ratios) + ")  target <= 1.1")


if __name__ == "__main__":
    main()
