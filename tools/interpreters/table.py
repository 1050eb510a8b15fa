"""Prints the per-interpreter table from the folders suite.sh filled:
    python3 tools/interpreters/table.py CACHE NAME...
then, for each interpreter that failed, the errors themselves."""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET


def read_status(folder):
    status = {}
    try:
        with open(os.path.join(folder, "status.txt")) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("=")
                status[key] = value
    except FileNotFoundError:
        pass
    return status


def read(folder, name):
    try:
        with open(os.path.join(folder, name), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def tally(folder):
    try:
        with open(os.path.join(folder, "tally.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def exits(batches, control):
    """cbreg's scenarios (every run must exit 0), or the controls (the naive
    extension, and plain Python for the fork control: meant to fail)."""
    mine = [b for b in batches if (b["module"] != "cbreg_engine") == control]
    known = [b for b in mine if b.get("expected_failure")]
    mine = [b for b in mine if not b.get("expected_failure")]
    if not mine:
        return "-"
    runs = sum(b["runs"] for b in mine)
    ok = sum(b["exit0"] for b in mine)
    if control:
        return f"{runs - ok}/{runs} failed"
    text = f"{ok}/{runs} exit 0 ({len(mine)} batches)"
    if known:
        text += (f" + {sum(b['runs'] for b in known)} runs of known defects "
                 f"({len(known)} batches, expected to fail)")
    exit_s = [b["slowest_exit_s"] for b in mine if b.get("slowest_exit_s") is not None]
    child_s = [b["slowest_child_s"] for b in mine if b.get("slowest_child_s") is not None]
    if exit_s:
        text += f"; slowest exit {max(exit_s):.2f} s"
    if child_s:
        text += f", forked child {max(child_s):.2f} s"
    return text


def races(folder):
    """test_threads.py's cases (Python threads racing on the registry; in
    parallel on free-threaded CPython), from pytest's JUnit report."""
    try:
        cases = [c for c in ET.parse(os.path.join(folder, "junit.xml")).getroot().iter("testcase")
                 if c.get("classname", "").endswith("test_threads")]
    except (FileNotFoundError, ET.ParseError):
        return "-"
    if not cases:
        return "-"
    passed = sum(not any(c.find(t) is not None for t in ("failure", "error", "skipped"))
                 for c in cases)
    return f"{passed}/{len(cases)} passed"


def row(cache, name):
    folder = os.path.join(cache, name)
    s = read_status(folder)
    batches = tally(folder)
    build = {"1": "free-threaded", "0": "GIL"}.get(s.get("free_threaded"), "?")
    if s.get("runtime_env"):
        build += f", {s['runtime_env']}"
    package = {"ok": "ok", "FAIL": "FAILED"}.get(s.get("build"), "not run")
    if s.get("extensions") == "FAIL":
        package = "extensions FAILED"
    suite = s.get("pytest_summary", "not run").strip()
    if s.get("pytest_crashed"):
        suite += f" + {len(s['pytest_crashed'].split())} crashed pytest"
    if "pytest_rc" in s and s["pytest_rc"] not in ("0",):
        suite = f"{suite} (rc {s['pytest_rc']})"
    gil = read(folder, "gil.txt").strip() or ("import failed" if s.get("import_rc", "0") != "0" else "-")
    if re.search(r"RuntimeWarning", read(folder, "import.log")):
        gil += " (RuntimeWarning)"
    return [f"{name} ({s.get('version', '?')})", build, package, suite,
            exits(batches, False), exits(batches, True), races(folder), gil,
            s.get("total_s", "?") + " s"]


def print_table(rows):
    head = ["interpreter", "build", "cbreg package", "pytest tests/python",
            "exit scenarios, cbreg", "controls (must fail)", "thread races",
            "sys._is_gil_enabled() after import cbreg", "time"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def details(cache, name):
    folder = os.path.join(cache, name)
    s = read_status(folder)
    out = []
    if s.get("build") == "FAIL":
        log = read(folder, "build.log").splitlines()
        errs = [l for l in log if re.search(r"error|panicked|refuse|not support", l, re.I)]
        out.append("cbreg package build failed:\n    " + "\n    ".join((errs or log)[-12:]))
    if s.get("extensions") == "FAIL":
        out.append("extensions failed:\n    " + "\n    ".join(read(folder, "ext.log").splitlines()[-12:]))
    warn = [l for l in read(folder, "import.log").splitlines() if l.strip()]
    if warn:
        out.append("import cbreg printed:\n    " + "\n    ".join(warn[-6:]))
    if s.get("pytest_rc", "0") != "0":
        log = read(folder, "pytest.log").splitlines()
        failed = [l for l in log if l.startswith(("FAILED", "ERROR"))]
        failed += [f"CRASHED {c}" for c in s.get("pytest_crashed", "").split()]
        out.append("pytest:\n    " + "\n    ".join((failed or log[-15:])[:25]))
    for b in tally(folder):
        if b["module"] == "cbreg_engine" and b["exit0"] != b["runs"] and not b.get("expected_failure"):
            tag = b["scenario"] + (f"[{b['variant']}]" if b["variant"] else "")
            err = b["first_failure_stderr"].strip().splitlines()[-4:]
            out.append(f"{b['module']} {tag}: exit codes {b['codes']}; first failure's stderr ends:\n    "
                       + "\n    ".join(err or ["(empty)"]))
    return out


def main():
    cache, names = sys.argv[1], sys.argv[2:]
    print()
    print_table([row(cache, n) for n in names])
    for n in names:
        d = details(cache, n)
        if d:
            print(f"\n---- {n} ----")
            for block in d:
                print(block)


if __name__ == "__main__":
    main()
