"""CovarianceMonitor: event files read back, logs, model styles, bad input."""

import csv
import io
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from PIL import Image

from keras_covreg import CovarianceMonitor, CovarianceRegularizer, metrics
from tests import backend_utils
from tests.events import Events

SCALARS = {"cvr", "mapc", "ud90_pca", "ud90_unit", "l_sigma", "effective_rank",
           "participation_ratio", "n_samples"}
IMAGES = {"covariance", "correlation", "spectrum"}


def data(n=240, p=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, p)) @ rng.normal(size=(p, p))).astype("float32")


def functional(regularizer=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    code = keras.layers.Dense(4, name="code", activity_regularizer=regularizer)(inputs)
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(code)
    model = keras.Model(inputs, keras.layers.Dense(6)(hidden))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def read_events(log_dir, run="validation"):
    return Events(os.path.join(log_dir, run))


def scalar_steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def test_tags_steps_and_values(tmp_path):
    x = data()
    probe = data(100, seed=1)
    model = functional(CovarianceRegularizer(0.1))
    monitor = CovarianceMonitor(["code", "hidden"], probe, log_dir=tmp_path, true_dim=3, batch_size=32)
    history = model.fit(x, x, epochs=2, batch_size=40, verbose=0, callbacks=[monitor])
    acc = read_events(tmp_path)
    tags = acc.Tags()
    expected = {f"{layer}/{name}" for layer in ("code", "hidden")
                for name in SCALARS | {"tdv_pca", "tdv_unit"}}
    assert set(tags["scalars"]) == expected
    assert set(tags["images"]) == {f"{l}/{i}" for l in ("code", "hidden") for i in IMAGES}
    assert set(tags["histograms"]) == {"code/unit_variance", "hidden/unit_variance"}
    for tag in expected:
        assert scalar_steps(acc, tag) == [-1, 0, 1]
    # The last values are the metrics of the trained layer on the probe data.
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    cov = metrics.covariance(encoder.predict(probe, verbose=0))
    direct = metrics.covariance_summary(cov, d=3)
    for key in ("cvr", "mapc", "ud90_pca", "ud90_unit", "tdv_pca", "l_sigma",
                "effective_rank"):
        logged = acc.Scalars(f"code/{key}")[-1].value
        assert logged == pytest.approx(direct[key], rel=1e-5), key
        assert history.history[f"val_code_{key}"][-1] == pytest.approx(direct[key], rel=1e-5)
    assert acc.Scalars("code/n_samples")[-1].value == 100
    np.testing.assert_allclose(monitor.covariances["code"], cov, rtol=1e-5, atol=1e-7)
    for tag in ("code/covariance", "hidden/spectrum"):
        events = acc.Images(tag)
        assert [e.step for e in events] == [-1, 0, 1]
        png = events[-1].encoded_image_string
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(png))
        assert image.size == (events[-1].width, events[-1].height) == (340, 260)


def test_logs_reach_history_csv_logger_and_early_stopping(tmp_path):
    x = data()
    model = functional()
    csv_path = tmp_path / "log.csv"
    callbacks = [
        CovarianceMonitor("code", x[:64], log_dir=tmp_path, images=False),
        keras.callbacks.CSVLogger(str(csv_path)),
        keras.callbacks.EarlyStopping(monitor="val_code_cvr", mode="min", patience=0,
                                      min_delta=10.0),
    ]
    history = model.fit(x, x, epochs=5, verbose=0, callbacks=callbacks)
    # min_delta=10 means no epoch counts as an improvement: stops after 2.
    assert len(history.history["loss"]) == 2
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["val_code_cvr"]) == pytest.approx(history.history["val_code_cvr"][-1])


