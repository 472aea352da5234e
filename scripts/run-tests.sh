#!/usr/bin/env bash
# The test suite: set up .venv with the test, JAX and torch extras, run ruff and mypy, then pytest on the
# TensorFlow backend, then the backend-agnostic tests (losses, layers, trainer) again on
# JAX and on PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh test,jax,torch,docs
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/ruff check .  # pyflakes, pycodestyle errors, import order (pyproject.toml)
.venv/bin/mypy          # the package's types (pyproject.toml)
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -n 2 "$@"
KERAS_BACKEND=jax .venv/bin/python -m pytest -n 2 -m backend_agnostic "$@"
KERAS_BACKEND=torch .venv/bin/python -m pytest -n 2 -m backend_agnostic "$@"
