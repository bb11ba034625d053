"""The regularizers against the float64 reference, on the current backend.

`.ci/run` runs this file under KERAS_BACKEND=tensorflow, jax and torch, and
under the newest Keras 3.13 (which does not divide activity penalties by the
batch size) as well as the newest Keras 3.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_covreg
from keras_covreg import (
    ActivityL1Regularizer,
    CovarianceRegularizer,
    DeCovRegularizer,
    _compat,
)
from tests import backend_utils, reference

REFERENCES = {
    CovarianceRegularizer: lambda h: reference.l_sigma(reference.covariance(h)),
    DeCovRegularizer: reference.decov,
    ActivityL1Regularizer: lambda h: float(np.mean(np.abs(h))),
}
ALL = sorted(REFERENCES, key=lambda cls: cls.__name__)


def batch(n=12, p=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) + 0.5).astype("float32")


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("shape", [(12, 5), (3, 1), (64, 9)])
def test_penalty_matches_reference(cls, shape):
    x = batch(*shape)
    got = backend_utils.to_numpy(cls(0.3).penalty(ops.convert_to_tensor(x)))
    assert got.dtype == np.float32 and got.shape == ()
    np.testing.assert_allclose(got, 0.3 * REFERENCES[cls](x), rtol=2e-5)


@pytest.mark.parametrize("cls", [CovarianceRegularizer, DeCovRegularizer])
def test_feature_maps_channels_and_flatten(cls):
    x = np.random.default_rng(1).normal(size=(4, 3, 2, 5)).astype("float32")
    tensor = ops.convert_to_tensor(x)
    channels = cls(1.0).penalty(tensor)
    np.testing.assert_allclose(channels, REFERENCES[cls](x.reshape(-1, 5)), rtol=2e-5)
    flat = cls(1.0, spatial_mode="flatten").penalty(tensor)
    np.testing.assert_allclose(flat, REFERENCES[cls](x.reshape(4, -1)), rtol=2e-5)
    first = cls(1.0, channel_axis=1).penalty(ops.convert_to_tensor(np.moveaxis(x, -1, 1)))
    np.testing.assert_allclose(first, channels, rtol=1e-5)


def test_detection_matches_the_keras_release():
    major, minor = (int(v) for v in keras.__version__.split(".")[:2])
    assert _compat.activity_loss_is_divided_by_batch_size() == ((major, minor) >= (3, 14))


def dense_model(regularizer, p=4, optimizer="sgd"):
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(p, activity_regularizer=regularizer, name="code"),
            keras.layers.Dense(5),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.mark.parametrize("cls", ALL)
def test_loss_receives_exactly_strength_times_penalty(cls):
    keras.utils.set_random_seed(0)
    model = dense_model(cls(0.25))
    x, y = batch(16, 5, seed=2), batch(16, 5, seed=3)
    code = backend_utils.to_numpy(model.get_layer("code")(x)).astype(np.float64)
    expected_penalty = 0.25 * REFERENCES[cls](code)
    layer = model.get_layer("code")
    np.testing.assert_allclose(
        backend_utils.to_numpy(ops.sum(layer.losses)), expected_penalty, rtol=2e-5
    )
    mse = np.mean((backend_utils.to_numpy(model(x)) - y) ** 2)
    loss = model.evaluate(x, y, batch_size=16, verbose=0)
    np.testing.assert_allclose(loss, mse + expected_penalty, rtol=2e-5)


def test_l1_sum_reduction_is_the_undivided_sum_in_the_loss():
    # Keras 2's activity l1(l): l * sum |h| over the batch and the units, added
    # to the loss as it is (no division by the batch size).
    keras.utils.set_random_seed(0)
    model = dense_model(ActivityL1Regularizer(0.25, reduction="sum"))
    x, y = batch(16, 5, seed=2), batch(16, 5, seed=3)
    code = backend_utils.to_numpy(model.get_layer("code")(x)).astype(np.float64)
    expected_penalty = 0.25 * np.sum(np.abs(code))
    mse = np.mean((backend_utils.to_numpy(model(x)) - y) ** 2)
    loss = model.evaluate(x, y, batch_size=16, verbose=0)
    np.testing.assert_allclose(loss, mse + expected_penalty, rtol=2e-5)
    mean = ActivityL1Regularizer(0.25).penalty(ops.convert_to_tensor(code))
    np.testing.assert_allclose(float(mean) * code.size, expected_penalty, rtol=2e-5)
    with pytest.raises(ValueError, match="reduction='total'"):
        ActivityL1Regularizer(0.25, reduction="total")


def test_batch_of_one_gives_zero_and_training_stays_finite():
    reg = CovarianceRegularizer(1.0)
    assert float(reg.penalty(ops.convert_to_tensor(batch(1, 5)))) == 0.0
    model = dense_model(reg)
    history = model.fit(batch(4, 5), batch(4, 5, seed=1), batch_size=1, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(backend_utils.to_numpy(w)).all() for w in model.weights)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", ALL)
def test_mixed_precision_trains_without_overflow(policy, cls):
    keras.config.set_dtype_policy(policy)
    try:
        # Activations of 300 in float16 give squares (9e4) above its max (6.5e4).
        x = (batch(32, 5) * 300).astype("float32")
        model = dense_model(cls(0.1), optimizer="adam")
        penalty = cls(0.1)(model.get_layer("code")(x))
        assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
        assert np.isfinite(backend_utils.to_numpy(penalty))
        history = model.fit(x, x / 300, batch_size=16, epochs=2, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.skipif(backend_utils.BACKEND == "torch", reason="XLA is TF and JAX only")
def test_jit_compiled_training_matches_eager():
    x, y = batch(32, 5), batch(32, 5, seed=1)
    losses = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = dense_model(CovarianceRegularizer(0.5))
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
        losses.append(model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@pytest.mark.parametrize("cls", ALL)
def test_compiled_penalty_matches_eager(cls):
    x = batch(20, 6)
    reg = cls(0.4)
    eager = backend_utils.to_numpy(reg(ops.convert_to_tensor(x)))
    traced = backend_utils.to_numpy(backend_utils.compiled(reg)(x))
    np.testing.assert_allclose(traced, eager, rtol=1e-5)


@pytest.mark.parametrize("cls", ALL)
def test_gradient_agrees_with_finite_differences(cls):
    x = batch(10, 4, seed=5).astype(np.float64)
    reg = cls(0.7)
    got = backend_utils.gradient(reg.penalty, x)
    f = lambda v: 0.7 * REFERENCES[cls](v)  # noqa: E731
    eps = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        numeric[idx] = (f(x + step) - f(x - step)) / (2 * eps)
    np.testing.assert_allclose(got, numeric, rtol=1e-3, atol=1e-5 * np.abs(numeric).max())


def test_covariance_gradient_is_the_closed_form():
    x = batch(32, 6, seed=6)
    got = backend_utils.gradient(CovarianceRegularizer(1.0).penalty, x)
    np.testing.assert_allclose(got, reference.l_sigma_gradient(x), rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: CovarianceRegularizer(-0.1), ValueError, "Received: strength=-0.1"),
        (lambda: CovarianceRegularizer(float("nan")), ValueError, "Received: strength=nan"),
        (lambda: CovarianceRegularizer(float("inf")), ValueError, "Received: strength=inf"),
        (lambda: CovarianceRegularizer("0.1"), TypeError, "Received: strength='0.1'"),
        (lambda: DeCovRegularizer(1.0, spatial_mode="pixels"), ValueError, "spatial_mode='pixels'"),
        (lambda: CovarianceRegularizer(1.0, channel_axis=1.5), TypeError, "channel_axis=1.5"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("cls", ALL)
def test_bad_activations(cls):
    reg = cls(1.0)
    with pytest.raises(ValueError, match=r"rank >= 2.*Received: x of shape \(5,\)"):
        reg(ops.convert_to_tensor(np.ones(5, "float32")))
    with pytest.raises(TypeError, match="Received: x of dtype int32"):
        reg(ops.convert_to_tensor(np.ones((4, 3), "int32")))


def test_channel_axis_cannot_be_the_batch_axis():
    with pytest.raises(ValueError, match="channel_axis=0"):
        CovarianceRegularizer(1.0, channel_axis=0)(ops.ones((2, 3, 4)))


@pytest.mark.parametrize("cls", ALL)
def test_config_round_trip(cls):
    reg = (cls(0.08, reduction="sum") if cls is ActivityL1Regularizer
           else cls(0.08, spatial_mode="flatten"))
    config = reg.get_config()
    assert json.loads(json.dumps(config)) == config
    assert cls.from_config(config).get_config() == config
    restored = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert type(restored) is cls and restored.get_config() == config
    assert keras.saving.get_registered_name(cls) == f"keras_covreg>{cls.__name__}"


LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_covreg  # registers the regularizers
    model = keras.saving.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    print(json.dumps({
        "outputs": model.predict(data["x"], verbose=0).tolist(),
        "loss": float(model.evaluate(data["x"], data["y"], batch_size=16, verbose=0)),
        "regularizers": [type(l.activity_regularizer).__name__
                         for l in model.layers if l.activity_regularizer],
    }))
    """
)


