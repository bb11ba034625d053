"""`CovarianceMonitor`: a callback that measures layers' activations each epoch.

Data flows one way: probe data -> model -> watched layers' activations ->
`StreamingCovariance` -> metrics -> TensorBoard event files and epoch logs.
"""

import contextlib
import math
import os
import warnings

import keras
import numpy as np

from keras_covreg import _events, _validation, metrics
from keras_covreg.regularizers import SPATIAL_MODES

__all__ = ["CovarianceMonitor"]

# Step of the measurement taken before training: Keras's own TensorBoard
# callback writes the end of epoch e at step e, so "before epoch 0" is -1.
INITIAL_STEP = -1


class CovarianceMonitor(keras.callbacks.Callback):
    """Writes how correlated and how many-dimensional layers' outputs are.

    Once before training and every `freq` epochs, runs the probe data through
    the model, accumulates the exact covariance C of each watched layer's
    outputs over all probe samples (`StreamingCovariance`, batch by batch, at
    most `max_samples`), and writes to TensorBoard, under ``<layer>/``:

    * scalars ``cvr``, ``mapc``, ``ud90_pca``, ``ud90_unit`` (for q = 0.9),
      ``l_sigma``, ``effective_rank``, ``participation_ratio``,
      ``n_samples`` and, when `true_dim` is given, ``tdv_pca`` and
      ``tdv_unit`` (see `keras_covreg.metrics`);
    * images ``covariance`` and ``correlation`` (heatmaps centred on zero) and
      ``spectrum`` (the sorted variances on both bases), the pictures of the
      paper's Figures 4 and 5;
    * a histogram ``unit_variance``.

    Event files go to ``log_dir/run``, the directory that
    ``keras.callbacks.TensorBoard(log_dir)`` uses for validation metrics, so
    both sit in one dashboard. The step is the epoch index, as Keras's own
    callback uses; the measurement before training is at step -1. The same
    scalars are added to the epoch `logs` as ``<log_prefix><layer>_<metric>``
    (e.g. ``val_code_cvr``), where `History`, `CSVLogger`, `EarlyStopping` and
    Keras's `TensorBoard` see them if they come after this callback in the
    list. The last measurement stays in `covariances`, `correlations` and
    `results`, dicts keyed by layer name.

    Non-finite activations never stop training: they give a warning and NaN
    metrics. Event files are flushed after every measurement.

    Args:
        layers: the layers to watch: a `keras.layers.Layer`, a layer name, or
            a list of them.
        data: the probe inputs: an array (or a structure of arrays for several
            inputs), a tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``
            as for `validation_data`, a `tf.data.Dataset`, or a
            `keras.utils.PyDataset`. Only the inputs are used. When None, the
            validation data given to `fit`; then the starting point is
            measured at the end of the first epoch, with the weights saved at
            its start.
        log_dir: the directory given to ``keras.callbacks.TensorBoard``.
        run: the subdirectory to write to. Defaults to ``"validation"``.
        freq: measure every `freq` epochs. Defaults to 1.
        max_samples: the most probe samples to use, >= 2. Defaults to 10,000.
        batch_size: batch size for array data. Defaults to 256.
        true_dim: the true dimension d of the data, for TdV; None to skip it.
        q: the variance fraction of UD. Defaults to 0.9.
        spatial_mode: for outputs of rank > 2, as in `CovarianceRegularizer`:
            ``"channels"`` or ``"flatten"``.
        channel_axis: the channel axis for ``"channels"``. Defaults to -1.
        images: whether to write the heatmaps and spectra. Defaults to True.
        log_prefix: prefix of the keys added to the epoch logs. Defaults to
            ``"val_"``.

    Raises:
        ValueError: at construction for a bad argument (no layers, empty data,
            `max_samples` < 2, ...); at `on_train_begin` for a layer that is
            not in the model.

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
        max_samples=10_000,
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
        self.max_samples = _validation.check_int_in_range(
            "max_samples", max_samples, 2, 2**62
        )
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
        self.channel_axis = channel_axis
        self.images = bool(images)
        self.log_prefix = log_prefix
        self.covariances = {}
        self.correlations = {}
        self.results = {}
        self._layers = None
        self._probe = None
        self._writer = None
        self._first_epoch_seen = False
        self._initial_weights = None

    # -- Keras hooks -------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._layers = self._resolve_layers()
        self._first_epoch_seen = False

    def on_epoch_begin(self, epoch, logs=None):
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
            self._measure(INITIAL_STEP)

    def on_epoch_end(self, epoch, logs=None):
        if self._initial_weights is not None:
            trained = self.model.get_weights()
            self.model.set_weights(self._initial_weights)
            self._initial_weights = None
            try:
                self._measure(INITIAL_STEP)
            finally:
                self.model.set_weights(trained)
        if (epoch + 1) % self.freq == 0:
            self._measure(epoch, logs)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- measuring ---------------------------------------------------------

    def measure(self):
        """Measures the watched layers now and returns `results`.

        Writes nothing; for use outside `fit` (e.g. in a notebook).
        """
        if self._layers is None:
            self._layers = self._resolve_layers()
        return self._compute()

    def _measure(self, step, logs=None):
        results = self._compute()
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

    def _compute(self):
        accumulators, finite = self._accumulate()
        for layer in self._layers:
            name = layer.name
            acc = accumulators[name]
            if not finite[name] or acc.count < 2:
                warnings.warn(
                    f"CovarianceMonitor: layer '{name}' produced NaN or inf "
                    "activations, or fewer than 2 probe samples; its metrics "
                    "are NaN.",
                    stacklevel=3,
                )
                p = acc.n_features or 1
                cov = np.full((p, p), np.nan)
                summary = dict.fromkeys(self._metric_keys(), math.nan)
            else:
                cov = acc.covariance()
                summary = _rename(
                    metrics.covariance_summary(cov, d=self.true_dim, q=self.q),
                    self.q,
                )
            summary["n_samples"] = float(acc.count)
            self.covariances[name] = cov
            self.correlations[name] = _correlation(cov)
            self.results[name] = summary
        return self.results

    def _metric_keys(self):
        keys = _rename(
            metrics.covariance_summary(np.eye(2), d=1 if self.true_dim else None),
            self.q,
        )
        return list(keys)

    def _accumulate(self):
        accumulators = {
            layer.name: metrics.StreamingCovariance() for layer in self._layers
        }
        finite = dict.fromkeys(accumulators, True)
        seen = 0
        for x in self._probe_batches():
            outputs = self._forward(x)
            n = None
            for layer, out in zip(self._layers, outputs):
                h = self._as_observations(np.asarray(out, dtype=np.float64))
                n = out.shape[0]
                if not np.isfinite(h).all():
                    finite[layer.name] = False
                elif finite[layer.name]:
                    accumulators[layer.name].update(h)
            seen += n or 0
        if seen == 0:
            raise ValueError(
                "CovarianceMonitor: the probe data yielded no samples. "
                f"Received: data of type {type(self.data).__name__}"
            )
        return accumulators, finite

    def _as_observations(self, out):
        if out.ndim < 2:
            raise ValueError(
                "CovarianceMonitor needs layer outputs of rank >= 2. "
                f"Received: output of shape {out.shape}"
            )
        if out.ndim == 2:
            return out
        if self.spatial_mode == "flatten":
            return out.reshape(out.shape[0], -1)
        return np.moveaxis(out, self.channel_axis, -1).reshape(-1, out.shape[self.channel_axis])

    # -- probe data --------------------------------------------------------

    def _probe_batches(self):
        """Yields input batches, cut so that they total at most max_samples."""
        remaining = self.max_samples
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
            iterator = getattr(self.model, "_eval_epoch_iterator", None)
            if iterator is None:
                raise ValueError(
                    "CovarianceMonitor was given no `data` and `fit` was given no "
                    "validation data: pass `data=` or `validation_data=`."
                )
            batches = iterator.data_adapter.get_numpy_iterator()
            yield from (_inputs_of(b) for b in batches)
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

    # -- forward passes ----------------------------------------------------

    def _forward(self, x):
        """The watched layers' outputs for inputs `x`, as NumPy arrays."""
        with _activity_regularizers_off(self.model):
            probe = self._get_probe()
            if probe is not None:
                outputs = probe.predict_on_batch(x)
            else:
                outputs = self._capture(x)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return [keras.ops.convert_to_numpy(o) for o in outputs]

    def _get_probe(self):
        """A functional model from the inputs to the watched layers, or None."""
        if self._probe is None:
            try:
                inputs = self.model.inputs
                outputs = [layer.output for layer in self._layers]
            except (AttributeError, ValueError):
                self._probe = False  # subclassed model: capture instead
            else:
                self._probe = keras.Model(inputs, outputs)
        return self._probe or None

    def _capture(self, x):
        """Runs the model on `x` and records the watched layers' outputs."""
        captured = {}
        with contextlib.ExitStack() as stack:
            for layer in self._layers:
                stack.enter_context(_recording(layer, captured))
            self.model(x, training=False)
        missing = [layer.name for layer in self._layers if layer.name not in captured]
        if missing:
            raise ValueError(
                f"CovarianceMonitor: layers {missing} were not called by the "
                "model's forward pass."
            )
        return [captured[layer.name] for layer in self._layers]

    # -- set-up ------------------------------------------------------------

    def _resolve_layers(self):
        model = self.model
        all_layers = list(_walk_layers(model))
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

        cov = self.covariances[name]
        if not np.isfinite(cov).all():
            return
        when = "before training" if step == INITIAL_STEP else f"epoch {step}"
        pictures = _plots.covariance_figures(
            cov, name=name, when=when, q=self.q, correlation=self.correlations[name],
            n_samples=int(self.results[name]["n_samples"]),
        )
        for tag, fig in pictures.items():
            writer.image(f"{name}/{tag}", _plots.to_png(fig), step)


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


def _walk_layers(model):
    """Every layer inside `model`, nested ones included."""
    return model._flatten_layers(include_self=False, recursive=True)


@contextlib.contextmanager
def _activity_regularizers_off(model):
    """Skips activity penalties in the probe's forward pass (wasted work)."""
    saved = [
        (layer, layer.activity_regularizer)
        for layer in _walk_layers(model)
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
    """Temporarily wraps `layer.call` to keep its first output per forward pass."""
    original = layer.call

    def call(*args, **kwargs):
        out = original(*args, **kwargs)
        captured.setdefault(layer.name, out)
        return out

    object.__setattr__(layer, "call", call)
    try:
        yield
    finally:
        object.__delattr__(layer, "call")
