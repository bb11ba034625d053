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
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_covreg import CovarianceMonitor, CovarianceRegularizer, metrics
from tests import backend_utils

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
    acc = EventAccumulator(os.path.join(log_dir, run), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


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
    for key, ours in (("cvr", "cvr"), ("mapc", "mapc"), ("ud_pca", "ud90_pca"),
                      ("ud_unit", "ud90_unit"), ("tdv_pca", "tdv_pca"),
                      ("l_sigma", "l_sigma"), ("effective_rank", "effective_rank")):
        logged = acc.Scalars(f"code/{ours}")[-1].value
        assert logged == pytest.approx(direct[key], rel=1e-5), key
        assert history.history[f"val_code_{ours}"][-1] == pytest.approx(direct[key], rel=1e-5)
    assert acc.Scalars("code/n_samples")[-1].value == 100
    np.testing.assert_allclose(monitor.covariances["code"], cov, rtol=1e-5, atol=1e-7)
    for tag in ("code/covariance", "hidden/spectrum"):
        events = acc.Images(tag)
        assert [e.step for e in events] == [-1, 0, 1]
        png = events[-1].encoded_image_string
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(png))
        assert image.size == (events[-1].width, events[-1].height) == (384, 320)


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


def test_keras_tensorboard_writes_beside_it(tmp_path):
    pytest.importorskip("tensorflow")
    if backend_utils.BACKEND != "tensorflow":
        pytest.skip("keras.callbacks.TensorBoard needs the TensorFlow backend here")
    x = data()
    model = functional()
    callbacks = [CovarianceMonitor("code", x[:64], log_dir=tmp_path, images=False),
                 keras.callbacks.TensorBoard(log_dir=str(tmp_path))]
    model.fit(x, x, epochs=2, verbose=0, validation_data=(x[:64], x[:64]), callbacks=callbacks)
    acc = EventAccumulator(str(tmp_path / "validation"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"]) | set(acc.Tags()["tensors"])
    assert "code/cvr" in tags and "epoch_loss" in tags and "epoch_code_cvr" in tags


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
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, name="code"),
                              keras.layers.Dense(5)])
    model.compile("adam", "mse")
    model.fit(x, x, epochs=2, verbose=0,
              callbacks=[CovarianceMonitor("code", x, log_dir=sys.argv[1])])
    acc = EventAccumulator(sys.argv[1] + "/validation", size_guidance={"images": 0})
    acc.Reload()
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


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_server_serves_the_tags(tmp_path):
    import json
    import shutil
    import time
    import urllib.request

    x = data()
    model = functional()
    model.fit(x, x, epochs=1, verbose=0,
              callbacks=[CovarianceMonitor("code", x[:64], log_dir=tmp_path)])
    exe = shutil.which("tensorboard") or os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if not os.path.exists(exe):
        pytest.skip("the tensorboard command is not installed")
    port = _free_port()
    server = subprocess.Popen(
        [exe, "--logdir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/data/plugin"

    def get(path):
        with urllib.request.urlopen(base + path, timeout=5) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 90
        scalars = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                scalars = get("/scalars/tags")
                if "code/cvr" in scalars.get("validation", {}):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        if server.poll() is not None or scalars is None:
            pytest.skip("tensorboard did not start: " + server.stderr.read().decode()[-500:])
        assert "code/cvr" in scalars["validation"]
        images = get("/images/tags")
        assert {"code/covariance", "code/correlation", "code/spectrum"} <= set(images["validation"])
        values = get("/scalars/scalars?run=validation&tag=code/cvr")
        assert [v[1] for v in values] == [-1, 0]
    finally:
        server.terminate()
        server.wait(timeout=30)
