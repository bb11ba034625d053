"""Removing the units a penalty has switched off: a smaller model, same outputs.

`prune_units(model, data, layers=...)` finds, in each named `Dense` or
`Conv1D`/`Conv2D`/`Conv3D` layer, the units (filters) whose variance over
`data` is below a threshold (`metrics.switched_off_units`), removes them from
the layer's kernel and bias and from the input weights of every layer that
reads them, and folds each removed unit's mean into those consumers' biases:
the outputs change only by what the removed units still varied, and a unit
that outputs a constant is removed exactly.

Between a pruned layer and its consumers (`Dense`, or a convolution with
``padding="valid"``) may stand layers that act on each unit alone:
activations (`Activation`, `ReLU`, `LeakyReLU`, `ELU`), `Dropout` and the
noise layers, `BatchNormalization` over the last axis (its per-unit
parameters are sliced), pooling (local or global), `Flatten` (the flattened
indices are mapped) and keras_covreg's penalty layers. Anything else that
reads the units (`Add`, `Concatenate`, `Reshape`, a model output, a layer
called twice, a subclassed model) is refused with an error naming it: never a
silently wrong model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_covreg import _validation, metrics, probe
from keras_covreg.probe import DEFAULT_MAX_SAMPLES, LayerSpec

__all__ = ["CompressReport", "PruneReport", "compress_principal", "prune_units"]

PRUNABLE = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)

# Layers that act on each unit alone, with no weights per unit.
_ELEMENTWISE = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
    keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
    keras.layers.AlphaDropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D, keras.layers.Identity,
    keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)
_GLOBAL_POOLING = (
    keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D,
)


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What `prune_units` removed and what it changed.

    Attributes:
        removed: per pruned layer, the indices of the removed units
            (filters), ascending.
        kept: per pruned layer, the number of units left.
        parameters_before: the model's parameter count before.
        parameters_after: the pruned model's parameter count.
        max_abs_change: the largest absolute change of any model output over
            `data`, in the outputs' units.
        max_rel_change: `max_abs_change` over the largest absolute output of
            the original model on `data`.
        threshold: the relative variance threshold used.
    """

    removed: dict[str, list[int]]
    kept: dict[str, int]
    parameters_before: int
    parameters_after: int
    max_abs_change: float
    max_rel_change: float
    threshold: float

    def __str__(self) -> str:
        lines = [f"{name}: removed {len(ids)} of {len(ids) + self.kept[name]} units"
                 + (f" ({', '.join(map(str, ids[:20]))}{', ...' if len(ids) > 20 else ''})"
                    if ids else "")
                 for name, ids in self.removed.items()]
        lines.append(f"parameters: {self.parameters_before:,} -> {self.parameters_after:,}")
        lines.append(f"largest output change on the data: {self.max_abs_change:.3g} "
                     f"({self.max_rel_change:.3g} of the largest output)")
        return "\n".join(lines)


@dataclasses.dataclass
class _Consumer:
    """A layer whose input weights read pruned units."""

    layer: Any
    feeds: Any  # the layer whose output the consumer reads (for its mean)
    kept: np.ndarray  # indices of the consumer's input features that stay
    removed: np.ndarray  # ... and that go


def _outbound(layer: Any) -> list[Any]:
    return [node.operation for node in layer._outbound_nodes]


def _is_output(model: Any, layer: Any) -> bool:
    return any(t is o for t in keras.tree.flatten(layer.output)
               for o in keras.tree.flatten(model.outputs))


def _refuse(layer: Any, pruned: str, why: str) -> ValueError:
    return ValueError(
        f"prune_units: layer {layer.name!r} ({type(layer).__name__}) reads the units of "
        f"{pruned!r} and {why}. Received: layers including {pruned!r}")