def test_default_data_is_the_validation_data_with_a_starting_point(tmp_path):
    x, val = data(), data(80, seed=3)
    model = functional()
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    untrained = metrics.covariance_variance_ratio(encoder.predict(val, verbose=0))
    before = [w.copy() for w in model.get_weights()]
    monitor = CovarianceMonitor("code", log_dir=tmp_path)
    model.fit(x, x, epochs=2, verbose=0, validation_data=(val, val), callbacks=[monitor])
    acc = read_events(tmp_path)
    assert scalar_steps(acc, "code/cvr") == [-1, 0, 1]
    assert acc.Scalars("code/cvr")[0].value == pytest.approx(untrained, rel=1e-5)
    assert acc.Scalars("code/n_samples")[-1].value == 80
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_no_data_and_no_validation_data_trains_and_warns(tmp_path):
    model = functional()
    monitor = CovarianceMonitor("code", log_dir=tmp_path)
    with pytest.warns(UserWarning, match="measured nothing.*validation data"):
        history = model.fit(data(), data(), epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 2
    assert monitor.results == {}


def test_dataset_and_pydataset_and_cap(tmp_path):
    x = data(300)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return x[i * 50 : (i + 1) * 50], x[i * 50 : (i + 1) * 50]

    sources = {"pydataset": Batches()}
    if backend_utils.BACKEND == "tensorflow":
        import tensorflow as tf

        sources["dataset"] = tf.data.Dataset.from_tensor_slices((x, x)).batch(64)
    for name, source in sources.items():
        model = functional()
        monitor = CovarianceMonitor("code", source, log_dir=tmp_path / name, max_samples=170, images=False)
        model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
        assert monitor.results["code"]["n_samples"] == 170
        encoder = keras.Model(model.inputs, model.get_layer("code").output)
        expected = metrics.covariance(encoder.predict(x[:170], verbose=0))
        np.testing.assert_allclose(monitor.covariances["code"], expected, rtol=1e-5, atol=1e-7)


def test_sequential_without_input_is_watched_lazily(tmp_path):
    x = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(4, name="code"), keras.layers.Dense(6)])
    model.compile("adam", "mse")
    monitor = CovarianceMonitor("code", x[:50], log_dir=tmp_path, images=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, x, epochs=2, verbose=0, callbacks=[monitor])
    steps = scalar_steps(read_events(tmp_path), "code/cvr")
    # TensorFlow builds such a model inside the first step: no starting point.
    assert steps == ([0, 1] if backend_utils.BACKEND == "tensorflow" else [-1, 0, 1])


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.code = keras.layers.Dense(4, name="code", activity_regularizer=CovarianceRegularizer(0.1))
        self.out = keras.layers.Dense(6)

    def call(self, x):
        return self.out(self.code(x))


def test_subclassed_model_output_is_captured(tmp_path):
    x = data()
    keras.utils.set_random_seed(0)
    model = Subclassed()
    model.compile("adam", "mse")
    monitor = CovarianceMonitor(model.code, x[:50], log_dir=tmp_path, images=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    expected = metrics.covariance(backend_utils.to_numpy(model.code(x[:50])))
    np.testing.assert_allclose(monitor.covariances["code"], expected, rtol=1e-5, atol=1e-7)
    assert "call" not in vars(model.code)  # the wrapper is gone


@pytest.mark.parametrize("mode, p", [("channels", 3), ("flatten", 2 * 2 * 3)])
def test_feature_maps(tmp_path, mode, p):
    x = np.random.default_rng(0).normal(size=(40, 4, 4, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    maps = keras.layers.Conv2D(3, 3, name="maps")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(maps)))
    model.compile("adam", "mse")
    monitor = CovarianceMonitor("maps", x, log_dir=tmp_path, spatial_mode=mode, images=False)
    model.fit(x, np.zeros((40, 1)), epochs=1, verbose=0, callbacks=[monitor])
    out = keras.Model(inputs, maps).predict(x, verbose=0)
    h = out.reshape(-1, 3) if mode == "channels" else out.reshape(40, -1)
    assert monitor.covariances["maps"].shape == (p, p)
    np.testing.assert_allclose(monitor.covariances["maps"], metrics.covariance(h), rtol=1e-5, atol=1e-7)


def test_watching_does_not_change_training(tmp_path):
    x = data()
    weights = []
    for watch in (False, True):
        model = functional(CovarianceRegularizer(0.1))
        callbacks = [CovarianceMonitor(["code", "hidden"], x[:64], log_dir=tmp_path)] if watch else []
        model.fit(x, x, epochs=2, batch_size=40, shuffle=False, verbose=0, callbacks=callbacks)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert model.get_layer("code").activity_regularizer is not None


def test_non_finite_activations_warn_and_give_nan(tmp_path):
    x = data()
    model = functional()
    probe = x[:32].copy()
    probe[3, 0] = np.nan
    monitor = CovarianceMonitor("code", probe, log_dir=tmp_path)
    with pytest.warns(UserWarning, match="NaN or inf"):
        history = model.fit(x, x, epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 2
    assert np.isnan(history.history["val_code_cvr"]).all()
    assert np.isnan(read_events(tmp_path).Scalars("code/cvr")[-1].value)


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


def test_interrupted_run_is_readable_and_resume_continues_steps(tmp_path):
    x = data()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = functional()
    monitor = CovarianceMonitor("code", x[:64], log_dir=tmp_path / "logs", images=False)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, x, epochs=4, verbose=0, callbacks=[backup, monitor, Interrupt()])
    # Flushed while still open: readable after the crash.
    assert scalar_steps(read_events(tmp_path / "logs"), "code/cvr") == [-1, 0, 1]
    model = functional()
    monitor = CovarianceMonitor("code", x[:64], log_dir=tmp_path / "logs", images=False)
    model.fit(x, x, epochs=4, verbose=0, callbacks=[backup, monitor])
    assert scalar_steps(read_events(tmp_path / "logs"), "code/cvr") == [-1, 0, 1, 2, 3]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"layers": []}, ValueError, "at least one layer"),
        ({"layers": 3}, TypeError, "Received: layers=3"),
        ({"data": np.zeros((0, 6))}, ValueError, "holds no samples"),
        ({"data": "x.npy"}, TypeError, "Received: data of type str"),
        ({"max_samples": 1}, ValueError, "Received: max_samples=1"),
        ({"freq": 0}, ValueError, "Received: freq=0"),
        ({"q": 0.0}, ValueError, "Received: q=0.0"),
        ({"true_dim": 0}, ValueError, "Received: true_dim=0"),
        ({"spatial_mode": "pixels"}, ValueError, "spatial_mode='pixels'"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, error, match):
    args = {"layers": "code", "data": data(10)} | kwargs
    with pytest.raises(error, match=match):
        CovarianceMonitor(args.pop("layers"), args.pop("data"), **args)


