"""`CovarianceMonitor`: a callback that measures layers' activations each epoch.

Data flows one way: probe data -> model -> watched layers' activations ->
`StreamingCovariance` -> metrics -> TensorBoard event files and epoch logs.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_covreg import _compat, _events, _validation, metrics, probe
from keras_covreg.layers import _PenaltyLayer
from keras_covreg.regularizers import SPATIAL_MODES

__all__ = ["CovarianceMonitor"]

# Step of the measurement taken before training: Keras's own TensorBoard
# callback writes the end of epoch e at step e, so "before epoch 0" is -1.
INITIAL_STEP = -1

# The most samples of `data` measured when `max_samples` is not given (a few
# seconds per epoch; see `probe.DEFAULT_MAX_SAMPLES`).
DEFAULT_MAX_SAMPLES = probe.DEFAULT_MAX_SAMPLES


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
      paper's Figures 4 and 5, every `image_freq` epochs. The covariance
      colour scale is `covariance_limit`, or else fixed per layer at the first
      picture's max |C|, so that pictures of a run compare; correlation is
      always on [-1, 1];
    * a histogram ``unit_variance`` (ceil(sqrt(p)) buckets, at most 30);
    * a text ``config`` (the layer, its penalty, the probe, `true_dim`), and
      a Custom Scalars layout per layer: CVR, MAPC and UD of every run beside
      ``epoch_loss``.

    Every tag carries a description (what it is, its range, which way is
    better, N), which TensorBoard shows beside its chart. With `hparams`, the
    run is also a session of the HParams dashboard; with
    `projector_samples`, the activations of the first probe samples go to
    the Projector.

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
    `ReduceLROnPlateau` see them if they come after this callback in the list
    (lower is better for every metric but TdV: give ``mode="min"`` to
    `EarlyStopping`). Keras's `TensorBoard` callback would write each of them
    again, as ``epoch_<layer>_<metric>``: while `fit` runs, the monitor hides
    its keys from every `keras.callbacks.TensorBoard` after it in the list
    (one before it never sees them), so each metric appears once. The last measurement stays in `covariances`,
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
        batch_size: batch size for array `data`; None (default) for
            `keras_covreg.probe.auto_batch_size` of the inputs (16 MiB of
            inputs per batch, 32 to 1,024 samples).
        true_dim: the true dimension d of the data, for TdV; None to skip it.
        q: the variance fraction of UD. Defaults to 0.9.
        spatial_mode: for outputs of rank > 2, as in `CovarianceRegularizer`:
            ``"channels"`` or ``"flatten"``.
        channel_axis: the channel axis for ``"channels"``, an integer other
            than 0. Defaults to -1.
        images: whether to write the heatmaps and spectra. Defaults to True.
        image_freq: write the pictures on the measured epochs whose number
            (epoch + 1) is a multiple of `image_freq`, and at the starting
            point. Defaults to 1.
        covariance_limit: the covariance heatmap's colour scale runs from
            -covariance_limit to +covariance_limit (a finite number > 0);
            give the same value to runs you compare. Defaults to None: fixed
            per layer at the first picture's max |C|.
        log_prefix: prefix of the keys added to the epoch logs. Defaults to
            ``"val_"``.
        hparams: the run's hyperparameters, {name: bool, int, float or str},
            written to `log_dir` at the start of training as a session of
            TensorBoard's HParams dashboard (give each run its own `log_dir`);
            the monitor's scalars are its metrics. Defaults to None.
        projector_samples: how many probe samples' activations (the first
            ones, in probe order) to write for TensorBoard's Projector at
            each measurement; outputs of rank > 2 are averaged over positions
            with ``spatial_mode="channels"``. 0 (default) writes none.
        projector_labels: one label per probe sample, in probe order (e.g.
            class names), shown as the Projector's metadata. Needs
            `projector_samples` > 0.

    Raises:
        ValueError: at construction for a bad argument (no layers, empty data,
            `max_samples` < 2, ...); at `on_train_begin` for a layer that is
            not in the model; at the first measurement for probe `data` that
            yields no samples, or fewer `projector_labels` than samples kept
            for the Projector.
        TypeError: at construction for `hparams` that are not a dict of
            plain values.

    Warns:
        UserWarning: when training ends and nothing was measured (``data=None``
            and `fit` never validated); when an ``activity_regularizer`` sits
            on a layer inside ``TimeDistributed``, which Keras never applies;
            once per layer and cause for undefined metrics.

    Examples:
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
        layers: str | keras.layers.Layer | Sequence[str | keras.layers.Layer],
        data: Any = None,
        *,
        log_dir: str | os.PathLike[str] = "logs",
        run: str = "validation",
        freq: int = 1,
        max_samples: int | None = None,
        batch_size: int | None = None,
        true_dim: int | None = None,
        q: float = 0.9,
        spatial_mode: str = "channels",
        channel_axis: int = -1,
        images: bool = True,
        image_freq: int = 1,
        covariance_limit: float | None = None,
        log_prefix: str = "val_",
        hparams: Mapping[str, bool | int | float | str] | None = None,
        projector_samples: int = 0,
        projector_labels: Sequence[Any] | None = None,
    ) -> None:
        super().__init__()
        self._layer_specs = probe.layer_list(layers, "CovarianceMonitor")
        self.data = probe.check_data(data)
        self.log_dir = os.fspath(log_dir)
        self.run = _check_str("run", run, empty=False)
        self.freq = _validation.check_int_in_range("freq", freq, 1, 2**31)
        if max_samples is not None:
            _validation.check_int_in_range("max_samples", max_samples, 2, 2**62)
        self.max_samples = max_samples
        if batch_size is not None:
            _validation.check_int_in_range("batch_size", batch_size, 1, 2**31)
        self.batch_size = batch_size
        if true_dim is not None:
            _validation.check_int_in_range("true_dim", true_dim, 1, 2**31)
        self.true_dim = true_dim
        self.q = _validation.check_fraction("q", q)
        self.spatial_mode = _validation.check_choice(
            "spatial_mode", spatial_mode, SPATIAL_MODES
        )
        self.channel_axis = _validation.check_channel_axis(channel_axis)
        self.images = _check_bool("images", images)
        self.image_freq = _validation.check_int_in_range("image_freq", image_freq, 1, 2**31)
        if covariance_limit is not None:
            covariance_limit = _validation.check_finite_nonnegative(
                "covariance_limit", covariance_limit)
            if covariance_limit == 0:
                raise ValueError(
                    "`covariance_limit` must be > 0 (the colour scale runs from "
                    "-covariance_limit to +covariance_limit). Received: covariance_limit=0"
                )
        self.covariance_limit = covariance_limit
        self.log_prefix = _check_str("log_prefix", log_prefix, empty=True)
        self.hparams = _check_hparams(hparams)
        self.projector_samples = _validation.check_int_in_range(
            "projector_samples", projector_samples, 0, 2**31)
        if projector_labels is not None:
            if isinstance(projector_labels, (str, bytes)):
                raise TypeError(
                    "`projector_labels` must be a sequence of labels, one per probe "
                    f"sample, not one string. Received: projector_labels={projector_labels!r}"
                )
            if self.projector_samples == 0:
                raise ValueError(
                    "`projector_labels` label the samples written for the Projector; "
                    "give `projector_samples` > 0 as well. Received: projector_samples=0"
                )
            projector_labels = [str(label) for label in projector_labels]
        self.projector_labels = projector_labels
        self.covariances: dict[str, np.ndarray] = {}
        self.correlations: dict[str, np.ndarray] = {}
        self.results: dict[str, dict[str, float]] = {}
        # The watched layers, resolved in the model at on_train_begin.
        self._layers: list[keras.layers.Layer] = []
        self._probe: probe.LayerProbe | None = None
        # Per layer, the spectra of the last measurement (for the pictures).
        self._spectra: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self._writer: _events.SummaryWriter | None = None
        self._warned: set[tuple[str, str]] = set()
        # Per layer, the covariance colour scale fixed at its first picture.
        self._limits: dict[str, float] = {}
        # Per layer, the last pictures, redrawn with new values where they can be.
        self._pictures: dict[str, dict[str, Any]] = {}
        self._hidden_from: list[tuple[Any, Any]] = []
        self._log_keys: set[str] = set()
        self._projected: dict[str, np.ndarray] = {}
        self._reset_fit_state()

    def _reset_fit_state(self):
        self._first_epoch_seen = False
        self._initial_weights: list[np.ndarray] | None = None
        self._in_epoch = False
        self._validated = False
        self._validation_steps = 0
        self._recorded: list[Any] | None = None
        self._recording: Any = None
        self._measured = False
        self._described = False

    # -- Keras hooks -------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._layers = self._new_probe()
        self._reset_fit_state()
        _warn_about_wrapped_regularizers(self.model)
        self._hide_from_tensorboard(_compat.calling_callback_list(self))
        if self.hparams is not None and self._is_chief():
            writer = _events.SummaryWriter.replacing(self.log_dir, "hparams")
            writer.hparams(self.hparams)
            writer.close()

    def _hide_from_tensorboard(self, callback_list):
        """Keeps our epoch-log keys away from later `TensorBoard` callbacks.

        The monitor writes its own scalars (with descriptions, and the
        starting point at step -1); Keras's `TensorBoard` would write each
        of them again as ``epoch_<layer>_<metric>``. Callbacks before the
        monitor never see the keys; `History`, `CSVLogger`, `EarlyStopping`
        and the rest after it still do.
        """
        self._restore_tensorboard()
        if callback_list is None:
            return
        later = itertools.dropwhile(lambda c: c is not self, callback_list.callbacks)
        for callback in later:
            if isinstance(callback, keras.callbacks.TensorBoard):
                hiding = _hiding_filter(callback)
                hiding.hidden.append(self._log_keys)
                self._hidden_from.append((callback, hiding))

    def _restore_tensorboard(self):
        for callback, hiding in self._hidden_from:
            hiding.hidden[:] = [keys for keys in hiding.hidden if keys is not self._log_keys]
            if not hiding.hidden and callback.__dict__.get("on_epoch_end") is hiding:
                # The last monitor to leave puts Keras's method back.
                if hiding.own is None:
                    del callback.on_epoch_end
                else:
                    callback.on_epoch_end = hiding.own
        self._hidden_from = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
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

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
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
                adapter, lambda batch: record.append((probe.inputs_of(batch),))
            )
            self._recording.__enter__()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Keras passes the index of the last step of the call (steps may be
        # grouped by steps_per_execution).
        self._validation_steps = batch + 1

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_epoch or self.data is not None:
            return
        if self._recording is not None and self._recorded is not None:
            self._recording.__exit__(None, None, None)
            self._recording = None
            # Keras may have pulled more than it validated on (prefetching).
            self._recorded = self._recorded[: self._validation_steps]
        self._validated = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
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

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._restore_tensorboard()
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

    def measure(self) -> dict[str, dict[str, float]]:
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
        if not self._layers:
            self._layers = self._new_probe()
        return self._compute(self._probe_batches())

    def _is_chief(self):
        """Whether this process writes: the only one, or process 0 of several."""
        return _compat.processes()[0] == 0

    def _measure(self, step, batches, logs=None):
        results = self._compute(batches)
        self._measured = True
        if logs is not None:
            for name, summary in results.items():
                for key, value in summary.items():
                    if key != "n_samples":
                        logs[f"{self.log_prefix}{name}_{key}"] = value
                        self._log_keys.add(f"{self.log_prefix}{name}_{key}")
        if not self._is_chief():
            # Every process measures (the forward passes are collectives, and
            # EarlyStopping and the rest see the same logs in every process);
            # only the chief writes.
            return
        writer = self._get_writer()
        if not self._described:
            self._described = True
            self._write_layout(writer, step)
        pictures = self.images and (step == INITIAL_STEP or (step + 1) % self.image_freq == 0)
        for name, summary in results.items():
            p = self.covariances[name].shape[0]
            describe = functools.partial(
                _description, p=p, n=int(summary["n_samples"]), d=self.true_dim, q=self.q)
            for key, value in summary.items():
                writer.scalar(f"{name}/{key}", value, step, description=describe(key))
            cov = self.covariances[name]
            if np.isfinite(cov).all():
                bins = histogram_bins(p)
                writer.histogram(f"{name}/unit_variance", np.diag(cov), step, bins=bins,
                                 description=describe("unit_variance", bins=bins))
                if pictures:
                    self._write_images(writer, name, step, describe)
        if self.projector_samples:
            self._write_projector()
        writer.flush()

    def _write_layout(self, writer, step):
        """The Custom Scalars layout and a Text summary of what is measured."""
        charts = {}
        for layer in self._layers:
            tag = re.escape(layer.name)
            ud = f"ud{round(self.q * 100)}"
            charts[f"{layer.name} (CovarianceMonitor)"] = [
                ("CVR (lower: more decorrelated)", [f"^{tag}/cvr$"]),
                ("MAPC (lower: more decorrelated)", [f"^{tag}/mapc$"]),
                (f"{ud.upper()} on both bases", [f"^{tag}/{ud}_(pca|unit)$"]),
                ("loss", ["^epoch_loss$"]),
            ]
            writer.text(f"{layer.name}/config", self._config_markdown(layer), step,
                        description="What the monitor measures on this layer and how.")
        writer.custom_scalars(charts)

    def _config_markdown(self, layer):
        regularizer = getattr(layer, "activity_regularizer", None)
        penalty_layers = [f"`{type(other).__name__}` `{other.name}`"
                          for other in _compat.nested_layers(self.model)
                          if isinstance(other, _PenaltyLayer)]
        if self.data is None:
            probe = "the validation batches of `fit`"
        else:
            probe = f"`data` ({type(self.data).__name__})"
        cap = self.max_samples if self.max_samples is not None else (
            "all" if self.data is None else DEFAULT_MAX_SAMPLES)
        rows = [
            ("layer", f"`{layer.name}` ({type(layer).__name__})"),
            ("activity_regularizer", f"`{regularizer!r}`" if regularizer else "none"),
            ("penalty layers in the model", ", ".join(penalty_layers) or "none"),
            ("probe", f"{probe}, at most {cap} samples"),
            ("N", (f"{int(self.results[layer.name]['n_samples']):,} observations at "
                   "the first measurement (see `n_samples`)")),
            ("true_dim", str(self.true_dim)),
            ("q", f"{self.q:g}"),
            ("spatial_mode", self.spatial_mode),
            ("every", f"{self.freq} epoch(s); pictures every {self.image_freq}"),
        ]
        rows += [(f"hparam `{k}`", str(v)) for k, v in (self.hparams or {}).items()]
        return "| setting | value |\n|---|---|\n" + "".join(
            f"| {k} | {v} |\n" for k, v in rows)

    def _compute(self, batches):
        assert self._probe is not None  # set in on_train_begin or measure()
        # Under several processes, fit's validation batches are split between
        # them (each process validates on its part): merge their statistics.
        found, self._projected, seen = self._probe.run(
            batches, keep_samples=self.projector_samples, sharded=self.data is None)
        if seen == 0 and self.data is not None:
            raise ValueError(
                "CovarianceMonitor: the probe data yielded no samples. "
                f"Received: data of type {type(self.data).__name__}"
            )
        for name, measured in found.items():
            cov = measured.covariance
            if measured.undefined is not None:  # warned by the probe
                summary = measured.summary(d=self.true_dim, q=self.q)  # all NaN
                self._spectra.pop(name, None)
            else:
                d = self.true_dim
                if d is not None and d > cov.shape[0]:
                    self._warn_once(name, "true_dim", (
                        f"true_dim={d} exceeds its {cov.shape[0]} units, so TdV is "
                        "undefined (NaN)"))
                    d = None
                summary, pca, unit = metrics.spectral_summary(cov, d=d, q=self.q)
                undefined = sorted(k for k, v in summary.items() if math.isnan(v))
                if d != self.true_dim:  # warned above
                    summary.update(tdv_pca=math.nan, tdv_unit=math.nan)
                if undefined:
                    self._warn_once(name, "undefined", _undefined_message(cov, undefined))
                self._spectra[name] = (pca, unit, int(summary[metrics.ud_name(self.q)]))
            summary["n_samples"] = float(measured.n_samples)
            self.covariances[name] = cov
            self.correlations[name] = metrics.correlation_matrix(cov)
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

    # -- probe data --------------------------------------------------------

    def _probe_batches(self):
        """Yields input batches, cut so that they total at most the cap."""
        cap: float
        if self.max_samples is not None:
            cap = self.max_samples
        else:
            cap = DEFAULT_MAX_SAMPLES if self.data is not None else math.inf
        batches: Iterable[Any]
        if self.data is None:
            batches = (probe.inputs_of(b) for b in self._validation_batches())
        else:
            batches = probe.input_batches(self.data, self.batch_size)
        return probe.capped(batches, cap)

    def _validation_batches(self):
        """The batches of `fit`'s last validation, in Keras's order."""
        if self._recorded is not None:  # a generator: Keras's own batches
            return iter(self._recorded)
        adapter = _compat.validation_adapter(self.model)
        # Every validation starts the adapter afresh and runs the steps
        # counted in on_test_batch_end.
        return itertools.islice(adapter.get_numpy_iterator(), self._validation_steps)

    # -- set-up ------------------------------------------------------------

    def _new_probe(self):
        """Resolves the watched layers in the model; returns them."""
        self._probe = probe.LayerProbe(
            self.model, self._layer_specs, spatial_mode=self.spatial_mode,
            channel_axis=self.channel_axis, owner="CovarianceMonitor", warn=self._warn_once)
        return self._probe.layers

    def _get_writer(self):
        if self._writer is None:
            self._writer = _events.SummaryWriter(os.path.join(self.log_dir, self.run))
        return self._writer

    def _write_images(self, writer, name, step, describe):
        from keras_covreg import _plots

        cov = self.covariances[name]
        # Either way the scale stays the same for the run: "fixed".
        limit = self.covariance_limit
        if limit is None:
            largest = float(np.max(np.abs(cov)))
            limit = self._limits.setdefault(name, largest if largest > 0 else 1.0)
        when = "before training" if step == INITIAL_STEP else f"epoch {step}"
        pca, unit, cut = self._spectra[name]
        pictures = _plots.covariance_figures(
            cov, name=name, when=when, q=self.q, pca=pca, unit=unit, cut=cut,
            correlation=self.correlations[name],
            n_samples=int(self.results[name]["n_samples"]),
            limit=limit, limit_note="fixed", previous=self._pictures.get(name),
        )
        self._pictures[name] = pictures
        for tag, fig in pictures.items():
            writer.image(f"{name}/{tag}", _plots.to_png(fig), step,
                         description=describe(tag, limit=limit))

    def _write_projector(self):
        """Writes the kept per-sample activations for TensorBoard's Projector."""
        from google.protobuf import text_format
        from tensorboard.plugins.projector import projector_config_pb2

        run_dir = os.path.join(self.log_dir, self.run)
        config = projector_config_pb2.ProjectorConfig()
        for layer in self._layers:
            vectors = self._projected.get(layer.name)
            if vectors is None or len(vectors) == 0:
                continue
            labels = self.projector_labels
            if labels is not None and len(labels) < len(vectors):
                raise ValueError(
                    f"CovarianceMonitor: {len(vectors)} probe samples were kept for the "
                    f"Projector but `projector_labels` holds {len(labels)} labels; give one "
                    "label per probe sample. Received: "
                    f"projector_samples={self.projector_samples}, len(projector_labels)="
                    f"{len(labels)}"
                )
            embedding = config.embeddings.add(
                tensor_name=layer.name, tensor_path=f"{layer.name}.projector.tsv")
            _write_text(os.path.join(run_dir, embedding.tensor_path),
                        "".join("\t".join(f"{v:.6g}" for v in row) + "\n" for row in vectors))
            if labels is not None:
                embedding.metadata_path = f"{layer.name}.projector_labels.tsv"
                _write_text(os.path.join(run_dir, embedding.metadata_path),
                            "".join(_tsv_field(label) + "\n" for label in labels[: len(vectors)]))
        _write_text(os.path.join(run_dir, "projector_config.pbtxt"),
                    text_format.MessageToString(config))


