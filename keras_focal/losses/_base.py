"""Shared machinery of the categorical (softmax) losses.

Label formats (detected from ranks, as documented on each loss):

- integer class maps: `y_true` has the rank of `y_pred` minus one
  (`(B, H, W)` against `(B, H, W, C)`), or the same rank with a class axis of
  size 1 (`(B, H, W, 1)`) while `C > 1`;
- dense labels: `y_true` has the shape of `y_pred` (one-hot or soft).

From logits (given, or recovered from a Keras softmax output) every label form
goes through `keras_focal.losses._softmax`: integer maps become one-hot labels
and all forms share one exact cross-entropy graph. Probabilities that cannot be
mapped back to logits are clipped as Keras clips them and use the per-class
formulas of `ProbabilityPrediction`.
"""

from __future__ import annotations

import typing

import keras
import numpy as np
from keras import ops

from keras_focal.losses import _numerics, _softmax
from keras_focal.types import TensorLike

try:  # Keras's own losses mark ignored pixels the same way.
    from keras.src.backend import set_keras_mask as _set_keras_mask
except ImportError:  # pragma: no cover - exercised on other Keras versions only
    _set_keras_mask = None


def _check_non_negative(name: str, value):
    if value is None:
        return
    if not np.isfinite(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a finite number >= 0. Received: {name}={value!r}"
        )


def _as_class_vector(name: str, value, allow_scalar: bool = True):
    """Validates a scalar or per-class vector of non-negative numbers."""
    if value is None:
        return None
    array = np.asarray(value, dtype="float64")
    if array.ndim == 0 and allow_scalar:
        _check_non_negative(name, float(array))
        return float(array)
    if array.ndim != 1 or array.size == 0:
        allowed = "a number >= 0 or " if allow_scalar else ""
        raise ValueError(
            f"`{name}` must be {allowed}a 1-D sequence with one entry per "
            f"class. Received: {name} with shape {array.shape}"
        )
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(
            f"`{name}` entries must be finite and >= 0. Received: "
            f"{name}={array.tolist()}"
        )
    return [float(v) for v in array]


def concrete_value(tensor):
    """The tensor as a NumPy array when it is concrete (eager), else None."""
    try:
        return np.asarray(ops.convert_to_numpy(tensor))
    except Exception:  # symbolic (tf.function, jax.jit): nothing to check
        return None


