"""`python -m keras_focal.cli`: the `keras-focal` command."""

from __future__ import annotations

import sys

from keras_focal.cli import main

sys.exit(main())
