"""A prepared data set (`keras-focal prep` output) and its tf.data pipelines."""

import json
import os

import numpy as np

from keras_focal.class_weights import inverse_frequency_weights

IGNORE_LABEL = 255
# What `PreparedDataset.check` found sound, by file size and modification time.
CHECKED_NAME = ".checked.json"
# --input auto streams the PNGs when the decoded training and validation images
# and masks would take more memory than this.
STREAM_ABOVE_BYTES = 2 * 1024**3


class Examples:
    """The slices of some cases: decoded in memory, or streamed from their PNG files.

    Both give the same `tf.data` elements in the same order (uint8 image
    `(H, W, C)`, uint8 mask `(H, W)`); a streamed set holds only the file
    paths, and decodes each slice when the pipeline reaches it.

    A streamed set may keep a cache of decoded slices (`cache_paths`, one
    raw file per slice, named after the PNGs' path, size and modification
    time): a slice whose cache file is complete is read from it, any other
    is decoded from its PNGs and its cache file (re)written. Each process
    therefore caches only the slices it reads, and an interrupted write or a
    changed PNG is never read back.
    """

    def __init__(self, images=None, masks=None, image_paths=None, mask_paths=None, channels=1,
                 cache_paths=None, shape=None):
        """`shape`: `(height, width)` of every slice, needed with `cache_paths`."""
        self.images, self.masks = images, masks
        self.image_paths, self.mask_paths = image_paths, mask_paths
        self.channels = channels
        self.cache_paths, self.shape = cache_paths, shape

    @property
    def streamed(self):
        return self.images is None

    def __len__(self):
        return len(self.image_paths) if self.streamed else len(self.images)

    def source(self):
        """The unbatched `tf.data` source: arrays, or file paths to `decode`."""
        import tensorflow as tf

        if self.streamed and self.cache_paths:
            import glob

            patterns = [glob.escape(path) for path in self.cache_paths]
            return tf.data.Dataset.from_tensor_slices((self.image_paths, self.mask_paths, self.cache_paths, patterns))
        if self.streamed:
            return tf.data.Dataset.from_tensor_slices((self.image_paths, self.mask_paths))
        return tf.data.Dataset.from_tensor_slices((self.images, self.masks))

    def decode(self, *element):
        """`(image, mask)` from a source element (decodes the PNGs of a streamed set)."""
        if not self.streamed:
            return element
        import tensorflow as tf

        def from_png():
            image = tf.io.decode_png(tf.io.read_file(element[0]), channels=self.channels)
            mask = tf.io.decode_png(tf.io.read_file(element[1]), channels=1)[..., 0]
            return image, mask

        if not self.cache_paths:
            return from_png()
        cache, cache_pattern = element[2], element[3]
        shape = tuple(self.shape) + (self.channels + 1,)
        # A cache file is a serialised uint8 tensor, whose length is fixed by its shape.
        with tf.init_scope():
            complete_length = len(tf.io.serialize_tensor(tf.zeros(shape, tf.uint8)).numpy())

        def decode_and_cache():
            image, mask = from_png()
            # A PNG of another size fails here (the cache holds one shape).
            pixels = tf.ensure_shape(tf.concat([image, mask[..., None]], -1), shape)
            with tf.control_dependencies([tf.io.write_file(cache, tf.io.serialize_tensor(pixels))]):
                return tf.identity(image), tf.identity(mask)

        def from_cache(content):
            pixels = tf.ensure_shape(tf.io.parse_tensor(content, tf.uint8), shape)
            return pixels[..., : self.channels], pixels[..., self.channels]

        # Read once: a file that is missing, or shorter than a slice (a write
        # cut short, or another process writing it now), is rebuilt from the PNGs.
        found = tf.size(tf.io.matching_files(cache_pattern)) > 0
        content = tf.cond(found, lambda: tf.io.read_file(cache), lambda: tf.constant(b""))
        return tf.cond(tf.equal(tf.strings.length(content), complete_length),
                       lambda: from_cache(content), decode_and_cache)


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

    def examples(self, cases, channels, stream=False, cache=None):
        """`Examples` of `cases`: decoded now (`stream=False`) or streamed from disk.

        `cache`: a folder for the decoded slices of a streamed set (created
        if needed; see `Examples`).
        """
        if not stream:
            images, masks = self.load(cases, channels)
            return Examples(images, masks, channels=channels)
        rows = self.rows(cases)
        image_paths = [os.path.join(self.path, p) for p in rows.image]
        mask_paths = [os.path.join(self.path, p) for p in rows["mask"]]
        cache_paths = None
        if cache:
            os.makedirs(cache, exist_ok=True)
            cache_paths = [os.path.join(cache, _cache_name(image, mask, channels)) for image, mask in zip(image_paths, mask_paths)]
        return Examples(image_paths=image_paths, mask_paths=mask_paths, channels=channels,
                        cache_paths=cache_paths, shape=self.image_shape()[:2])

    def check(self):
        """Checks every slice of the manifest before any training; raises ValueError naming the file.

        Every image and mask exists and decodes completely, all are the size
        of the first image, images have its channels, masks are single
        channel, and every mask label is a class (0..num_classes-1) or the
        ignore label 255. Slices found sound are recorded (by file size and
        modification time) in `.checked.json` when the folder is writable,
        so a re-run only checks what changed.
        """
        import concurrent.futures

        from keras_focal.files import write_json_atomically

        shape = self.image_shape()
        record_path = os.path.join(self.path, CHECKED_NAME)
        key = {"shape": list(shape), "num_classes": self.num_classes}
        try:
            with open(record_path) as stream:
                record = json.load(stream)
            checked = record["files"] if record.get("key") == key else {}
        except (OSError, ValueError, KeyError, TypeError):
            checked = {}

        def stamp(relative):
            status = os.stat(os.path.join(self.path, relative))
            return [status.st_size, status.st_mtime_ns]

        pending, sound, problems = [], {}, []
        for image, mask in zip(self.manifest.image, self.manifest["mask"]):
            try:
                stamps = {image: stamp(image), mask: stamp(mask)}
            except OSError:
                missing = [p for p in (image, mask) if not os.path.isfile(os.path.join(self.path, p))]
                problems.append(f"'{os.path.join(self.path, missing[0] if missing else image)}': missing (listed in manifest.csv)")
                continue
            if all(checked.get(p) == s for p, s in stamps.items()):
                sound.update(stamps)
            else:
                pending.append((image, mask, stamps))
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            for (image, mask, stamps), found in zip(pending, pool.map(lambda item: self._slice_problem(*item[:2], shape), pending)):
                if found:
                    problems.append(found)
                else:
                    sound.update(stamps)
        if pending and sound:
            try:
                write_json_atomically(record_path, {"key": key, "files": sound})
            except OSError:
                pass  # a read-only data set is checked on every run
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ValueError(
                f"the prepared data set '{self.path}' has {len(problems)} bad slice file(s){more}:\n  "
                + "\n  ".join(problems[:5])
                + "\nre-run `keras-focal prep` into a new folder, or fix or remove these slices."
            )

    def _slice_problem(self, image_name, mask_name, shape):
        """What is wrong with one slice's PNGs, or None."""
        from PIL import Image

        height, width, channels = shape
        arrays = {}
        for name in (image_name, mask_name):
            path = os.path.join(self.path, name)
            try:
                with Image.open(path) as picture:
                    picture.load()
                    arrays[name] = np.asarray(picture)
            except (OSError, SyntaxError, ValueError) as error:
                return f"'{path}': cannot be decoded ({error})"
        image, mask = arrays[image_name], arrays[mask_name]
        image_path, mask_path = (os.path.join(self.path, n) for n in (image_name, mask_name))
        if image.shape[:2] != (height, width):
            return f"'{image_path}': {image.shape[1]}x{image.shape[0]} pixels, the data set's images are {width}x{height}"
        image_channels = 1 if image.ndim == 2 else image.shape[2]
        if image_channels != channels and not (channels == 3 and image_channels == 4):
            return f"'{image_path}': {image_channels} channel(s), the data set's images have {channels}"
        if mask.ndim != 2:
            return f"'{mask_path}': a mask must be a single-channel image of class indices, found shape {mask.shape}"
        if mask.shape != (height, width):
            return f"'{mask_path}': {mask.shape[1]}x{mask.shape[0]} pixels, its image is {width}x{height}"
        labels = np.unique(mask)
        bad = labels[(labels >= self.num_classes) & (labels != IGNORE_LABEL)]
        if bad.size:
            return (
                f"'{mask_path}': label(s) {bad[:5].tolist()} out of range for {self.num_classes} classes "
                f"(allowed: 0..{self.num_classes - 1}, or {IGNORE_LABEL} = ignore)"
            )
        return None

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