def test_unknown_layer_fails_before_training(tmp_path):
    model = functional()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"no layer named 'cod'.*'code'"):
        model.fit(data(), data(), epochs=1, verbose=0,
                  callbacks=[CovarianceMonitor("cod", data(10), log_dir=tmp_path)])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = keras.layers.Dense(3, name="elsewhere")
    with pytest.raises(ValueError, match="not part of model"):
        model.fit(data(), data(), epochs=1, verbose=0,
                  callbacks=[CovarianceMonitor(other, data(10), log_dir=tmp_path)])


def test_empty_dataset_fails_before_training(tmp_path):
    class Empty(keras.utils.PyDataset):
        def __len__(self):
            return 0

        def __getitem__(self, i):
            raise IndexError(i)

    model = functional()
    with pytest.raises(ValueError, match="yielded no samples"):
        model.fit(data(), data(), epochs=1, verbose=0,
                  callbacks=[CovarianceMonitor("code", Empty(), log_dir=tmp_path)])


NO_TF_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["tensorflow"] = None  # any import of TensorFlow fails
    import numpy as np, keras
    from keras_covreg import CovarianceMonitor
    from tests.events import Events
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, name="code"),
                              keras.layers.Dense(5)])
    model.compile("adam", "mse")
    model.fit(x, x, epochs=2, verbose=0,
              callbacks=[CovarianceMonitor("code", x, log_dir=sys.argv[1])])
    acc = Events(sys.argv[1] + "/validation")
    print(keras.config.backend(), sorted(acc.Tags()["images"]),
          [e.step for e in acc.Scalars("code/cvr")])
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_without_tensorflow(tmp_path, backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == (
        f"{backend} ['code/correlation', 'code/covariance', 'code/spectrum'] [-1, 0, 1]"
    )


# -- The monitor follows fit's validation exactly --


def encoder_covariance(model, x, layer="code"):
    h = backend_utils.to_numpy(keras.Model(model.inputs, model.get_layer(layer).output)(x))
    return metrics.covariance(h)


@pytest.mark.parametrize("where", ["validation_freq", "freq"])
def test_validation_every_other_epoch(tmp_path, where):
    x, val = data(), data(80, seed=3)
    model = functional()
    untrained = encoder_covariance(model, val)
    fit_freq, monitor_freq = (2, 1) if where == "validation_freq" else (1, 2)
    monitor = CovarianceMonitor("code", log_dir=tmp_path, freq=monitor_freq)
    history = model.fit(x, x, epochs=4, verbose=0, validation_data=(val, val),
                        validation_freq=fit_freq, callbacks=[monitor])
    assert len(history.history["loss"]) == 4
    acc = read_events(tmp_path)
    assert scalar_steps(acc, "code/cvr") == [-1, 1, 3]
    assert acc.Scalars("code/cvr")[0].value == pytest.approx(
        metrics.covariance_variance_ratio(untrained, from_covariance=True), rel=1e-5)
    np.testing.assert_allclose(monitor.covariances["code"], encoder_covariance(model, val),
                               rtol=1e-4, atol=1e-7)


def counting_generator(x, batch_size, counter):
    """Endless batches of `x`, in order, noting who took each batch.

    Each entry of `counter` is True when the batch was taken with the
    monitor's own code on the stack (the monitor reading the generator
    itself); Keras pulling through the monitor's recording tee does not count.
    """
    import traceback

    i = 0
    while True:
        start = (i * batch_size) % len(x)
        ours = [f"{frame.filename}:{frame.name}" for frame in traceback.extract_stack()
                if frame.filename.endswith(os.path.join("keras_covreg", "callbacks.py"))]
        counter.append(bool(ours))
        batch = x[start : start + batch_size]
        yield batch, batch
        i += 1


def test_generator_is_read_no_further_than_keras_reads_it(tmp_path):
    x, val = data(), data(200, seed=3)
    pulls = {}
    for watched in (False, True):
        counter = []
        model = functional()
        callbacks = [CovarianceMonitor("code", log_dir=tmp_path / str(watched))] if watched else []
        model.fit(x, x, epochs=3, verbose=0, validation_steps=2, callbacks=callbacks,
                  validation_data=counting_generator(val, 10, counter))
        pulls[watched] = list(counter)
    assert not any(pulls[True])  # every batch was taken by Keras itself
    if backend_utils.BACKEND != "tensorflow":
        # No prefetching: the very same number of batches. (TensorFlow's
        # tf.data prefetches a timing-dependent number of extra batches.)
        assert len(pulls[True]) == len(pulls[False])
    acc = read_events(tmp_path / "True")
    assert [e.value for e in acc.Scalars("code/n_samples")] == [20, 20, 20, 20]
    # Keras validates on the first two batches of its stream each time (it
    # replays the batches it peeked at to learn the generator's spec).
    np.testing.assert_allclose(monitor_cov := callbacks[0].covariances["code"],
                               encoder_covariance(model, val[:20]), rtol=1e-4, atol=1e-7)
    assert monitor_cov.shape == (4, 4)


def dataset_of(x, batch_size):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, x)).batch(batch_size)