def broadcast_class_vector(vector, rank, axis: int):
    """Reshapes a per-class vector to broadcast along `axis` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = -1
    return ops.reshape(ops.convert_to_tensor(vector, dtype="float32"), shape)



def as_tensor(value):
    """`value` (a tensor, a variable, a NumPy array, a Python list) as a backend tensor, as Keras's own losses take it.

    Keras's `convert_to_tensor` returns a TensorFlow variable unchanged (it
    is "tensor-like"), and some Keras ops then fail on it (`argmax` reads
    `ndim`, which `tf.Variable` lacks): its value is read here, once.
    """
    value = ops.convert_to_tensor(value)
    read_value = getattr(value, "read_value", None)  # tf.Variable
    return read_value() if callable(read_value) else value

class ProbabilityPrediction:
    """Log-probabilities of softmax outputs given as probabilities."""

    # Clipping to [eps, 1 - eps] breaks sum_i p_i = 1.
    sums_to_one = False

    def __init__(self, probabilities: TensorLike, axis: int) -> None:
        self.axis = axis
        self.num_classes = probabilities.shape[axis]
        self.p = _numerics.softmax_from_probabilities(probabilities, axis)

    def log_p(self):
        return ops.log(self.p)

    def log_1mp(self):
        return ops.log1p(-self.p)

    def probabilities(self):
        return self.p

    def complements(self):
        return 1.0 - self.p


class LossInputs(typing.NamedTuple):
    """What every softmax loss starts from (`CategoricalLoss.inputs`).

    Attributes:
        axis: the non-negative class axis.
        num_classes: the static size of the class axis.
        logits: float32 logits (given, or recovered from a Keras softmax),
            or None when the predictions cannot be mapped back to logits.
        probabilities: the float32 predictions when `logits` is None.
        labels: for integer maps, int32 class indices with a size-1 class
            axis (ignored pixels set to 0); else None.
        dense: for dense labels, the float32 labels; else None.
        valid: boolean mask of the pixels that count (size-1 class axis), or
            None when every pixel counts.
    """

    axis: int
    num_classes: int
    logits: object
    probabilities: object
    labels: object
    dense: object
    valid: object


class CategoricalLoss(keras.losses.Loss):
    """Base class of the softmax losses: labels, masks, dtype, validation.

    Subclasses implement `logits_loss(logits, y, labels, axis)` (the path for
    logits, every label form) and `dense_loss(y_true, prediction)` (clipped
    probabilities, dense labels; integer maps arrive one-hot), which calls
    the loss's public formula function. Both return per-pixel values with a
    size-1 class axis.
    """

    def __init__(
        self,
        from_logits: bool = False,
        axis=-1,
        ignore_class=None,
        reduction: str | None = "sum_over_batch_size",
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        if not isinstance(axis, (int, np.integer)):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis!r}")
        if ignore_class is not None and not isinstance(ignore_class, (int, np.integer)):
            raise ValueError(
                "`ignore_class` must be an integer class index or None. "
                f"Received: ignore_class={ignore_class!r}"
            )
        self.from_logits = bool(from_logits)
        self.axis = int(axis)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    # -- subclass hooks -------------------------------------------------
    def check_num_classes(self, num_classes: int) -> None:
        """Raises if per-class arguments do not match `num_classes`."""

    def logits_loss(self, logits: TensorLike, y, labels, axis: int):
        """Per-pixel loss (keepdims) from float32 logits.

        Args:
            logits: float32 logits.
            y: float32 dense labels of the logits' shape: one-hot (made from
                integer labels) or as given (one-hot or soft).
            labels: the int32 class indices (size-1 class axis) when the
                labels were integer maps, else None. Integer labels are hard,
                so `sum(y) = 1` needs no reduction.
            axis: the non-negative class axis.
        """
        raise NotImplementedError

    def dense_loss(self, y_true: TensorLike, prediction: ProbabilityPrediction):
        """Per-pixel loss (keepdims) of clipped probabilities (`ProbabilityPrediction`) against dense labels."""
        raise NotImplementedError

    # -- shared logic ---------------------------------------------------
    def _logits(self, y_pred: TensorLike, keras_logits):
        """Float32 logits when they are available (given, or behind a Keras softmax)."""
        if self.from_logits:
            return ops.cast(y_pred, "float32")
        if keras_logits is not None:  # the output of a Keras softmax: use its logits
            return ops.cast(keras_logits, "float32")
        return None

    def read_inputs(self, y_true: TensorLike, y_pred: TensorLike, min_rank=2):
        """Validates the inputs and returns what every softmax loss starts from (`LossInputs`)."""
        keras_logits = getattr(y_pred, "_keras_logits", None)
        y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
        rank = len(y_pred.shape)
        if rank < min_rank:
            raise ValueError(
                f"{type(self).__name__} expects predictions with "
                + ("batch, pixel and class axes" if min_rank > 2 else "a class axis")
                + f" (rank >= {min_rank}). Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        axis = self.axis % rank
        num_classes = y_pred.shape[axis]
        if num_classes is None:
            raise ValueError(
                "The class axis of `y_pred` must have a static size. "
                f"Received: y_pred.shape={tuple(y_pred.shape)}, axis={self.axis}"
            )
        if num_classes < 2:
            raise ValueError(
                f"{type(self).__name__} is a softmax loss and needs >= 2 classes "
                f"along axis {self.axis}; use BinaryFocalLoss for one sigmoid "
                f"output. Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        self.check_num_classes(num_classes)
        logits = self._logits(y_pred, keras_logits)
        probabilities = ops.cast(y_pred, "float32") if logits is None else None
        valid = labels = dense = None
        if self._is_sparse(y_true, y_pred, axis):
            labels = ops.cast(y_true, "int32")
            if len(y_true.shape) == rank - 1:
                labels = ops.expand_dims(labels, axis)
            valid = self._validate_labels(labels, num_classes)
            if valid is not None:
                labels = ops.where(valid, labels, 0)
        else:
            dense = ops.cast(y_true, "float32")
            if self.ignore_class is not None:
                if not 0 <= self.ignore_class < num_classes:
                    raise ValueError(
                        "With dense (one-hot) labels `ignore_class` must be a "
                        f"class channel in [0, {num_classes}). Received: "
                        f"ignore_class={self.ignore_class}"
                    )
                valid = ops.take(dense, [self.ignore_class], axis=axis) < 0.5
        return LossInputs(axis, num_classes, logits, probabilities, labels, dense, valid)

    def call(self, y_true: TensorLike, y_pred: TensorLike):
        inputs = self.read_inputs(y_true, y_pred)
        axis, labels = inputs.axis, inputs.labels
        dense = inputs.dense if labels is None else _softmax.one_hot(labels, inputs.num_classes, axis)
        if inputs.logits is not None:
            losses = self.logits_loss(inputs.logits, dense, labels, axis)
        else:
            # Clipped probabilities: the loss's formula function, per class (integer maps as one-hot labels).
            losses = self.dense_loss(dense, ProbabilityPrediction(inputs.probabilities, axis))
        losses = ops.squeeze(losses, axis=axis)
        if inputs.valid is not None:
            valid = ops.squeeze(inputs.valid, axis=axis)
            losses = ops.where(valid, losses, 0.0)
            if _set_keras_mask is not None:
                _set_keras_mask(losses, mask=valid)
        return losses

    def _is_sparse(self, y_true: TensorLike, y_pred: TensorLike, axis: int):
        true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
        rank = len(pred_shape)
        if len(true_shape) == rank - 1:
            expected = pred_shape[:axis] + pred_shape[axis + 1 :]
            sparse = True
        elif len(true_shape) == rank and true_shape[axis] == 1:
            expected = pred_shape[:axis] + (1,) + pred_shape[axis + 1 :]
            sparse = True
        elif len(true_shape) == rank:
            expected = pred_shape
            sparse = False
        else:
            expected = None
        compatible = expected is not None and all(
            a is None or b is None or a == b for a, b in zip(true_shape, expected)
        )
        if not compatible:
            raise ValueError(
                f"{type(self).__name__}: labels and predictions do not match. "
                f"Received: y_true.shape={true_shape}, y_pred.shape={pred_shape}. "
                "Labels must be integer class maps of shape y_pred.shape without "
                "the class axis (or with it of size 1), or one-hot/soft labels "
                "of shape y_pred.shape."
            )
        return sparse

    def _validate_labels(self, labels, num_classes: int):
        """Returns the valid-pixel mask (or None) and checks eager labels."""
        values = concrete_value(labels)
        if values is not None:
            bad = (values < 0) | (values >= num_classes)
            if self.ignore_class is not None:
                bad &= values != self.ignore_class
            if np.any(bad):
                found = np.unique(values[bad])[:10].tolist()
                raise ValueError(
                    f"{type(self).__name__}: integer labels must be in "
                    f"[0, {num_classes})"
                    + (
                        f" or equal ignore_class={self.ignore_class}"
                        if self.ignore_class is not None
                        else ""
                    )
                    + f". Found label values {found}."
                )
        if self.ignore_class is None:
            return None
        return ops.not_equal(labels, self.ignore_class)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "axis": self.axis,
                "ignore_class": self.ignore_class,
                "dtype": self.dtype,
            }
        )
        return config
