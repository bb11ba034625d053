"""Section 3.3: does L_Sigma find the minimal XOR network by itself?

A 2-4-4-1 perceptron of logistic units learns XOR on its four patterns, with
L_Sigma (lambda = 0.2) on both hidden layers or without it, over many seeds.
The paper reports that with L_Sigma exactly 2 units of layer 1 and 1 unit of
layer 2 stay active (Figure 4), and that without it all units do (Figure 5).

Choices where the paper is silent (each a command-line option): Adam with
learning rate 0.01, binary cross-entropy, batches of the four patterns (a
covariance needs more than one sample), training in chunks of 1,000 steps
(--steps-per-chunk) until the run has converged: all four patterns are
classified correctly and the loss changed over the last chunk by at most 1%
of its previous value (--tolerance) or by at most 1e-05 (--abs-tolerance);
a run that has not converged after 30 chunks (--max-chunks) stops there. A
unit is *active* when its variance over the four patterns is at least 1% of
the largest unit variance in its layer (--active-fraction). The threshold is
relative because L_Sigma is not scale-invariant: it shrinks every variance,
and the next layer's weights can undo the scaling, so an absolute threshold
would call a layer that still carries the signal "inactive".
"""

import dataclasses

import numpy as np

from keras_covreg import metrics
from keras_covreg.experiments import data, runner

LAYERS = ("hidden_1", "hidden_2")


@dataclasses.dataclass
class Config:
    """Options of the XOR experiment (each is a command-line option)."""

    seeds: int = 20
    strength: float = 0.2
    learning_rate: float = 0.01
    steps_per_chunk: int = 1000
    max_chunks: int = 30
    tolerance: float = 1e-2
    # L_Sigma keeps shrinking the hidden variances, so the loss of a solved
    # network falls toward 0 without end, a few percent per chunk: a relative
    # test alone never passes. An absolute change this small counts too.
    abs_tolerance: float = 1e-5
    active_fraction: float = 0.01
    seed: int = 0


# Options that only choose which runs there are, never change one: a run
# depends on its own seed index and the other options alone, so more (or
# fewer) seeds extend (or report part of) the runs already in a directory.
ADDS_RUNS = ("seeds",)


def _trainer(trainers, config, regularized):
    """The compiled model of one setting, and its optimizer's starting state.

    The seeds of a setting share one model, and so one traced training step:
    a model per seed traced the same step again for every seed, and as XOR
    runs converge in a few chunks TensorFlow warned of retracing. Each run
    restores the starting state (`run_one`), so it trains as a fresh model.
    """
    import keras

    from keras_covreg.experiments import models
    from keras_covreg.regularizers import CovarianceRegularizer

    if regularized not in trainers:
        reg = CovarianceRegularizer(config.strength) if regularized else None
        model = models.xor_mlp(hidden_regularizer=reg)
        model.compile(keras.optimizers.Adam(config.learning_rate), "binary_crossentropy",
                      steps_per_execution=runner.steps_per_execution(config.steps_per_chunk))
        model.optimizer.build(model.trainable_variables)
        start = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
        trainers[regularized] = (model, start)
    return trainers[regularized]


