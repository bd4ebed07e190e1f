#!/usr/bin/env bash
# `npm test`: set-up if needed, then typecheck (the build), lint, format check
# and every test: unit, integration (network namespaces, needs root) and
# end-to-end (QEMU, needs root). Tests that cannot run say why and skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx eslint .
npx prettier --check . >/dev/null || { npx prettier --check .; exit 1; }
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
if [[ -n "${RTR7_TEST_FILTER:-}" ]]; then
  mapfile -t files < <(printf '%s\n' "${files[@]}" | grep -E "$RTR7_TEST_FILTER")
fi
# The run's own workstation configuration and data: a test that forgets its
# own XDG_CONFIG_HOME still never reads or writes the user's (pins, keys,
# passwords, fleet.sqlite).
scratch=$(mktemp -d /tmp/rtr7-test-home.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export XDG_CONFIG_HOME="$scratch/config" XDG_DATA_HOME="$scratch/data"
# Unit tests share no namespace, port or device, so they run four at a time;
# integration and end-to-end tests (namespaces, QEMU, the CPU) one at a time.
unit=() others=()
for file in "${files[@]}"; do
  if [[ $file == dist/test/unit/* ]]; then unit+=("$file"); else others+=("$file"); fi
done
status=0
if ((${#unit[@]} > 0)); then
  node --enable-source-maps --test --test-concurrency=4 --test-reporter=spec "${unit[@]}" || status=$?
fi
if ((${#others[@]} > 0)); then
  node --enable-source-maps --test --test-concurrency=1 --test-reporter=spec "${others[@]}" || status=$?
fi
exit "$status"
