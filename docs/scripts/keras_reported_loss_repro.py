"""Minimal reproduction: Keras reports a wrong `loss` when a forward pass
contains a cross-replica all-reduce (TensorFlow backend, MirroredStrategy).

Plain Keras and TensorFlow, no keras_covreg. An activity regularizer returns
the *global* batch's mean activation, all-reduced across replicas and weighted
so that every replica's gradient is right (R * n_local / n_global). The
weights after one step equal single-device training; the loss Keras reports
does not: it counts the penalty once per replica.

    python docs/scripts/keras_reported_loss_repro.py
"""

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402


class GlobalMeanPenalty(keras.regularizers.Regularizer):
    def __call__(self, x):
        n_local = tf.cast(tf.shape(x)[0], tf.float32)
        total, n = tf.reduce_sum(x), n_local
        ctx = tf.distribute.get_replica_context()
        weight = 1.0
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            total, n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, n_local])
            weight = ctx.num_replicas_in_sync * n_local / n
        penalty = weight * total / (n * tf.cast(tf.shape(x)[1], tf.float32))
        # Keras >= 3.14 divides activity penalties by the batch size.
        return penalty * n_local


def train_one_step(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(3, activity_regularizer=GlobalMeanPenalty()),
            keras.layers.Dense(1),
        ])
        model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.ones((8, 1), "float32")
    hidden = model.layers[0](x).numpy()
    parts = (float(np.mean((model(x).numpy() - y) ** 2)), float(hidden.mean()))
    loss = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    return loss, model.get_weights(), parts


single_loss, single_weights, (mse, penalty) = train_one_step(
    tf.distribute.OneDeviceStrategy("/cpu:0"))
mirrored_loss, mirrored_weights, _ = train_one_step(
    tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single_weights, mirrored_weights))
print(f"keras {keras.__version__}, tensorflow {tf.__version__}")
print(f"max |weight difference| after one step: {weight_diff:.2e}")
print(f"mse {mse:.6f}, penalty {penalty:.6f} before the step")
print(f"reported loss, one device: {single_loss:.6f} (mse + penalty = {mse + penalty:.6f})")
print(f"reported loss, 2 replicas: {mirrored_loss:.6f} "
      f"(off by {(mirrored_loss - single_loss) / penalty:.3f} x penalty)")
