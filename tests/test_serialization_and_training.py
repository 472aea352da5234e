"""`losses.get`, Keras serialisation round trips and `model.fit` with every loss."""

import keras
import numpy as np
import pytest

from keras_focal import losses
from keras_focal.initializers import PriorProbability
from keras_focal.layers import AdaptiveClassWeight

pytestmark = pytest.mark.backend_agnostic

LOSS_CASES = {
    "ce": {},
    "wce": {"class_weights": [0.2, 0.3, 0.5]},
    "fl": {"gamma": 0.5, "alpha": [0.2, 0.3, 0.5], "epsilon": 1e-3},
    "dfl": {"alpha": 0.5, "beta": 2.0, "gamma": 0.5},
}


@pytest.mark.parametrize(
    "name,cls",
    [
        ("ce", losses.CrossEntropy),
        ("WCE", losses.WeightedCrossEntropy),
        ("fl", losses.CategoricalFocalLoss),
        ("dfl", losses.DualFocalLoss),
        ("bfl", losses.BinaryFocalLoss),
        ("dual_focal", losses.DualFocalLoss),
    ],
)
def test_get_builds_the_named_loss(name, cls):
    assert type(losses.get(name)) is cls


def test_get_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown loss name 'hinge'. Allowed: \['acw_ce', 'adfl', 'bfl', "):
        losses.get("hinge")


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_get_takes_a_config_a_loss_or_a_callable_as_keras_losses_get(name):
    loss = losses.get(name, from_logits=True, **LOSS_CASES[name])
    restored = losses.get(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert losses.get(loss) is loss
    assert losses.get(keras.losses.categorical_crossentropy) is keras.losses.categorical_crossentropy
    with pytest.raises(ValueError, match=r"options \['gamma'\] apply to a loss name only; got dict"):
        losses.get(keras.saving.serialize_keras_object(loss), gamma=1.0)
    with pytest.raises(ValueError, match=r"a loss is a name, a config dict or a callable; got int 3\."):
        losses.get(3)


@pytest.mark.parametrize("name,loss", [("adfl", "'dfl'"), ("ACW_CE", "'ce'")])
def test_get_explains_names_that_are_a_layer_plus_a_loss(name, loss):
    with pytest.raises(ValueError, match=rf"is the AdaptiveClassWeight layer plus .*losses.get\({loss}\)"):
        losses.get(name)


def test_trainer_and_get_share_one_table_of_names():
    from keras_focal.loss_names import LOSS_NAMES
    from keras_focal.training.config import LOSSES, RunConfig
    from keras_focal.training.run import build_loss

    assert set(LOSSES) == {"ce", "wce", "fl", "dfl", "acw_ce", "adfl", "dice", "tversky", "dice_ce", "dice_fl"}
    for name in LOSSES:
        config = RunConfig(data="d", out="o", model="unet", loss=name)
        built = build_loss(config, [0.3, 0.7], ["background", "prostate"])
        entry = LOSS_NAMES[name]
        assert type(built).__name__ == entry.loss_class
        assert config.uses_acw == (name in ("acw_ce", "adfl"))
        if not entry.with_acw_layer:
            assert type(losses.get(name)) is type(built)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_config_round_trip(name):
    loss = losses.get(name, from_logits=True, ignore_class=255, **LOSS_CASES[name])
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    logits = np.random.default_rng(0).normal(size=(2, 3, 3, 3)).astype(np.float32)
    masks = np.random.default_rng(1).integers(0, 3, size=(2, 3, 3))
    assert float(restored(masks, logits)) == pytest.approx(float(loss(masks, logits)), rel=1e-6)


def test_binary_focal_config_round_trip():
    loss = losses.BinaryFocalLoss(gamma=0.3, alpha=None, epsilon=1e-3, from_logits=True)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.get_config() == loss.get_config()


def _tiny_segmenter(num_classes=3, acw=None, activation="softmax"):
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    if acw is not None:
        x = AdaptiveClassWeight(acw, name="acw")(x)
    if activation:
        x = keras.layers.Activation(activation, name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, x)


def _data(num_classes=3, n=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 2)).astype(np.float32)
    # Learnable labels: the class follows the sign pattern of the channels.
    y = ((x[..., 0] > 0).astype(int) + (x[..., 1] > 1).astype(int)).clip(0, num_classes - 1)
    return x, y


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
@pytest.mark.parametrize("with_acw", [False, True])
def test_fit_decreases_the_loss(name, with_acw):
    keras.utils.set_random_seed(0)
    model = _tiny_segmenter(acw=[0.2, 0.3, 0.5] if with_acw else None)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses.get(name, **LOSS_CASES[name]))
    x, y = _data()
    history = model.fit(x, y, batch_size=4, epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < history[0]


def test_adfl_model_saves_and_loads_without_custom_objects(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_segmenter(acw=[0.2, 0.3, 0.5])
    model.compile(optimizer="adam", loss=losses.DualFocalLoss(gamma=0.5))
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "adfl.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert isinstance(restored.get_layer("acw"), AdaptiveClassWeight)
    assert isinstance(restored.loss, losses.DualFocalLoss) and restored.loss.gamma == 0.5
    restored.fit(x, y, batch_size=8, epochs=1, verbose=0)


LOAD = "import sys, keras\n{imports}model = {load}(sys.argv[1])\nprint(type(model.loss).__name__)"


@pytest.mark.parametrize(
    "imports, load, loads",
    [
        ("", "keras.models.load_model", False),
        ("import keras_focal\n", "keras.models.load_model", False),  # the package is lazy: nothing registered yet
        ("from keras_focal import layers, losses\n", "keras.models.load_model", True),
        ("import keras_focal\n", "keras_focal.load_model", True),
    ],
)
def test_loading_needs_the_classes_registered_and_nothing_else(tmp_path, imports, load, loads):
    """Keras finds registered classes only once their module ran; `keras_focal.load_model` sees to it."""
    import subprocess
    import sys

    model = _tiny_segmenter(acw=[0.2, 0.3, 0.5])
    model.compile(optimizer="adam", loss=losses.DualFocalLoss())
    model.save(tmp_path / "adfl.keras")
    done = subprocess.run([sys.executable, "-c", LOAD.format(imports=imports, load=load), str(tmp_path / "adfl.keras")],
                          capture_output=True, text=True, timeout=120)
    if loads:
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "DualFocalLoss"
    else:
        assert done.returncode != 0 and "Could not locate class 'AdaptiveClassWeight'" in done.stderr


def test_sigmoid_model_with_prior_probability_and_binary_focal(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", bias_initializer=PriorProbability(0.01))(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=losses.BinaryFocalLoss(gamma=0.5, alpha=0.5))
    images, labels = _data(num_classes=2)
    model.fit(images, labels[..., None].astype("float32"), batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "binary.keras")
    restored = keras.models.load_model(tmp_path / "binary.keras")
    assert isinstance(restored.loss, losses.BinaryFocalLoss)
