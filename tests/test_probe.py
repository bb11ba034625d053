"""keras_covreg.measure: the covariance of layers' outputs over probe data,
against a float64 reference of the same outputs, for every model style."""

import keras
import numpy as np
import pytest

from keras_covreg import CovarianceRegularizer, Measurement, measure
from tests import backend_utils


def data(n=150, p=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, p)) @ rng.normal(size=(p, p))).astype("float32")


def reference(h):
    """np.cov in float64, observations in rows."""
    return np.cov(np.asarray(h, np.float64).reshape(-1, np.shape(h)[-1]), rowvar=False)


def outputs(fn, x):
    return backend_utils.to_numpy(fn(x))


def test_functional_model_two_layers():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    code = keras.layers.Dense(4, name="code",
                              activity_regularizer=CovarianceRegularizer(1.0))(inputs)
    hidden = keras.layers.Dense(3, activation="tanh", name="hidden")(code)
    model = keras.Model(inputs, keras.layers.Dense(6)(hidden))
    x = data()
    before = [w.copy() for w in model.get_weights()]
    found = measure(model, x, ["code", model.get_layer("hidden")], batch_size=32)
    assert list(found) == ["code", "hidden"]
    for name in found:
        h = outputs(keras.Model(inputs, model.get_layer(name).output), x)
        assert isinstance(found[name], Measurement) and found[name].undefined is None
        assert found[name].n_samples == 150
        np.testing.assert_allclose(found[name].covariance, reference(h), rtol=1e-5, atol=1e-7)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    summary = found["code"].summary(d=2)
    assert set(summary) >= {"cvr", "ud90_pca", "tdv_pca"}


def test_sequential_without_input_and_subclassed():
    keras.utils.set_random_seed(0)
    sequential = keras.Sequential([keras.layers.Dense(5, name="code"), keras.layers.Dense(2)])
    x = data()
    found = measure(sequential, x, "code")["code"]
    h = outputs(lambda t: sequential.get_layer("code")(t), x)
    np.testing.assert_allclose(found.covariance, reference(h), rtol=1e-5, atol=1e-7)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.code = keras.layers.Dense(3, name="code")
            self.out = keras.layers.Dense(6)

        def call(self, t):
            return self.out(self.code(t))

    sub = Sub()
    found = measure(sub, x, sub.code, batch_size=40)["code"]
    np.testing.assert_allclose(found.covariance, reference(outputs(sub.code, x)),
                               rtol=1e-5, atol=1e-7)


def test_a_shared_layer_counts_every_call():
    keras.utils.set_random_seed(0)
    shared = keras.layers.Dense(3, name="shared")
    a, b = keras.Input((6,)), keras.Input((6,))
    model = keras.Model([a, b], keras.layers.Add()([shared(a), shared(b)]))
    x1, x2 = data(seed=1), data(seed=2)
    found = measure(model, [x1, x2], "shared", batch_size=50)["shared"]
    assert found.n_samples == 300
    h = np.concatenate([outputs(shared, x1), outputs(shared, x2)])
    np.testing.assert_allclose(found.covariance, reference(h), rtol=1e-5, atol=1e-7)


def test_feature_maps_by_channels_and_flattened():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    model = keras.Model(inputs, conv)
    x = np.random.default_rng(0).normal(size=(20, 5, 5, 2)).astype("float32")
    h = outputs(model, x)
    channels = measure(model, x, "conv")["conv"]
    assert channels.n_samples == 20 * 3 * 3
    np.testing.assert_allclose(channels.covariance, reference(h), rtol=1e-5, atol=1e-7)
    flat = measure(model, x, "conv", spatial_mode="flatten")["conv"]
    assert flat.n_samples == 20 and flat.covariance.shape == (27, 27)
    np.testing.assert_allclose(flat.covariance, reference(h.reshape(20, -1)),
                               rtol=1e-5, atol=1e-7)


def test_max_samples_cuts_across_batches():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="code")])
    x = data()
    found = measure(model, x, "code", max_samples=70, batch_size=32)["code"]
    assert found.n_samples == 70
    np.testing.assert_allclose(found.covariance, reference(outputs(model, x[:70])),
                               rtol=1e-5, atol=1e-7)


def test_auto_batch_size_follows_the_input_bytes():
    from keras_covreg.probe import auto_batch_size, input_batches

    # 16 MiB of inputs per batch, between 32 and 1,024 samples.
    assert auto_batch_size(np.zeros((5, 32, 32, 3), "float32")) == 1024
    assert auto_batch_size(np.zeros((5, 224, 224, 3), "float32")) == 32
    assert auto_batch_size(np.zeros((5, 64, 64, 3), "float32")) == 16 * 2**20 // (64 * 64 * 3 * 4)
    # Several inputs add up; float64 takes twice the room of float32.
    two = [np.zeros((5, 64, 64, 3), "float32"), np.zeros((5, 64, 64, 3), "float32")]
    assert auto_batch_size(two) == auto_batch_size(np.zeros((5, 64, 64, 3), "float64"))
    sizes = [len(b) for b in input_batches(np.zeros((2500, 6), "float32"), None)]
    assert sizes == [1024, 1024, 452]


def test_default_batches_give_the_same_covariance():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="code")])
    x = data(n=2500)
    auto = measure(model, x, "code")["code"]
    small = measure(model, x, "code", batch_size=7)["code"]
    assert auto.n_samples == small.n_samples == 2500
    # Not bit for bit: float32 products are blocked differently per batch size
    # (about 1e-9 relative on TensorFlow, 3e-7 on JAX). One sample lost or
    # counted twice would move the covariance by about 1 / 2500.
    np.testing.assert_allclose(auto.covariance, small.covariance, rtol=1e-6)
    np.testing.assert_allclose(auto.covariance, reference(outputs(model, x)),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(auto.mean, np.mean(outputs(model, x), axis=0, dtype=np.float64),
                               rtol=1e-5, atol=1e-7)


def test_undefined_covariance_is_nan_with_a_warning():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="code")])
    with pytest.warns(UserWarning, match="fewer than 2 observations"):
        found = measure(model, data(1), "code")["code"]
    assert found.undefined == "too_few" and np.isnan(found.covariance).all()
    assert np.isnan(found.mean).all()
    assert np.isnan(found.summary()["cvr"])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"layers": "nope"}, ValueError, "no layer named 'nope'"),
    ({"data": None}, TypeError, "data=None"),
    ({"data": np.zeros((0, 6))}, ValueError, "no samples"),
    ({"max_samples": 1}, ValueError, "max_samples=1"),
    ({"batch_size": 0}, ValueError, "batch_size=0"),
    ({"batch_size": 2.5}, TypeError, "batch_size=2.5"),
    ({"spatial_mode": "pixels"}, ValueError, "spatial_mode='pixels'"),
    ({"channel_axis": 0}, ValueError, "channel_axis=0"),
])
def test_bad_arguments(kwargs, error, match):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="code")])
    arguments = {"data": data(), "layers": "code", **kwargs}
    with pytest.raises(error, match=match):
        measure(model, arguments.pop("data"), arguments.pop("layers"), **arguments)
