"""A prepared data set (`keras-focal prep` output) and its tf.data pipelines."""

import json
import os

import numpy as np

from keras_focal.class_weights import inverse_frequency_weights

IGNORE_LABEL = 255


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

    def load(self, cases, channels):
        """Decodes the PNGs of `cases` in parallel: `(images uint8 (N,H,W,C), masks uint8 (N,H,W))`."""
        import tensorflow as tf

        rows = self.rows(cases)
        if rows.empty:
            return np.zeros((0,) + self.image_shape()[:2] + (channels,), np.uint8), np.zeros((0,) + self.image_shape()[:2], np.uint8)
        paths = [os.path.join(self.path, p) for p in rows.image] , [os.path.join(self.path, p) for p in rows["mask"]]

        def decode(image_path, mask_path):
            image = tf.io.decode_png(tf.io.read_file(image_path), channels=channels)
            mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)[..., 0]
            return image, mask

        dataset = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
        images, masks = zip(*((i.numpy(), m.numpy()) for i, m in dataset))
        return np.concatenate(images), np.concatenate(masks)


def normalize(images):
    """uint8 images to float32 in [-1, 1] (the models do not normalise their inputs)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def training_dataset(images, masks, batch_size, first_epoch, epochs, seed, augment=False):
    """Shuffled batches for epochs `first_epoch..epochs-1`, one epoch after the other.

    Each epoch's order (and augmentation) depends only on `(seed, epoch)`,
    so a resumed run sees the same batches as an uninterrupted one.
    Batches never straddle two epochs.
    """
    import tensorflow as tf

    count = len(images)
    base = tf.data.Dataset.from_tensor_slices((images, masks))

    def epoch_batches(epoch):
        # A Python seed per epoch: tf.data's shuffle seed must be static.
        shuffled = base.shuffle(count, seed=seed * 100003 + epoch, reshuffle_each_iteration=False).enumerate()

        def prepare(index, pair):
            image, mask = pair
            image = normalize(image)
            if augment:
                flip = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed * 100003 + epoch, tf.int64), index])) < 0.5
                image = tf.where(flip, tf.reverse(image, [1]), image)
                mask = tf.where(flip, tf.reverse(mask, [1]), mask)
            return image, tf.cast(mask, tf.int32)

        return shuffled.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)

    dataset = epoch_batches(first_epoch)
    for epoch in range(first_epoch + 1, epochs):
        dataset = dataset.concatenate(epoch_batches(epoch))
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(images, masks, batch_size):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    return dataset.map(lambda i, m: (normalize(i), tf.cast(m, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)
