"""Data for the paper's experiments: synthetic sources, XOR and CIFAR-10."""

import os
import pickle

import numpy as np

from keras_covreg import _validation

# Section 3.2 asks for a diagonal, non-degenerate source covariance without
# giving its values. Ours: standard deviations 1.3, 1.2, 1.1 and 1.0, distinct
# so that the principal components are well defined, and close enough that the
# top three sources hold 81% of the variance: a perfect 4-dimensional code then
# has UD_90 = 4, the value the paper reports for L_Sigma.
SOURCE_STDS = (1.3, 1.2, 1.1, 1.0)

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

    Examples:
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


CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_IMAGE_BYTES = 32 * 32 * 3


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers only: a data file cannot run code.

    The python-version batches are dicts of bytes, lists and (in some copies)
    NumPy arrays; any other global is refused, as Keras's own reader does.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            import importlib

            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(
            f"CIFAR-10 batches hold only arrays and lists; refusing {module}.{name}"
        )


def _read_cifar_batch(path):
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"CIFAR-10 directory is missing {name!r}. Received: data_dir="
            f"{os.path.dirname(path)!r}"
        )
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one message
        raise ValueError(
            f"CIFAR-10 file {name!r} is not a readable python-version batch ({e}). "
            f"Received: data_dir={os.path.dirname(path)!r}"
        ) from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(
            f"CIFAR-10 file {name!r} has no b'data' and b'labels' entries. "
            f"Received: data_dir={os.path.dirname(path)!r}"
        )
    images = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != CIFAR10_IMAGE_BYTES \
            or labels.shape != (images.shape[0],):
        raise ValueError(
            f"CIFAR-10 file {name!r} holds data of shape {images.shape} and dtype "
            f"{images.dtype} with {labels.size} labels; expected uint8 rows of "
            f"{CIFAR10_IMAGE_BYTES} bytes, one label each. Received: data_dir="
            f"{os.path.dirname(path)!r}"
        )
    # Rows hold the R, G, then B planes, each 32 x 32 row-major.
    images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.uint8).reshape(-1, 1)


def load_cifar10(data_dir=None):
    """CIFAR-10 as ``(x_train, y_train), (x_test, y_test)``, uint8.

    Args:
        data_dir: a directory in the CIFAR-10 python-version layout
            (``data_batch_1`` .. ``data_batch_5``, ``test_batch``), read with a
            restricted unpickler and validated; None for
            ``keras.datasets.cifar10.load_data()`` (which downloads).

    Returns:
        x_train (50000, 32, 32, 3), y_train (50000, 1), x_test (10000, 32, 32,
        3) and y_test (10000, 1), all uint8.

    Raises:
        ValueError: naming the file when one is missing or malformed.
    """
    if data_dir is None:
        import keras

        return keras.datasets.cifar10.load_data()
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(
            f"`data_dir` must be a directory in the CIFAR-10 python-version layout. "
            f"Received: data_dir={data_dir!r}"
        )
    parts = [_read_cifar_batch(os.path.join(data_dir, name)) for name in CIFAR10_FILES]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]])
    return (x_train, y_train), parts[5]