class ArrayBatches(keras.utils.PyDataset):
    def __init__(self, x, batch_size):
        super().__init__()
        self.x, self.batch_size = x, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        batch = self.x[i * self.batch_size : (i + 1) * self.batch_size]
        return batch, batch


@pytest.mark.parametrize("source", ["arrays", "tf.data", "PyDataset", "validation_split"])
def test_measures_exactly_the_samples_keras_validates_on(tmp_path, source):
    if source == "tf.data":
        pytest.importorskip("tensorflow")
    x, val = data(), data(70, seed=3)
    fit_kwargs = {
        "arrays": {"validation_data": (val, val), "validation_batch_size": 8,
                   "validation_steps": 3},
        "tf.data": {"validation_data": dataset_of(val, 10), "validation_steps": 4},
        "PyDataset": {"validation_data": ArrayBatches(val, 16)},
        "validation_split": {"validation_split": 0.25},
    }[source]
    expected = {"arrays": val[:24], "tf.data": val[:40], "PyDataset": val,
                "validation_split": x[-60:]}[source]
    model = functional()
    monitor = CovarianceMonitor("code", log_dir=tmp_path)
    history = model.fit(x, x, epochs=2, verbose=0, callbacks=[monitor], **fit_kwargs)
    assert "val_loss" in history.history
    assert monitor.results["code"]["n_samples"] == len(expected)
    np.testing.assert_allclose(monitor.covariances["code"], encoder_covariance(model, expected),
                               rtol=1e-4, atol=1e-7)


def test_a_users_own_evaluate_is_not_mistaken_for_validation(tmp_path):
    x = data()

    class Evaluate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.evaluate(x[:5], x[:5], verbose=0)

    model = functional()
    monitor = CovarianceMonitor("code", log_dir=tmp_path)
    with pytest.warns(UserWarning, match="measured nothing"):
        model.fit(x, x, epochs=2, verbose=0, callbacks=[Evaluate(), monitor])


# -- Shared layers, masks and wrappers --