def _walk(model: Any, start: Any, features: int, kept: np.ndarray,
          pruned: str) -> tuple[list[Any], list[_Consumer]]:
    """Follows `start`'s units to the layers that read them.

    Returns the pass-through layers on the way (to slice, e.g. batch
    normalization) and the consumers whose input weights change.
    """
    passing: list[Any] = []
    consumers: list[_Consumer] = []
    todo = [(start, features, kept)]
    while todo:
        layer, features, kept = todo.pop()
        if _is_output(model, layer):
            if layer.name == pruned:
                raise ValueError(
                    f"prune_units: the output of layer {pruned!r} is an output of the "
                    "model, whose size would change. Received: layers including "
                    f"{pruned!r}")
            raise _refuse(layer, pruned, "its output is an output of the model, whose "
                          "size would change")
        removed = np.setdiff1d(np.arange(features), kept)
        for after in _outbound(layer):
            if len(after._inbound_nodes) != 1:
                raise _refuse(after, pruned, "is called more than once")
            if isinstance(after, keras.layers.Dense):
                consumers.append(_Consumer(after, layer, kept, removed))
            elif isinstance(after, (keras.layers.Conv1D, keras.layers.Conv2D,
                                    keras.layers.Conv3D)):
                config = after.get_config()
                if config.get("padding") != "valid" or config.get("groups", 1) != 1 or \
                        config.get("data_format") == "channels_first":
                    raise _refuse(after, pruned, (
                        "is a convolution with padding="
                        f"{config.get('padding')!r}, groups={config.get('groups', 1)} and "
                        f"data_format={config.get('data_format')!r}: only padding='valid', "
                        "groups=1, channels_last take a removed channel's mean into the bias "
                        "exactly"))
                consumers.append(_Consumer(after, layer, kept, removed))
            elif isinstance(after, keras.layers.BatchNormalization):
                if after.axis not in (-1, len(after.input.shape) - 1):
                    raise _refuse(after, pruned, f"normalizes axis {after.axis}, not the units'")
                passing.append((after, kept))
                todo.append((after, features, kept))
            elif isinstance(after, _ELEMENTWISE + _GLOBAL_POOLING) or _is_penalty_layer(after):
                if getattr(after, "data_format", "channels_last") == "channels_first":
                    raise _refuse(after, pruned, "has data_format='channels_first'")
                todo.append((after, features, kept))
            elif isinstance(after, keras.layers.Flatten):
                positions = int(np.prod(after.input.shape[1:-1]))
                flat = (np.arange(positions)[:, None] * features + kept[None, :]).ravel()
                todo.append((after, positions * features, np.sort(flat)))
            else:
                raise _refuse(after, pruned, "is not a layer prune_units can see through "
                              "(Dense, valid convolutions, elementwise layers, batch "
                              "normalization, pooling, Flatten)")
    return passing, consumers


def _is_penalty_layer(layer: Any) -> bool:
    from keras_covreg.layers import _PenaltyLayer

    return isinstance(layer, _PenaltyLayer)


