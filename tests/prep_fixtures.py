"""Helpers for the data-preparation tests (the fixtures are in conftest.py)."""

import numpy as np

SMALL = {"slices_range": (6, 9), "sizes": (48, 64), "progress": False}


def png(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)
