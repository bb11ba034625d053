"""Measure the layers of a saved model on probe data, without training it.

Loads MODEL (a ``.keras`` file, or a legacy ``.h5``) with Keras's
``safe_mode`` on, reads the probe inputs from ``--data`` (``.npy``, or
``.npz``) without pickle, runs them through the model once and prints, per
layer, the covariance metrics of its outputs and the units switched off
(variance below ``--threshold`` x the largest unit variance of the layer).
With ``--out DIR``: ``DIR/analysis.json`` and, per layer, PNG pictures of
the covariance, the correlations and the spectrum.

Neither file runs code on loading: a model with a ``Lambda`` layer is
refused unless ``--no-safe-mode`` is given (for a file you trust), and
``.npy``/``.npz`` files holding Python objects are refused. Custom layers,
regularizers or losses the model uses must be registered with Keras
(``@keras.saving.register_keras_serializable``) by a module named with
``--import``; keras_covreg's own are always registered.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from typing import Any

import numpy as np

PRUNE_DESCRIPTION = """\
Remove the units a penalty has switched off from layers of a saved model.

Loads MODEL and the probe inputs of --data as `keras-covreg analyze` does
(safe_mode on, no pickle), finds in each --layers layer (Dense, or
Conv1D/2D/3D) the units whose variance over the data is below --threshold x
the largest unit variance of the layer, removes them from the layer and from
the input weights of the layers that read them, adds each removed unit's
mean to those layers' biases, and writes the smaller model to -o. Prints
what was removed, the parameter counts and the largest change of the
model's outputs on the data. Readers that cannot be adjusted exactly
(Add, Concatenate, Reshape, convolutions with padding='same', a model
output) are refused with an error that names them; see
keras_covreg.prune_units.
"""

SAFE_MODE_HINT = (
    "Keras's safe_mode refuses to load code stored in the file (a Lambda "
    "layer's Python bytecode), since loading it would run it. For a file you "
    "trust, pass --no-safe-mode")
CUSTOM_OBJECT_HINT = (
    "keras-covreg registers keras_covreg's regularizers and layers itself; for "
    "the model's own classes, name the module that registers them (with "
    "@keras.saving.register_keras_serializable) with --import MODULE")


class InputError(ValueError):
    """A model or data file that cannot be used, said for the command line."""


def load_data(path: str, model: Any) -> Any:
    """The probe inputs in `path`: one array, or one per model input.

    A ``.npz`` holding one array gives that array; one holding several must
    name them after the model's inputs (a dict then), or hold one named
    ``x``. Read with ``allow_pickle=False``.

    Raises:
        InputError: if the file cannot be read, holds Python objects, or its
            arrays do not match the model's inputs.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(
                f"argument --data: {path!r} holds Python objects, which only pickle "
                "can read, and reading a pickle runs code: refused. Save the inputs "
                "as numeric arrays (numpy.save of a float or int array)") from e
        raise InputError(f"argument --data: cannot read {path!r}: {e}") from e
    except OSError as e:
        raise InputError(f"argument --data: cannot read {path!r}: {e}") from e
    if isinstance(loaded, np.ndarray):
        return _fitting(loaded, model, path)
    with loaded:
        names = list(loaded.files)
        if len(names) == 1:
            return _fitting(loaded[names[0]], model, path)
        inputs = [getattr(t, "name", "").split(":")[0] for t in getattr(model, "inputs", [])]
        if inputs and all(n in names for n in inputs):
            return {n: loaded[n] for n in inputs} if len(inputs) > 1 else loaded[inputs[0]]
        if "x" in names:
            return _fitting(loaded["x"], model, path)
        raise InputError(
            f"argument --data: {path!r} holds several arrays ({', '.join(names)}); name "
            f"them after the model's inputs ({', '.join(inputs) or 'unknown'}) or call "
            "the one to use 'x'")