def run_one(*, run_id, exp, config, seed, regularized, trainers=None):
    """Trains one seed of one setting; returns its numbers.

    `trainers` is a dict shared by the runs of one invocation (`_trainer`);
    None trains a model of its own.
    """
    import keras

    from keras_covreg.callbacks import CovarianceMonitor
    from keras_covreg.experiments import models
    from keras_covreg.probe import measure

    model, start = _trainer({} if trainers is None else trainers, config, regularized)
    # The initial weights of a model built right after seeding, as before the
    # model was shared: the same numbers for the same seed.
    keras.utils.set_random_seed(config.seed * 1000 + seed)
    model.set_weights(models.xor_mlp().get_weights())
    for variable, value in zip(model.optimizer.variables, start):
        variable.assign(value)
    x = np.tile(data.XOR_INPUTS, (config.steps_per_chunk, 1))
    y = np.tile(data.XOR_TARGETS, (config.steps_per_chunk, 1))
    # One fit epoch = one chunk; every batch holds the four patterns.
    monitor = CovarianceMonitor(list(LAYERS), data.XOR_INPUTS, log_dir=exp.tensorboard_dir(run_id),
                                freq=5, max_samples=4)
    losses, chunks = [], 0
    converged = False
    for chunks in range(1, config.max_chunks + 1):
        loss = model.fit(x, y, batch_size=4, epochs=chunks, initial_epoch=chunks - 1,
                         shuffle=False, verbose=0, callbacks=[monitor]).history["loss"][-1]
        losses.append(loss)
        # A direct call, not model.predict: predict traces a new tf.function
        # for every model, and a run of many seeds retraces the same code.
        predictions = keras.ops.convert_to_numpy(model(data.XOR_INPUTS, training=False))
        solved = bool(np.all((predictions > 0.5) == (data.XOR_TARGETS > 0.5)))
        if solved and len(losses) > 1 and abs(losses[-2] - loss) <= max(
                config.tolerance * abs(losses[-2]), config.abs_tolerance):
            converged = True
            break
    measured = measure(model, data.XOR_INPUTS, list(LAYERS))
    result = {
        "experiment": "xor", "seed": seed, "regularized": regularized,
        "solved": solved, "converged": converged, "steps": chunks * config.steps_per_chunk,
        "final_loss": losses[-1], "loss_history": losses,
        "predictions": predictions.ravel().tolist(),
    }
    for name in LAYERS:
        cov = measured[name].covariance
        variances = np.diag(cov)
        result[f"{name}_covariance"] = cov.tolist()
        result[f"{name}_variances"] = variances.tolist()
        threshold = config.active_fraction * variances.max()
        result[f"{name}_active"] = int(np.sum((variances >= threshold) & (variances > 0)))
        summary = measured[name].summary()
        for key in ("cvr", "mapc", "ud90_pca", "ud90_unit"):
            result[f"{name}_{key}"] = summary[key]
    result["minimal"] = result["hidden_1_active"] == 2 and result["hidden_2_active"] == 1
    result.update(_pruned(model, predictions, config))
    return result


def plan(config):
    return [(f"{'l_sigma' if reg else 'none'}_seed{seed:02d}", {"seed": seed, "regularized": reg})
            for reg in (True, False) for seed in range(config.seeds)]


def _pruned(model, predictions, config):
    """The network without its inactive units (`prune_units`), and what it changed.

    Returns ``pruned_units`` (units left per hidden layer), ``pruned_same_decisions``
    (the four patterns classified as before) and ``pruned_max_change`` (the
    largest change of an output probability); all None when a layer has no
    active unit, which cannot be pruned to a working network.
    """
    import keras

    from keras_covreg.pruning import prune_units

    try:
        smaller, report = prune_units(model, data.XOR_INPUTS, layers=list(LAYERS),
                                      threshold=config.active_fraction)
    except ValueError:
        return {"pruned_units": None, "pruned_same_decisions": None, "pruned_max_change": None}
    after = keras.ops.convert_to_numpy(smaller(data.XOR_INPUTS, training=False))
    return {"pruned_units": [report.kept[name] for name in LAYERS],
            "pruned_same_decisions": bool(np.all((after > 0.5) == (predictions > 0.5))),
            "pruned_max_change": report.max_abs_change}