def prune_units(
    model: keras.Model,
    data: Any,
    *,
    layers: LayerSpec | Sequence[LayerSpec],
    threshold: float = metrics.SWITCHED_OFF_FRACTION,
    max_output_change: float | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    batch_size: int | None = None,
) -> tuple[keras.Model, PruneReport]:
    """A copy of `model` without the switched-off units of `layers`.

    A unit (a filter, for a convolution) is switched off when its variance
    over `data` is below `threshold` x the largest unit variance of its layer
    (`metrics.switched_off_units`; the paper's units that L_Sigma "switches
    off", Kagebaeck & Mogren, Sections 1 and 3.3). It is removed from the
    layer's kernel and bias and from the input weights of each consumer, and
    its mean over `data` (after the layers between, e.g. its activation) is
    added to the consumers' biases through their weights: for a `Dense`
    consumer with kernel W and bias b, ``b' = b + sum_{i removed} m_i W[i]``.
    So the outputs change only by what the removed units still varied.

    Args:
        model: a functional or Sequential Keras model.
        data: probe inputs, as for `keras_covreg.measure`; the variances,
            means and output change are measured over them.
        layers: the `Dense` or `Conv1D`/`Conv2D`/`Conv3D` layers to prune
            (layers or names).
        threshold: the relative variance threshold, in [0, 1]. Defaults to
            0.01.
        max_output_change: if given, the largest absolute change of any model
            output over `data` that is accepted; a larger one raises instead
            of returning a model.
        max_samples: the most samples of `data` read. Defaults to 10,000.
        batch_size: batch size for array `data`; None for
            `keras_covreg.probe.auto_batch_size`.

    Returns:
        ``(pruned model, PruneReport)``. The pruned model is a new, uncompiled
        Keras model with the same layer names; `model` is not changed.

    Raises:
        ValueError: for a layer that cannot be pruned or a reader of its units
            that is not supported (named in the message), for bad arguments,
            or when the outputs change by more than `max_output_change`.
        TypeError: for arguments of the wrong type.

    Examples:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((3,)),
        ...     keras.layers.Dense(4, activation="tanh", name="code"),
        ...     keras.layers.Dense(2, name="out")])
        >>> kernel, bias = model.get_layer("code").get_weights()
        >>> kernel[:, 2] = 0.0  # unit 2 outputs tanh(bias[2]) for every input
        >>> model.get_layer("code").set_weights([kernel, bias])
        >>> x = np.random.default_rng(0).normal(size=(200, 3)).astype("float32")
        >>> smaller, report = prune_units(model, x, layers="code")
        >>> report.removed, smaller.get_layer("code").units
        ({'code': [2]}, 3)
        >>> report.max_abs_change < 1e-5
        True
    """
    threshold = _validation.check_finite_nonnegative("threshold", threshold)
    if threshold > 1:
        raise ValueError(f"`threshold` must be in [0, 1]. Received: threshold={threshold!r}")
    if max_output_change is not None:
        max_output_change = _validation.check_finite_nonnegative(
            "max_output_change", max_output_change)
    if not isinstance(model, keras.Sequential) and type(model).__name__ != "Functional":
        raise ValueError(
            f"prune_units: model {model.name!r} is a subclassed model "
            f"({type(model).__name__}), whose layers' connections are not known; only "
            "functional and Sequential models can be pruned.")
    if not model.built:
        raise ValueError(f"prune_units: model {model.name!r} is not built; build it (or "
                         "give it an Input) first.")
    targets = probe.resolve_layers(model, probe.layer_list(layers, "prune_units"),
                                   "prune_units")
    top = {id(layer) for layer in model.layers}
    for layer in targets:
        if not isinstance(layer, PRUNABLE):
            raise ValueError(
                f"prune_units: layer {layer.name!r} is a {type(layer).__name__}; only Dense "
                f"and Conv1D/2D/3D layers can be pruned. Received: layers including "
                f"{layer.name!r}")
        if id(layer) not in top or len(layer._inbound_nodes) != 1:
            raise ValueError(
                f"prune_units: layer {layer.name!r} must be a layer of the model itself "
                "(not of a nested model), called once. Received: layers including "
                f"{layer.name!r}")
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            raise ValueError(f"prune_units: layer {layer.name!r} has data_format="
                             "'channels_first'; only channels_last is supported.")

    found = probe.measure(model, data, targets, max_samples=max_samples,
                          batch_size=batch_size)
    plans = {}
    for layer in targets:
        measured = found[layer.name]
        if measured.undefined is not None:
            raise ValueError(f"prune_units: the covariance of layer {layer.name!r} is "
                             f"undefined ({measured.undefined}) on this data.")
        p = measured.covariance.shape[0]
        removed = metrics.switched_off_units(measured.covariance, threshold=threshold)
        if len(removed) == p:
            raise ValueError(
                f"prune_units: every unit of layer {layer.name!r} is switched off on this "
                f"data (threshold={threshold:g}); a layer needs at least one unit.")
        kept = np.setdiff1d(np.arange(p), removed)
        passing, consumers = _walk(model, layer, p, kept, layer.name)
        plans[layer.name] = (layer, kept, removed, passing, consumers)

    # The mean of every consumer's input features, for the biases.
    feeds = {c.feeds.name: c.feeds for plan in plans.values() for c in plan[4]}
    means = {name: np.asarray(m.mean) for name, m in probe.measure(
        model, data, list(feeds.values()), max_samples=max_samples, batch_size=batch_size,
        spatial_mode="channels").items()} if feeds else {}

    weights = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}
    configs = {layer.name: layer.get_config() for layer in model.layers}
    for layer, kept, removed, passing, consumers in plans.values():
        w = weights[layer.name]
        w[0] = w[0][..., kept]
        if layer.use_bias:
            w[1] = w[1][kept]
        key = "units" if isinstance(layer, keras.layers.Dense) else "filters"
        configs[layer.name][key] = len(kept)
        for norm, k in passing:
            weights[norm.name] = [v[k] for v in weights[norm.name]]
        for c in consumers:
            mean = means[c.feeds.name]
            if not np.isfinite(mean[c.removed]).all():
                raise ValueError(
                    f"prune_units: the mean of the input of layer {c.layer.name!r} is not "
                    f"finite on this data (the outputs of {c.feeds.name!r} hold NaN or "
                    "inf), so the removed units cannot be taken into its bias.")
            _fold(c, weights, configs, mean)

    smaller = _rebuilt(model, configs, weights)
    change, largest = _output_change(model, smaller, data, batch_size, max_samples)
    report = PruneReport(
        removed={name: plan[2].tolist() for name, plan in plans.items()},
        kept={name: len(plan[1]) for name, plan in plans.items()},
        parameters_before=int(model.count_params()),
        parameters_after=int(smaller.count_params()),
        max_abs_change=change, max_rel_change=change / largest if largest > 0 else math.nan,
        threshold=threshold)
    if max_output_change is not None and change > max_output_change:
        raise ValueError(
            f"prune_units: removing the switched-off units changes the outputs by up to "
            f"{change:.3g}, more than max_output_change={max_output_change:g}; lower the "
            f"threshold (threshold={threshold:g}).")
    return smaller, report


