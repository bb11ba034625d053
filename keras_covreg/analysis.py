"""Analysing a trained model: the covariance metrics of its layers, no training.

`analyze(model, data)` measures every layer of a model (or the ones named)
over probe data with `keras_covreg.measure` and returns, per layer, the
metrics the paper measures representations with and the units a penalty has
switched off (`metrics.switched_off_units`). ``keras-covreg analyze`` is the
same on a saved ``.keras`` file.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_covreg import _validation, metrics, probe
from keras_covreg.probe import DEFAULT_MAX_SAMPLES, LayerSpec

__all__ = ["LayerAnalysis", "analyze", "default_layers"]

# The most features a layer may have for `analyze` (its covariance is p x p
# float64: 128 MiB at 4,096, and one eigendecomposition of it about a second
# on 2 CPU cores).
DEFAULT_MAX_FEATURES = 4096


@dataclasses.dataclass(frozen=True)
class LayerAnalysis:
    """What `analyze` found in one layer's outputs.

    Attributes:
        name: the layer's name.
        covariance: float64 array of shape (p, p), p the layer's features
            (channels for feature maps with ``spatial_mode="channels"``);
            all NaN when `undefined` is set.
        n_samples: N, the observations the covariance is over.
        summary: `metrics.covariance_summary` of the covariance: ``l_sigma``,
            ``cvr``, ``mapc``, ``ud90_pca``, ``ud90_unit``,
            ``effective_rank``, ``participation_ratio`` (NaN when undefined).
        switched_off: indices of the units whose variance is below
            `threshold` x the largest unit variance, ascending (int64, shape
            (k,)); empty when the covariance is undefined.
        threshold: the relative variance threshold used.
        undefined: None, or why the covariance is undefined (see
            `keras_covreg.Measurement`).
    """

    name: str
    covariance: np.ndarray
    n_samples: int
    summary: dict[str, float]
    switched_off: np.ndarray
    threshold: float
    undefined: str | None = None

    @property
    def units(self) -> int:
        """p, the number of features (units or channels)."""
        return int(self.covariance.shape[0])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the summary, N, p, the switched-off indices and
        the unit variances (NaN written as None)."""
        def number(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {
            "layer": self.name, "units": self.units, "n_samples": self.n_samples,
            **{k: number(v) for k, v in self.summary.items()},
            "threshold": self.threshold,
            "switched_off": [int(i) for i in self.switched_off],
            "unit_variances": [number(v) for v in np.diag(self.covariance)],
            "undefined": self.undefined,
        }


def default_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers `analyze` measures when none are named.

    Every layer of `model` (its own, not those inside nested models) that is
    not an `InputLayer` and whose output is one floating tensor of rank >= 2.

    Raises:
        ValueError: for a model whose layers' outputs are unknown (a
            subclassed model): name the layers then.
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            output = layer.output
        except (AttributeError, ValueError) as e:
            raise ValueError(
                f"analyze: the outputs of the layers of model {model.name!r} "
                f"({type(model).__name__}) are not known before it runs (a "
                "subclassed model); name the layers to measure with `layers=`. "
                f"Received: layers=None ({type(e).__name__}: {e})"
            ) from e
        if isinstance(output, (list, tuple, dict)):
            continue
        if len(output.shape) >= 2 and "float" in keras.backend.standardize_dtype(output.dtype):
            found.append(layer)
    return found


def _features(layer: Any, spatial_mode: str) -> int | None:
    """The features p a layer's output has for the covariance, None if unknown."""
    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None
    if len(shape) < 2 or any(d is None for d in shape[1:]):
        return shape[-1] if len(shape) >= 2 and shape[-1] is not None else None
    if len(shape) > 2 and spatial_mode == "flatten":
        return int(np.prod(shape[1:]))
    return int(shape[-1])


