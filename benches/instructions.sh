#!/usr/bin/env bash
# Instructions per call of cbreg_invoke and of a direct call, from callgrind.
set -euo pipefail
bin=$1
out=$(mktemp)
valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk '
  /run_cbreg/  && !c { gsub(",", "", $1); c = $1 }
  /run_direct/ && !d { gsub(",", "", $1); d = $1 }
  END {
    n = 1000000
    printf "instructions per call (callgrind, %d calls)\n", n
    printf "  direct call through a fn pointer   %6.1f\n", d / n
    printf "  cbreg_invoke, one f64 argument     %6.1f   %.1fx direct\n", c / n, c / d
  }'
rm -f "$out"
