"""A linear autoencoder trained with L_Sigma finds the data's 4 dimensions."""

import keras
import numpy as np
import pytest

from keras_covreg import CovarianceRegularizer, metrics

SOURCE_STDS = np.array([2.0, 1.5, 1.0, 0.75])  # 4 independent Gaussian sources


def projected_sources(seed, n=2000, dim=20):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, SOURCE_STDS.size)) * SOURCE_STDS
    omega = rng.normal(size=(SOURCE_STDS.size, dim)) / np.sqrt(SOURCE_STDS.size)
    return (z @ omega).astype("float32")


def train_code(strength, seed=0):
    x = projected_sources(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x.shape[1],))
    regularizer = CovarianceRegularizer(strength) if strength else None
    code = keras.layers.Dense(10, activity_regularizer=regularizer)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(x.shape[1])(code))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, x, batch_size=100, epochs=50, verbose=0)
    return keras.Model(inputs, code).predict(x, verbose=0)


@pytest.fixture(scope="module")
def codes():
    return {"none": train_code(0.0), "l_sigma": train_code(0.3)}


@pytest.mark.parametrize("basis", ["unit", "pca"])
def test_l_sigma_code_uses_about_four_dimensions(codes, basis):
    assert abs(metrics.utilized_dimensions(codes["l_sigma"], basis=basis) - 4) <= 1


def test_l_sigma_code_is_less_correlated(codes):
    with_penalty = metrics.covariance_variance_ratio(codes["l_sigma"])
    without = metrics.covariance_variance_ratio(codes["none"])
    assert with_penalty < without
    assert with_penalty < 2.0