def _rebuilt(model: Any, configs: dict[str, dict[str, Any]],
             weights: dict[str, list[np.ndarray]]) -> Any:
    """A clone of `model` with the given layer configs and weights."""
    def rebuilt(layer: Any) -> Any:
        return layer.__class__.from_config(configs[layer.name])

    smaller = keras.models.clone_model(model, clone_function=rebuilt)
    for layer in smaller.layers:
        if weights.get(layer.name):
            layer.set_weights(weights[layer.name])
    return smaller


def _output_change(model: Any, smaller: Any, data: Any, batch_size: int | None,
                   max_samples: int) -> tuple[float, float]:
    """The largest |output change| over `data`, and the largest |output| before."""
    change, largest = 0.0, 0.0
    for batch in probe.capped(probe.input_batches(probe.check_data(data), batch_size),
                              max_samples):
        before = keras.tree.flatten(model(batch, training=False))
        after = keras.tree.flatten(smaller(batch, training=False))
        for a, b in zip(after, before):
            a = keras.ops.convert_to_numpy(a).astype(np.float64)
            b = keras.ops.convert_to_numpy(b).astype(np.float64)
            change = max(change, float(np.max(np.abs(a - b))))
            largest = max(largest, float(np.max(np.abs(b))))
    return change, largest


def _fold(c: _Consumer, weights: dict[str, list[np.ndarray]],
          configs: dict[str, dict[str, Any]], mean: np.ndarray) -> None:
    """Cuts the consumer's input weights and adds the removed inputs' means to its bias."""
    w = weights[c.layer.name]
    kernel = w[0]
    # A Dense kernel is (features, units); a convolution's (*window, channels, filters).
    cut = np.take(kernel, c.removed, axis=-2)
    contribution = np.tensordot(mean[c.removed], cut.sum(axis=tuple(range(cut.ndim - 2))),
                                axes=1) if len(c.removed) else np.zeros(kernel.shape[-1])
    w[0] = np.take(kernel, c.kept, axis=-2)
    if configs[c.layer.name].get("use_bias", True):
        w[1] = (w[1] + contribution).astype(w[1].dtype)
    elif np.any(contribution != 0):
        configs[c.layer.name]["use_bias"] = True
        weights[c.layer.name] = [w[0], contribution.astype(w[0].dtype)]


