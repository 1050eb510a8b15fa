#!/usr/bin/env python3
"""Checks that the examples README.md shows are the files the build runs.

A fenced code block right after a line `<!-- example: PATH -->` must be the
file PATH (relative to the repository root) exactly; `make readme-examples`
builds and runs those files. Fails on a difference, a marker with no block
after it, or a file that does not exist.

    tools/readme_examples.py README.md
"""
import difflib
import os
import re
import sys

MARKER = re.compile(r"^<!-- example: (\S+) -->$")
FENCE = re.compile(r"^```")


def blocks(lines):
    """(marker line number, path, block text or None) for each marker."""
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        if start < len(lines) and FENCE.match(lines[start]):
            end = start + 1
            while end < len(lines) and not FENCE.match(lines[end]):
                end += 1
            yield i + 1, m.group(1), "".join(l + "\n" for l in lines[start + 1:end])
            i = end + 1
        else:
            yield i + 1, m.group(1), None
            i = start


def main(readme):
    root = os.path.dirname(os.path.abspath(readme))
    with open(readme, encoding="utf-8") as f:
        lines = f.read().splitlines()
    failures = checked = 0
    for number, path, text in blocks(lines):
        where = f"{readme}:{number}"
        full = os.path.join(root, path)
        if text is None:
            print(f"{where}: no code block after the marker for {path}")
            failures += 1
        elif not os.path.isfile(full):
            print(f"{where}: {path} does not exist")
            failures += 1
        else:
            with open(full, encoding="utf-8") as f:
                want = f.read()
            if text != want:
                print(f"{where}: the block is not {path} as it is:")
                sys.stdout.writelines(difflib.unified_diff(
                    want.splitlines(True), text.splitlines(True), path, "README.md"))
                failures += 1
            checked += 1
    if not checked and not failures:
        print(f"{readme}: no example markers")
        return 1
    if failures:
        return 1
    print(f"{readme}: {checked} examples are the files they name")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
