"""Cross-replica reductions for the synchronized covariance regularizers.

Only `tf.distribute` runs a regularizer once per replica on a slice of the
batch; under JAX's `keras.distribution.DataParallel` (and on one device) the
regularizer already sees the whole batch, so there is nothing to reduce.
"""

import keras


def replica_context():
    """The current `tf.distribute` replica context, if it has several replicas.

    None on other backends, in a cross-replica context (where Keras traces a
    model symbolically), and with a single replica.
    """
    if keras.config.backend() != "tensorflow":
        return None
    import tensorflow as tf  # the backend itself, already imported

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def all_reduce_sum(ctx, values):
    """Sums a list of tensors over all replicas (differentiable)."""
    import tensorflow as tf

    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)
