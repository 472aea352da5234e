"""Small synthetic data sets for the data-preparation tests."""

import numpy as np
import pytest

from keras_focal.data_prep.synthetic import make_promise12_like, make_ultrasound_like

SMALL = {"slices_range": (6, 9), "sizes": (48, 64), "progress": False}


@pytest.fixture(scope="session")
def promise12_source(tmp_path_factory):
    return make_promise12_like(str(tmp_path_factory.mktemp("synth") / "promise12"), cases=4, seed=3, **SMALL)


@pytest.fixture(scope="session")
def ultrasound_source(tmp_path_factory):
    return make_ultrasound_like(str(tmp_path_factory.mktemp("synth") / "trus"), cases=3, seed=3, **SMALL)


def png(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)