# The most buckets of the unit-variance histogram; fewer for narrow layers
# (`histogram_bins`).
HISTOGRAM_MAX_BINS = 30


def histogram_bins(p: int) -> int:
    """Buckets for a histogram of `p` values: ceil(sqrt(p)), at most 30.

    The square-root choice keeps about sqrt(p) values per bucket: 4 buckets
    for 10 units, 10 for 84, 30 from 900 units on.
    """
    return max(1, min(HISTOGRAM_MAX_BINS, math.ceil(math.sqrt(p))))


def _description(key, *, p, n, d, q, bins=None, limit=None):
    """The description TensorBoard shows beside a tag's chart (Markdown).

    Plain Unicode for the formulas: TensorBoard renders Markdown but shows
    HTML tags as text.
    """
    ud = f"UD{round(q * 100)}"
    share = f"{q:.0%}"
    where = f"Measured on N = {n:,} observations of p = {p} units."
    texts = {
        "cvr": "Covariance-variance ratio, Σᵢⱼ |Cᵢⱼ| / tr C (paper, Section 3.1), "
               "in [1, p]: 1 when the units are uncorrelated. Lower is more "
               "decorrelated.",
        "mapc": "Mean absolute Pearson correlation between pairs of units (paper, "
                "Section 3.1), in [0, 1]; units with zero variance left out. Lower is "
                "more decorrelated.",
        metrics.ud_name(q, "pca"): f"{ud} on the PCA basis: how many principal "
                                   f"components hold {share} of the variance, an integer "
                                   "in [1, p]. Lower is a more compact code. An "
                                   "integer: read it with smoothing 0.",
        metrics.ud_name(q, "unit"): f"{ud} on the unit basis: how many units (largest "
                                    f"variance first) hold {share} of the variance, an "
                                    "integer in [1, p]. Lower means fewer units in use. "
                                    "An integer: read it with smoothing 0.",
        "tdv_pca": f"Top-d variance ratio, d = {d} (the true dimension): the share of "
                   "variance in the d largest principal components, in [0, 1]. Higher "
                   "is better; 1 when the code spans d dimensions.",
        "tdv_unit": f"Top-d variance ratio, d = {d}, on the unit basis: the share of "
                    "variance in the d units of largest variance, in [0, 1]. Higher is "
                    "better.",
        "l_sigma": "L_Σ = Σᵢⱼ |Cᵢⱼ| / p² (paper, Eq. 2) on these observations, before "
                   "any strength: ≥ 0, lower is more decorrelated. Not the per-batch "
                   "value in the loss.",
        "effective_rank": "Effective rank: exp of the entropy of the normalized PCA "
                          "spectrum (Roy & Vetterli, 2007), in [1, p]. Lower means fewer "
                          "dimensions in use.",
        "participation_ratio": "Participation ratio (Σ λ)² / Σ λ² of the PCA spectrum "
                               "(Gao et al., 2017), in [1, p]. Lower means fewer "
                               "dimensions in use.",
        "n_samples": "N, the number of observations the covariance was measured on "
                     "(samples, or samples × positions for outputs of rank > 2).",
        "unit_variance": f"The p unit variances (diagonal of C) in {bins} buckets: a "
                         "bar at 0 is units a penalty switched off.",
        "covariance": f"Covariance matrix C (p × p); red positive, blue negative; the "
                      f"colour scale is fixed at ±{limit or 0:.3g} for the run so that "
                      "epochs compare (arrows on the bar: values beyond it).",
        "correlation": "Pearson correlations of the units on [-1, 1]; grey: units "
                       "with zero variance.",
        "spectrum": "Variances sorted largest first: bars, principal components "
                    f"(eigenvalues of C); line, units (diagonal of C); dashed, {ud}.",
    }
    return f"{texts[key]} {where}" if key in texts else where


