"""Section 3.4: a convolutional autoencoder on CIFAR-10, Table 1 and Figure 6.

The conv autoencoder of `models.conv_autoencoder` (540,583 parameters, an
84-unit tanh code) trained with Adam (learning rate 0.001, batch 100) on
45,000 images, early stopping on the MSE of 5,000 held-out training images
with the best weights restored, and measured on the 10,000 test images with
the covariance of the whole test set. Rows: L_Sigma, L1, no penalty, and
DeCov (which the paper does not have), each over 5 initializations (--seeds).

Choices where the paper is silent: pixels scaled to [0, 1] with a sigmoid
output; and, each a command-line option, the same lambda (0.08) for every
penalty (--strength), early-stopping patience 3 (--patience), TdV with d = 10
(--tdv-dim; the number of classes, as CIFAR-10 has no known true dimension).
"""

import dataclasses
import time

import numpy as np

from keras_covreg.experiments import data, runner

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


def load_splits(config):
    """Train / validation / test images as float32 in [0, 1], and the
    validation images' class names."""
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
    scale = lambda a: (a.astype("float32") / 255.0)  # noqa: E731
    val_labels = [CLASS_NAMES[int(y)] for y in y_train[len(x_train) - n_val :, 0]]
    return (scale(x_train[:n_train]), scale(x_train[len(x_train) - n_val :]),
            scale(x_test[: config.test_samples]), val_labels)


def _test_metrics(model, x_test, batch_size, tdv_dim):
    """Whole-test-set covariance of the code, and the reconstruction MSE."""
    import keras

    from keras_covreg.probe import measure

    code = measure(model, x_test, "code", max_samples=len(x_test), batch_size=1000)["code"]
    squared_error = 0.0
    for start in range(0, len(x_test), 1000):
        x = x_test[start : start + 1000]
        # A direct call, not predict_on_batch: that traces a new tf.function
        # for every model, and Table 1's runs would retrace the same code.
        reconstruction = keras.ops.convert_to_numpy(model(x, training=False))
        squared_error += float(np.sum((np.asarray(reconstruction, np.float64) - x) ** 2))
    summary = code.summary(d=tdv_dim)
    summary["mse"] = squared_error / x_test.size
    summary["n_test"] = code.n_samples
    return summary


def run_one(*, run_id, exp, config, splits, regularizer, strength, seed):
    import keras

    from keras_covreg import regularizers
    from keras_covreg.callbacks import CovarianceMonitor
    from keras_covreg.experiments import models

    x_train, x_val, x_test, val_labels = splits
    keras.utils.set_random_seed(config.seed * 1000 + seed)
    class_name = REGULARIZERS[regularizer]
    cls = None if class_name is None else getattr(regularizers, class_name)
    model = models.conv_autoencoder(
        code_regularizer=cls(strength) if cls is not None and strength > 0 else None
    )
    model.compile(keras.optimizers.Adam(config.learning_rate), "mse", metrics=["mse"])
    start = time.perf_counter()
    history = model.fit(
        x_train, x_train, batch_size=config.batch_size, epochs=config.max_epochs,
        validation_data=(x_val, x_val), verbose=0,
        callbacks=[
            # Before EarlyStopping and TensorBoard, so they see val_code_*.
            CovarianceMonitor("code", log_dir=exp.tensorboard_dir(run_id),
                              true_dim=config.tdv_dim, images=config.images,
                              projector_samples=PROJECTOR_SAMPLES,
                              projector_labels=val_labels),
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
    return {
        "experiment": "cifar10", "regularizer": regularizer, "strength": strength,
        "seed": seed, "epochs": len(val_mse), "best_epoch": int(np.argmin(val_mse)) + 1,
        "stopped_early": len(val_mse) < config.max_epochs, "best_val_mse": float(min(val_mse)),
        "train_seconds": seconds, "parameters": model.count_params(),
        **_test_metrics(model, x_test, config.batch_size, config.tdv_dim),
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
    from keras_covreg.experiments import models

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
            f"{paper['mse']:.4f}" if paper else "-",
            _cell([r["mapc"] for r in group], ".3f"),
            _cell([r["tdv_pca"] for r in group], ".3f"),
            _cell([r["effective_rank"] for r in group], ".1f"),
            _cell([r["epochs"] for r in group], ".0f"),
        ])
    params = table[0]["parameters"] if table else models.conv_autoencoder().count_params()
    text = (
        "# CIFAR-10 convolutional autoencoder (Section 3.4)\n\n"
        f"{params:,} parameters, 84-unit tanh code; Adam {config.learning_rate}, batch "
        f"{config.batch_size}; {config.train_samples} / {config.val_samples} / "
        f"{config.test_samples} train / validation / test images in [0, 1]; early "
        f"stopping on validation MSE, patience {config.patience}, at most "
        f"{config.max_epochs} epochs, best weights restored; lambda = {config.strength} "
        f"for every penalty. Metrics on the test set, covariance over all "
        f"{config.test_samples} test images. TdV with d = {config.tdv_dim}. "
        f"{len(results)} runs, {runner.run_minutes(results):.1f} minutes of training and measuring "
        f"in all (the sum of the runs' own times); {seconds / 60:.1f} minutes in this "
        f"invocation ({keras.config.backend()} backend).\n\n"
        "Table 1, mean ± std over seeds (std shown with 2 or more seeds); the paper's "
        "numbers beside ours. The paper does not say which basis its UD uses.\n\n"
        + runner.markdown_table(
            ["penalty", "seeds", "CVR", "paper CVR", "UD90 (PCA)", "UD90 (units)",
             "paper UD90", "MSE", "paper MSE", "MAPC", f"TdV (d={config.tdv_dim})",
             "effective rank", "epochs"], rows)
    )
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


def run(config, out, *, restart=False):
    """Runs (or resumes, or extends) Table 1 (and the sweep); writes figures and summary.

    The data is loaded after the options are checked against the results
    already in ``<out>/cifar10`` and before anything is written. `restart`
    deletes those results first; without it, results made with options that
    differ other than in `ADDS_RUNS` raise `runner.OptionsMismatchError`.
    """
    return runner.run_sweep("cifar10", config, out, plan=plan, run_one=run_one,
                            report=report, adds_runs=ADDS_RUNS, restart=restart,
                            prepare=lambda c: {"splits": load_splits(c)},
                            hparams=hparams, metrics=HPARAMS_METRICS)


# The results the HParams dashboard shows per run, beside `hparams`.
HPARAMS_METRICS = ("cvr", "mapc", "ud90_pca", "ud90_unit", "tdv_pca", "tdv_unit", "mse",
                   "best_val_mse", "epochs")


def hparams(kwargs, config):
    """A run's hyperparameters for TensorBoard's HParams dashboard."""
    return {"penalty": kwargs["regularizer"], "strength": kwargs["strength"],
            "seed": kwargs["seed"]}
