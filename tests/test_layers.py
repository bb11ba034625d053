"""The layer forms of the penalties: masks, wrappers, exact loss, serialization.

`.ci/run` runs this file on TensorFlow, JAX and torch, and on Keras 3.13.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_covreg
from keras_covreg import (
    ActivityL1Regularization,
    CovarianceRegularization,
    CovarianceRegularizer,
    DeCovRegularization,
)
from tests import backend_utils, reference

REFERENCES = {
    CovarianceRegularization: lambda h: reference.l_sigma(reference.covariance(h)),
    DeCovRegularization: reference.decov,
    ActivityL1Regularization: lambda h: float(np.mean(np.abs(h))),
}
ALL = sorted(REFERENCES, key=lambda cls: cls.__name__)


def padded_sequences(seed=0):
    """8 sequences of 6 steps of 3 features; 4 of them half zero padding."""
    x = np.random.default_rng(seed).normal(size=(8, 6, 3)).astype("float32")
    x[:4, 3:] = 0.0
    return x, np.any(x != 0, axis=-1)


def masked_lstm(layer_form):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    states = keras.layers.LSTM(4, return_sequences=True, name="lstm")(masked)
    penalized = layer_form(states)
    model = keras.Model(inputs, keras.layers.Dense(3)(penalized))
    model.compile("adam", "mse")
    return model


@pytest.mark.parametrize("cls", ALL)
def test_masked_steps_are_left_out(cls):
    x, mask = padded_sequences()
    model = masked_lstm(cls(1.0, name="penalty"))
    states = backend_utils.to_numpy(keras.Model(model.inputs, model.get_layer("lstm").output)(x))
    model(x)
    got = float(backend_utils.to_numpy(model.losses[0]))
    expected = REFERENCES[cls](states[mask])  # the 36 real steps
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    assert not np.isclose(got, REFERENCES[cls](states.reshape(-1, 4)), rtol=1e-3)
    history = model.fit(x, x, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("cls", ALL)
def test_the_loss_receives_exactly_strength_times_penalty(cls):
    # add_loss is not divided by the batch size on any Keras release.
    x = np.random.default_rng(1).normal(size=(10, 4)).astype("float32")
    layer = cls(0.25)
    layer(x)
    np.testing.assert_allclose(backend_utils.to_numpy(layer.losses[0]),
                               0.25 * REFERENCES[cls](x), rtol=2e-5)


def test_output_is_the_input_with_its_mask():
    x, mask = padded_sequences()
    inputs = keras.Input((6, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    out = CovarianceRegularization(1.0)(masked)
    # A mask-consuming layer after it still sees the padding.
    pooled = keras.layers.GlobalAveragePooling1D()(out)
    model = keras.Model(inputs, [out, pooled])
    y, p = (backend_utils.to_numpy(t) for t in model(x))
    np.testing.assert_array_equal(y, x)
    expected = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(p, expected, rtol=1e-5)


def test_inside_time_distributed_each_step_is_penalized():
    x, _ = padded_sequences()
    inputs = keras.Input((6, 3))
    out = keras.layers.TimeDistributed(CovarianceRegularization(1.0))(inputs)
    model = keras.Model(inputs, out)
    model(x)
    got = sum(float(backend_utils.to_numpy(v)) for v in model.losses)
    expected = sum(reference.l_sigma(reference.covariance(x[:, t])) for t in range(6))
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_after_time_distributed_all_steps_are_one_set_of_observations():
    x, _ = padded_sequences()
    inputs = keras.Input((6, 3))
    dense = keras.layers.TimeDistributed(keras.layers.Dense(2), name="td")(inputs)
    model = keras.Model(inputs, CovarianceRegularization(1.0)(dense))
    model(x)
    h = backend_utils.to_numpy(keras.Model(inputs, dense)(x)).reshape(-1, 2)
    np.testing.assert_allclose(backend_utils.to_numpy(model.losses[0]),
                               reference.l_sigma(reference.covariance(h)), rtol=2e-5)


def test_keras_never_applies_an_activity_regularizer_inside_time_distributed():
    # Pins the Keras behaviour that the layer form exists for (and that
    # docs/known-limits.md states); Keras's own L1 is ignored the same way.
    x, _ = padded_sequences()
    for regularizer in (CovarianceRegularizer(1.0), keras.regularizers.L1(1.0)):
        inner = keras.layers.Dense(4, activity_regularizer=regularizer)
        model = keras.Sequential([keras.Input((6, 3)), keras.layers.TimeDistributed(inner)])
        model(x)
        assert model.losses == []


@pytest.mark.parametrize("mask_shape", [(8, 5), (7,)])
def test_a_mask_that_does_not_fit_is_the_documented_error(mask_shape):
    x, _ = padded_sequences()
    with pytest.raises(ValueError, match=r"`mask` must be of shape.*Received: mask of shape"):
        CovarianceRegularization(1.0).regularizer.penalty(
            ops.convert_to_tensor(x[:7] if mask_shape == (8, 5) else x[:, 0]),
            mask=ops.convert_to_tensor(np.ones(mask_shape, bool)))


def test_everything_masked_gives_zero():
    x, _ = padded_sequences()
    for cls in ALL:
        layer = cls(1.0)
        layer(x, mask=np.zeros((8, 6), bool))
        assert float(backend_utils.to_numpy(layer.losses[0])) == 0.0


@pytest.mark.parametrize("cls", ALL)
def test_config_round_trip_and_saved_model(cls, tmp_path):
    kwargs = {"reduction": "sum", "channel_axis": 1} if cls is ActivityL1Regularization else {
        "spatial_mode": "flatten", "channel_axis": 1, "synchronized": True}
    layer = cls(0.3, name="penalty", **kwargs)
    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    model = masked_lstm(cls(0.3, name="penalty"))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x, _ = padded_sequences()
    np.testing.assert_allclose(backend_utils.to_numpy(loaded(x)),
                               backend_utils.to_numpy(model(x)), rtol=1e-6)
    assert type(loaded.get_layer("penalty")) is cls


def test_exported_at_the_top_level():
    assert keras_covreg.CovarianceRegularization is CovarianceRegularization


def test_an_activity_regularizer_counts_masked_steps():
    # Pins the Keras behaviour that docs/known-limits.md states: Keras calls
    # an activity regularizer without the mask.
    x, mask = padded_sequences()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 3))
    lstm = keras.layers.LSTM(4, return_sequences=True, name="lstm",
                             activity_regularizer=CovarianceRegularizer(1.0))
    states = lstm(keras.layers.Masking(0.0)(inputs))
    model = keras.Model(inputs, states)
    h = backend_utils.to_numpy(model(x))
    np.testing.assert_allclose(backend_utils.to_numpy(model.losses[0]),
                               reference.l_sigma(reference.covariance(h.reshape(-1, 4))),
                               rtol=2e-5)
