"""Demo: a native engine thread fires Python callbacks; the script exits
while it is still firing. Run once on the naive pattern (callbacks in a C++
static map: crashes at exit) and once on cbreg (exits 0).

    make python-demo            (or: .venv/bin/python examples/python_demo.py)

Exits 0 unless the cbreg run failed; the naive run is expected to fail.
"""
import atexit
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DIRS = {"naive_ext": os.path.join(ROOT, "build", "naive"),
        "cbreg_engine": os.path.join(ROOT, "build", "engine")}
SECONDS = 1.0


def child(module):
    """The scenario: what a user's program does."""
    if module == "cbreg_engine":
        # Registered before cbreg is imported, so it runs after cbreg's own
        # atexit hook: shows what that hook released.
        def report():
            import cbreg
            s = cbreg.stats()
            e = ext.engine_stats()
            print(f"    [cbreg at exit] invoked={s.invoked} released={s.released} "
                  f"leaked={s.leaked} live={s.live}; engine still running={e['running']}, "
                  f"fired={e['fired']} (after exit: closed/not found={e['closed'] + e['not_found']})",
                  flush=True)
        atexit.register(report)
    sys.path.insert(0, DIRS[module])
    ext = __import__(module)

    ticks = 0

    def on_tick(tick, t):
        nonlocal ticks
        ticks += 1

    sink = {}
    ext.register(1, on_tick)            # a Python function, with progress
    ext.register(2, sink.__setitem__)   # a builtin: no Python frame at all
    ext.start_engine(1, 2000.0)
    ext.start_engine(2, 0.0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < SECONDS:
        time.sleep(0.1)
        bar = "#" * min(40, ticks // 50)
        print(f"\r    {module:13s} ticks {ticks:6d} {bar:40s}", end="", flush=True)
    print(f"\n    {module}: exiting with the engine still firing", flush=True)


def main():
    codes = {}
    for module in ("naive_ext", "cbreg_engine"):
        label = "naive control" if module == "naive_ext" else "cbreg"
        print(f"== {label} ({module})", flush=True)
        p = subprocess.run([sys.executable, __file__, "--child", module])
        codes[module] = p.returncode
        print(f"    exit code: {p.returncode}\n", flush=True)
    print(f"naive control exit code: {codes['naive_ext']} (non-zero expected)")
    print(f"cbreg exit code:         {codes['cbreg_engine']}")
    return 0 if codes["cbreg_engine"] == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.exit(main())
