#!/usr/bin/env python3
"""Fails when a file of the repository cites something outside it.

The repository has to be readable on its own: its contract is
docs/contract.md, and every reference has to lead to a file a reader of the
repository has. Two things are refused, in every file git tracks or would
track (ignored files are skipped):

  - a citation of a design document by the name of one that is not in the
    repository (the contract is docs/contract.md);
  - a relative path (`../...`) that, read from the directory of the file it
    is written in, leaves the repository. Paths built on a variable
    (`$(dirname "$0")/..`, `${here}/..`) are not read: only a path that
    starts a word.

    tools/check_refs.py        # from anywhere inside the repository
"""
import os
import re
import subprocess
import sys

# The name is split so that this file does not cite it.
OUTSIDE_NAME = re.compile(r"\b" + "DES" + r"IGN(?:\.md\b|\s+\d)")
# `../` at the start of a word: after the line's start, a space, a quote, a
# bracket, `=`, `:` or `,`.
RELATIVE = re.compile(r"""(?:^|(?<=[\s"'`(\[<=:,]))((?:\.\./)+[\w./-]*|\.\.(?=[\s"'`)\]>,]|$))""")


def repository_files(root):
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(root, p))]


def problems(root, path):
    try:
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = f.read()
    except (UnicodeDecodeError, OSError):
        return  # binary files cite nothing
    here = os.path.dirname(path)
    for number, line in enumerate(text.splitlines(), 1):
        if OUTSIDE_NAME.search(line):
            yield number, "cites a design document outside the repository (use docs/contract.md)"
        for m in RELATIVE.finditer(line):
            target = os.path.normpath(os.path.join(here, m.group(1)))
            if target == ".." or target.startswith("../"):
                yield number, f"{m.group(1)!r} leads outside the repository"


def main():
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True,
                          capture_output=True, text=True).stdout.strip()
    found = 0
    for path in repository_files(root):
        for number, what in problems(root, path):
            print(f"{path}:{number}: {what}")
            found += 1
    if found:
        print(f"{found} reference(s) outside the repository", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
