"""keras_covreg.prune_units: planted dead units are removed and the outputs kept."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_covreg import CovarianceRegularization, CovarianceRegularizer
from keras_covreg.pruning import compress_principal, prune_units
from tests import backend_utils


def kill(model, name, units, bias=None):
    """Zeroes the incoming weights of `units` of layer `name`: constant outputs."""
    layer = model.get_layer(name)
    kernel, b = layer.get_weights()
    kernel[..., units] = 0.0
    b[units] = bias if bias is not None else np.linspace(-0.5, 0.5, len(units))
    layer.set_weights([kernel, b])


def outputs(model, x):
    return backend_utils.to_numpy(model(x, training=False))


def assert_same_outputs(a, b, x, rtol=1e-6):
    expected = outputs(a, x)
    np.testing.assert_allclose(outputs(b, x), expected,
                               atol=rtol * np.abs(expected).max())


def dense_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(8, activation="tanh", name="code",
                           activity_regularizer=CovarianceRegularizer(0.1))(inputs)
    h = keras.layers.BatchNormalization(name="norm")(h)
    h = keras.layers.Dropout(0.3, name="drop")(h)
    h = CovarianceRegularization(0.1, name="penalty")(h)
    left = keras.layers.Dense(3, name="left")(h)
    right = keras.layers.Dense(2, use_bias=False, name="right")(h)
    return keras.Model(inputs, [left, right])


def data(shape, n=300, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def test_dense_dead_units_removed_through_batch_norm_into_two_consumers():
    model = dense_model()
    norm = model.get_layer("norm")
    norm.set_weights([w + np.arange(8) * 0.1 for w in norm.get_weights()])  # not identity
    kill(model, "code", [1, 4, 6])
    x = data((5,))
    smaller, report = prune_units(model, x, layers="code")
    assert report.removed == {"code": [1, 4, 6]} and report.kept == {"code": 5}
    assert smaller.get_layer("code").units == 5
    assert smaller.get_layer("norm").get_weights()[0].shape == (5,)
    # A consumer without a bias gets one for the removed units' means.
    assert smaller.get_layer("right").use_bias
    assert report.parameters_after < report.parameters_before
    left, right = model(x, training=False)
    small_left, small_right = smaller(x, training=False)
    for a, b in ((left, small_left), (right, small_right)):
        a, b = backend_utils.to_numpy(a), backend_utils.to_numpy(b)
        np.testing.assert_allclose(b, a, atol=1e-6 * np.abs(a).max())
    assert report.max_rel_change < 1e-6
    assert isinstance(smaller.get_layer("code").activity_regularizer, CovarianceRegularizer)


def conv_model(padding="valid"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    h = keras.layers.Conv2D(6, 3, name="conv", padding=padding)(inputs)
    h = keras.layers.LeakyReLU(0.1, name="leaky")(h)
    h = keras.layers.Conv2D(4, 3, name="conv2", padding=padding)(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Flatten(name="flat")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(h))


def test_conv_filters_removed_into_a_conv_and_through_pooling_and_flatten():
    model = conv_model()
    kill(model, "conv", [0, 3])
    kill(model, "conv2", [2])
    x = data((10, 10, 3), n=64)
    smaller, report = prune_units(model, x, layers=["conv", "conv2"])
    assert report.removed == {"conv": [0, 3], "conv2": [2]}
    assert smaller.get_layer("conv").filters == 4 and smaller.get_layer("conv2").filters == 3
    # 3 x 3 positions after pooling, 3 of 4 channels left.
    assert smaller.get_layer("out").get_weights()[0].shape == (27, 3)
    assert_same_outputs(model, smaller, x)


def test_a_unit_that_still_varies_changes_the_outputs_by_what_it_varied():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="code"),
                              keras.layers.Dense(2, name="out")])
    kernel, bias = model.get_layer("code").get_weights()
    kernel[:, 1] *= 1e-3  # variance 1e-6 of the others': below the threshold
    model.get_layer("code").set_weights([kernel, bias])
    x = data((4,))
    smaller, report = prune_units(model, x, layers="code")
    assert report.removed == {"code": [1]}
    # What is lost is unit 1's deviation from its mean, through the consumer.
    h = outputs(keras.Model(model.inputs, model.get_layer("code").output), x)[:, 1]
    w = model.get_layer("out").get_weights()[0][1]
    lost = np.max(np.abs((h - h.mean())[:, None] * w[None, :]))
    assert report.max_abs_change == pytest.approx(lost, rel=1e-3)
    with pytest.raises(ValueError, match="max_output_change=1e-09"):
        prune_units(model, x, layers="code", max_output_change=1e-9)


@pytest.mark.parametrize("build, layers, match", [
    (lambda: conv_model("same"), "conv", "padding='same'"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="code")]),
     "code", "output of the model"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="code"),
                               keras.layers.Reshape((3, 1), name="shape"),
                               keras.layers.Flatten(), keras.layers.Dense(2)]),
     "code", "'shape' \\(Reshape\\)"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="code"),
                               keras.layers.Softmax(name="soft"), keras.layers.Dense(2)]),
     "code", "'soft' \\(Softmax\\)"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                               keras.layers.Activation("tanh", name="act")]),
     "act", "only Dense and Conv1D/2D/3D"),
])
def test_what_cannot_be_pruned_exactly_is_refused(build, layers, match):
    model = build()
    x = data(model.inputs[0].shape[1:], n=50)
    with pytest.raises(ValueError, match=match):
        prune_units(model, x, layers=layers)


def test_branches_are_refused():
    inputs = keras.Input((4,))
    code = keras.layers.Dense(3, name="code")(inputs)
    both = keras.layers.Add(name="add")([code, keras.layers.Dense(3)(inputs)])
    model = keras.Model(inputs, keras.layers.Dense(2)(both))
    with pytest.raises(ValueError, match="'add' \\(Add\\) reads the units of 'code'"):
        prune_units(model, data((4,), n=50), layers="code")


def test_every_unit_switched_off_and_bad_arguments():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="code"),
                              keras.layers.Dense(2)])
    kill(model, "code", [0, 1, 2], bias=np.zeros(3))
    with pytest.raises(ValueError, match="every unit of layer 'code' is switched off"):
        prune_units(model, data((4,)), layers="code")
    with pytest.raises(ValueError, match="threshold=2"):
        prune_units(model, data((4,)), layers="code", threshold=2)
    with pytest.raises(ValueError, match="max_output_change=-1"):
        prune_units(model, data((4,)), layers="code", max_output_change=-1)


def test_a_pruned_model_saves_loads_in_a_fresh_process_and_trains(tmp_path):
    model = dense_model()
    kill(model, "code", [2, 5])
    x = data((5,))
    smaller, _ = prune_units(model, x, layers="code")
    path = tmp_path / "smaller.keras"
    smaller.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", backend_utils.to_numpy(smaller(x, training=False)[0]))
    script = (
        "import numpy as np, keras, keras_covreg\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "got = keras.ops.convert_to_numpy(m(x, training=False)[0])\n"
        f"np.testing.assert_allclose(got, np.load({str(tmp_path / 'expected.npy')!r}), "
        "rtol=1e-6, atol=1e-6)\n"
        "assert m.get_layer('code').units == 6\n"
        "m.compile('adam', ['mse', 'mse'])\n"
        "m.fit(x, [x[:, :3], x[:, :2]], epochs=1, verbose=0)\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=180, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


# -- compress_principal: the PCA-basis counterpart ---------------------------


def linear_code_model(reader_bias=True):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    code = keras.layers.Dense(6, name="code",
                              activity_regularizer=CovarianceRegularizer(0.1))(inputs)
    h = keras.layers.Dropout(0.2, name="drop")(code)
    out = keras.layers.Dense(4, name="out", use_bias=reader_bias)(h)
    return keras.Model(inputs, out)


def test_a_rank_deficient_linear_code_keeps_its_rank_and_its_outputs():
    model = linear_code_model(reader_bias=False)
    x = data((3,))
    smaller, report = compress_principal(model, x, layer="code")
    # 3 inputs through a linear layer: rank 3 of 6 units.
    assert (report.components, report.units_before) == (3, 6)
    assert smaller.get_layer("code").units == 3 and smaller.get_layer("out").use_bias
    assert report.variance_kept == pytest.approx(1.0, abs=1e-6)
    assert report.parameters_after < report.parameters_before
    assert_same_outputs(model, smaller, x, rtol=1e-5)


def test_fewer_components_give_the_projection_of_the_code():
    model = linear_code_model()
    x = data((3,))
    smaller, report = compress_principal(model, x, layer="code", variance=0.6)
    assert report.components < 3
    # The float64 reference: the code projected on its top-k principal
    # components, read by the reader's original weights.
    h = outputs(keras.Model(model.inputs, model.get_layer("code").output), x).astype(np.float64)
    mean = h.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(h, rowvar=False))
    v = vectors[:, np.argsort(values)[::-1][: report.components]]
    u, c = model.get_layer("out").get_weights()
    expected = ((h - mean) @ v @ v.T + mean) @ u + c
    np.testing.assert_allclose(outputs(smaller, x), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())
    shares = np.sort(values)[::-1] / values.sum()
    assert report.variance_kept == pytest.approx(shares[: report.components].sum(), rel=1e-6)
    assert report.max_abs_change > 1e-3  # dropped components varied


@pytest.mark.parametrize("build, match", [
    (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh",
                                                                     name="code"),
                               keras.layers.Dense(2)]), "linear activation"),
    (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="code"),
                               keras.layers.Activation("relu", name="act"),
                               keras.layers.Dense(2)]), "'act' \\(Activation\\)"),
    (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="code")]),
     "output of the model"),
])
def test_compress_refuses_what_a_rotation_cannot_pass(build, match):
    with pytest.raises(ValueError, match=match):
        compress_principal(build(), data((3,), n=50), layer="code")
    with pytest.raises(ValueError, match="variance=0"):
        compress_principal(linear_code_model(), data((3,), n=50), layer="code", variance=0)
