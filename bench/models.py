"""Training and inference throughput of the segmentation networks, CE vs ADFL.

For each network at the papers' setting (224x224 inputs, batch 4, 11
classes, Adam), times one training step (`train_on_batch`) with plain
cross-entropy and with ADFL (the `acw` layer plus `DualFocalLoss`) from the
same initial weights, interleaved in one process, and one inference batch
(`predict_on_batch`). Prints a Markdown table with images/s and the
ADFL/CE step-time ratio (the loss and the ACW layer should cost next to
nothing beside the network: target <= 1.05).

    python bench/models.py [--models deeplabv3_plus vgg19_fcn unet] [--steps 10]
        [--batch 4] [--size 224] [--classes 11] [--jit] [--mixed-precision]
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notes from building six models

from _timing import interleaved_medians  # noqa: E402  (bench/ is on sys.path)

from keras_focal import losses, models  # noqa: E402

BUILDERS = {
    "deeplabv3_plus": lambda size, classes, **kw: models.deeplabv3_plus((size, size, 3), classes, **kw),
    "vgg19_fcn": lambda size, classes, **kw: models.vgg19_fcn((size, size, 3), classes, **kw),
    "unet": lambda size, classes, **kw: models.unet((size, size, 1), classes, **kw),
}


def build(name, size, classes, acw_weights, loss, jit):
    keras.utils.set_random_seed(0)
    model = BUILDERS[name](size, classes, acw_weights=acw_weights)
    model.compile(optimizer=keras.optimizers.Adam(5e-4), loss=loss, jit_compile=jit)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--jit", action="store_true", help="compile with XLA (jit_compile=True)")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 policy")
    args = parser.parse_args(argv)
    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")

    rng = np.random.default_rng(0)
    masks = tf.constant(rng.integers(0, args.classes, size=(args.batch, args.size, args.size)).astype(np.int32))
    weights = list(np.linspace(0.5, 1.5, args.classes) / np.linspace(0.5, 1.5, args.classes).sum())
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(
        f"device: {device}, batch {args.batch} of {args.size}x{args.size}, {args.classes} classes, "
        f"jit_compile={args.jit}, policy={keras.config.dtype_policy().name}, median of {args.steps}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )
    rows = []
    for name in args.models:
        channels = 1 if name == "unet" else 3
        images = tf.constant(rng.random((args.batch, args.size, args.size, channels), dtype=np.float32))
        ce = build(name, args.size, args.classes, None, losses.CrossEntropy(), args.jit)
        adfl = build(name, args.size, args.classes, weights, losses.DualFocalLoss(), args.jit)
        for model in (ce, adfl):  # trace, compile, warm up
            for _ in range(2):
                assert np.isfinite(model.train_on_batch(images, masks))
            model.predict_on_batch(images)
        medians = interleaved_medians(
            {
                "ce": lambda: ce.train_on_batch(images, masks),
                "adfl": lambda: adfl.train_on_batch(images, masks),
                "predict": lambda: ce.predict_on_batch(images),
            },
            args.steps,
        )
        rows.append((name, ce.count_params(), medians))
        print(f"  {name}: done", flush=True)
    print()
    print("| network | parameters | train CE (img/s) | train ADFL (img/s) | ADFL/CE step time | inference (img/s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, params, medians in rows:
        print(
            f"| {name} | {params / 1e6:.1f} M | {args.batch / medians['ce']:.2f} | "
            f"{args.batch / medians['adfl']:.2f} | {medians['adfl'] / medians['ce']:.3f} | "
            f"{args.batch / medians['predict']:.2f} |"
        )


if __name__ == "__main__":
    main()
