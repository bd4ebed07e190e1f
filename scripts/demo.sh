#!/usr/bin/env bash
# The README's first command: set-up, then `rtr7 recover` re-imaging a
# virtual unit (QEMU) in a network namespace of its own. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/lab/demo.js