def test_saved_model_loads_in_a_fresh_process(tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(6, activity_regularizer=CovarianceRegularizer(0.3))(inputs)
    h = keras.layers.Dense(6, activity_regularizer=DeCovRegularizer(0.2))(h)
    h = keras.layers.Dense(6, activity_regularizer=ActivityL1Regularizer(0.1))(h)
    model = keras.Model(inputs, keras.layers.Dense(5)(h))
    model.compile(optimizer="adam", loss="mse")
    x, y = batch(16, 5), batch(16, 5, seed=1)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "data.npz")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["regularizers"] == [
        "CovarianceRegularizer", "DeCovRegularizer", "ActivityL1Regularizer"
    ]
    np.testing.assert_array_equal(np.asarray(loaded["outputs"], "float32"), model.predict(x, verbose=0))
    assert loaded["loss"] == pytest.approx(model.evaluate(x, y, batch_size=16, verbose=0), rel=1e-6)


def test_import_needs_neither_matplotlib_nor_tensorflow_of_its_own():
    # Keras itself imports matplotlib when it can; block it, and TensorFlow
    # unless it is the backend, and import the package.
    blocked = ["matplotlib"] + ([] if backend_utils.BACKEND == "tensorflow" else ["tensorflow"])
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import keras_covreg\n"
        "keras_covreg.CovarianceRegularizer(0.1)\n"
        "print(keras_covreg.__version__)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(keras_covreg.__version__)