def report(exp, results, config, seconds):
    from keras_covreg import _plots

    rows = []
    for regularized, label, figure in ((True, f"L_Sigma ({config.strength})", 4), (False, "none", 5)):
        group = [r for r in results if r["regularized"] == regularized]
        n = len(group)
        count = lambda key: sum(bool(r[key]) for r in group)  # noqa: E731
        active1 = np.mean([r["hidden_1_active"] for r in group])
        active2 = np.mean([r["hidden_2_active"] for r in group])
        pruned = [r for r in group if r.get("pruned_units") is not None]
        changes = [r["pruned_max_change"] for r in pruned]
        rows.append([label, n, f"{count('solved')}/{n}", f"{count('converged')}/{n}",
                     f"{sum(r['solved'] and r['minimal'] for r in group)}/{n}",
                     f"{active1:.2f}", f"{active2:.2f}",
                     f"{sum(r['pruned_same_decisions'] for r in pruned)}/{len(pruned)}",
                     f"{max(changes):.2g}" if changes else "-"])
        example = next((r for r in group if r["solved"]), group[0])
        for name in LAYERS:
            cov = np.asarray(example[f"{name}_covariance"])
            when = f"{label}, seed {example['seed']}"
            summary, pca, unit = metrics.spectral_summary(cov)
            pictures = _plots.covariance_figures(cov, name=name, when=when, pca=pca, unit=unit,
                                                 cut=int(summary["ud90_pca"]))
            for kind, fig in pictures.items():
                _plots.save_png_file(fig, exp.figure_path(f"figure{figure}_{name}_{kind}.png"))
    text = (
        "# XOR experiment (Section 3.3)\n\n"
        f"2-4-4-1 logistic MLP, {config.seeds} seeds per setting; Adam "
        f"{config.learning_rate}, binary cross-entropy, batches of the four patterns, "
        f"chunks of {config.steps_per_chunk} steps until solved and the loss changed by "
        f"less than {config.tolerance:.1%} or {config.abs_tolerance:g} over a chunk "
        f"(at most {config.max_chunks} "
        f"chunks); {runner.run_minutes(results):.1f} minutes of training in all (the sum "
        f"of the runs' own times), {seconds / 60:.1f} in this invocation. A unit is active when its variance over "
        f"the four patterns is >= {config.active_fraction:g} x the largest unit variance "
        "of its layer. 'minimal' = solved with "
        "exactly 2 active units in hidden layer 1 and 1 in hidden layer 2. 'After "
        "pruning': the network with its inactive units removed (keras_covreg."
        "prune_units, their means taken into the next layer's bias), the four "
        "patterns classified as before, and the largest change of an output "
        "probability (runs with a layer of no active unit are left out).\n\n"
        "Paper: with L_Sigma (0.2) the minimal structure (Figure 4); without it, all "
        "units active (Figure 5). It reports one network, not a rate.\n\n"
        + runner.markdown_table(
            ["penalty", "runs", "solved", "converged", "minimal", "mean active (layer 1)",
             "mean active (layer 2)", "same decisions after pruning",
             "largest output change"], rows)
        + "\nFigure 4 (with L_Sigma), first solving seed:\n\n"
        + "".join(f"![{k}](figures/figure4_{n}_{k}.png)\n" for n in LAYERS
                  for k in ("covariance", "spectrum"))
        + "\nFigure 5 (without), first solving seed:\n\n"
        + "".join(f"![{k}](figures/figure5_{n}_{k}.png)\n" for n in LAYERS
                  for k in ("covariance", "spectrum"))
    )
    exp.write_summary(text)
    return text


def prepare(config):
    """The context of `run_one`: the compiled models its runs share."""
    return {"trainers": {}}


def run(config, out, *, restart=False, jobs=1, on_worker_start=None):
    """Runs (or resumes, or extends) every seed and writes figures and summary.

    `restart` deletes the results already in ``<out>/xor`` first; without it,
    results made with options that differ other than in `ADDS_RUNS` raise
    `runner.OptionsMismatchError`. `jobs` runs that many runs side by side
    (`runner.run_sweep`).
    """
    return runner.run_sweep("xor", config, out, plan=plan, run_one=run_one, report=report,
                            adds_runs=ADDS_RUNS, restart=restart, jobs=jobs,
                            on_worker_start=on_worker_start, prepare=prepare,
                            hparams=hparams, metrics=HPARAMS_METRICS)


# The results the HParams dashboard shows per run, beside `hparams`.
HPARAMS_METRICS = tuple(f"{name}_{key}" for name in LAYERS
                        for key in ("cvr", "mapc", "ud90_pca", "ud90_unit", "active")) + (
    "final_loss", "steps", "solved", "minimal")


def hparams(kwargs, config):
    """A run's hyperparameters for TensorBoard's HParams dashboard."""
    regularized = kwargs["regularized"]
    return {"penalty": "l_sigma" if regularized else "none",
            "strength": config.strength if regularized else 0.0, "seed": kwargs["seed"]}