# Layers that are the identity at inference: the rotation of
# `compress_principal` passes through them unchanged.
_IDENTITY_AT_INFERENCE = (
    keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
    keras.layers.AlphaDropout, keras.layers.Identity,
)


@dataclasses.dataclass(frozen=True)
class CompressReport:
    """What `compress_principal` kept and what it changed.

    Attributes:
        layer: the compressed layer's name.
        units_before: its width before.
        components: the principal components kept, its width after.
        variance_kept: the share of the layer's variance over `data` that
            those components hold, in [0, 1].
        parameters_before, parameters_after: the models' parameter counts.
        max_abs_change: the largest absolute change of any model output over
            `data`.
        max_rel_change: `max_abs_change` over the largest absolute output.
    """

    layer: str
    units_before: int
    components: int
    variance_kept: float
    parameters_before: int
    parameters_after: int
    max_abs_change: float
    max_rel_change: float

    def __str__(self) -> str:
        return (f"{self.layer}: {self.units_before} units -> {self.components} principal "
                f"components ({self.variance_kept:.4g} of the variance)\n"
                f"parameters: {self.parameters_before:,} -> {self.parameters_after:,}\n"
                f"largest output change on the data: {self.max_abs_change:.3g} "
                f"({self.max_rel_change:.3g} of the largest output)")


