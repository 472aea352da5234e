"""A prepared data set (`keras-focal prep` output) and its tf.data pipelines."""

import json
import os

import numpy as np

from keras_focal.class_weights import inverse_frequency_weights

IGNORE_LABEL = 255
# --input auto streams the PNGs when the decoded training and validation images
# and masks would take more memory than this.
STREAM_ABOVE_BYTES = 2 * 1024**3


class Examples:
    """The slices of some cases: decoded in memory, or streamed from their PNG files.

    Both give the same `tf.data` elements in the same order (uint8 image
    `(H, W, C)`, uint8 mask `(H, W)`); a streamed set holds only the file
    paths, and decodes each slice when the pipeline reaches it.
    """

    def __init__(self, images=None, masks=None, image_paths=None, mask_paths=None, channels=1):
        self.images, self.masks = images, masks
        self.image_paths, self.mask_paths = image_paths, mask_paths
        self.channels = channels

    @property
    def streamed(self):
        return self.images is None

    def __len__(self):
        return len(self.image_paths) if self.streamed else len(self.images)

    def source(self):
        """The unbatched `tf.data` source: arrays, or file paths to `decode`."""
        import tensorflow as tf

        if self.streamed:
            return tf.data.Dataset.from_tensor_slices((self.image_paths, self.mask_paths))
        return tf.data.Dataset.from_tensor_slices((self.images, self.masks))

    def decode(self, first, second):
        """`(image, mask)` from a source element (decodes the PNGs of a streamed set)."""
        if not self.streamed:
            return first, second
        import tensorflow as tf

        image = tf.io.decode_png(tf.io.read_file(first), channels=self.channels)
        mask = tf.io.decode_png(tf.io.read_file(second), channels=1)[..., 0]
        return image, mask