def test_a_shared_layer_contributes_every_call(tmp_path):
    keras.utils.set_random_seed(0)
    a, b = keras.Input((6,)), keras.Input((6,))
    shared = keras.layers.Dense(3, name="shared")
    model = keras.Model([a, b], keras.layers.Concatenate()([shared(a), shared(b)]))
    model.compile("sgd", "mse")
    xa, xb = data(50), data(50, seed=5)
    monitor = CovarianceMonitor("shared", [xa, xb], log_dir=tmp_path, batch_size=20)
    model.fit([xa, xb], np.zeros((50, 6)), epochs=1, verbose=0, callbacks=[monitor])
    h = backend_utils.to_numpy(shared(np.concatenate([xa, xb])))
    assert monitor.results["shared"]["n_samples"] == 100
    np.testing.assert_allclose(monitor.covariances["shared"], metrics.covariance(h),
                               rtol=1e-4, atol=1e-7)


def test_masked_time_steps_are_left_out(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 3)).astype("float32")
    x[:4, 3:] = 0.0
    mask = np.any(x != 0, axis=-1)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 3))
    lstm = keras.layers.LSTM(4, return_sequences=True, name="lstm")(keras.layers.Masking(0.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(lstm))
    model.compile("adam", "mse")
    monitor = CovarianceMonitor("lstm", x, log_dir=tmp_path, images=False)
    model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    h = backend_utils.to_numpy(keras.Model(inputs, lstm)(x))
    assert monitor.results["lstm"]["n_samples"] == 36
    np.testing.assert_allclose(monitor.covariances["lstm"], metrics.covariance(h[mask]),
                               rtol=1e-4, atol=1e-7)


def test_warns_about_a_regularizer_that_time_distributed_ignores(tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 6, 3)).astype("float32")
    inner = keras.layers.Dense(4, name="inner", activity_regularizer=CovarianceRegularizer(1.0))
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.TimeDistributed(inner)])
    model.compile("sgd", "mse")
    monitor = CovarianceMonitor("inner", x, log_dir=tmp_path, images=False)
    with pytest.warns(UserWarning, match="inside TimeDistributed.*never applies"):
        model.fit(x, np.zeros((8, 6, 4)), epochs=1, verbose=0, callbacks=[monitor])
    # The wrapped layer is still watched: all 48 steps.
    assert monitor.results["inner"]["n_samples"] == 48


def test_keras_internals_the_monitor_relies_on(tmp_path):
    """Pins every private Keras route in keras_covreg._compat (see there)."""
    from keras_covreg import _compat

    x = data(40)
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            adapter = _compat.validation_adapter(self.model)
            seen["adapter"] = adapter
            seen["one_shot"] = _compat.is_one_shot(adapter)
            seen["batches"] = [len(b[0]) for b in adapter.get_numpy_iterator()] \
                if not seen["one_shot"] else None

        def on_test_batch_end(self, batch, logs=None):
            seen.setdefault("indices", []).append(batch)

    model = functional()
    grouped = backend_utils.BACKEND != "torch"  # torch runs one step at a time
    model.compile("sgd", "mse", steps_per_execution=2 if grouped else 1)
    model.fit(x, x, epochs=1, verbose=0, validation_data=(x, x), validation_batch_size=10,
              callbacks=[Probe()])
    assert seen["batches"] == [10, 10, 10, 10] and not seen["one_shot"]
    # The index of the last step of each call of the test function.
    assert seen["indices"] == ([1, 3] if grouped else [0, 1, 2, 3])

    def gen():
        while True:
            yield x[:10], x[:10]

    model.fit(x, x, epochs=1, verbose=0, validation_data=gen(), validation_steps=1,
              callbacks=[Probe()])
    assert seen["one_shot"]
    record = []
    with _compat.recording_generator(seen["adapter"], record.append):
        next(iter(seen["adapter"].generator()))
    assert len(record) == 1 and record[0][0].shape == (10, 6)
    assert _compat.validation_adapter(model) is None  # fit deletes it at its end
    masked = keras.layers.Masking(0.0)(np.zeros((2, 3, 1), "float32"))
    assert _compat.keras_mask(masked) is not None
    nested = keras.Sequential([keras.Input((6, 3)),
                               keras.layers.TimeDistributed(keras.layers.Dense(2, name="deep"))])
    assert "deep" in [layer.name for layer in _compat.nested_layers(nested)]


# -- Numbers never end training --


def constant_code_model():
    inputs = keras.Input((6,))
    code = keras.layers.Dense(4, name="code", kernel_initializer="zeros",
                              bias_initializer="ones", trainable=False)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(6)(code))
    model.compile("sgd", "mse")
    return model