def _fitting(x: np.ndarray, model: Any, path: str) -> np.ndarray:
    """`x`, if its shape fits a one-input model's input (unknown sizes fit)."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        return x
    expected = tuple(inputs[0].shape)
    fits = x.ndim == len(expected) and all(
        e is None or e == a for e, a in zip(expected[1:], x.shape[1:]))
    if not fits:
        raise InputError(
            f"argument --data: {path!r} holds an array of shape {x.shape}, which does not "
            f"fit the model's input of shape {expected} (None: any size)")
    return x


def load_model(path: str, *, safe_mode: bool, imports: tuple[str, ...] = ()) -> Any:
    """`keras.saving.load_model` with keras_covreg and `imports` registered.

    Raises:
        InputError: with what to do, if a module cannot be imported, the file
            holds code and `safe_mode` is on, or it uses unknown classes.
    """
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise InputError(f"argument --import: cannot import {module!r}: {e}") from e
    import keras

    import keras_covreg.layers  # noqa: F401  (registers the layer forms)
    import keras_covreg.regularizers  # noqa: F401  (registers the regularizers)

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError, ...
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safe_mode" in str(e):
            raise InputError(f"cannot load {path!r}: {SAFE_MODE_HINT}. ({message})") from e
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(e))
        if unknown or "Unknown" in str(e):
            what = f"'{unknown.group(1)}'" if unknown else f"({message})"
            raise InputError(
                f"cannot load {path!r}: it uses {what}, which Keras does not know. "
                f"{CUSTOM_OBJECT_HINT}") from e
        raise InputError(f"cannot load {path!r}: {type(e).__name__}: {message}") from e


def table(found: dict[str, Any]) -> str:
    """A markdown table of `analyze`'s results, one row per layer."""
    from keras_covreg.experiments import runner

    def number(value: float, spec: str) -> str:
        return "nan" if np.isnan(value) else format(value, spec)

    rows = []
    for name, a in found.items():
        s = a.summary
        rows.append([
            name, str(a.units), f"{a.n_samples:,}", number(s["cvr"], ".3g"),
            number(s["mapc"], ".3f"), number(s["ud90_pca"], ".0f"),
            number(s["ud90_unit"], ".0f"), number(s["effective_rank"], ".1f"),
            "-" if a.undefined else f"{len(a.switched_off)} of {a.units}",
        ])
    return runner.markdown_table(
        ["layer", "units", "N", "CVR", "MAPC", "UD90 (PCA)", "UD90 (units)",
         "effective rank", "switched off"], rows)


def _file_name(layer: str) -> str:
    return re.sub(r"[^\w.-]", "_", layer)


def write_outputs(out: str, found: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """Writes analysis.json and each layer's pictures into `out`; returns the paths."""
    from keras_covreg import _plots, metrics
    from keras_covreg.experiments import runner

    os.makedirs(out, exist_ok=True)
    written = []
    for name, a in found.items():
        if a.undefined is not None:
            continue
        _, pca, unit = metrics.spectral_summary(a.covariance)
        pictures = _plots.covariance_figures(
            a.covariance, name=name, when="analysed", pca=pca, unit=unit,
            cut=int(a.summary["ud90_pca"]), correlation=metrics.correlation_matrix(a.covariance),
            n_samples=a.n_samples)
        for kind, fig in pictures.items():
            path = os.path.join(out, f"{_file_name(name)}_{kind}.png")
            _plots.save_png_file(fig, path)
            written.append(path)
    path = os.path.join(out, "analysis.json")
    runner.write_atomic(path, json.dumps(
        {**options, "layers": [a.to_json() for a in found.values()]}, indent=2))
    return [path, *written]


def run(args: Any) -> None:
    """The ``keras-covreg analyze`` command."""
    from keras_covreg import analyze

    model = load_model(args.model, safe_mode=args.safe_mode, imports=tuple(args.imports or ()))
    x = load_data(args.data, model)
    found = analyze(model, x, layers=list(args.layers) if args.layers else None,
                    threshold=args.threshold, max_samples=args.max_samples,
                    batch_size=args.batch_size, spatial_mode=args.spatial_mode,
                    max_features=args.max_features)
    print(f"# {os.path.basename(args.model)}: layers measured on "
          f"{os.path.basename(args.data)}\n")
    print(table(found).rstrip())
    for name, a in found.items():
        if len(a.switched_off):
            shown = ", ".join(str(i) for i in a.switched_off[:20])
            more = f", ... ({len(a.switched_off)} in all)" if len(a.switched_off) > 20 else ""
            print(f"\n{name}: switched off (variance < {a.threshold:g} x the largest): "
                  f"units {shown}{more}")
    if args.out is not None:
        options = {"model": os.path.abspath(args.model), "data": os.path.abspath(args.data),
                   "threshold": args.threshold, "max_samples": args.max_samples,
                   "spatial_mode": args.spatial_mode}
        try:
            paths = write_outputs(args.out, found, options)
        except OSError as e:
            raise InputError(f"argument --out: cannot write to {args.out!r}: {e}") from e
        print(f"\nWrote {len(paths)} files to {args.out}")


def prune(args: Any) -> None:
    """The ``keras-covreg prune`` command."""
    from keras_covreg import prune_units

    if os.path.abspath(args.output) == os.path.abspath(args.model):
        raise InputError(f"argument -o/--output: {args.output!r} is the model being pruned; "
                         "write the smaller model to another file")
    model = load_model(args.model, safe_mode=args.safe_mode, imports=tuple(args.imports or ()))
    x = load_data(args.data, model)
    smaller, report = prune_units(model, x, layers=list(args.layers), threshold=args.threshold,
                                  max_output_change=args.max_output_change,
                                  max_samples=args.max_samples, batch_size=args.batch_size)
    try:
        smaller.save(args.output)
    except OSError as e:
        raise InputError(f"argument -o/--output: cannot write {args.output!r}: {e}") from e
    print(report)
    print(f"Wrote {args.output}")