def compress_principal(
    model: keras.Model,
    data: Any,
    *,
    layer: LayerSpec,
    variance: float = 0.99,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    batch_size: int | None = None,
) -> tuple[keras.Model, CompressReport]:
    r"""A copy of `model` whose linear `Dense` layer keeps its principal components.

    The PCA-basis counterpart of `prune_units`: where UD_q on the PCA basis
    (Kagebaeck & Mogren, Section 3.1) counts the principal components that
    hold a share q of a layer's variance, this keeps the k smallest set of
    them that holds `variance`. With the layer's outputs $h = xW + b$ over
    `data`, of mean $\mu$ and covariance $C = V \Lambda V^	op$
    (eigenvalues descending), the layer becomes $h' = (h - \mu) V_k$, that
    is kernel $W V_k$ and bias $(b - \mu) V_k$, and each `Dense` reader with
    kernel $U$ and bias $c$ becomes kernel $V_k^	op U$ and bias $c + \mu U$:
    it reads $\mu + h' V_k^	op$, the projection of $h$ on the kept
    components. The outputs change only by what the dropped components
    varied.

    Args:
        model: a functional or Sequential Keras model.
        data: probe inputs, as for `keras_covreg.measure`.
        layer: a `Dense` layer with a linear activation (or its name), read
            only by `Dense` layers, directly or through layers that are the
            identity at inference (`Dropout`, the noise layers, `Identity`,
            keras_covreg's penalty layers).
        variance: the share of the variance to keep, in (0, 1]. Defaults to
            0.99.
        max_samples: the most samples of `data` read. Defaults to 10,000.
        batch_size: batch size for array `data`; None for
            `keras_covreg.probe.auto_batch_size`.

    Returns:
        ``(compressed model, CompressReport)``; `model` is not changed.

    Raises:
        ValueError: for a layer that is not a linear `Dense`, a reader other
            than those above (named), a bad argument, or a covariance that is
            undefined on `data`.

    Examples:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(5, name="code"), keras.layers.Dense(3, name="out")])
        >>> x = np.random.default_rng(0).normal(size=(300, 2)).astype("float32")
        >>> smaller, report = compress_principal(model, x, layer="code")
        >>> report.components, smaller.get_layer("code").units  # rank 2 of 5
        (2, 2)
        >>> report.max_rel_change < 1e-4
        True
    """
    fraction = _validation.check_fraction("variance", variance)
    if not isinstance(model, keras.Sequential) and type(model).__name__ != "Functional":
        raise ValueError(
            f"compress_principal: model {model.name!r} is a subclassed model "
            f"({type(model).__name__}); only functional and Sequential models can be "
            "compressed.")
    (target,) = probe.resolve_layers(model, probe.layer_list(layer, "compress_principal"),
                                     "compress_principal")
    activation = getattr(target, "activation", None)
    if not isinstance(target, keras.layers.Dense) or activation not in (
            None, keras.activations.linear):
        raise ValueError(
            f"compress_principal: layer {target.name!r} must be a Dense layer with a linear "
            f"activation (a rotation of its outputs must pass to its readers unchanged). "
            f"Received: layer={target.name!r} ({type(target).__name__}, activation="
            f"{getattr(activation, '__name__', activation)})")
    if id(target) not in {id(x) for x in model.layers} or len(target._inbound_nodes) != 1:
        raise ValueError(
            f"compress_principal: layer {target.name!r} must be a layer of the model itself, "
            f"called once. Received: layer={target.name!r}")
    readers = []
    todo = [target]
    while todo:
        current = todo.pop()
        if _is_output(model, current):
            raise _refuse(current, target.name, "its output is an output of the model, "
                          "whose size would change")
        for after in _outbound(current):
            if len(after._inbound_nodes) != 1:
                raise _refuse(after, target.name, "is called more than once")
            if isinstance(after, keras.layers.Dense):
                readers.append(after)
            elif isinstance(after, _IDENTITY_AT_INFERENCE) or _is_penalty_layer(after):
                todo.append(after)
            else:
                raise _refuse(after, target.name, "is not a Dense layer, or a layer that is "
                              "the identity at inference between the layer and a Dense one")
    measured = probe.measure(model, data, target, max_samples=max_samples,
                             batch_size=batch_size)[target.name]
    if measured.undefined is not None:
        raise ValueError(f"compress_principal: the covariance of layer {target.name!r} is "
                         f"undefined ({measured.undefined}) on this data.")
    eigenvalues, vectors = np.linalg.eigh(measured.covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = np.clip(eigenvalues[order], 0.0, None), vectors[:, order]
    total = float(eigenvalues.sum())
    if total > 0:
        share = np.cumsum(eigenvalues) / total
        k = int(np.searchsorted(share, fraction * (1 - 1e-12)) + 1)
    else:
        k = 1
    k = min(k, len(eigenvalues))
    v = vectors[:, :k]
    mean = np.asarray(measured.mean, np.float64)
    weights = {x.name: [np.array(w) for w in x.get_weights()] for x in model.layers}
    configs = {x.name: x.get_config() for x in model.layers}
    w = weights[target.name]
    bias = w[1].astype(np.float64) if target.use_bias else np.zeros(w[0].shape[-1])
    weights[target.name] = [(w[0].astype(np.float64) @ v).astype(w[0].dtype),
                            ((bias - mean) @ v).astype(w[0].dtype)]
    configs[target.name].update(units=k, use_bias=True)
    for reader in readers:
        u = weights[reader.name]
        c = u[1].astype(np.float64) if reader.use_bias else np.zeros(u[0].shape[-1])
        weights[reader.name] = [(v.T @ u[0].astype(np.float64)).astype(u[0].dtype),
                                (c + mean @ u[0].astype(np.float64)).astype(u[0].dtype)]
        configs[reader.name]["use_bias"] = True
    smaller = _rebuilt(model, configs, weights)
    change, largest = _output_change(model, smaller, data, batch_size, max_samples)
    return smaller, CompressReport(
        layer=target.name, units_before=len(eigenvalues), components=k,
        variance_kept=float(eigenvalues[:k].sum() / total) if total > 0 else math.nan,
        parameters_before=int(model.count_params()),
        parameters_after=int(smaller.count_params()),
        max_abs_change=change, max_rel_change=change / largest if largest > 0 else math.nan)
