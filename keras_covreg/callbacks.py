"""`CovarianceMonitor`: a callback that measures layers' activations each epoch.

Data flows one way: probe data -> model -> watched layers' activations ->
`StreamingCovariance` -> metrics -> TensorBoard event files and epoch logs.
"""

import contextlib
import itertools
import math
import os
import warnings

import keras
import numpy as np

from keras_covreg import _compat, _events, _validation, metrics
from keras_covreg.regularizers import SPATIAL_MODES

__all__ = ["CovarianceMonitor"]

# Step of the measurement taken before training: Keras's own TensorBoard
# callback writes the end of epoch e at step e, so "before epoch 0" is -1.
INITIAL_STEP = -1

# The most samples of `data` measured when `max_samples` is not given: enough
# for sampling noise in CVR to stay small (about 1 + (p - 1) sqrt(2 / (pi N))
# for uncorrelated units, so 1.7 for 84 units), and a few seconds per epoch.
DEFAULT_MAX_SAMPLES = 10_000


class CovarianceMonitor(keras.callbacks.Callback):
    """Writes how correlated and how many-dimensional layers' outputs are.

    Once before training and then every `freq` epochs, runs the probe data
    through the model, accumulates the exact covariance C of each watched
    layer's outputs over all probe samples (`StreamingCovariance`, batch by
    batch), and writes to TensorBoard, under ``<layer>/``:

    * scalars ``cvr``, ``mapc``, ``ud90_pca``, ``ud90_unit`` (for q = 0.9),
      ``l_sigma``, ``effective_rank``, ``participation_ratio``,
      ``n_samples`` and, when `true_dim` is given, ``tdv_pca`` and
      ``tdv_unit`` (see `keras_covreg.metrics`);
    * images ``covariance`` and ``correlation`` (heatmaps centred on zero) and
      ``spectrum`` (the sorted variances on both bases), the pictures of the
      paper's Figures 4 and 5;
    * a histogram ``unit_variance``.

    **Which samples.** With `data`, those samples (at most `max_samples`),
    every `freq` epochs. With ``data=None``, exactly the batches on which
    `fit` validates, on the epochs on which it validates (its
    ``validation_freq``), and of those every `freq`-th epoch: the monitor
    re-reads the validation arrays, `tf.data.Dataset` or `PyDataset` (and
    ``validation_split``) for the first ``validation_steps`` batches, and
    keeps a copy of the batches that Keras itself pulls from a Python
    generator, so it never takes a batch of a user's generator that Keras
    would not. The starting point is then measured at the first validation,
    on the same batches, with the weights saved before the first epoch.

    **Which observations.** Every call of a watched layer counts: a layer
    shared by several branches (called twice per forward pass) contributes the
    outputs of all its calls, as observations of the same units. Outputs of
    rank > 2 become observations as set by `spatial_mode`; where Keras
    attaches a mask to the output (after ``Masking`` or an ``Embedding`` with
    ``mask_zero=True``), masked time steps are left out (with
    ``spatial_mode="flatten"`` only a per-sample mask can be applied; a
    time-step mask is then ignored, with a warning).

    **Numbers that are undefined never stop training.** NaN or inf
    activations, fewer than 2 observations, a covariance that overflows
    float64, or activations for which a metric is undefined (every unit
    constant, a single varying unit) give NaN for the affected metrics and
    one warning per layer and cause.

    Event files go to ``log_dir/run``, the directory that
    ``keras.callbacks.TensorBoard(log_dir)`` uses for validation metrics, so
    both sit in one dashboard. The step is the epoch index, as Keras's own
    callback uses; the measurement before training is at step -1. The same
    scalars are added to the epoch `logs` as ``<log_prefix><layer>_<metric>``
    (e.g. ``val_code_cvr``), where `History`, `CSVLogger`, `EarlyStopping` and
    Keras's `TensorBoard` see them if they come after this callback in the
    list (lower is better for every metric but TdV: give ``mode="min"`` to
    `EarlyStopping`). The last measurement stays in `covariances`,
    `correlations` and `results`, dicts keyed by layer name. Event files are
    flushed after every measurement.

    Args:
        layers: the layers to watch: a `keras.layers.Layer`, a layer name, or
            a list of them.
        data: the probe inputs: an array (or a structure of arrays for several
            inputs), a tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``
            as for `validation_data`, a `tf.data.Dataset`, or a
            `keras.utils.PyDataset`. Only the inputs are used. When None
            (default), the validation data of `fit`, as described above.
        log_dir: the directory given to ``keras.callbacks.TensorBoard``.
        run: the subdirectory to write to. Defaults to ``"validation"``.
        freq: measure every `freq` epochs (counting epochs, not
            validations). Defaults to 1.
        max_samples: the most probe samples to use, >= 2. Defaults to None:
            every validation sample when ``data=None``, at most 10,000 of
            `data` otherwise.
        batch_size: batch size for array `data`. Defaults to 256.
        true_dim: the true dimension d of the data, for TdV; None to skip it.
        q: the variance fraction of UD. Defaults to 0.9.
        spatial_mode: for outputs of rank > 2, as in `CovarianceRegularizer`:
            ``"channels"`` or ``"flatten"``.
        channel_axis: the channel axis for ``"channels"``, an integer other
            than 0. Defaults to -1.
        images: whether to write the heatmaps and spectra. Defaults to True.
        log_prefix: prefix of the keys added to the epoch logs. Defaults to
            ``"val_"``.

    Raises:
        ValueError: at construction for a bad argument (no layers, empty data,
            `max_samples` < 2, ...); at `on_train_begin` for a layer that is
            not in the model; at the first measurement for probe `data` that
            yields no samples.

    Warns:
        UserWarning: when training ends and nothing was measured (``data=None``
            and `fit` never validated); when an ``activity_regularizer`` sits
            on a layer inside ``TimeDistributed``, which Keras never applies;
            once per layer and cause for undefined metrics.

    Example:
        >>> import numpy as np, keras, tempfile
        >>> model = keras.Sequential([keras.Input((3,)),
        ...                           keras.layers.Dense(4, name="code")])
        >>> model.compile("sgd", "mse")
        >>> x = np.random.default_rng(0).normal(size=(64, 3))
        >>> monitor = CovarianceMonitor("code", x, log_dir=tempfile.mkdtemp())
        >>> _ = model.fit(x, x[:, :1].repeat(4, 1), epochs=1, verbose=0,
        ...               callbacks=[monitor])
        >>> summary = monitor.results["code"]
        >>> summary["n_samples"]
        64.0
    """

    def __init__(
        self,
        layers,
        data=None,
        *,
        log_dir="logs",
        run="validation",
        freq=1,
        max_samples=None,
        batch_size=256,
        true_dim=None,
        q=0.9,
        spatial_mode="channels",
        channel_axis=-1,
        images=True,
        log_prefix="val_",
    ):
        super().__init__()
        self._layer_specs = _layer_list(layers)
        self.data = _check_data(data)
        self.log_dir = os.fspath(log_dir)
        self.run = run
        self.freq = _validation.check_int_in_range("freq", freq, 1, 2**31)
        if max_samples is not None:
            _validation.check_int_in_range("max_samples", max_samples, 2, 2**62)
        self.max_samples = max_samples
        self.batch_size = _validation.check_int_in_range(
            "batch_size", batch_size, 1, 2**31
        )
        if true_dim is not None:
            _validation.check_int_in_range("true_dim", true_dim, 1, 2**31)
        self.true_dim = true_dim
        self.q = _validation.check_fraction("q", q)
        self.spatial_mode = _validation.check_choice(
            "spatial_mode", spatial_mode, SPATIAL_MODES
        )
        self.channel_axis = _validation.check_channel_axis(channel_axis)
        self.images = bool(images)
        self.log_prefix = log_prefix
        self.covariances = {}
        self.correlations = {}
        self.results = {}
        self._layers = None
        self._probe = None
        self._writer = None
        self._warned = set()
        self._reset_fit_state()

    def _reset_fit_state(self):
        self._first_epoch_seen = False
        self._initial_weights = None
        self._in_epoch = False
        self._validated = False
        self._validation_steps = 0
        self._recorded = None
        self._recording = None
        self._measured = False

    # -- Keras hooks -------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._layers = self._resolve_layers()
        self._reset_fit_state()
        _warn_about_wrapped_regularizers(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._in_epoch = True
        self._validated = False
        if self._first_epoch_seen:
            return
        self._first_epoch_seen = True
        if epoch != 0:  # resumed (BackupAndRestore, initial_epoch)
            return
        if not self.model.built:
            warnings.warn(
                "CovarianceMonitor: the model is not built before training (a "
                "Sequential model without an Input?), so the starting point "
                "cannot be measured; measurements start after the first epoch.",
                stacklevel=2,
            )
        elif self.data is None:
            self._initial_weights = self.model.get_weights()
        else:
            self._measure(INITIAL_STEP, self._probe_batches())

    def on_test_begin(self, logs=None):
        # Only the validation inside `fit`, not a user's own `evaluate`.
        if not self._in_epoch or self.data is not None:
            return
        self._validation_steps = 0
        self._recorded = None
        adapter = _compat.validation_adapter(self.model)
        if _compat.is_one_shot(adapter):
            # Only the inputs are kept, as 1-tuple batches. The list is bound
            # here: tf.data's prefetching thread can still append to it after
            # on_test_end has taken the batches that Keras validated on.
            record = self._recorded = []
            self._recording = _compat.recording_generator(
                adapter, lambda batch: record.append((_inputs_of(batch),))
            )
            self._recording.__enter__()

    def on_test_batch_end(self, batch, logs=None):
        # Keras passes the index of the last step of the call (steps may be
        # grouped by steps_per_execution).
        self._validation_steps = batch + 1

    def on_test_end(self, logs=None):
        if not self._in_epoch or self.data is not None:
            return
        if self._recording is not None:
            self._recording.__exit__(None, None, None)
            self._recording = None
            # Keras may have pulled more than it validated on (prefetching).
            self._recorded = self._recorded[: self._validation_steps]
        self._validated = True

    def on_epoch_end(self, epoch, logs=None):
        self._in_epoch = False
        if self.data is None and not self._validated:
            return
        batches = self._probe_batches
        if self._initial_weights is not None:
            initial, self._initial_weights = self._initial_weights, None
            trained = self.model.get_weights()
            if len(initial) != len(trained):
                # Built without weights (a subclassed model after `build()`
                # that creates them on its first call): no starting point.
                warnings.warn(
                    "CovarianceMonitor: the model had no weights before its "
                    "first training step, so the starting point cannot be "
                    "measured; measurements start after the first epoch.",
                    stacklevel=2,
                )
            else:
                self.model.set_weights(initial)
                try:
                    self._measure(INITIAL_STEP, batches())
                finally:
                    self.model.set_weights(trained)
        if (epoch + 1) % self.freq == 0:
            self._measure(epoch, batches(), logs)
        self._recorded = None

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.data is None and not self._measured:
            warnings.warn(
                "CovarianceMonitor measured nothing: it was given no `data` and "
                "`fit` validated on no epoch (no `validation_data` or "
                "`validation_split`, or a `validation_freq` beyond the last "
                "epoch). Pass `data=` or validation data to `fit`.",
                stacklevel=2,
            )

    # -- measuring ---------------------------------------------------------

    def measure(self):
        """Measures the watched layers on `data` now and returns `results`.

        Writes nothing; for use outside `fit` (e.g. in a notebook).

        Raises:
            ValueError: if the monitor was given no `data`.
        """
        if self.data is None:
            raise ValueError(
                "CovarianceMonitor.measure() needs probe data: outside `fit` there "
                "is no validation data. Received: data=None"
            )
        if self._layers is None:
            self._layers = self._resolve_layers()
        return self._compute(self._probe_batches())

    def _measure(self, step, batches, logs=None):
        results = self._compute(batches)
        self._measured = True
        writer = self._get_writer()
        for name, summary in results.items():
            for key, value in summary.items():
                writer.scalar(f"{name}/{key}", value, step)
                if logs is not None and key != "n_samples":
                    logs[f"{self.log_prefix}{name}_{key}"] = value
            cov = self.covariances[name]
            if np.isfinite(cov).all():
                writer.histogram(f"{name}/unit_variance", np.diag(cov), step)
                if self.images:
                    self._write_images(writer, name, step)
        writer.flush()

    def _compute(self, batches):
        accumulators, causes = self._accumulate(batches)
        for layer in self._layers:
            name = layer.name
            acc = accumulators[name]
            cov, cause = _covariance_or_cause(acc, causes[name])
            if cause is not None:
                self._warn_once(name, cause, _CAUSES[cause])
                summary = dict.fromkeys(self._metric_keys(), math.nan)
            else:
                d = self.true_dim
                if d is not None and d > cov.shape[0]:
                    self._warn_once(name, "true_dim", (
                        f"true_dim={d} exceeds its {cov.shape[0]} units, so TdV is "
                        "undefined (NaN)"))
                    d = None
                summary = _rename(metrics.covariance_summary(cov, d=d, q=self.q), self.q)
                undefined = sorted(k for k, v in summary.items() if math.isnan(v))
                if d != self.true_dim:  # warned above
                    summary.update(tdv_pca=math.nan, tdv_unit=math.nan)
                if undefined:
                    self._warn_once(name, "undefined", _undefined_message(cov, undefined))
            summary["n_samples"] = float(acc.count)
            self.covariances[name] = cov
            self.correlations[name] = _correlation(cov)
            self.results[name] = summary
        return self.results

    def _warn_once(self, layer, cause, message):
        if (layer, cause) in self._warned:
            return
        self._warned.add((layer, cause))
        warnings.warn(
            f"CovarianceMonitor: layer '{layer}': {message} (warned once per layer "
            "and cause).",
            stacklevel=4,
        )

    def _metric_keys(self):
        keys = _rename(
            metrics.covariance_summary(np.eye(2), d=1 if self.true_dim else None),
            self.q,
        )
        return list(keys)

    def _accumulate(self, batches):
        accumulators = {
            layer.name: metrics.StreamingCovariance() for layer in self._layers
        }
        causes = {layer.name: None for layer in self._layers}
        seen = 0
        for x in batches:
            seen += _batch_length(x)
            for layer, calls in zip(self._layers, self._forward(x)):
                for out, mask in calls:
                    if causes[layer.name] is not None:
                        continue
                    h = self._as_observations(layer.name, out, mask)
                    if not np.isfinite(h).all():
                        causes[layer.name] = "non_finite"
                        continue
                    with np.errstate(over="ignore", invalid="ignore"):
                        accumulators[layer.name].update(h)
        if seen == 0 and self.data is not None:
            raise ValueError(
                "CovarianceMonitor: the probe data yielded no samples. "
                f"Received: data of type {type(self.data).__name__}"
            )
        return accumulators, causes

    def _as_observations(self, name, out, mask):
        """A layer's output (and its mask) as float64 (observations, features)."""
        out = np.asarray(out, dtype=np.float64)
        if out.ndim < 2:
            raise ValueError(
                "CovarianceMonitor needs layer outputs of rank >= 2. "
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
            self._warn_once(name, "mask", (
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

    # -- probe data --------------------------------------------------------

    def _probe_batches(self):
        """Yields input batches, cut so that they total at most the cap."""
        remaining = self.max_samples
        if remaining is None:
            remaining = DEFAULT_MAX_SAMPLES if self.data is not None else math.inf
        for x in self._input_batches():
            n = _batch_length(x)
            if n >= remaining:
                yield keras.tree.map_structure(lambda a: a[:remaining], x)
                return
            remaining -= n
            yield x

    def _input_batches(self):
        data = self.data
        if data is None:
            yield from (_inputs_of(b) for b in self._validation_batches())
        elif isinstance(data, keras.utils.PyDataset):
            for i in range(len(data)):
                yield _inputs_of(data[i])
        elif hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset
            yield from (_inputs_of(b) for b in data.as_numpy_iterator())
        else:
            x = _inputs_of(data)
            n = _batch_length(x)
            for start in range(0, n, self.batch_size):
                yield keras.tree.map_structure(
                    lambda a, s=start: a[s : s + self.batch_size], x
                )

    def _validation_batches(self):
        """The batches of `fit`'s last validation, in Keras's order."""
        if self._recorded is not None:  # a generator: Keras's own batches
            return iter(self._recorded)
        adapter = _compat.validation_adapter(self.model)
        # Every validation starts the adapter afresh and runs the steps
        # counted in on_test_batch_end.
        return itertools.islice(adapter.get_numpy_iterator(), self._validation_steps)

    # -- forward passes ----------------------------------------------------

    def _forward(self, x):
        """Per watched layer, the list of (output, mask) of each of its calls.

        The first batch runs the whole model eagerly and records every call of
        the watched layers. If each was called once, without a mask, and the
        model is functional, later batches run a compiled functional probe
        from the inputs to the layers instead (the same outputs, faster).
        """
        with _activity_regularizers_off(self.model), warnings.catch_warnings():
            # Keras (torch backend) warns when a functional model with one
            # input is called on a bare tensor; the call is right.
            warnings.filterwarnings(
                "ignore", message="The structure of `inputs` doesn't match")
            if isinstance(self._probe, keras.Model):
                outputs = self._probe.predict_on_batch(x)
                if not isinstance(outputs, (list, tuple)):
                    outputs = [outputs]
                return [[(keras.ops.convert_to_numpy(o), None)] for o in outputs]
            calls = self._capture(x)
            if self._probe is None:
                self._probe = self._make_probe(calls)
            return calls

    def _make_probe(self, calls):
        """A functional model from the inputs to the watched layers, or False."""
        if any(len(c) != 1 or c[0][1] is not None for c in calls):
            return False
        try:
            return keras.Model(self.model.inputs, [layer.output for layer in self._layers])
        except (AttributeError, ValueError, TypeError):
            return False  # subclassed, or a layer of a nested model

    def _capture(self, x):
        """Runs the model on `x` and records every call of the watched layers."""
        captured = {layer.name: [] for layer in self._layers}
        with contextlib.ExitStack() as stack:
            for layer in self._layers:
                stack.enter_context(_recording(layer, captured[layer.name]))
            self.model(x, training=False)
        missing = [name for name, outs in captured.items() if not outs]
        if missing:
            raise ValueError(
                f"CovarianceMonitor: layers {missing} were not called by the "
                "model's forward pass."
            )
        # Keras attaches the output mask after `call` returns.
        return [
            [(keras.ops.convert_to_numpy(out), _mask_as_numpy(out)) for out in captured[layer.name]]
            for layer in self._layers
        ]

    # -- set-up ------------------------------------------------------------

    def _resolve_layers(self):
        model = self.model
        all_layers = list(_compat.nested_layers(model))
        resolved = []
        for spec in self._layer_specs:
            if isinstance(spec, str):
                matches = [layer for layer in all_layers if layer.name == spec]
                if not matches:
                    names = sorted({layer.name for layer in all_layers})
                    raise ValueError(
                        f"CovarianceMonitor: no layer named {spec!r} in model "
                        f"{model.name!r} (its layers: {names}). Received: "
                        f"layers={spec!r}"
                    )
                resolved.append(matches[0])
            elif any(layer is spec for layer in all_layers):
                resolved.append(spec)
            else:
                raise ValueError(
                    f"CovarianceMonitor: layer {spec.name!r} is not part of model "
                    f"{model.name!r}. Received: layers={spec!r}"
                )
        names = [layer.name for layer in resolved]
        if len(set(names)) != len(names):
            raise ValueError(
                f"CovarianceMonitor: each layer may be watched once. Received: "
                f"layers={names}"
            )
        self._probe = None
        return resolved

    def _get_writer(self):
        if self._writer is None:
            self._writer = _events.SummaryWriter(os.path.join(self.log_dir, self.run))
        return self._writer

    def _write_images(self, writer, name, step):
        from keras_covreg import _plots

        when = "before training" if step == INITIAL_STEP else f"epoch {step}"
        pictures = _plots.covariance_figures(
            self.covariances[name], name=name, when=when, q=self.q,
            correlation=self.correlations[name],
            n_samples=int(self.results[name]["n_samples"]),
        )
        for tag, fig in pictures.items():
            writer.image(f"{name}/{tag}", _plots.to_png(fig), step)


# Why a layer's metrics can all be NaN, as said in the warning.
_CAUSES = {
    "non_finite": "its activations hold NaN or inf; its metrics are NaN",
    "too_few": "fewer than 2 observations reached it; its metrics are NaN",
    "overflow": "the covariance of its activations overflows float64; its metrics are NaN",
}


def _covariance_or_cause(acc, cause):
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


def _undefined_message(cov, undefined):
    variances = np.diag(cov)
    varying = int(np.sum(variances > metrics.ZERO_VARIANCE_RTOL * variances.max()))
    if variances.max() <= 0:
        why = "every unit is constant over the probe data"
    else:
        why = f"{varying} of its {len(variances)} units vary"
    return f"{why}, so {', '.join(undefined)} {'is' if len(undefined) == 1 else 'are'} undefined (NaN)"


def _warn_about_wrapped_regularizers(model):
    """Warns about activity regularizers that Keras never applies."""
    for wrapper in _compat.nested_layers(model):
        if not isinstance(wrapper, keras.layers.TimeDistributed):
            continue
        inner = wrapper.layer
        if getattr(inner, "activity_regularizer", None) is not None:
            warnings.warn(
                f"Layer '{inner.name}' inside TimeDistributed '{wrapper.name}' has "
                f"activity_regularizer={inner.activity_regularizer!r}, which Keras "
                "never applies there (TimeDistributed runs the inner layer's "
                "`call`). Put the regularizer on the TimeDistributed layer, or "
                "use a layer such as keras_covreg.CovarianceRegularization inside "
                "or after it.",
                stacklevel=3,
            )


def _mask_as_numpy(tensor):
    mask = _compat.keras_mask(tensor)
    return None if mask is None else keras.ops.convert_to_numpy(mask)


def _layer_list(layers):
    specs = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not specs:
        raise ValueError(
            "CovarianceMonitor needs at least one layer to watch. "
            f"Received: layers={layers!r}"
        )
    for spec in specs:
        if not isinstance(spec, (str, keras.layers.Layer)):
            raise TypeError(
                "`layers` must hold layers or layer names. "
                f"Received: layers={layers!r}"
            )
    return specs


def _check_data(data):
    """Rejects empty array data at construction; other sources at first use."""
    if data is None or isinstance(data, keras.utils.PyDataset):
        return data
    if hasattr(data, "as_numpy_iterator"):
        return data
    x = _inputs_of(data)
    leaves = keras.tree.flatten(x)
    if not leaves or any(not hasattr(a, "shape") or len(a.shape) == 0 for a in leaves):
        raise TypeError(
            "`data` must be arrays, a tf.data.Dataset or a keras.utils.PyDataset. "
            f"Received: data of type {type(data).__name__}"
        )
    if _batch_length(x) == 0:
        raise ValueError(
            f"`data` holds no samples. Received: data with shape {leaves[0].shape}"
        )
    return data


def _inputs_of(batch):
    """The inputs of an (x,), (x, y) or (x, y, w) tuple, or the batch itself."""
    if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
        return batch[0]
    return batch


def _batch_length(x):
    return int(keras.tree.flatten(x)[0].shape[0])


def _rename(summary, q):
    """Names UD after its q (ud90_pca for q = 0.9)."""
    percent = f"ud{round(q * 100)}"
    return {k.replace("ud_", f"{percent}_") if k.startswith("ud_") else k: v
            for k, v in summary.items()}


def _correlation(cov):
    """Pearson correlations; NaN where a unit has zero variance."""
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(std, std)
    active = std > 0
    corr[~active, :] = np.nan
    corr[:, ~active] = np.nan
    return corr


@contextlib.contextmanager
def _activity_regularizers_off(model):
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
def _recording(layer, captured):
    """Temporarily wraps `layer.call` to append every output to `captured`."""
    original = layer.call

    def call(*args, **kwargs):
        out = original(*args, **kwargs)
        captured.append(out)
        return out

    object.__setattr__(layer, "call", call)
    try:
        yield
    finally:
        object.__delattr__(layer, "call")