def scaled_code_model(scale, units=4):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    dense = keras.layers.Dense(units)(inputs)
    code = keras.layers.Lambda(lambda t: t * scale, name="code")(dense)
    model = keras.Model(inputs, keras.layers.Dense(6)(keras.layers.Lambda(lambda t: t / scale)(code)))
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize("case, undefined, match", [
    ("constant", {"cvr", "mapc", "effective_rank", "participation_ratio"}, "every unit is constant"),
    ("single unit", {"mapc"}, "1 of its 1 units vary"),
    ("nan", "all", "NaN or inf"),
    ("inf", "all", "NaN or inf"),
])
def test_undefined_metrics_warn_once_and_training_goes_on(tmp_path, case, undefined, match):
    x = data()
    probe = x[:32].copy()
    if case == "constant":
        model = constant_code_model()
    elif case == "single unit":
        model = scaled_code_model(1.0, units=1)
    else:
        model = functional()
        probe[3, 0] = np.nan if case == "nan" else np.inf
    monitor = CovarianceMonitor("code", probe, log_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, x, epochs=3, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 3
    ours = [str(w.message) for w in caught if "CovarianceMonitor" in str(w.message)]
    assert len(ours) == 1 and match in ours[0], ours
    summary = monitor.results["code"]
    nan_keys = {k for k, v in summary.items() if np.isnan(v)}
    assert nan_keys == (set(summary) - {"n_samples"} if undefined == "all" else undefined)
    assert np.isnan(read_events(tmp_path).Scalars("code/mapc")[-1].value)


def test_huge_finite_activations_are_measured(tmp_path):
    x = data()
    model = scaled_code_model(1e30)
    monitor = CovarianceMonitor("code", x[:64], log_dir=tmp_path, images=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*CovarianceMonitor.*")
        model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    h = backend_utils.to_numpy(keras.Model(model.inputs, model.get_layer("code").output)(x[:64]))
    np.testing.assert_allclose(monitor.covariances["code"], metrics.covariance(h), rtol=1e-4)
    assert np.isfinite(list(monitor.results["code"].values())).all()


def test_a_covariance_that_overflows_float64_warns_and_gives_nan(tmp_path, monkeypatch):
    x = data()
    model = functional()
    monitor = CovarianceMonitor("code", x[:64], log_dir=tmp_path, images=False)
    # float64 activations of 1e200 (possible under floatx float64) square to inf.
    from keras_covreg.probe import LayerProbe

    original = LayerProbe._as_observations
    monkeypatch.setattr(LayerProbe, "_as_observations",
                        lambda self, *a: original(self, *a) * 1e200)
    with pytest.warns(UserWarning, match="overflows float64"):
        history = model.fit(x, x, epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 2
    assert np.isnan(monitor.results["code"]["cvr"])


def test_a_subclassed_model_built_without_weights_trains(tmp_path):
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.code = keras.layers.Dense(4, name="code")
            self.out = keras.layers.Dense(6)

        def call(self, t):
            return self.out(self.code(t))

    x = data(32)
    model = Sub()
    model.compile("adam", "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's own warning about build()
        model.build((None, 6))
    monitor = CovarianceMonitor("code", log_dir=tmp_path, images=False)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        history = model.fit(x, x, epochs=2, verbose=0, validation_data=(x, x),
                            callbacks=[monitor])
    assert len(history.history["loss"]) == 2
    assert scalar_steps(read_events(tmp_path), "code/cvr")[-2:] == [0, 1]


def test_true_dim_above_the_width_gives_nan_tdv_and_trains(tmp_path):
    x = data()
    model = functional()
    monitor = CovarianceMonitor("code", x[:64], log_dir=tmp_path, true_dim=5, images=False)
    with pytest.warns(UserWarning, match="true_dim=5 exceeds its 4 units"):
        history = model.fit(x, x, epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 2
    summary = monitor.results["code"]
    assert np.isnan(summary["tdv_pca"]) and np.isnan(summary["tdv_unit"])
    assert np.isfinite(summary["cvr"])


def test_measuring_adds_no_keras_warnings(tmp_path):
    x, val = data(), data(40, seed=3)
    monitor = CovarianceMonitor("code", log_dir=tmp_path, images=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        functional().fit(x, x, epochs=2, verbose=0, validation_data=(val, val),
                         callbacks=[monitor])
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)]