class PreparedDataset:
    """The images, masks, classes and folds of a folder written by `keras-focal prep`.

    Raises:
        ValueError: the folder lacks `manifest.csv`, `classes.json` or
            `folds.csv`, or they disagree.
    """

    def __init__(self, path):
        import pandas as pd

        self.path = str(path)
        missing = [n for n in ("manifest.csv", "classes.json", "folds.csv") if not os.path.isfile(os.path.join(self.path, n))]
        if missing:
            raise ValueError(
                f"'{self.path}' is not a prepared data set: {', '.join(missing)} missing "
                "(run `keras-focal prep ...` first; folds.csv needs at least as many cases as folds)."
            )
        with open(os.path.join(self.path, "classes.json")) as stream:
            self.classes = json.load(stream)
        self.class_names = list(self.classes["names"])
        self.manifest = pd.read_csv(os.path.join(self.path, "manifest.csv"))
        self.folds = pd.read_csv(os.path.join(self.path, "folds.csv"))
        unknown = set(self.folds.case) - set(self.manifest.case)
        if unknown or self.manifest.empty:
            raise ValueError(f"folds.csv of '{self.path}' names cases without slices: {sorted(unknown)[:5]}")
        self.num_folds = int(self.folds.fold.max()) + 1
        self.name = os.path.basename(os.path.normpath(self.path))

    @property
    def num_classes(self):
        return len(self.class_names)

    def split(self, fold, validation_fraction=0.1, seed=0):
        """`(train, validation, test)` case lists for a test fold.

        Validation cases are drawn (with `seed`) from the training folds,
        never from the test fold.
        """
        if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < self.num_folds:
            raise ValueError(f"fold {fold!r} is out of range: '{self.path}' has folds 0..{self.num_folds - 1}.")
        test = sorted(self.folds.case[self.folds.fold == fold])
        train = sorted(self.folds.case[self.folds.fold != fold])
        count = int(round(validation_fraction * len(train)))
        if validation_fraction > 0 and len(train) >= 2:
            count = min(max(count, 1), len(train) - 1)
        else:
            count = 0
        order = np.random.default_rng(seed).permutation(len(train))
        validation = sorted(train[i] for i in order[:count])
        train = sorted(train[i] for i in order[count:])
        return train, validation, test

    def class_weights(self, cases):
        """Inverse pixel-frequency weights (Eq. 5) over `cases` only; absent classes get 0."""
        per_case = self.classes["per_case"]
        counts = np.sum([per_case[c]["pixel_count"] for c in cases], axis=0)
        return inverse_frequency_weights(counts, absent="zero").tolist()

    def rows(self, cases):
        return self.manifest[self.manifest.case.isin(set(cases))].sort_values(["case", "slice"])

    def image_shape(self):
        from PIL import Image

        with Image.open(os.path.join(self.path, self.manifest.image.iloc[0])) as image:
            channels = 3 if image.mode in ("RGB", "RGBA") else 1
            return (image.height, image.width, channels)

    def examples(self, cases, channels, stream=False):
        """`Examples` of `cases`: decoded now (`stream=False`) or streamed from disk."""
        if not stream:
            images, masks = self.load(cases, channels)
            return Examples(images, masks, channels=channels)
        rows = self.rows(cases)
        return Examples(
            image_paths=[os.path.join(self.path, p) for p in rows.image],
            mask_paths=[os.path.join(self.path, p) for p in rows["mask"]],
            channels=channels,
        )

    def decoded_bytes(self, cases, channels):
        """Memory the decoded images and masks of `cases` take (uint8)."""
        height, width, _ = self.image_shape()
        return len(self.rows(cases)) * height * width * (channels + 1)

    def load(self, cases, channels):
        """Decodes the PNGs of `cases` in parallel: `(images uint8 (N,H,W,C), masks uint8 (N,H,W))`."""
        import tensorflow as tf

        streamed = self.examples(cases, channels, stream=True)
        if not len(streamed):
            return np.zeros((0,) + self.image_shape()[:2] + (channels,), np.uint8), np.zeros((0,) + self.image_shape()[:2], np.uint8)
        dataset = streamed.source().map(streamed.decode, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
        images, masks = zip(*((i.numpy(), m.numpy()) for i, m in dataset))
        return np.concatenate(images), np.concatenate(masks)


def normalize(images):
    """uint8 images to float32 in [-1, 1] (the models do not normalise their inputs)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def training_dataset(examples, batch_size, first_epoch, epochs, seed, augment=False, drop_remainder=False):
    """Shuffled batches of `Examples` for epochs `first_epoch..epochs-1`, one after the other.

    Each epoch's order (and augmentation) depends only on `(seed, epoch)`,
    so a resumed run sees the same batches as an uninterrupted one, and a
    streamed set the same batches as one held in memory (the shuffle draws
    the same permutation whatever the elements are; a streamed set shuffles
    file paths and decodes after). Batches never straddle two epochs.
    """
    import tensorflow as tf

    count = len(examples)
    base = examples.source()

    def epoch_batches(epoch):
        # A Python seed per epoch: tf.data's shuffle seed must be static.
        shuffled = base.shuffle(count, seed=seed * 100003 + epoch, reshuffle_each_iteration=False).enumerate()

        def prepare(index, pair):
            image, mask = examples.decode(*pair)
            image = normalize(image)
            if augment:
                flip = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed * 100003 + epoch, tf.int64), index])) < 0.5
                image = tf.where(flip, tf.reverse(image, [1]), image)
                mask = tf.where(flip, tf.reverse(mask, [1]), mask)
            return image, tf.cast(mask, tf.int32)

        return shuffled.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=drop_remainder)

    dataset = epoch_batches(first_epoch)
    for epoch in range(first_epoch + 1, epochs):
        dataset = dataset.concatenate(epoch_batches(epoch))
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(examples, batch_size, drop_remainder=False):
    """Batches of `Examples` in order, normalised, with int32 masks."""
    import tensorflow as tf

    def prepare(first, second):
        image, mask = examples.decode(first, second)
        return normalize(image), tf.cast(mask, tf.int32)

    batches = examples.source().map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=drop_remainder)
    return batches.prefetch(tf.data.AUTOTUNE)
