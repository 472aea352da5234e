"""`python -m keras_focal.cli`: the `keras-focal` command."""

import sys

from keras_focal.cli import main

sys.exit(main())
