"""Section 3.4: a convolutional autoencoder on CIFAR-10, Table 1 and Figure 6.

The conv autoencoder of `models.conv_autoencoder` (540,583 parameters, an
84-unit tanh code) trained with Adam (learning rate 0.001, batch 100) on
45,000 images, early stopping on the MSE of 5,000 held-out training images
with the best weights restored, and measured on the 10,000 test images with
the covariance of the whole test set. Rows: L_Sigma, L1, no penalty, and
DeCov (which the paper does not have), each over 5 initializations (--seeds).
After training, the code's switched-off units are removed
(`keras_covreg.prune_units`, decided on the validation images) at each of
the thresholds 0.001 to 0.3, and the pruned model's test MSE is measured.

Choices where the paper is silent, each a command-line option: pixels
scaled to [0, 1] with a sigmoid output (--pixels); a tanh code
(--code-activation); an L1 penalty that is the mean of |h| over the batch
and the units (--l1-reduction; 'sum' is the undivided sum an activity
regularizer gave in the Keras releases of the paper's time); two dense
layers of 120 units around the code (--architecture); the same lambda
(0.08) for every penalty (--strength); early-stopping patience 3
(--patience); TdV with d = 10 (--tdv-dim; the number of classes, as
CIFAR-10 has no known true dimension).
"""

import dataclasses
import math
import time

import numpy as np

from keras_covreg import metrics
from keras_covreg.experiments import data, models, runner

# Penalty name -> class in keras_covreg.regularizers (None: no penalty).
# Names, not classes: the command line reads this table without importing Keras.
REGULARIZERS = {
    "l_sigma": "CovarianceRegularizer",
    "l1": "ActivityL1Regularizer",
    "none": None,
    "decov": "DeCovRegularizer",
}
LABELS = {"l_sigma": "L_Sigma", "l1": "L1", "none": "none", "decov": "DeCov"}
# Table 1 of the paper (test set); DeCov is not in it.
PAPER_TABLE1 = {
    "l_sigma": {"cvr": 6.56, "ud90": 35.18, "mse": 0.0398},
    "l1": {"cvr": 4.03, "ud90": 20.59, "mse": 0.0569},
    "none": {"cvr": 20.00, "ud90": 41.69, "mse": 0.0365},
}


def sweep_strengths():
    """Figure 6's grid, read as 0.01 * 2^k for k = 0..10.

    The paper prints "0.0, 0.2, ..., 10.24", which does not add up; doubling
    from 0.01 puts the paper's Table 1 strength, 0.08, at k = 3.
    """
    return tuple(0.01 * 2.0**k for k in range(11))


# --pixels: how pixels are scaled, and the output activation that matches.
PIXEL_SCALINGS = {
    "unit": "[0, 1] (x / 255), sigmoid output",
    "symmetric": "[-1, 1] (x / 127.5 - 1), tanh output",
    "standardized": "per channel zero mean and unit variance over the training images, "
                    "linear output",
}
OUTPUT_ACTIVATIONS = {"unit": "sigmoid", "symmetric": "tanh", "standardized": "linear"}
# --architecture: the width of the dense layers around the code.
ARCHITECTURES = {
    "paper": "our reading of Section 3.4: 120-unit dense layers around the code, "
             "540,583 parameters",
    "small": "no 120-unit dense layers (the code reads the flattened feature maps), "
             "372,727 parameters: fewer than the paper's 'roughly 500,000'",
}
DENSE_UNITS = {"paper": models.CONV_DENSE_UNITS, "small": 0}
# Relative variance thresholds at which the code is pruned after training
# (`metrics.switched_off_units`); the default one, 0.01, is in the middle.
PRUNE_THRESHOLDS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
DEFAULT_PRUNE_THRESHOLD = metrics.SWITCHED_OFF_FRACTION


