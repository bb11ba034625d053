"""Run-time detection of Keras behaviours that changed between releases."""

import contextlib
import functools

import keras
import numpy as np
from keras import ops

# Any batch size above 1 tells the two behaviours apart.
_PROBE_BATCH_SIZE = 4


class _ConstantPenalty(keras.regularizers.Regularizer):
    def __call__(self, x):
        return ops.ones((), dtype="float32")


def _eager_scope():
    """A scope outside any graph being traced (TensorFlow only needs one)."""
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf  # the backend itself, already imported

        return tf.init_scope()
    return contextlib.nullcontext()


@functools.cache
def activity_loss_is_divided_by_batch_size():
    """Whether `Layer.__call__` divides activity penalties by the batch size.

    Keras 3.14.0 started dividing the value an ``activity_regularizer`` returns
    by the batch size (keras-team/keras#22018); 3.13 and earlier add it as it
    is. Rather than trust a version number, this attaches a regularizer that
    returns 1 to a layer, calls the layer on a batch of 4 and reads the loss
    the layer recorded. The answer is cached for the process.

    Returns:
        True if the recorded loss was 1/4, False if it was 1.

    Raises:
        RuntimeError: if Keras recorded anything else.
    """
    with _eager_scope():
        layer = keras.layers.Identity(activity_regularizer=_ConstantPenalty())
        layer(np.zeros((_PROBE_BATCH_SIZE, 1), dtype="float32"))
        recorded = float(ops.convert_to_numpy(layer.losses[0]))
    if np.isclose(recorded, 1.0 / _PROBE_BATCH_SIZE):
        return True
    if np.isclose(recorded, 1.0):
        return False
    raise RuntimeError(
        "keras_covreg cannot tell how this Keras version "
        f"({keras.__version__}) scales activity penalties: a penalty of 1 on a "
        f"batch of {_PROBE_BATCH_SIZE} was recorded as {recorded}."
    )
