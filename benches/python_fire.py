"""The cost of a Python callback, measured side by side in one run
(docs/contract.md section 5, Python targets):

  native rows     a native thread (one CPython did not make) fires a Python
                  callback, each loop on a fresh thread while the main
                  thread waits without the GIL:
                    cbreg          cbreg_invoke from the thread; cbreg keeps a
                                   thread state for it after the first call
                    kept by hand   a hand-written extension that keeps a thread
                                   state: per call take the GIL, build the
                                   arguments, vectorcall, give the GIL back
                    per-call Ensure  PyGILState_Ensure/Release per call on a
                                   thread with no state of its own (what
                                   gil_scoped_acquire does): a thread state
                                   made and deleted each call
  python rows     from Python: a direct call of the function, cbreg.invoke(id,
                  x) and calling the Subscription

The hand-written baselines are benches/python_fire_ext.c, built here into
build/bench/ (outside the package). Two argument shapes: one float, and
(tick, 440.0, "A4"). Each figure is the median of ROUNDS rounds.

    make python-bench
    .venv/bin/python benches/python_fire.py [--n N] [--rounds R] [--json out.json]

Targets: cbreg within 1.3x of the kept-by-hand path and at least 50x faster
than per-call Ensure; cbreg.invoke(id, x) at most 4x a direct call.
"""
import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, "build", "bench")
SOURCE = os.path.join(ROOT, "benches", "python_fire_ext.c")

import cbreg  # noqa: E402


def build_ext():
    """Compiles python_fire_ext for this interpreter (when the source is newer)."""
    os.makedirs(BUILD, exist_ok=True)
    target = os.path.join(BUILD, "python_fire_ext" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(SOURCE):
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-pthread",
                        "-I" + sysconfig.get_paths()["include"], SOURCE, "-o", target], check=True)
    sys.path.insert(0, BUILD)
    import python_fire_ext
    return python_fire_ext


def on_one(freq):
    pass


def on_three(tick, freq, note):
    pass


def per_call_python(stmt, env, n):
    """ns per call of `stmt` run n times (timeit-style loop, loop included)."""
    code = compile(f"def _loop(_n):\n    for _ in range(_n):\n        {stmt}\n", "<bench>", "exec")
    space = dict(env)
    exec(code, space)
    loop = space["_loop"]
    loop(min(n, 1000))
    t0 = time.perf_counter_ns()
    loop(n)
    return (time.perf_counter_ns() - t0) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="calls per round (native, python)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="PATH", help="also write the rows there")
    args = ap.parse_args()
    ext = build_ext()
    lib = ctypes.CDLL(cbreg.get_library())
    lib.cbreg_default.restype = ctypes.c_uint64
    registry = lib.cbreg_default()
    invoke_address = ctypes.cast(lib.cbreg_invoke, ctypes.c_void_p).value
    n = args.n
    n_ensure = max(n // 100, 100)  # microseconds a call: fewer of them

    rows = []  # (group, name, shape, ns per call, calls per round)

    def measure(group, name, shape, calls, fn):
        fn(max(calls // 10, 10))  # warm up
        per_round = [fn(calls) for _ in range(args.rounds)]
        rows.append({"group": group, "name": name, "args": shape,
                     "ns_per_call": statistics.median(per_round), "min_ns": min(per_round),
                     "rounds": per_round, "calls": calls})

    for shape, fn in ((1, on_one), (3, on_three)):
        label = "(440.0)" if shape == 1 else "(tick, 440.0, 'A4')"
        with cbreg.register(fn) as sub:
            measure("native", "cbreg", label, n,
                    lambda k, sub=sub, shape=shape: ext.through(invoke_address, registry, sub.id, k, shape))
        measure("native", "kept by hand", label, n, lambda k, fn=fn, shape=shape: ext.kept(fn, k, shape))
        measure("native", "per-call Ensure", label, n_ensure,
                lambda k, fn=fn, shape=shape: ext.ensure(fn, k, shape))

    with cbreg.register(on_one) as sub:
        env = {"f": on_one, "cbreg": cbreg, "sub": sub, "i": sub.id, "x": 440.0}
        for name, stmt in (("direct call", "f(x)"), ("cbreg.invoke", "cbreg.invoke(i, x)"),
                           ("Subscription call", "sub(x)")):
            measure("python", name, "(440.0)", n, lambda k, stmt=stmt: per_call_python(stmt, env, k))

    def ns(group, name, shape):
        return next(r["ns_per_call"] for r in rows
                    if (r["group"], r["name"], r["args"]) == (group, name, shape))

    ratios = []
    for label in ("(440.0)", "(tick, 440.0, 'A4')"):
        cb, kept, ensure = (ns("native", x, label) for x in ("cbreg", "kept by hand", "per-call Ensure"))
        ratios.append({"what": f"native {label}: cbreg / kept by hand", "ratio": cb / kept,
                       "target": "<= 1.3", "met": cb / kept <= 1.3})
        ratios.append({"what": f"native {label}: per-call Ensure / cbreg", "ratio": ensure / cb,
                       "target": ">= 50", "met": ensure / cb >= 50})
    direct = ns("python", "direct call", "(440.0)")
    for name in ("cbreg.invoke", "Subscription call"):
        r = ns("python", name, "(440.0)") / direct
        ratios.append({"what": f"python: {name} / direct call", "ratio": r,
                       "target": "<= 4", "met": r <= 4})

    print(f"python_fire: CPython {platform.python_version()}"
          f"{'' if getattr(sys, '_is_gil_enabled', lambda: True)() else ' (free-threaded, GIL off)'}, "
          f"median of {args.rounds} rounds; {n} calls a round ({n_ensure} for per-call Ensure)")
    for r in rows:
        print(f"  {r['group']:<7} {r['name']:<18} {r['args']:<20} {r['ns_per_call']:9.1f} ns/call"
              f"  (min {r['min_ns']:.1f})")
    for r in ratios:
        print(f"  {r['what']:<52} {r['ratio']:8.2f}  target {r['target']:<6} "
              f"{'met' if r['met'] else 'NOT MET'}")
    if args.json:
        # The row format of every bench (benches/bench_rows.py): one "ns"
        # row per measurement, named by side, path and arguments.
        bench = [{"group": "python", "row": f"{r['group']} {r['name']} {r['args']}",
                  "metric": "ns", "value": r["ns_per_call"]} for r in rows]
        with open(args.json, "w") as out:
            json.dump(bench, out, indent=1)
        print(f"  rows written to {args.json}")


if __name__ == "__main__":
    main()
