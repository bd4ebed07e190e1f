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
exec node --enable-source-maps --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
