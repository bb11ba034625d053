"""Small helpers that differ by Keras backend, for the tests."""

import keras
import numpy as np
from keras import ops

BACKEND = keras.config.backend()


def gradient(fn, x):
    """d fn(x) / dx for a scalar-valued fn of one float32 array, as NumPy."""
    x = np.asarray(x, dtype="float32")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        return tape.gradient(y, xt).numpy()
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if BACKEND == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        fn(xt).backward()
        return xt.grad.numpy()
    raise NotImplementedError(BACKEND)


def compiled(fn):
    """fn compiled by the backend's tracer (tf.function with XLA, jax.jit)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def to_numpy(x):
    return ops.convert_to_numpy(x)
