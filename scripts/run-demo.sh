#!/usr/bin/env bash
# The main job on the built-in data: set up .venv, then `keras-focal demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/keras-focal demo "$@"