def _cache_name(image_path, mask_path, channels):
    """The cache file of a slice: changes when either PNG is rewritten or moved."""
    import hashlib

    key = [str(channels)]
    for path in (image_path, mask_path):
        status = os.stat(path)
        key += [os.path.abspath(path), str(status.st_size), str(status.st_mtime_ns)]
    return hashlib.sha256("\0".join(key).encode()).hexdigest()[:32] + ".tensor"


def normalize(images):
    """uint8 images to float32 in [-1, 1] (the models do not normalise their inputs)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def _process_share(batches, batch_size, shard):
    """The elements of `(index, element)` pairs that process `shard[0]` of `shard[1]` feeds.

    Process i takes the i-th part of every whole global batch, exactly as
    Keras's `DataParallel` auto-sharding would after decoding; sharding the
    file paths first means each process decodes (and caches) only its share.
    """
    index, count = shard
    if count == 1:
        return batches
    share = batch_size // count
    whole = (batches.cardinality() // batch_size) * batch_size
    return batches.take(whole).filter(lambda position, _: (position % batch_size) // share == index)


def training_dataset(examples, batch_size, first_epoch, epochs, seed, augment=False, drop_remainder=False,
                     shard=(0, 1)):
    """Shuffled batches of `Examples` for epochs `first_epoch..epochs-1`, one after the other.

    Each epoch's order (and augmentation) depends only on `(seed, epoch)`,
    so a resumed run sees the same batches as an uninterrupted one, and a
    streamed set the same batches as one held in memory (the shuffle draws
    the same permutation whatever the elements are; a streamed set shuffles
    file paths and decodes after). Batches never straddle two epochs.

    `shard=(i, n)`: process i of n gets the i-th `batch_size / n` slices of
    every whole global batch (the last incomplete batch is left out).
    """
    import tensorflow as tf

    count = len(examples)
    base = examples.source()
    local_batch = batch_size // shard[1]

    def epoch_batches(epoch):
        # A Python seed per epoch: tf.data's shuffle seed must be static.
        shuffled = base.shuffle(count, seed=seed * 100003 + epoch, reshuffle_each_iteration=False).enumerate()
        shuffled = _process_share(shuffled, batch_size, shard)

        def prepare(index, pair):
            image, mask = examples.decode(*pair)
            image = normalize(image)
            if augment:
                flip = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed * 100003 + epoch, tf.int64), index])) < 0.5
                image = tf.where(flip, tf.reverse(image, [1]), image)
                mask = tf.where(flip, tf.reverse(mask, [1]), mask)
            return image, tf.cast(mask, tf.int32)

        return shuffled.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(local_batch, drop_remainder=drop_remainder)

    dataset = epoch_batches(first_epoch)
    for epoch in range(first_epoch + 1, epochs):
        dataset = dataset.concatenate(epoch_batches(epoch))
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(examples, batch_size, drop_remainder=False, shard=(0, 1)):
    """Batches of `Examples` in order, normalised, with int32 masks (`shard` as `training_dataset`)."""
    import tensorflow as tf

    def prepare(index, element):
        image, mask = examples.decode(*element)
        return normalize(image), tf.cast(mask, tf.int32)

    elements = _process_share(examples.source().enumerate(), batch_size, shard)
    batches = elements.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size // shard[1], drop_remainder=drop_remainder)
    return batches.prefetch(tf.data.AUTOTUNE)
