"""Runs one training step data-parallel and on one device; prints a JSON line.

Run as a separate process (the device set-up must happen before TensorFlow or
JAX starts):

    python tests/distributed_check.py mirrored 2     # 2 logical CPU devices
    python tests/distributed_check.py jax 2          # needs XLA_FLAGS, KERAS_BACKEND=jax
    TF_CONFIG=... python tests/distributed_check.py worker 2

Reports, for the synchronized regularizer and the unsynchronized one, the
largest relative difference between the weights after one step and those of
single-device training on the same global batch.
"""

import json
import os
import sys

import numpy as np

MODE, DEVICES = sys.argv[1], int(sys.argv[2])
GLOBAL_BATCH = 16
STRENGTH = float(os.environ.get("STRENGTH", 0.5))
LEARNING_RATE = 0.1

if MODE == "mirrored":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES
    )

if MODE == "worker":
    import tensorflow as tf

    # Collective ops must be configured before TensorFlow runs any op.
    WORKER_STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402

from keras_covreg import CovarianceMonitor, CovarianceRegularizer  # noqa: E402

rng = np.random.default_rng(0)
X = (rng.normal(size=(GLOBAL_BATCH, 6)) @ rng.normal(size=(6, 6))).astype("float32")
Y = rng.normal(size=(GLOBAL_BATCH, 6)).astype("float32")


def build(synchronized):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    code = keras.layers.Dense(
        5, name="code",
        activity_regularizer=CovarianceRegularizer(STRENGTH, synchronized=synchronized),
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(6)(code))
    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")
    return model


def rel_diff(a_weights, b_weights):
    return max(
        float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))
        for a, b in zip(a_weights, b_weights)
    )


def fit_step(model):
    history = model.fit(X, Y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    return model.get_weights(), history.history["loss"][0]


def reference():
    model = build(False)
    initial = model.get_weights()
    weights, loss = fit_step(model)
    return initial, weights, loss


def custom_loop_step(strategy, synchronized, initial):
    import tensorflow as tf

    with strategy.scope():
        model = build(synchronized)
        model.set_weights(initial)
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
        optimizer.build(model.trainable_variables)
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL_BATCH)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                prediction = model(x, training=True)
                per_example = tf.reduce_mean(tf.square(prediction - y), axis=-1)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        strategy.run(replica_step, args=(x, y))

    step(*batch)
    return model.get_weights()


def monitored_metrics(strategy=None):
    import contextlib
    import tempfile

    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = build(True)
    monitor = CovarianceMonitor("code", X, log_dir=tempfile.mkdtemp(), images=False)
    model.fit(X, Y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[monitor])
    return monitor.results["code"]


def main():
    out = {"mode": MODE, "devices": DEVICES}
    initial, expected, expected_loss = reference()
    if MODE == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)])
        out["replicas"] = strategy.num_replicas_in_sync
        for synchronized in (True, False):
            with strategy.scope():
                model = build(synchronized)
                model.set_weights(initial)
            weights, loss = fit_step(model)
            key = "sync" if synchronized else "unsync"
            out[f"fit_{key}"] = rel_diff(weights, expected)
            out[f"loss_{key}"] = loss
            out[f"loop_{key}"] = rel_diff(custom_loop_step(strategy, synchronized, initial),
                                          expected)
        out["loss_single"] = expected_loss
        single, mirrored = monitored_metrics(), monitored_metrics(strategy)
        out["monitor_max_rel_diff"] = max(
            abs(single[k] - mirrored[k]) / max(abs(single[k]), 1e-30) for k in single)
    elif MODE == "jax":
        import jax

        devices = jax.devices()
        out["replicas"] = len(devices)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        model = build(True)
        model.set_weights(initial)
        weights, loss = fit_step(model)
        out["fit_sync"] = rel_diff(weights, expected)
        out["loss_sync"], out["loss_single"] = loss, expected_loss
    elif MODE == "worker":
        strategy = WORKER_STRATEGY
        out["replicas"] = strategy.num_replicas_in_sync
        for synchronized in (True, False):
            key = "sync" if synchronized else "unsync"
            # Only a custom loop: Keras 3's fit does not run under this
            # strategy (keras-team/keras#20585), with or without regularizers.
            weights = custom_loop_step(strategy, synchronized, initial)
            out[f"loop_{key}"] = rel_diff(weights, expected)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
