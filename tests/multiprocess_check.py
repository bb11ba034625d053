"""Trains across several processes on 127.0.0.1 and writes what it saw.

Run by tests/test_multiprocess.py, one Python process per worker (the
distributed runtime must start before Keras builds anything):

    KERAS_BACKEND=jax python tests/multiprocess_check.py reference OUT
    KERAS_BACKEND=jax python tests/multiprocess_check.py jax OUT PORT PROCESSES INDEX
    TF_CONFIG=... python tests/multiprocess_check.py mwms OUT

``reference`` trains each model of `KINDS` on one device and saves its
initial and final weights. ``jax`` joins a JAX multi-process runtime
(``keras.distribution.initialize``, Gloo collectives on the CPU), trains the
same models from the same initial weights with `model.fit` under
``DataParallel`` over every process's devices, each process feeding its half
of every global batch, and runs a `CovarianceMonitor` into OUT/logs (probe
data given, and fit's validation data split between the processes).
``mwms`` tries `fit` under TensorFlow's ``MultiWorkerMirroredStrategy``. Each
writes OUT/<mode><index>.json.
"""

import json
import os
import sys

import numpy as np

MODE, OUT = sys.argv[1], sys.argv[2]
GLOBAL_BATCH = 16
STEPS = 3
LEARNING_RATE = 0.1
# The penalties whose multi-process fit is compared with one device.
KINDS = ("covariance", "decov", "covariance_layer")

if MODE == "jax":
    PORT, PROCESSES, INDEX = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    import keras

    keras.distribution.initialize(f"127.0.0.1:{PORT}", PROCESSES, INDEX)
elif MODE == "mwms":
    import tensorflow as tf

    # Collective ops must be configured before TensorFlow runs any op.
    STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
    INDEX = STRATEGY.cluster_resolver.task_id
    PROCESSES = STRATEGY.num_replicas_in_sync
else:
    INDEX, PROCESSES = 0, 1

import keras  # noqa: E402

from keras_covreg import (  # noqa: E402
    CovarianceMonitor,
    CovarianceRegularization,
    CovarianceRegularizer,
    DeCovRegularizer,
)

rng = np.random.default_rng(0)
X = (rng.normal(size=(GLOBAL_BATCH * STEPS, 6)) @ rng.normal(size=(6, 6))).astype("float32")
Y = rng.normal(size=(GLOBAL_BATCH * STEPS, 6)).astype("float32")


def build(kind):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    regularizer = {"covariance": CovarianceRegularizer(0.5),
                   "covariance_synchronized": CovarianceRegularizer(0.5, synchronized=True),
                   "decov": DeCovRegularizer(0.02)}.get(kind)
    h = keras.layers.Dense(5, name="code", activity_regularizer=regularizer)(inputs)
    if kind == "covariance_layer":
        h = CovarianceRegularization(0.5, name="penalty")(h)
    model = keras.Model(inputs, keras.layers.Dense(6, name="out")(h))
    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")
    return model


def local_part(a):
    """This process's rows of every global batch, in order: its share of `a`."""
    share = GLOBAL_BATCH // PROCESSES
    return np.concatenate([a[start + INDEX * share : start + (INDEX + 1) * share]
                           for start in range(0, len(a), GLOBAL_BATCH)])


