"""Run-time detection of Keras behaviours that changed between releases."""

import contextlib
import functools
import os
import sys
import types

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


# -- Keras internals the monitor cannot do without ---------------------------
# Keras gives callbacks no public access to the validation data of `fit`, to
# every call of a shared layer, or to a tensor's mask. Each route below is the
# one place that touches such an internal; tests/test_callbacks.py
# (test_keras_internals_the_monitor_relies_on) pins every one of them, and CI
# runs it on Keras 3.13 and on the newest Keras 3.


def validation_adapter(model):
    """The data adapter of the validation data that `fit` is using, or None.

    `fit` keeps the iterator over its validation data in
    ``model._eval_epoch_iterator`` (set before its first validation, deleted at
    the end of `fit`); its ``data_adapter`` yields the batches.
    """
    iterator = getattr(model, "_eval_epoch_iterator", None)
    return getattr(iterator, "data_adapter", None)


def is_one_shot(adapter):
    """Whether `adapter` reads a Python generator, which cannot be re-read.

    Keras's generator adapter keeps a callable ``generator`` that returns the
    stream of batches (the peeked first batches, then the user's generator).
    """
    return type(adapter).__name__ == "GeneratorDataAdapter" and callable(
        getattr(adapter, "generator", None)
    )


@contextlib.contextmanager
def recording_generator(adapter, record):
    """Appends every batch that Keras pulls from a generator adapter to `record`."""
    source = adapter.generator

    def teeing():
        for batch in source():
            record(batch)
            yield batch

    adapter.generator = teeing
    try:
        yield
    finally:
        adapter.generator = source


def keras_mask(tensor):
    """The mask Keras attached to an eager `tensor` (None without one)."""
    from keras.src.backend import get_keras_mask

    return get_keras_mask(tensor)


def nested_layers(model):
    """Every layer inside `model`, nested ones (in wrappers, sub-models,
    custom layers) included, in Keras's own order."""
    return model._flatten_layers(include_self=False, recursive=True)


def calling_callback_list(callback):
    """The `keras.callbacks.CallbackList` whose hook is calling `callback`.

    Keras gives a callback no handle on the other callbacks of a `fit`; the
    list that dispatches a hook (``CallbackList.on_train_begin`` loops over
    its callbacks) is the ``self`` of a calling frame. Call from inside a
    hook. Returns None when the hook was called some other way (a custom
    training loop calling the callback directly).
    """
    frame: types.FrameType | None = sys._getframe(1)
    for _ in range(_CALLER_FRAMES):
        frame = frame.f_back if frame is not None else None
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList) and any(
            c is callback for c in owner.callbacks
        ):
            return owner
    return None


# How far up the stack `calling_callback_list` looks: the hook, Keras's
# dispatch, and a few wrappers in between.
_CALLER_FRAMES = 6


def processes():
    """``(index of this process, number of processes)`` of a multi-process run.

    JAX: ``jax.process_index()`` and ``jax.process_count()`` (one process
    unless ``jax.distributed`` / ``keras.distribution.initialize`` was
    called). TensorFlow: the task of this process in the cluster of the
    strategy in scope when it has a cluster resolver
    (``MultiWorkerMirroredStrategy``), else in the cluster that ``TF_CONFIG``
    describes (as TensorFlow's own multi-worker set-up reads it; a custom
    loop calls callbacks outside the strategy's scope), the chief first.
    torch: the rank and world size of ``torch.distributed`` when it is
    initialized. ``(0, 1)`` otherwise. Process 0 is the chief, the one that
    writes files.
    """
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return jax.process_index(), jax.process_count()
    if backend == "tensorflow":
        import tensorflow as tf

        resolver = getattr(tf.distribute.get_strategy(), "cluster_resolver", None)
        if resolver is None and os.environ.get("TF_CONFIG"):
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        task_type = getattr(resolver, "task_type", None)
        if resolver is not None and task_type in ("chief", "worker"):
            cluster = resolver.cluster_spec().as_dict()
            chiefs = len(cluster.get("chief", ()))
            index = 0 if task_type == "chief" else chiefs + int(resolver.task_id)
            return index, chiefs + len(cluster.get("worker", ()))
        return 0, 1
    if backend == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return 0, 1


def can_gather_across_processes():
    """Whether `process_allgather` works here: on JAX."""
    return keras.config.backend() == "jax"


def process_allgather(value):
    """`value` (a NumPy array) from every process, stacked on a new axis 0.

    Every process must call it, in the same order (a collective). Only JAX's
    multi-process runtime is supported: there the monitor's probe data is
    split between processes as Keras splits validation data.
    """
    if keras.config.backend() != "jax":
        raise NotImplementedError(
            "Gathering the monitor's statistics across processes is implemented for "
            f"JAX only. Received: backend={keras.config.backend()!r}")
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(value)))
