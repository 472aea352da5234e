"""The slices of a prepared data set as the networks see them: a tf.data source, and the input scale.

- `Examples`: the slices of some cases, decoded in memory or streamed from
  their PNG files (with an optional cache of decoded slices); the trainer's
  shuffled pipeline (`keras_focal.training.data`) and `evaluation_dataset`
  (the slices in order, for scoring and prediction) batch them.
- `normalize`: uint8 slices to the float32 network input in [-1, 1], the one
  scale of training, evaluation, prediction and export.

TensorFlow is imported only when a dataset is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keras_focal.types import Array, ArrayLike, PathLike

if TYPE_CHECKING:
    import tensorflow as tf


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

    def __init__(self, images: ArrayLike | None = None, masks: ArrayLike | None = None, image_paths: Sequence | None = None, mask_paths: Sequence[str] | None = None, channels: int = 1,
                 cache_paths: Sequence[str] | None = None, shape: tuple[int, int] | None = None) -> None:
        """`shape`: `(height, width)` of every slice, needed with `cache_paths`.

        `image_paths`: one PNG per slice, or per slice a list of one grey PNG
        per channel (a multi-channel volume's slices), stacked on decoding.
        """
        self.images, self.masks = images, masks
        self.image_paths, self.mask_paths = image_paths, mask_paths
        first = image_paths[0] if image_paths else None
        self.files_per_image = len(first) if isinstance(first, (list, tuple)) else 1
        self.channels = channels
        self.cache_paths, self.shape = cache_paths, shape

    @property
    def streamed(self) -> bool:
        return self.images is None

    def __len__(self):
        return len(self.image_paths) if self.streamed else len(self.images)

    def source(self) -> tf.data.Dataset:
        """The unbatched `tf.data` source: arrays, or file paths to `decode`."""
        import tensorflow as tf

        if self.streamed and self.cache_paths:
            import glob

            patterns = [glob.escape(path) for path in self.cache_paths]
            return tf.data.Dataset.from_tensor_slices((self.image_paths, self.mask_paths, self.cache_paths, patterns))
        if self.streamed:
            return tf.data.Dataset.from_tensor_slices((self.image_paths, self.mask_paths))
        return tf.data.Dataset.from_tensor_slices((self.images, self.masks))

    def decode(self, *element: Any) -> tuple[Any, Any]:
        """`(image, mask)` from a source element (decodes the PNGs of a streamed set)."""
        if not self.streamed:
            return element
        import tensorflow as tf

        def from_png():
            if self.files_per_image > 1:
                image = tf.concat([tf.io.decode_png(tf.io.read_file(element[0][channel]), channels=1)
                                   for channel in range(self.files_per_image)], axis=-1)
            else:
                image = tf.io.decode_png(tf.io.read_file(element[0]), channels=self.channels)
            mask = tf.io.decode_png(tf.io.read_file(element[1]), channels=1)[..., 0]
            return image, mask

        if not self.cache_paths:
            return from_png()
        cache, cache_pattern = element[2], element[3]
        shape = tuple(self.shape or ()) + (self.channels + 1,)
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


def cache_name(image_path: str | Sequence[str], mask_path: str, channels: int) -> str:
    """The cache file of a slice: changes when either PNG is rewritten or moved."""
    import hashlib

    key = [str(channels)]
    image_paths = list(image_path) if isinstance(image_path, (list, tuple)) else [str(image_path)]
    for path in image_paths + [mask_path]:
        status = os.stat(path)
        key += [os.path.abspath(path), str(status.st_size), str(status.st_mtime_ns)]
    return hashlib.sha256("\0".join(key).encode()).hexdigest()[:32] + ".tensor"


def normalize(images: ArrayLike) -> Any:
    """uint8 images to float32 in [-1, 1] (the models do not normalise their inputs)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def process_share(batches: tf.data.Dataset, batch_size: int, shard: tuple[int, int]) -> tf.data.Dataset:
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


def evaluation_dataset(
    examples: Examples, batch_size: int, drop_remainder: bool = False, shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Batches of `Examples` in order, normalised, with int32 masks (`shard`: see `process_share`)."""
    import tensorflow as tf

    def prepare(index, element):
        image, mask = examples.decode(*element)
        return normalize(image), tf.cast(mask, tf.int32)

    elements = process_share(examples.source().enumerate(), batch_size, shard)
    batches = elements.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size // shard[1], drop_remainder=drop_remainder)
    return batches.prefetch(tf.data.AUTOTUNE)


def read_mask_png(path: PathLike) -> Array:
    """A mask PNG's class indices (uint8)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image, dtype=np.uint8)
