import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


@pytest.fixture(scope="session")
def promise12_source(tmp_path_factory):
    """Four small PROMISE12-style cases (the real layout, smaller volumes)."""
    from keras_focal.data_prep.synthetic import make_promise12_like
    from tests.prep_fixtures import SMALL

    return make_promise12_like(str(tmp_path_factory.mktemp("synth") / "promise12"), cases=4, seed=3, **SMALL)


@pytest.fixture(scope="session")
def ultrasound_source(tmp_path_factory):
    """Three small DICOM ultrasound cases with their NRRD masks."""
    from keras_focal.data_prep.synthetic import make_ultrasound_like
    from tests.prep_fixtures import SMALL

    return make_ultrasound_like(str(tmp_path_factory.mktemp("synth") / "trus"), cases=3, seed=3, **SMALL)
