"""Measuring layers' activations: probe data -> forward passes -> covariances.

The measuring half of `CovarianceMonitor`, usable on its own:
`measure(model, data, layers)` runs the probe data through a model once and
returns, per layer, the exact streaming covariance of its outputs and the
number of observations N. `LayerProbe` is the reusable part the monitor
builds on (it keeps the compiled probe between measurements).

Data flows one way: batches of inputs -> the model's forward pass, with every
call of each watched layer recorded -> observations (rows) of shape
(N, features) -> `metrics.StreamingCovariance`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias

import keras
import numpy as np

from keras_covreg import _compat, _validation, metrics
from keras_covreg.regularizers import SPATIAL_MODES

__all__ = ["LayerProbe", "Measurement", "measure"]

# Why a layer's covariance can be undefined (all NaN), as said in warnings.
UNDEFINED_CAUSES = {
    "non_finite": "its activations hold NaN or inf; its metrics are NaN",
    "too_few": "fewer than 2 observations reached it; its metrics are NaN",
    "overflow": "the covariance of its activations overflows float64; its metrics are NaN",
}

# The most samples of `data` that `measure` reads when `max_samples` is not
# given: enough for sampling noise in CVR to stay small (about
# 1 + (p - 1) sqrt(2 / (pi N)) for uncorrelated units, so 1.7 for 84 units).
DEFAULT_MAX_SAMPLES = 10_000

# A layer, or the name of one.
LayerSpec: TypeAlias = "str | keras.layers.Layer"


@dataclasses.dataclass(frozen=True)
class Measurement:
    """The covariance of one layer's outputs over the probe data.

    Attributes:
        covariance: float64 array of shape (p, p), p the layer's features
            (channels with ``spatial_mode="channels"``); all NaN when
            `undefined` is set.
        n_samples: N, the number of observations accumulated (samples, or
            samples x positions for outputs of rank > 2).
        undefined: None, or why the covariance is undefined: ``"non_finite"``
            (NaN or inf activations), ``"too_few"`` (N < 2) or
            ``"overflow"`` (beyond float64).
        mean: float64 array of shape (p,), the mean of each feature over the
            same observations; all NaN when `undefined` is set. None when
            made without one.
    """

    covariance: np.ndarray
    n_samples: int
    undefined: str | None = None
    mean: np.ndarray | None = None

    def summary(self, *, d: int | None = None, q: float = 0.9) -> dict[str, float]:
        """`metrics.covariance_summary` of the covariance, NaN when undefined."""
        if self.undefined is not None:
            return dict.fromkeys(metrics.summary_names(q=q, with_tdv=d is not None), math.nan)
        return metrics.covariance_summary(self.covariance, d=d, q=q)


def measure(
    model: keras.Model,
    data: Any,
    layers: LayerSpec | Sequence[LayerSpec],
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    batch_size: int | None = None,
    spatial_mode: str = "channels",
    channel_axis: int = -1,
) -> dict[str, Measurement]:
    """Runs probe data through a model once and measures layers' outputs.

    Every call of a watched layer counts (a layer shared by two branches
    contributes both calls' outputs); masked time steps are left out where
    Keras attaches a mask; activity regularizers are skipped during the
    forward pass, so the model's losses and weights do not change. Works for
    functional, Sequential (with or without an `Input`) and subclassed
    models. The covariance is exact over all samples read (Chan et al.'s
    pairwise update in float64), with O(p^2) memory whatever N.

    Args:
        model: a Keras model.
        data: the probe inputs: an array (or a structure of arrays for several
            inputs), a tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``,
            a `tf.data.Dataset` or a `keras.utils.PyDataset`; only the inputs
            are used.
        layers: a layer, a layer name, or a list of them.
        max_samples: the most samples read, >= 2. Defaults to 10,000.
        batch_size: batch size for array `data`; None (default) for
            `auto_batch_size` of the inputs (1,024 samples of 32 x 32 x 3
            float32 images, 32 of 224 x 224 x 3).
        spatial_mode: for outputs of rank > 2: ``"channels"`` (channels are
            the features, every position an observation) or ``"flatten"``
            (each sample flattened), as in `CovarianceRegularizer`.
        channel_axis: the channel axis for ``"channels"``, an integer other
            than 0. Defaults to -1.

    Returns:
        A dict from layer name to `Measurement`, in the order of `layers`.

    Raises:
        ValueError: for a bad argument, a layer that is not in the model or
            not called by its forward pass, or `data` without samples.
        TypeError: for `data` or `layers` of the wrong type.

    Warns:
        UserWarning: once per layer when its covariance is undefined (NaN or
            inf activations, N < 2, overflow), or its mask cannot be applied.

    Examples:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((3,)),
        ...                           keras.layers.Dense(2, name="code")])
        >>> x = np.random.default_rng(0).normal(size=(100, 3))
        >>> found = measure(model, x, "code")
        >>> found["code"].n_samples, found["code"].covariance.shape
        (100, (2, 2))
    """
    _validation.check_int_in_range("max_samples", max_samples, 2, 2**62)
    if batch_size is not None:
        _validation.check_int_in_range("batch_size", batch_size, 1, 2**31)
    data = check_data(data)
    if data is None:
        raise TypeError("`data` must be arrays, a tf.data.Dataset or a "
                        "keras.utils.PyDataset. Received: data=None")
    probe = LayerProbe(model, layers, spatial_mode=spatial_mode, channel_axis=channel_axis,
                       owner="measure")
    found, _, seen = probe.run(capped(input_batches(data, batch_size), max_samples))
    if seen == 0:
        raise ValueError("measure: the probe data yielded no samples. "
                         f"Received: data of type {type(data).__name__}")
    return found


class LayerProbe:
    """Forward passes that record layers' outputs, and their covariances.

    The first batch runs the whole model and records every call of the
    watched layers. If each was called once, without a mask, and the model
    is functional, later batches run a functional probe from the inputs to
    the layers instead (the same outputs, without the layers after them).
    Both are direct calls, never `predict`: `predict` traces a new
    `tf.function` for every model, and a sweep of many runs would retrace.

    Args:
        model: the model.
        layers: a layer, a layer name, or a list of them.
        spatial_mode: ``"channels"`` or ``"flatten"``, for outputs of rank > 2.
        channel_axis: the channel axis for ``"channels"``.
        owner: the name errors and warnings start with.
        warn: ``warn(layer name, cause, message)``, called for every problem
            with a layer's data; by default a `UserWarning` once per layer and
            cause for this probe.

    Raises:
        ValueError, TypeError: for bad arguments, or layers not in `model`.
    """

    def __init__(
        self,
        model: keras.Model,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        spatial_mode: str = "channels",
        channel_axis: int = -1,
        owner: str = "LayerProbe",
        warn: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.model = model
        self.owner = owner
        self.spatial_mode = _validation.check_choice("spatial_mode", spatial_mode, SPATIAL_MODES)
        self.channel_axis = _validation.check_channel_axis(channel_axis)
        self.layers = resolve_layers(model, layer_list(layers, owner), owner)
        self._warned: set[tuple[str, str]] = set()
        self._warn = warn or self._warn_once
        self._functional: Any = None

    def _warn_once(self, layer: str, cause: str, message: str) -> None:
        if (layer, cause) not in self._warned:
            self._warned.add((layer, cause))
            warnings.warn(f"{self.owner}: layer '{layer}': {message}.", stacklevel=4)

    def run(self, batches: Iterable[Any], *, keep_samples: int = 0, sharded: bool = False
            ) -> tuple[dict[str, Measurement], dict[str, np.ndarray], int]:
        """Accumulates the covariance of each layer's outputs over `batches`.

        In a multi-process run (JAX's ``keras.distribution`` across processes)
        every process must call this with the same number of forward passes,
        in step (the forward passes and the gathering below are collectives).

        Args:
            batches: input batches (no targets).
            keep_samples: how many samples' vectors to keep per layer (the
                first ones; positions averaged for outputs of rank > 2 with
                ``"channels"``), e.g. for TensorBoard's Projector. In a
                multi-process run, from this process's batches.
            sharded: whether, in a multi-process run, each process's
                `batches` are its part of the probe data (as Keras splits
                validation data between processes): the statistics of all
                processes are then merged, so that every process returns the
                covariance of all of them. When False (default), the batches
                must be the same in every process; a process whose count or
                mean differs from the first process's gets a warning.

        Returns:
            ``(measurements, kept, samples)``: a `Measurement` per layer name,
            the kept vectors per layer name (shape (k, features)), and the
            number of input samples read.
        """
        accumulators = {layer.name: metrics.StreamingCovariance() for layer in self.layers}
        causes: dict[str, str | None] = {layer.name: None for layer in self.layers}
        kept: dict[str, list[np.ndarray]] = {layer.name: [] for layer in self.layers}
        seen = 0
        for x in batches:
            room = keep_samples - seen
            seen += batch_length(x)
            for layer, calls in zip(self.layers, self._forward(x)):
                name = layer.name
                if room > 0:
                    out, mask = calls[0]
                    kept[name].extend(self._sample_vectors(out, mask)[:room])
                for out, mask in calls:
                    if causes[name] is not None:
                        continue
                    h = self._as_observations(name, out, mask)
                    if not np.isfinite(h).all():
                        causes[name] = "non_finite"
                        continue
                    with np.errstate(over="ignore", invalid="ignore"):
                        accumulators[name].update(h)
        if _compat.processes()[1] > 1:
            if _compat.can_gather_across_processes():
                seen = self._across_processes(accumulators, causes, seen, sharded)
            elif sharded:
                raise ValueError(
                    f"{self.owner}: merging the processes' parts of the probe data is "
                    f"implemented for JAX's multi-process runtime only; on "
                    f"{keras.config.backend()} give every process the same `data`.")
        found = {}
        for name, acc in accumulators.items():
            cov, cause = _covariance_or_cause(acc, causes[name])
            if cause is not None:
                self._warn(name, cause, UNDEFINED_CAUSES[cause])
            mean = acc.mean if cause is None else np.full(cov.shape[0], np.nan)
            found[name] = Measurement(cov, int(acc.count), cause, mean)
        vectors = {name: np.asarray(rows, dtype=np.float64) for name, rows in kept.items()}
        return found, vectors, seen

    def _across_processes(self, accumulators: dict[str, metrics.StreamingCovariance],
                          causes: dict[str, str | None], seen: int, sharded: bool) -> int:
        """Merges (or checks) the processes' statistics; returns the samples seen.

        Per layer one array goes to every process: the count, whether the
        activations were finite, the mean and M2 (Chan et al.'s merge).
        """
        for layer in self.layers:
            name, acc = layer.name, accumulators[layer.name]
            # The width first: a process that no batch reached does not know
            # it, and every process must send arrays of one shape.
            p = int(_compat.process_allgather(np.array([acc.n_features or 0])).max())
            count, mean, m2 = acc.state() if acc.n_features else (0, np.zeros(p),
                                                                  np.zeros((p, p)))
            packed = np.concatenate([[count, causes[name] is None], mean, m2.ravel()])
            rows = _compat.process_allgather(packed)
            if not sharded:
                same = np.allclose(rows[:, :2 + p], rows[:1, :2 + p], rtol=1e-6, atol=0)
                if not same:
                    self._warn(name, "processes", (
                        "the probe data differs between processes (counts "
                        f"{rows[:, 0].astype(int).tolist()}), so each process measured its "
                        "own; give every process the same data"))
                continue
            if not rows[:, 1].all() and causes[name] is None:
                causes[name] = "non_finite"
            merged = metrics.StreamingCovariance(p)
            for row in rows:
                merged.merge(metrics.StreamingCovariance.from_state(
                    int(row[0]), row[2 : 2 + p], row[2 + p :]))
            accumulators[name] = merged
        if sharded:
            seen = int(_compat.process_allgather(np.array([seen])).sum())
        return seen

    # -- forward passes ----------------------------------------------------

    def _forward(self, x: Any) -> list[list[tuple[np.ndarray, np.ndarray | None]]]:
        """Per watched layer, the list of (output, mask) of each of its calls."""
        with _activity_regularizers_off(self.model), warnings.catch_warnings():
            # Keras (torch backend) warns when a functional model with one
            # input is called on a bare tensor; the call is right.
            warnings.filterwarnings(
                "ignore", message="The structure of `inputs` doesn't match")
            if isinstance(self._functional, keras.Model):
                outputs = self._functional(x, training=False)
                if not isinstance(outputs, (list, tuple)):
                    outputs = [outputs]
                return [[(keras.ops.convert_to_numpy(o), None)] for o in outputs]
            calls = self._capture(x)
            if self._functional is None:
                self._functional = self._make_probe(calls)
            return calls

    def _make_probe(self, calls: list[list[tuple[Any, Any]]]) -> Any:
        """A functional model from the inputs to the watched layers, or False."""
        if any(len(c) != 1 or c[0][1] is not None for c in calls):
            return False
        try:
            return keras.Model(self.model.inputs, [layer.output for layer in self.layers])
        except (AttributeError, ValueError, TypeError):
            return False  # subclassed, or a layer of a nested model

    def _capture(self, x: Any) -> list[list[tuple[np.ndarray, np.ndarray | None]]]:
        """Runs the model on `x` and records every call of the watched layers."""
        captured: dict[str, list[Any]] = {layer.name: [] for layer in self.layers}
        if not self.model.built:
            # A Sequential model without an Input builds on its first call,
            # through symbolic calls of its layers: none may be recorded.
            self.model(x, training=False)
        with contextlib.ExitStack() as stack:
            for layer in self.layers:
                stack.enter_context(_recording(layer, captured[layer.name]))
            self.model(x, training=False)
        missing = [name for name, outs in captured.items() if not outs]
        if missing:
            raise ValueError(
                f"{self.owner}: layers {missing} were not called by the "
                "model's forward pass."
            )
        # Keras attaches the output mask after `call` returns.
        return [
            [(keras.ops.convert_to_numpy(out), _mask_as_numpy(out))
             for out in captured[layer.name]]
            for layer in self.layers
        ]

    # -- observations ------------------------------------------------------

    def _sample_vectors(self, out: Any, mask: Any) -> np.ndarray:
        """One vector per sample: positions averaged (unmasked ones)."""
        out = np.asarray(out, dtype=np.float64)
        if out.ndim == 2:
            return out
        if self.spatial_mode == "flatten":
            return out.reshape(out.shape[0], -1)
        axis = _validation.resolve_channel_axis(self.channel_axis, out.ndim)
        out = np.moveaxis(out, axis, -1).reshape(out.shape[0], -1, out.shape[axis])
        weights = np.ones(out.shape[:2])
        if mask is not None and np.shape(mask) == out.shape[:2]:
            weights = np.asarray(mask, dtype=np.float64)
        counts = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        return np.einsum("np,npc->nc", weights, out) / counts

    def _as_observations(self, name: str, out: Any, mask: Any) -> np.ndarray:
        """A layer's output (and its mask) as float64 (observations, features)."""
        out = np.asarray(out, dtype=np.float64)
        if out.ndim < 2:
            raise ValueError(
                f"{self.owner} needs layer outputs of rank >= 2. "
                f"Received: output of shape {out.shape} from layer '{name}'"
            )
        channels = out.ndim > 2 and self.spatial_mode == "channels"
        if channels:
            axis = _validation.resolve_channel_axis(self.channel_axis, out.ndim)
            out = np.moveaxis(out, axis, -1)
        mask = None if mask is None else np.asarray(mask, dtype=bool)
        fits = mask is None or mask.shape == out.shape[:1] or (
            channels and mask.shape == out.shape[:-1])
        if not fits:
            self._warn(name, "mask", (
                f"its output mask of shape {mask.shape} cannot be applied to "
                f"outputs of shape {out.shape} (channels last) with spatial_mode="
                f"{self.spatial_mode!r}; masked steps are included"))
            mask = None
        if channels:
            if mask is not None:
                if mask.ndim == 1:
                    mask = np.broadcast_to(
                        mask.reshape((-1,) + (1,) * (out.ndim - 2)), out.shape[:-1])
                return out[mask]
            return out.reshape(-1, out.shape[-1])
        out = out.reshape(out.shape[0], -1)
        return out if mask is None else out[mask]


# -- probe data -------------------------------------------------------------


def check_data(data: Any) -> Any:
    """Rejects empty or untyped array data early; other sources at first use."""
    if data is None or isinstance(data, keras.utils.PyDataset):
        return data
    if hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset
        return data
    x = inputs_of(data)
    leaves = keras.tree.flatten(x)
    if not leaves or any(not hasattr(a, "shape") or len(a.shape) == 0 for a in leaves):
        raise TypeError(
            "`data` must be arrays, a tf.data.Dataset or a keras.utils.PyDataset. "
            f"Received: data of type {type(data).__name__}"
        )
    if batch_length(x) == 0:
        raise ValueError(
            f"`data` holds no samples. Received: data with shape {leaves[0].shape}"
        )
    return data


# The bounds and the input bytes per batch of `auto_batch_size`.
MIN_AUTO_BATCH = 32
MAX_AUTO_BATCH = 1024
AUTO_BATCH_BYTES = 16 * 2**20


def auto_batch_size(x: Any) -> int:
    """A probe batch size for the arrays `x`: 16 MiB of inputs, in [32, 1024].

    Large batches make the forward pass and the covariance products faster
    (on 2 CPU cores, 10,000 samples through a 3072-1024 dense layer took 0.81
    s in batches of 250 and 0.49 s in batches of 1,000); the input size
    bounds the memory a batch takes in layers that keep it (a batch of 32
    224 x 224 x 3 images is 19 MB). Keras's own `predict` uses 32.
    """
    per_sample = sum(int(np.prod(np.shape(a)[1:])) * np.asarray(a[:1]).itemsize
                     for a in keras.tree.flatten(x))
    fits = AUTO_BATCH_BYTES // max(per_sample, 1)
    return int(min(max(fits, MIN_AUTO_BATCH), MAX_AUTO_BATCH))


def input_batches(data: Any, batch_size: int | None) -> Iterator[Any]:
    """The input batches of `data` (arrays cut into `batch_size` rows).

    Datasets keep their own batches; None sizes array batches by
    `auto_batch_size`.
    """
    if isinstance(data, keras.utils.PyDataset):
        for i in range(len(data)):
            yield inputs_of(data[i])
    elif hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset
        yield from (inputs_of(b) for b in data.as_numpy_iterator())
    else:
        x = inputs_of(data)
        if batch_size is None:
            batch_size = auto_batch_size(x)
        for start in range(0, batch_length(x), batch_size):
            yield keras.tree.map_structure(lambda a, s=start: a[s : s + batch_size], x)


def capped(batches: Iterable[Any], max_samples: float) -> Iterator[Any]:
    """Yields `batches`, the last one cut, so that they total at most `max_samples`."""
    remaining = max_samples
    for x in batches:
        n = batch_length(x)
        if n >= remaining:
            yield keras.tree.map_structure(lambda a, n=int(remaining): a[:n], x)
            return
        remaining -= n
        yield x


def inputs_of(batch: Any) -> Any:
    """The inputs of an (x,), (x, y) or (x, y, w) tuple, or the batch itself."""
    if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
        return batch[0]
    return batch


def batch_length(x: Any) -> int:
    """The number of samples in a batch of inputs."""
    return int(keras.tree.flatten(x)[0].shape[0])


# -- layers -----------------------------------------------------------------


def layer_list(layers: Any, owner: str) -> list[LayerSpec]:
    """`layers` as a non-empty list of layers and layer names."""
    specs = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not specs:
        raise ValueError(
            f"{owner} needs at least one layer to watch. Received: layers={layers!r}"
        )
    for spec in specs:
        if not isinstance(spec, (str, keras.layers.Layer)):
            raise TypeError(
                f"`layers` must hold layers or layer names. Received: layers={layers!r}"
            )
    return specs


def resolve_layers(model: keras.Model, specs: Sequence[LayerSpec],
                   owner: str) -> list[keras.layers.Layer]:
    """The layers of `model` (nested models searched) that `specs` name."""
    all_layers = list(_compat.nested_layers(model))
    resolved = []
    for spec in specs:
        if isinstance(spec, str):
            matches = [layer for layer in all_layers if layer.name == spec]
            if not matches:
                names = sorted({layer.name for layer in all_layers})
                raise ValueError(
                    f"{owner}: no layer named {spec!r} in model {model.name!r} (its "
                    f"layers: {names}). Received: layers={spec!r}"
                )
            resolved.append(matches[0])
        elif any(layer is spec for layer in all_layers):
            resolved.append(spec)
        else:
            raise ValueError(
                f"{owner}: layer {spec.name!r} is not part of model {model.name!r}. "
                f"Received: layers={spec!r}"
            )
    names = [layer.name for layer in resolved]
    if len(set(names)) != len(names):
        raise ValueError(
            f"{owner}: each layer may be watched once. Received: layers={names}"
        )
    return resolved


def _covariance_or_cause(acc: metrics.StreamingCovariance,
                         cause: str | None) -> tuple[np.ndarray, str | None]:
    """The accumulated covariance, or a NaN matrix and why it is undefined."""
    p = acc.n_features or 1
    if cause is None and acc.count < 2:
        cause = "too_few"
    if cause is None:
        cov = acc.covariance()
        if np.isfinite(cov).all():
            return cov, None
        cause = "overflow"
    return np.full((p, p), np.nan), cause


def _mask_as_numpy(tensor: Any) -> np.ndarray | None:
    mask = _compat.keras_mask(tensor)
    return None if mask is None else keras.ops.convert_to_numpy(mask)


@contextlib.contextmanager
def _activity_regularizers_off(model: keras.Model) -> Iterator[None]:
    """Skips activity penalties in the probe's forward pass (wasted work)."""
    saved = [
        (layer, layer.activity_regularizer)
        for layer in _compat.nested_layers(model)
        if getattr(layer, "activity_regularizer", None) is not None
    ]
    for layer, _ in saved:
        layer.activity_regularizer = None
    try:
        yield
    finally:
        for layer, regularizer in saved:
            layer.activity_regularizer = regularizer


@contextlib.contextmanager
def _recording(layer: keras.layers.Layer, captured: list[Any]) -> Iterator[None]:
    """Temporarily wraps `layer.call` to append every output to `captured`."""
    original = layer.call

    def call(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        captured.append(out)
        return out

    object.__setattr__(layer, "call", call)
    try:
        yield
    finally:
        object.__delattr__(layer, "call")