@dataclasses.dataclass
class Config:
    """Options of the CIFAR-10 experiment (each is a command-line option)."""

    data_dir: str | None = None
    seeds: int = 5
    rows: tuple = ("l_sigma", "l1", "none", "decov")
    strength: float = 0.08
    train_samples: int = 45_000
    val_samples: int = 5_000
    test_samples: int = 10_000
    max_epochs: int = 100
    patience: int = 3
    batch_size: int = 100
    learning_rate: float = 0.001
    tdv_dim: int = 10
    pixels: str = "unit"
    code_activation: str = "tanh"
    l1_reduction: str = "mean"
    architecture: str = "paper"
    images: bool = True
    sweep: bool = False
    sweep_strengths: tuple = sweep_strengths()
    seed: int = 0


# Options that only choose which runs there are, never change one: a Table 1
# run depends on its row and seed index (its id), a sweep run on its penalty
# and strength (its id), and both on the other options alone; `strength`
# is not among these, since Table 1 run ids do not hold it.
ADDS_RUNS = ("seeds", "rows", "sweep", "sweep_strengths")


# The class names of CIFAR-10's labels 0-9 (its batches.meta, label_names).
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck")
# Validation images whose codes go to TensorBoard's Projector, labelled by class.
PROJECTOR_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Splits:
    """The images of one configuration, scaled as `Config.pixels` says.

    Attributes:
        train, val, test: float32 arrays of shape (n, 32, 32, 3).
        val_labels: the class name of each validation image.
        pixel_scale: float64 array of shape (3,): one step of the scaled
            pixels of each channel is this much in [0, 1] pixels (1 for
            ``"unit"``, 0.5 for ``"symmetric"``, the channel's standard
            deviation / 255 for ``"standardized"``).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_labels: list
    pixel_scale: np.ndarray


def scale_pixels(images, pixels, train):
    """uint8 `images` scaled as `pixels` says, and the per-channel scale.

    The statistics of ``"standardized"`` come from the uint8 `train` images,
    so that validation and test images are scaled as the training images.
    """
    x = images.astype("float32")
    if pixels == "unit":
        return x / 255.0, np.ones(3)
    if pixels == "symmetric":
        return x / 127.5 - 1.0, np.full(3, 0.5)
    if pixels == "standardized":
        flat = train.reshape(-1, train.shape[-1]).astype(np.float64)
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return ((x - mean) / std).astype("float32"), std / 255.0
    raise ValueError(f"`pixels` must be one of {sorted(PIXEL_SCALINGS)}. "
                     f"Received: pixels={pixels!r}")


def load_splits(config):
    """Train / validation / test images scaled by `config.pixels`, as `Splits`."""
    (x_train, y_train), (x_test, _) = data.load_cifar10(config.data_dir)
    n_train, n_val = config.train_samples, config.val_samples
    if n_train + n_val > len(x_train) or config.test_samples > len(x_test):
        raise ValueError(
            f"CIFAR-10 has {len(x_train)} training and {len(x_test)} test images. "
            f"Received: train_samples={n_train}, val_samples={n_val}, "
            f"test_samples={config.test_samples}"
        )
    # The last val_samples training images are held out, as in the paper's
    # 45,000 / 5,000 split.
    train = x_train[:n_train]
    val_labels = [CLASS_NAMES[int(y)] for y in y_train[len(x_train) - n_val :, 0]]
    parts = [scale_pixels(a, config.pixels, train)
             for a in (train, x_train[len(x_train) - n_val :], x_test[: config.test_samples])]
    return Splits(parts[0][0], parts[1][0], parts[2][0], val_labels, parts[0][1])


def _squared_errors(model, x, pixel_scale):
    """Sums of squared reconstruction errors over `x`: scaled pixels, and [0, 1] pixels."""
    import keras

    scaled = in_unit = 0.0
    weight = np.asarray(pixel_scale, np.float64) ** 2
    for start in range(0, len(x), 1000):
        batch = x[start : start + 1000]
        # A direct call, not predict_on_batch: that traces a new tf.function
        # for every model, and Table 1's runs would retrace the same code.
        error = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)),
                           np.float64) - batch
        scaled += float(np.sum(error**2))
        in_unit += float(np.sum(error**2 * weight))
    return scaled, in_unit


def _test_metrics(model, splits, tdv_dim):
    """Whole-test-set covariance of the code, and the reconstruction MSE."""
    from keras_covreg.probe import measure

    x_test = splits.test
    code = measure(model, x_test, "code", max_samples=len(x_test), batch_size=1000)["code"]
    scaled, in_unit = _squared_errors(model, x_test, splits.pixel_scale)
    summary = code.summary(d=tdv_dim)
    summary["mse"] = scaled / x_test.size
    summary["mse_01"] = in_unit / x_test.size
    summary["n_test"] = code.n_samples
    return summary


def _pruned(model, splits):
    """The code pruned at each of `PRUNE_THRESHOLDS`: units kept and test MSE.

    The units and their means come from the validation images, the MSE from
    the test images.
    """
    from keras_covreg.probe import measure
    from keras_covreg.pruning import prune_units

    covariance = measure(model, splits.val, "code", max_samples=len(splits.val),
                         batch_size=1000)["code"].covariance
    found, previous = [], None
    for threshold in PRUNE_THRESHOLDS:
        removed = metrics.switched_off_units(covariance, threshold=threshold).tolist()
        if previous is not None and removed == previous[0]:
            found.append({**previous[1], "threshold": threshold})  # the same model
            continue
        smaller, report = prune_units(model, splits.val, layers="code", threshold=threshold,
                                      batch_size=1000)
        scaled, in_unit = _squared_errors(smaller, splits.test, splits.pixel_scale)
        found.append({"threshold": threshold, "units_kept": report.kept["code"],
                      "parameters": report.parameters_after,
                      "mse": scaled / splits.test.size, "mse_01": in_unit / splits.test.size})
        previous = (removed, found[-1])
    return found


def run_one(*, run_id, exp, config, splits, regularizer, strength, seed):
    import keras

    from keras_covreg import regularizers
    from keras_covreg.callbacks import CovarianceMonitor

    keras.utils.set_random_seed(config.seed * 1000 + seed)
    class_name = REGULARIZERS[regularizer]
    reg = None
    if class_name is not None and strength > 0:
        options = {"reduction": config.l1_reduction} if regularizer == "l1" else {}
        reg = getattr(regularizers, class_name)(strength, **options)
    model = models.conv_autoencoder(
        code_regularizer=reg, code_activation=config.code_activation,
        output_activation=OUTPUT_ACTIVATIONS[config.pixels],
        dense_units=DENSE_UNITS[config.architecture],
    )
    model.compile(keras.optimizers.Adam(config.learning_rate), "mse", metrics=["mse"])
    start = time.perf_counter()
    history = model.fit(
        splits.train, splits.train, batch_size=config.batch_size, epochs=config.max_epochs,
        validation_data=(splits.val, splits.val), verbose=0,
        callbacks=[
            # Before EarlyStopping and TensorBoard, so they see val_code_*.
            CovarianceMonitor("code", log_dir=exp.tensorboard_dir(run_id),
                              true_dim=config.tdv_dim, images=config.images,
                              projector_samples=PROJECTOR_SAMPLES,
                              projector_labels=splits.val_labels),
            # Early stopping on the reconstruction error alone, not the loss
            # that includes the penalty.
            keras.callbacks.EarlyStopping(monitor="val_mse", patience=config.patience,
                                          restore_best_weights=True),
            # Keras's TensorBoard callback needs TensorFlow (keras#19121).
            keras.callbacks.TensorBoard(exp.tensorboard_dir(run_id), write_graph=False)
            if keras.config.backend() == "tensorflow" else keras.callbacks.Callback(),
        ],
    )
    seconds = time.perf_counter() - start
    val_mse = history.history["val_mse"]
    pruned = _pruned(model, splits)
    at_default = next(p for p in pruned if p["threshold"] == DEFAULT_PRUNE_THRESHOLD)
    return {
        "experiment": "cifar10", "regularizer": regularizer, "strength": strength,
        "seed": seed, "epochs": len(val_mse), "best_epoch": int(np.argmin(val_mse)) + 1,
        "stopped_early": len(val_mse) < config.max_epochs, "best_val_mse": float(min(val_mse)),
        "train_seconds": seconds, "parameters": model.count_params(),
        **_test_metrics(model, splits, config.tdv_dim),
        "units_kept": at_default["units_kept"], "pruned_mse": at_default["mse"],
        "pruned": pruned,
        "val_mse_history": val_mse,
    }


def plan(config):
    runs = [(f"{row}_seed{seed}", {"regularizer": row, "seed": seed,
                                   "strength": 0.0 if row == "none" else config.strength})
            for seed in range(config.seeds) for row in config.rows]
    if config.sweep:
        runs += [(f"sweep_{row}_{s:.4g}", {"regularizer": row, "seed": 0, "strength": s})
                 for row in ("l_sigma", "l1") for s in config.sweep_strengths]
    return runs


def _cell(values, fmt):
    mean, std = runner.mean_std(values)
    if not np.isfinite(mean):
        return "-"
    if not np.isfinite(std):
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(std, fmt)}"


def report(exp, results, config, seconds):
    import keras

    from keras_covreg import _plots

    table = [r for r in results if not r["run_id"].startswith("sweep_")]
    rows = []
    for row in config.rows:
        group = [r for r in table if r["regularizer"] == row]
        paper = PAPER_TABLE1.get(row)
        rows.append([
            LABELS[row], len(group),
            _cell([r["cvr"] for r in group], ".2f"),
            f"{paper['cvr']:.2f}" if paper else "-",
            _cell([r["ud90_pca"] for r in group], ".1f"),
            _cell([r["ud90_unit"] for r in group], ".1f"),
            f"{paper['ud90']:.2f}" if paper else "-",
            _cell([r["mse"] for r in group], ".4f"),
            _cell([r.get("mse_01", r["mse"]) for r in group], ".4f"),
            f"{paper['mse']:.4f}" if paper else "-",
            _cell([r["mapc"] for r in group], ".3f"),
            _cell([r["tdv_pca"] for r in group], ".3f"),
            _cell([r["effective_rank"] for r in group], ".1f"),
            _cell([r.get("units_kept", math.nan) for r in group], ".1f"),
            _cell([r.get("pruned_mse", math.nan) for r in group], ".4f"),
            _cell([r["epochs"] for r in group], ".0f"),
        ])
    params = table[0]["parameters"] if table else models.conv_autoencoder(
        dense_units=DENSE_UNITS[config.architecture]).count_params()
    l1 = ("the mean of |h| over the batch and the units" if config.l1_reduction == "mean"
          else "the sum of |h| over the batch and the units")
    text = (
        "# CIFAR-10 convolutional autoencoder (Section 3.4)\n\n"
        f"{params:,} parameters ({config.architecture} architecture), "
        f"{models.CONV_CODE_UNITS}-unit {config.code_activation} code; pixels "
        f"{PIXEL_SCALINGS[config.pixels]}; Adam {config.learning_rate}, batch "
        f"{config.batch_size}; {config.train_samples} / {config.val_samples} / "
        f"{config.test_samples} train / validation / test images; early "
        f"stopping on validation MSE, patience {config.patience}, at most "
        f"{config.max_epochs} epochs, best weights restored; lambda = {config.strength} "
        f"for every penalty, L1 {l1}. Metrics on the test set, covariance over all "
        f"{config.test_samples} test images. TdV with d = {config.tdv_dim}. "
        f"{len(results)} runs, {runner.run_minutes(results):.1f} minutes of training and measuring "
        f"in all (the sum of the runs' own times); {seconds / 60:.1f} minutes in this "
        f"invocation ({keras.config.backend()} backend).\n\n"
        "Table 1, mean ± std over seeds (std shown with 2 or more seeds); the paper's "
        "numbers beside ours. The paper does not say which basis its UD uses. MSE is "
        "over the pixels as scaled for training; 'MSE [0, 1]' is the same error in "
        "pixels scaled to [0, 1]. 'Units kept' are the code units left after "
        f"`prune_units` at threshold {DEFAULT_PRUNE_THRESHOLD:g} (decided on the "
        "validation images), with the pruned model's test MSE beside them.\n\n"
        + runner.markdown_table(
            ["penalty", "seeds", "CVR", "paper CVR", "UD90 (PCA)", "UD90 (units)",
             "paper UD90", "MSE", "MSE [0, 1]", "paper MSE", "MAPC",
             f"TdV (d={config.tdv_dim})", "effective rank", "units kept",
             "MSE after pruning", "epochs"], rows)
    )
    pruning = _pruning_curves(table, config)
    if pruning:
        _plots.save_png_file(
            _plots.curves_figure(pruning, title="Pruning the code: MSE increase against "
                                 "units kept (test set, mean over seeds)",
                                 xlabel="code units kept", ylabel="MSE increase (%)",
                                 ylog=False, markers=True),
            exp.figure_path("pruning.png"))
        text += "\n![Pruning](figures/pruning.png)\n"
    sweep = [r for r in results if r["run_id"].startswith("sweep_")]
    if sweep:
        curves = {}
        for row in ("l_sigma", "l1"):
            group = sorted((r for r in sweep if r["regularizer"] == row),
                           key=lambda r: r["strength"])
            strengths = [r["strength"] for r in group]
            curves[LABELS[row]] = {
                "x": [r["mse"] for r in group], "strength": strengths,
                # A few lambdas written beside their points (all 11 ran into
                # each other): the smallest, Table 1's and the largest.
                "labels": [f"λ={s:.3g}" if s in (min(strengths), config.strength,
                                                  max(strengths)) else ""
                           for s in strengths],
                "cvr": [r["cvr"] for r in group], "ud90_pca": [r["ud90_pca"] for r in group],
            }
        _plots.save_png_file(
            _plots.tradeoff_figure(curves, [("cvr", "CVR"), ("ud90_pca", "UD90 (PCA)")],
                                   title="Figure 6: lambda sweep on CIFAR-10 (test set)"),
            exp.figure_path("figure6_sweep.png"))
        text += "\n![Figure 6](figures/figure6_sweep.png)\n"
    exp.write_summary(text)
    return text


def _pruning_curves(table, config):
    """Per row, the mean units kept and MSE increase (%) at each prune threshold."""
    curves = {}
    for row in config.rows:
        group = [r for r in table if r["regularizer"] == row and r.get("pruned")]
        if not group:
            continue
        kept, increase = [], []
        for i in range(len(PRUNE_THRESHOLDS)):
            kept.append(float(np.mean([r["pruned"][i]["units_kept"] for r in group])))
            increase.append(float(np.mean(
                [100 * (r["pruned"][i]["mse"] / r["mse"] - 1) for r in group])))
        curves[LABELS[row]] = (kept, increase)
    return curves


def prepare(config):
    """The context of `run_one`: the images, loaded once per process."""
    return {"splits": load_splits(config)}


def run(config, out, *, restart=False, jobs=1, on_worker_start=None):
    """Runs (or resumes, or extends) Table 1 (and the sweep); writes figures and summary.

    The data is loaded after the options are checked against the results
    already in ``<out>/cifar10`` and before anything is written. `restart`
    deletes those results first; without it, results made with options that
    differ other than in `ADDS_RUNS` raise `runner.OptionsMismatchError`.
    """
    return runner.run_sweep("cifar10", config, out, plan=plan, run_one=run_one,
                            report=report, adds_runs=ADDS_RUNS, restart=restart, jobs=jobs,
                            on_worker_start=on_worker_start, prepare=prepare,
                            hparams=hparams, metrics=HPARAMS_METRICS)


# The results the HParams dashboard shows per run, beside `hparams`.
HPARAMS_METRICS = ("cvr", "mapc", "ud90_pca", "ud90_unit", "tdv_pca", "tdv_unit", "mse",
                   "mse_01", "units_kept", "pruned_mse", "best_val_mse", "epochs")


def hparams(kwargs, config):
    """A run's hyperparameters for TensorBoard's HParams dashboard."""
    return {"penalty": kwargs["regularizer"], "strength": kwargs["strength"],
            "seed": kwargs["seed"]}
