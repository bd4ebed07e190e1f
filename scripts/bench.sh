#!/usr/bin/env bash
# `npm run bench`: builds if any source changed since the last build made
# here, then runs every benchmark (dist/test/bench/*.bench.js) in turn. A
# benchmark compares rtr7 with the tool a user would otherwise pick, in the
# same run, and prints ratios; none asserts on time. Benchmarks that need
# root or a tool say so and skip. Exits non-zero if a benchmark failed.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=dist/.bench-build-stamp
sources=(cli server lib router updates recovery-init lab test tsconfig.json package-lock.json)
existing=()
for source in "${sources[@]}"; do
  [[ -e "$source" ]] && existing+=("$source")
done
if [[ ! -f "$stamp" ]] || [[ -n "$(find "${existing[@]}" -newer "$stamp" -name '*.ts' -print -quit)" ]] ||
  [[ -n "$(find tsconfig.json package-lock.json -newer "$stamp" -print -quit)" ]]; then
  echo "bench: building"
  npm run --silent build
  touch "$stamp"
fi

shopt -s nullglob
benches=(dist/test/bench/*.bench.js)
if ((${#benches[@]} == 0)); then
  echo "bench: no benchmarks in dist/test/bench" >&2
  exit 1
fi
failed=()
for bench in "${benches[@]}"; do
  echo
  echo "=== ${bench#dist/test/bench/}"
  if ! node --enable-source-maps "$bench"; then
    failed+=("$bench")
  fi
done
if ((${#failed[@]} > 0)); then
  echo "bench: failed: ${failed[*]}" >&2
  exit 1
fi
