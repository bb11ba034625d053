"""Argument checks shared by the metrics, the regularizers and the callback.

Every error names the argument, says what was expected and ends with
``Received: name=value``, the convention Keras itself follows.
"""

import math
import numbers
from typing import Any

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


def check_channel_axis(channel_axis):
    """Returns `channel_axis` if it is an integer other than 0 (the batch axis).

    Whether it is an axis of the activations is known only once they are seen:
    `resolve_channel_axis` checks that.
    """
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(
            f"`channel_axis` must be an integer. Received: channel_axis={channel_axis!r}"
        )
    if channel_axis == 0:
        raise ValueError(
            "`channel_axis` cannot be the batch axis. Received: channel_axis=0"
        )
    return int(channel_axis)


def resolve_channel_axis(channel_axis, rank):
    """`channel_axis` as an index in [1, rank) of activations of rank `rank`.

    Raises:
        ValueError: if it is not an axis of such activations, or is the batch
            axis.
    """
    if not -rank <= channel_axis < rank:
        raise ValueError(
            f"`channel_axis` must be an axis of the activations, which have rank "
            f"{rank}. Received: channel_axis={channel_axis}"
        )
    axis = channel_axis % rank
    if axis == 0:
        raise ValueError(
            f"`channel_axis` cannot be the batch axis (activations of rank {rank}). "
            f"Received: channel_axis={channel_axis}"
        )
    return axis


def check_fraction(name: str, value: Any) -> float:
    """Returns `value` as a float if it lies in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number. Received: {name}={value!r}")
    if not 0 < float(value) <= 1:
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


def symmetry_tolerance(dtype):
    """Largest relative asymmetry ``max|C - C^T| / max|C|`` accepted for `dtype`.

    The square root of the dtype's machine epsilon: a covariance computed in
    float32 (by a framework, on a GPU, ...) can differ from its transpose by
    round-off that grows with the number of samples summed, typically 1e-6
    relative and far below sqrt(eps) = 3.5e-4; float64 gets 1.5e-8. A matrix
    that is truly asymmetric (1% apart, say) is refused at any precision.
    Integer and other dtypes are treated as float64.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    return float(np.sqrt(np.finfo(dtype).eps))


def as_covariance(name, c):
    """Converts `c` to a float64 symmetric matrix of shape (p, p).

    Round-off asymmetry within `symmetry_tolerance` of `c`'s own dtype is
    accepted and averaged away (``(C + C^T) / 2``).

    Raises:
        ValueError: if `c` is not square, not finite, not symmetric or has a
            negative diagonal.
    """
    c = np.asarray(c)
    source_dtype = c.dtype
    c = c.astype(np.float64, copy=False)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
        raise ValueError(
            f"`{name}` must be a square matrix of shape (n_features, n_features). "
            f"Received: {name} of shape {c.shape}"
        )
    if not np.isfinite(c).all():
        raise ValueError(f"`{name}` must be finite. Received: {name} with NaN or inf")
    scale = max(float(np.max(c)), -float(np.min(c)), np.finfo(np.float64).tiny)
    difference = np.subtract(c, c.T)
    asymmetry = float(np.max(np.abs(difference, out=difference)))
    tolerance = symmetry_tolerance(source_dtype)
    if asymmetry > tolerance * scale:
        raise ValueError(
            f"`{name}` must be symmetric (to {tolerance:.2g} of its largest "
            f"entry, for {np.dtype(source_dtype).name} input). Received: {name} "
            f"with max |C - C^T| = {asymmetry:.3g} and max |C| = {scale:.3g}"
        )
    if asymmetry > 0:
        c = np.add(c, c.T)
        c *= 0.5
    if np.min(np.diag(c)) < -1e-12 * scale:
        raise ValueError(
            f"`{name}` must have a non-negative diagonal (variances). Received: "
            f"{name} with min diagonal {np.min(np.diag(c)):.3g}"
        )
    return c