def reference():
    found = {}
    for kind in KINDS:
        model = build(kind)
        initial = model.get_weights()
        model.fit(X, Y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
        found[kind] = {"initial": [w.tolist() for w in initial],
                       "final": [w.tolist() for w in model.get_weights()]}
    return found


def jax_processes():
    import jax

    with open(os.path.join(OUT, "reference0.json")) as f:
        expected = json.load(f)
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    # Each process gives its own part of every batch (arrays, not tf.data).
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    found = {"process": jax.process_index(), "processes": jax.process_count(),
             "devices": len(jax.devices())}
    for kind in KINDS:
        model = build(kind)
        model.set_weights([np.asarray(w, "float32") for w in expected[kind]["initial"]])
        model.fit(local_part(X), local_part(Y), batch_size=GLOBAL_BATCH // PROCESSES,
                  epochs=1, shuffle=False, verbose=0)
        final = [np.asarray(w) for w in expected[kind]["final"]]
        found[f"rel_diff_{kind}"] = max(
            float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
            for a, b in zip(model.get_weights(), final))
    # The monitor: once with the same probe data in every process, once on
    # fit's validation data, which each process holds a part of.
    model = build("covariance")
    given = CovarianceMonitor("code", X, log_dir=os.path.join(OUT, "logs"), run="given",
                              images=True, hparams={"processes": PROCESSES})
    split = CovarianceMonitor("code", log_dir=os.path.join(OUT, "logs"), run="split",
                              images=False, log_prefix="split_")
    history = model.fit(local_part(X), local_part(Y), batch_size=GLOBAL_BATCH // PROCESSES,
                        epochs=2, shuffle=False, verbose=0, callbacks=[given, split],
                        validation_data=(local_part(X), local_part(Y)),
                        validation_batch_size=GLOBAL_BATCH // PROCESSES)
    found["given"] = given.results["code"]
    found["split"] = split.results["code"]
    found["split_covariance"] = split.covariances["code"].tolist()
    found["logs_cvr"] = history.history["val_code_cvr"]
    code = keras.Model(model.inputs, model.get_layer("code").output)
    found["probe_covariance"] = np.cov(
        np.asarray(keras.ops.convert_to_numpy(code(X)), np.float64), rowvar=False).tolist()
    return found


def mwms():
    """`fit` under MultiWorkerMirroredStrategy (keras-team/keras#20585), and the
    custom-loop recipe of docs/distributed.md with a monitor's hooks."""
    import tensorflow as tf

    with STRATEGY.scope():
        model = build("covariance")
    found = {"process": INDEX, "processes": PROCESSES}
    try:
        model.fit(X, Y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
        found["fit_error"] = None
    except Exception as e:  # what Keras raises is the point of the check
        found["fit_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    with open(os.path.join(OUT, "reference0.json")) as f:
        expected = json.load(f)["covariance"]
    with STRATEGY.scope():
        # synchronized=True: every worker penalizes the global batch, as the
        # one device of the reference does.
        model = build("covariance_synchronized")
        model.set_weights([np.asarray(w, "float32") for w in expected["initial"]])
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
        optimizer.build(model.trainable_variables)
    # The global batches of the reference: tf.data splits each between the
    # workers.
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL_BATCH)

    @tf.function
    def step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_example = tf.reduce_mean(tf.square(model(x, training=True) - y), axis=-1)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        STRATEGY.run(replica_step, args=(x, y))

    monitor = CovarianceMonitor("code", X, log_dir=os.path.join(OUT, "mwms_logs"),
                                images=False)
    monitor.set_model(model)
    monitor.on_train_begin()
    monitor.on_epoch_begin(0)  # the starting point
    for x, y in STRATEGY.experimental_distribute_dataset(dataset):
        step(x, y)
    logs = {}
    monitor.on_epoch_end(0, logs)
    monitor.on_train_end()
    found["rel_diff_loop_synchronized"] = max(
        float(np.max(np.abs(a - np.asarray(b))) / max(np.max(np.abs(np.asarray(b))), 1e-30))
        for a, b in zip(model.get_weights(), expected["final"]))
    code = keras.Model(model.inputs, model.get_layer("code").output)
    found["monitor_covariance"] = monitor.covariances["code"].tolist()
    found["probe_covariance"] = np.cov(
        np.asarray(code(X), np.float64), rowvar=False).tolist()
    found["logs_cvr"] = logs["val_code_cvr"]
    return found


def main():
    found = {"reference": reference, "jax": jax_processes, "mwms": mwms}[MODE]()
    with open(os.path.join(OUT, f"{MODE}{INDEX}.json"), "w") as f:
        json.dump(found, f)


if __name__ == "__main__":
    main()
