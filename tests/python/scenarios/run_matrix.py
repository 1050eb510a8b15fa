"""Run each exit-time scenario N times in fresh subprocesses and tally the
exit codes (negative = killed by that signal, as subprocess reports it).

    python tests/python/scenarios/run_matrix.py [--runs 20] [scenario ...]

Environment (CBREG_TEST_EXT_DIR, CBREG_TEST_EXT_MODULE, ...) is passed on.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = ["holds_print", "holds_instance", "engine_at_exit"]


def run_once(name, timeout):
    try:
        p = subprocess.run(
            [sys.executable, os.path.join(HERE, name + ".py")],
            capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return "timeout", err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--show-stderr", action="store_true",
                    help="print each distinct stderr seen")
    ap.add_argument("scenarios", nargs="*", default=SCENARIOS)
    args = ap.parse_args()

    for name in args.scenarios:
        codes = collections.Counter()
        stderrs = collections.Counter()
        t0 = time.monotonic()
        for _ in range(args.runs):
            code, err = run_once(name, args.timeout)
            codes[code] += 1
            # Addresses differ run to run; group by the message alone.
            stderrs[(code, re.sub(r"0x[0-9a-fA-F]+", "0x...", err.strip()))] += 1
        dt = time.monotonic() - t0
        tally = ", ".join(f"{c}: {n}" for c, n in sorted(codes.items(), key=str))
        print(f"{name}: {tally}  ({args.runs} runs, {dt:.1f} s)")
        if args.show_stderr:
            for (code, err), n in stderrs.most_common():
                print(f"  --- exit {code}, {n}x, stderr:")
                print("    " + (err.replace("\n", "\n    ") if err else "(empty)"))


if __name__ == "__main__":
    main()