# -- Every floatx and dtype policy (issue: float64 broke `fit` on TensorFlow) --


@pytest.fixture
def floatx64():
    """As after ``keras.config.set_floatx("float64")`` at a program's start.

    Keras derives the default dtype policy from floatx once and keeps it, so
    inside a test session the policy has to follow by hand.
    """
    policy = keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy(policy)


@pytest.mark.parametrize("cls", ALL)
def test_floatx_float64_trains_and_adds_the_float64_reference(cls, floatx64):
    x = batch(16, 5).astype("float64")
    model = dense_model(cls(0.3))
    history = model.fit(x, x, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    code = model.get_layer("code")
    h = code(x)
    expected = 0.3 * REFERENCES[cls](backend_utils.to_numpy(h))
    penalty = cls(0.3).penalty(h)
    if keras.backend.standardize_dtype(h.dtype) == "float64":  # JAX needs x64
        # Returned in floatx and computed in float64: far closer than
        # float32 round-off (1e-7). Keras's torch matmul loses float64
        # precision on the CPU (errors of 1e-7 on unit data, Keras 3.15).
        assert keras.backend.standardize_dtype(penalty.dtype) == "float64"
        rtol = 1e-6 if backend_utils.BACKEND == "torch" else 1e-11
        np.testing.assert_allclose(backend_utils.to_numpy(penalty), expected, rtol=rtol)
    # What Keras records may be float32 even so: on torch, Keras's own
    # divide_no_nan returns float32 (Keras's L1 gives float32 there too).
    recorded = code.losses[0]
    exact = keras.backend.standardize_dtype(recorded.dtype) == "float64"
    exact = exact and backend_utils.BACKEND != "torch"
    np.testing.assert_allclose(backend_utils.to_numpy(recorded), expected,
                               rtol=1e-11 if exact else 1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", ALL)
def test_mixed_precision_adds_the_reference_of_the_low_precision_activations(policy, cls):
    keras.config.set_dtype_policy(policy)
    try:
        code = keras.layers.Dense(4, activity_regularizer=cls(0.2))
        h = code(batch(32, 5))
        recorded = backend_utils.to_numpy(code.losses[0])
    finally:
        keras.config.set_dtype_policy("float32")
    expected = 0.2 * REFERENCES[cls](backend_utils.to_numpy(h).astype("float64"))
    np.testing.assert_allclose(recorded, expected, rtol=2e-5)


# -- Shapes the regularizers meet while Keras traces a model --


def model_with_unknown_features(regularizer):
    """Identity layer on inputs whose feature count Keras does not know."""
    inputs = keras.Input((None,))
    hidden = keras.layers.Identity(activity_regularizer=regularizer, name="code")(inputs)
    mean = keras.layers.Lambda(lambda t: ops.mean(t, axis=-1, keepdims=True))(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(mean))
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize("cls", ALL)
def test_unknown_feature_count_is_read_at_run_time(cls):
    x = batch(12, 5)
    model = model_with_unknown_features(cls(0.4))
    history = model.fit(x, x[:, :1], batch_size=6, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    code = model.get_layer("code")
    code(x)
    np.testing.assert_allclose(backend_utils.to_numpy(code.losses[0]),
                               0.4 * REFERENCES[cls](x), rtol=2e-5)


@pytest.mark.parametrize("cls", [CovarianceRegularizer, DeCovRegularizer])
@pytest.mark.parametrize("mode", ["channels", "flatten"])
def test_unknown_spatial_size_works_in_both_modes(cls, mode):
    x = np.random.default_rng(2).normal(size=(6, 5, 4, 3)).astype("float32")
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(2, 3, padding="same", name="code",
                               activity_regularizer=cls(0.1, spatial_mode=mode))(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(conv))
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((6, 2)), batch_size=3, epochs=1, verbose=0)
    code = model.get_layer("code")
    h = backend_utils.to_numpy(code(x))
    rows = h.reshape(-1, 2) if mode == "channels" else h.reshape(6, -1)
    # DeCov is a difference of squares: float32 cancellation needs an atol.
    np.testing.assert_allclose(backend_utils.to_numpy(code.losses[0]),
                               0.1 * REFERENCES[cls](rows), rtol=2e-5, atol=1e-8)


@pytest.mark.skipif(backend_utils.BACKEND != "tensorflow", reason="tf.data specs")
@pytest.mark.parametrize("cls", ALL)
def test_tf_data_with_loose_specs(cls):
    import tensorflow as tf

    x = batch(12, 5)

    def gen():
        for i in range(0, 12, 4):
            yield x[i : i + 4], x[i : i + 4, :1]

    dataset = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec((None, None), tf.float32), tf.TensorSpec((None, None), tf.float32)))
    history = model_with_unknown_features(cls(0.4)).fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("make", [CovarianceRegularizer, DeCovRegularizer,
                                  ActivityL1Regularizer, keras_covreg.CovarianceRegularization,
                                  keras_covreg.DeCovRegularization,
                                  keras_covreg.ActivityL1Regularization])
