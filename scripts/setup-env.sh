#!/usr/bin/env bash
# Creates .venv (if missing) and installs keras-focal with the given extras.
# Usage: source-free; called by run-demo.sh and run-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