def analyze(
    model: keras.Model,
    data: Any,
    *,
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    threshold: float = metrics.SWITCHED_OFF_FRACTION,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    batch_size: int | None = None,
    spatial_mode: str = "channels",
    channel_axis: int = -1,
    q: float = 0.9,
    max_features: int = DEFAULT_MAX_FEATURES,
) -> dict[str, LayerAnalysis]:
    """Measures layers of a trained model over probe data, without training it.

    Runs the probe data through the model once (`keras_covreg.measure`) and
    computes, per layer, the covariance C of its outputs, the metrics of
    `metrics.covariance_summary` (CVR, MAPC, UD_q on both bases, effective
    rank, participation ratio; Kagebaeck & Mogren, Section 2) and the units
    switched off: variance below `threshold` x the largest unit variance
    (`metrics.switched_off_units`). The model's weights and losses are not
    changed.

    Args:
        model: a Keras model, e.g. from `keras.saving.load_model`.
        data: the probe inputs, as for `keras_covreg.measure`: arrays, a tuple
            ``(x, ...)``, a `tf.data.Dataset` or a `keras.utils.PyDataset`.
        layers: the layers to measure (layers or names); None (default) for
            `default_layers`: every layer with one floating output of rank
            >= 2.
        threshold: the relative variance below which a unit counts as
            switched off, in [0, 1]. Defaults to 0.01.
        max_samples: the most samples read, >= 2. Defaults to 10,000.
        batch_size: batch size for array `data`; None for
            `keras_covreg.probe.auto_batch_size`.
        spatial_mode: ``"channels"`` (default) or ``"flatten"``, for outputs
            of rank > 2, as in `CovarianceRegularizer`.
        channel_axis: the channel axis for ``"channels"``. Defaults to -1.
        q: the variance fraction of UD_q, in (0, 1]. Defaults to 0.9.
        max_features: the most features p a layer may have (its covariance
            takes 8 p^2 bytes). Layers chosen by default that have more are
            left out with a warning; a named one raises. Defaults to 4,096.

    Returns:
        A dict from layer name to `LayerAnalysis`, in the model's layer order
        (or the order of `layers`).

    Raises:
        ValueError: for a bad argument, a layer not in the model or with
            more than `max_features` features, a model with no layer to
            measure, or `data` without samples.
        TypeError: for arguments of the wrong type.

    Warns:
        UserWarning: once per layer whose covariance is undefined (NaN or inf
            outputs, fewer than 2 observations), and for the layers chosen by
            default that are left out for their width.

    Examples:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((2,)),
        ...                           keras.layers.Dense(3, name="code")])
        >>> model.get_layer("code").set_weights(
        ...     [np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]]), np.zeros(3)])
        >>> x = np.random.default_rng(0).normal(size=(500, 2))
        >>> found = analyze(model, x)
        >>> found["code"].switched_off.tolist(), round(found["code"].summary["cvr"], 1)
        ([2], 1.0)
    """
    threshold = _validation.check_finite_nonnegative("threshold", threshold)
    if threshold > 1:
        raise ValueError(f"`threshold` must be in [0, 1]. Received: threshold={threshold!r}")
    _validation.check_fraction("q", q)
    _validation.check_int_in_range("max_features", max_features, 1, 2**31)
    _validation.check_choice("spatial_mode", spatial_mode, ("channels", "flatten"))
    if layers is None:
        chosen: Any = default_layers(model)
        wide = [(layer.name, _features(layer, spatial_mode)) for layer in chosen
                if (_features(layer, spatial_mode) or 0) > max_features]
        if wide:
            warnings.warn(
                f"analyze: left out layers wider than max_features={max_features}: "
                + ", ".join(f"{name!r} ({p:,} features)" for name, p in wide)
                + "; name them in `layers=` with a larger max_features to measure them.",
                stacklevel=2)
            chosen = [layer for layer in chosen if layer.name not in dict(wide)]
        if not chosen:
            raise ValueError(
                f"analyze: model {model.name!r} has no layer with a floating output "
                f"of rank >= 2 and at most {max_features} features to measure. "
                "Received: layers=None"
            )
    else:
        chosen = probe.resolve_layers(model, probe.layer_list(layers, "analyze"), "analyze")
        for layer in chosen:
            p = _features(layer, spatial_mode)
            if p is not None and p > max_features:
                raise ValueError(
                    f"analyze: layer {layer.name!r} has {p:,} features with spatial_mode="
                    f"{spatial_mode!r}, more than max_features={max_features} (its "
                    f"covariance would take {8 * p * p / 2**30:.1f} GiB); raise "
                    "max_features, or measure channels (spatial_mode='channels'). "
                    f"Received: layers including {layer.name!r}")
    found = probe.measure(model, data, chosen, max_samples=max_samples,
                          batch_size=batch_size, spatial_mode=spatial_mode,
                          channel_axis=channel_axis)
    result = {}
    for name, measured in found.items():
        off = (np.zeros(0, np.int64) if measured.undefined is not None
               else metrics.switched_off_units(measured.covariance, threshold=threshold))
        result[name] = LayerAnalysis(
            name=name, covariance=measured.covariance, n_samples=measured.n_samples,
            summary=measured.summary(q=q), switched_off=off, threshold=threshold,
            undefined=measured.undefined)
    return result
