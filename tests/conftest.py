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


@pytest.fixture(scope="session")
def prepared_trus(tmp_path_factory):
    """A prepared 32x32 data set of four synthetic ultrasound cases with 2 patient-level folds."""
    from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases
    from keras_focal.data_prep.synthetic import make_ultrasound_like
    from tests.prep_fixtures import SMALL

    root = tmp_path_factory.mktemp("training")
    source = make_ultrasound_like(str(root / "trus"), cases=4, seed=1, **SMALL)
    cases, _ = find_dicom_cases(f"{source}/dicom", f"{source}/masks")
    out = str(root / "prepared")
    prepare_dataset(cases, out, PROSTATE_CLASSES, PrepOptions(size=32), folds=2, progress=False)
    return out
