#!/usr/bin/env bash
# The installed package, tested from outside the checkout: installs WHEEL into a fresh virtual environment
# (dependencies from PyPI, no extras) and runs, in an empty temporary folder: the import, `keras-focal --help`,
# a loss in model.compile/fit, `prep synth` and one training epoch.
# Usage: bash scripts/smoke-test-wheel.sh dist/keras_focal-X.Y.Z-py3-none-any.whl
set -euo pipefail
wheel="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$wheel"
cd "$work"
export PATH="$work/venv/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=3
python - <<'PY'
import pathlib, sys
import keras_focal
location = pathlib.Path(keras_focal.__file__).resolve()
assert "site-packages" in location.parts, f"keras_focal imported from {location}, not from the installed wheel"
import keras_focal.data_prep, keras_focal.models  # the folders installed under keras_focal
print(f"keras-focal {keras_focal.__version__} from {location.parent}")
PY
keras-focal --version
keras-focal --help > /dev/null
keras-focal predict --help > /dev/null
python - <<'PY'
import numpy as np
import keras
from keras_focal.losses import DualFocalLoss
from keras_focal.layers import AdaptiveClassWeight
images = np.random.default_rng(0).random((4, 16, 16, 1), dtype="float32")
masks = (images[..., 0] > 0.8).astype("int32")
inputs = keras.Input((16, 16, 1))
logits = AdaptiveClassWeight([0.2, 0.8])(keras.layers.Conv2D(2, 3, padding="same")(inputs))
model = keras.Model(inputs, logits)
model.compile(optimizer="adam", loss=DualFocalLoss(from_logits=True))
loss = model.fit(images, masks, epochs=1, verbose=0).history["loss"][0]
assert np.isfinite(loss), loss
print(f"DualFocalLoss in compile/fit: loss {loss:.4f}")
PY
keras-focal prep synth data --cases 0 --us-cases 3 --prepare --size 32
keras-focal train --data data/prepared/trus --model unet --model-options '{"base_filters": 4, "depth": 2}' \
    --loss adfl --fold 0 --epochs 1 --out run
test -f run/metrics.json && test -f run/last.keras
echo "smoke test of the installed wheel: passed"
