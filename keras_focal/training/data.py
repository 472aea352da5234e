"""The trainer's shuffled tf.data pipeline of a prepared data set.

The format itself (files, schema, validation, the ignore label) is
`keras_focal.data_prep.prepared`, beside its writer; its slices as a tf.data
source (`Examples`) and the network's input scale (`normalize`) are
`keras_focal.data_prep.examples`, with the pipeline of the slices in order
(`evaluation_dataset`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_focal.data_prep.examples import normalize, process_share

if TYPE_CHECKING:
    import tensorflow as tf

    from keras_focal.data_prep.examples import Examples

# --input auto streams the PNGs when the decoded training and validation images
# and masks would take more memory than this.
STREAM_ABOVE_BYTES = 2 * 1024**3


def training_dataset(examples: Examples, batch_size: int, first_epoch: int, epochs: int, seed: int, augment: bool = False, drop_remainder: bool = False,
                     shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
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

    def epoch_batches(epoch: int):
        # A Python seed per epoch: tf.data's shuffle seed must be static.
        shuffled = base.shuffle(count, seed=seed * 100003 + epoch, reshuffle_each_iteration=False).enumerate()
        shuffled = process_share(shuffled, batch_size, shard)

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
