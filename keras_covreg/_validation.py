"""Argument checks shared by the metrics, the regularizers and the callback.

Every error names the argument, says what was expected and ends with
``Received: name=value``, the convention Keras itself follows.
"""

import math
import numbers

import numpy as np


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`, else raises `ValueError`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {sorted(choices)}. Received: {name}={value!r}"
        )
    return value


def check_finite_nonnegative(name, value):
    """Returns `value` as a float if it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number. Received: {name}={value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a finite number >= 0. Received: {name}={value!r}"
        )
    return value


def check_int_in_range(name, value, low, high):
    """Returns `value` if it is an integer with `low <= value <= high`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")
    if not low <= value <= high:
        raise ValueError(
            f"`{name}` must be in [{low}, {high}]. Received: {name}={value!r}"
        )
    return int(value)


def check_fraction(name, value):
    """Returns `value` as a float if it lies in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number. Received: {name}={value!r}")
    if not 0 < value <= 1:
        raise ValueError(f"`{name}` must be in (0, 1]. Received: {name}={value!r}")
    return float(value)


def as_activations(name, x, *, min_samples=2, check_finite=True):
    """Converts `x` to a float64 array of shape (n_samples, n_features).

    Args:
        check_finite: whether to scan `x` for NaN and inf here; a caller that
            detects them more cheaply afterwards (`raise_non_finite`) passes
            False.

    Raises:
        ValueError: if `x` is not 2-D, has fewer than `min_samples` rows, no
            columns, or holds NaN or inf.
        TypeError: if `x` is not numeric.
    """
    x = np.asarray(x)
    if x.dtype == object or not (
        np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)
    ):
        raise TypeError(
            f"`{name}` must be a numeric array. Received: {name} of dtype {x.dtype}"
        )
    if x.ndim != 2:
        raise ValueError(
            f"`{name}` must have shape (n_samples, n_features). "
            f"Received: {name} of shape {x.shape}"
        )
    if x.shape[0] < min_samples:
        raise ValueError(
            f"`{name}` needs at least {min_samples} samples to estimate a "
            f"covariance. Received: {name} of shape {x.shape}"
        )
    if x.shape[1] < 1:
        raise ValueError(
            f"`{name}` must have at least one feature. Received: {name} of shape "
            f"{x.shape}"
        )
    x = x.astype(np.float64, copy=False)
    if check_finite and not np.isfinite(x).all():
        raise_non_finite(name, x)
    return x


def raise_non_finite(name, x):
    """Raises the error for an array `x` that holds NaN or inf."""
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    raise ValueError(
        f"`{name}` must be finite; it holds {bad} NaN or inf values. "
        f"Received: {name} of shape {x.shape}"
    )


def as_covariance(name, c):
    """Converts `c` to a float64 symmetric matrix of shape (p, p).

    Raises:
        ValueError: if `c` is not square, not finite, not symmetric or has a
            negative diagonal.
    """
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
        raise ValueError(
            f"`{name}` must be a square matrix of shape (n_features, n_features). "
            f"Received: {name} of shape {c.shape}"
        )
    if not np.isfinite(c).all():
        raise ValueError(f"`{name}` must be finite. Received: {name} with NaN or inf")
    scale = max(float(np.max(np.abs(c))), np.finfo(np.float64).tiny)
    if np.max(np.abs(c - c.T)) > 1e-8 * scale:
        raise ValueError(
            f"`{name}` must be symmetric. Received: {name} with max |C - C^T| = "
            f"{np.max(np.abs(c - c.T)):.3g}"
        )
    if np.min(np.diag(c)) < -1e-12 * scale:
        raise ValueError(
            f"`{name}` must have a non-negative diagonal (variances). Received: "
            f"{name} with min diagonal {np.min(np.diag(c)):.3g}"
        )
    return c
