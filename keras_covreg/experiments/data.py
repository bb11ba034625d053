"""Data for the paper's experiments: synthetic sources, XOR and CIFAR-10."""

import numpy as np

from keras_covreg import _validation

# Section 3.2 asks for a diagonal, non-degenerate source covariance without
# giving its values. Ours: standard deviations 2, 1.5, 1 and 0.75, distinct so
# that the principal components are well defined.
SOURCE_STDS = (2.0, 1.5, 1.0, 0.75)

XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float32")
XOR_TARGETS = np.array([[0], [1], [1], [0]], dtype="float32")


def projected_sources(n_samples, input_dim, *, seed, source_stds=SOURCE_STDS):
    """Independent Gaussian sources through a random linear projection.

    ``z ~ N(0, diag(source_stds)^2)`` and ``x = z Omega`` with ``Omega`` of
    shape (d, input_dim), entries N(0, 1/d), drawn from `seed`.

    Args:
        n_samples: number of samples.
        input_dim: dimension of the projected data, >= len(source_stds).
        seed: seed of both the sources and the projection.
        source_stds: standard deviations of the d sources.

    Returns:
        ``(x, z)``: float32 arrays of shape (n_samples, input_dim) and
        (n_samples, d).

    Example:
        >>> x, z = projected_sources(5, 20, seed=0)
        >>> x.shape, z.shape
        ((5, 20), (5, 4))
    """
    stds = np.asarray(source_stds, dtype=np.float64)
    _validation.check_int_in_range("n_samples", n_samples, 1, 2**31)
    _validation.check_int_in_range("input_dim", input_dim, stds.size, 2**31)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_samples, stds.size)) * stds
    omega = rng.normal(size=(stds.size, input_dim)) / np.sqrt(stds.size)
    return (z @ omega).astype("float32"), z.astype("float32")