class _HidingFilter:
    """A `TensorBoard` callback's `on_epoch_end` that leaves out monitors' keys.

    One per `TensorBoard` callback, shared by every monitor before it in the
    list: each adds the set of its epoch-log keys to `hidden` and removes it
    when training ends; the last one out restores the callback.
    """

    def __init__(self, callback):
        self.own = callback.__dict__.get("on_epoch_end")
        self.original = callback.on_epoch_end
        self.hidden = []

    def __call__(self, epoch, logs=None):
        if logs:
            logs = {k: v for k, v in logs.items()
                    if not any(k in keys for keys in self.hidden)}
        return self.original(epoch, logs)


def _hiding_filter(callback):
    """The callback's `_HidingFilter`, installed on first use."""
    current = callback.__dict__.get("on_epoch_end")
    if isinstance(current, _HidingFilter):
        return current
    hiding = _HidingFilter(callback)
    callback.on_epoch_end = hiding
    return hiding


def _check_hparams(hparams):
    if hparams is None:
        return None
    if not isinstance(hparams, Mapping):
        raise TypeError("`hparams` must be a dict from names to values. "
                        f"Received: hparams={hparams!r}")
    checked = {}
    for name, value in hparams.items():
        if isinstance(value, np.generic):  # np.float32(0.1), np.int64(3), ...
            value = value.item()
        if not isinstance(name, str) or not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                "`hparams` must map str names to bool, int, float or str values (what "
                f"TensorBoard's HParams dashboard shows). Received: hparams={hparams!r}"
            )
        if not name:
            raise ValueError(f"`hparams` names must not be empty. Received: hparams={hparams!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(
                f"`hparams` values must be finite. Received: hparams={hparams!r}")
        checked[name] = value
    return checked


def _check_str(name, value, *, empty):
    if not isinstance(value, str) or (not empty and not value):
        raise TypeError(f"`{name}` must be a{'' if empty else ' non-empty'} string. "
                        f"Received: {name}={value!r}")
    return value


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def _write_text(path, text):
    """Writes `text` to `path` atomically (a reader never sees half a file)."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def _tsv_field(label):
    """A label as one TSV field: tabs and newlines would split it, and an
    empty line would end the Projector's list of labels."""
    return re.sub(r"[\t\r\n]+", " ", label).strip() or "(empty)"


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