def test_rank_one_activations_are_the_documented_error_everywhere(make):
    x = ops.convert_to_tensor(np.ones(4, "float32"))
    form = make(1.0)
    with pytest.raises(ValueError, match=r"rank >= 2.*Received: x of shape \(4,\)"):
        form.penalty(x) if hasattr(form, "penalty") else form(x)


@pytest.mark.parametrize("make", [CovarianceRegularizer, DeCovRegularizer,
                                  keras_covreg.CovarianceRegularization,
                                  keras_covreg.DeCovRegularization])
def test_channel_axis_outside_the_activations_is_the_documented_error(make):
    x = ops.convert_to_tensor(np.ones((2, 3, 4), "float32"))
    form = make(1.0, channel_axis=3)
    with pytest.raises(ValueError, match=r"rank 3\. Received: channel_axis=3"):
        form.penalty(x) if hasattr(form, "penalty") else form(x)
    with pytest.raises(ValueError, match="batch axis.*Received: channel_axis=-3"):
        make(1.0, channel_axis=-3)(x) if not hasattr(form, "penalty") else \
            make(1.0, channel_axis=-3).penalty(x)


# -- Nothing of the Keras-behaviour probe inside traced code --


def test_probe_result_is_a_plain_attribute_read_in_call(monkeypatch):
    reg = CovarianceRegularizer(1.0)

    def fail():
        raise AssertionError("the probe ran inside __call__")

    monkeypatch.setattr(_compat, "activity_loss_is_divided_by_batch_size", fail)
    x = ops.convert_to_tensor(batch(6, 3))
    expected = float(reg.penalty(x)) * (6 if reg._divided_by_batch_size else 1)
    assert float(reg(x)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cls", ALL)
def test_jit_compiled_fit_warns_nothing_from_our_code(cls):
    x = batch(32, 5)
    keras.utils.set_random_seed(0)
    model = dense_model(cls(0.05))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, x, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    ours = [str(w.message) for w in caught
            if "keras_covreg" in w.filename or "regularizers.py" in str(w.message)
            or "lru_cache" in str(w.message)]
    assert ours == []
