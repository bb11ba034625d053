"""The ``keras-covreg`` command line: the paper's experiments and a demo.

    keras-covreg demo                      # one minute: L_Sigma on vs off
    keras-covreg xor --out runs            # Section 3.3, Figures 4 and 5
    keras-covreg synthetic --out runs      # Section 3.2, Figures 2 and 3
    keras-covreg cifar10 --data-dir DIR    # Section 3.4, Table 1 (and Figure 6)
    keras-covreg analyze MODEL.keras --data X.npy   # any saved model's layers
    keras-covreg prune MODEL.keras --data X.npy --layers code -o SMALLER.keras

Each experiment writes into ``<out>/<experiment>/``: a JSON per run, a CSV,
PNG figures, a markdown summary beside the paper's numbers, and TensorBoard
logs. Running the same command again resumes an interrupted sweep; more
``--seeds`` (and the other options that only add runs) extend a finished one.
Any other option that differs from the runs already there is refused: choose
another ``--out``, or ``--restart`` to delete them and start over.

Every option is checked when the command line is parsed, before any file is
written or any model built; the rule of each is in `OPTIONS`. Parsing loads no
Keras backend: ``--help`` and a bad option answer at once, and the experiment
modules import Keras only when a command runs. Unless ``--verbose`` is given,
TensorFlow's and JAX's start-up log lines (CUDA probing, CPU features) are
kept out of the terminal (`quiet_backend_logs`).
"""

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import logging
import math
import os
import sys
from typing import Any, Callable

from keras_covreg.experiments import data, models

EXPERIMENTS = {
    "synthetic": "Section 3.2: random projections of 4 sources (Figures 2, 3)",
    "xor": "Section 3.3: the XOR network (Figures 4, 5)",
    "cifar10": "Section 3.4: conv autoencoder on CIFAR-10 (Table 1, Figure 6)",
}
DEMO = "train a linear autoencoder with and without L_Sigma (~1 min)"
ANALYZE = "measure the layers of a saved .keras model on probe data"
PRUNE = "remove the switched-off units of a saved .keras model's layers"

# Run k of base seed s is seeded with s * 1000 + k (every experiment's
# run_one), and NumPy's global seed must stay below 2**32.
SEED_STRIDE = 1000
MAX_NUMPY_SEED = 2**32 - 1
MAX_BASE_SEED = MAX_NUMPY_SEED // SEED_STRIDE - 1


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values an option accepts.

    Attributes:
        what: the accepted values in words, e.g. "an integer >= 1".
        parse: ``parse(text)`` -> the value; raises `ValueError` if `text`
            does not parse.
        accepts: ``accepts(value)`` -> whether the parsed value is allowed.
    """

    what: str
    parse: Callable[[str], Any] = str
    accepts: Callable[[Any], bool] = lambda value: True


def integer(low, high=None):
    """Integers in [low, high] (no upper bound when `high` is None)."""
    what = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return Rule(what, int, lambda v: low <= v and (high is None or v <= high))


def real(low, high=None, *, open_low=False):
    """Finite numbers >= `low` (> `low` when `open_low`), and <= `high`."""
    if high is not None:
        what = f"a number in {'(' if open_low else '['}{low:g}, {high:g}]"
    else:
        what = f"a finite number {'>' if open_low else '>='} {low:g}"
    return Rule(what, float, lambda v: math.isfinite(v) and (v > low if open_low else v >= low)
                and (high is None or v <= high))


def choice(names):
    """One of `names`."""
    return Rule(f"one of {', '.join(names)}", str, lambda v: v in names)


def cifar10_directory():
    """A directory holding the CIFAR-10 python-version batches."""
    return Rule(
        f"a directory holding {', '.join(data.CIFAR10_FILES)}", str,
        lambda v: all(os.path.isfile(os.path.join(v, f)) for f in data.CIFAR10_FILES),
    )


def existing_file(suffixes):
    """An existing file whose name ends with one of `suffixes`."""
    return Rule(f"an existing {' or '.join(suffixes)} file", str,
                lambda v: v.endswith(tuple(suffixes)) and os.path.isfile(v))


def module_name():
    """A dotted Python module name."""
    return Rule("a module name such as mypackage.layers", str,
                lambda v: all(part.isidentifier() for part in v.split(".")))


def output_root():
    """A writable directory, or a path where one can be made."""
    return Rule("a writable directory, or a path where one can be made", str,
                lambda v: v != "" and _can_write_under(os.path.abspath(v)))


def _can_write_under(path):
    """Whether `path`, or its nearest existing ancestor, is a writable directory."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option: what it does and which values it takes.

    Attributes:
        help: what the option does; the default is added to it.
        rule: the `Rule` of each value; None for an on/off flag, and for the
            options that name penalties (`PENALTY_OPTIONS`), whose values are
            the keys of the experiment module's REGULARIZERS.
        distinct: for an option of several values, ``key(value)``: no two
            values may share a key. None if values may repeat.
        omitted: for an option without a default, what happens without it.
    """

    help: str
    rule: Rule | None = None
    distinct: Callable[[Any], str] | None = None
    omitted: str | None = None


SEED = Option(f"base seed: run k is seeded with seed * {SEED_STRIDE} + k",
              integer(0, MAX_BASE_SEED))
RUN_SEEDS = integer(1, SEED_STRIDE)
# Run ids hold a strength with 6 (synthetic) or 4 (cifar10 sweep) significant
# digits: two strengths may not share one.
SIX_DIGITS = "{:.6g}".format
FOUR_DIGITS = "{:.4g}".format
SAME = str

# The options of every subcommand, one entry per field of its Config (and per
# keyword argument of demo.run_demo): the single place that says what each
# option does and which values it takes.
OPTIONS = {
    "demo": {
        "strength": Option("lambda of L_Sigma on the code", real(0)),
        "epochs": Option("epochs of each of the two trainings", integer(1)),
        "n_samples": Option("samples of the 4 sources (a covariance needs 2)", integer(2)),
        "seed": Option("seed of the data and of both initializations",
                       integer(0, MAX_NUMPY_SEED)),
    },
    "synthetic": {
        "n_samples": Option("samples of the sources (paper: 10000; a covariance needs 2)",
                            integer(2)),
        "source_stds": Option("standard deviations of the independent sources, one per "
                              "source (paper: not given)", real(0, open_low=True)),
        "input_dim": Option("dimension of the random projection, at least the number of "
                            "sources (paper: not given)", integer(1)),
        "code_units": Option("units of the linear code, at least the number of sources "
                             "(paper: 10)", integer(1)),
        "projections": Option("random projections averaged per point (paper: 10)", RUN_SEEDS),
        "strengths": Option("lambda values, distinct to 6 significant digits; 0 trains "
                            "without a penalty (paper: 0 and 8 log-spaced in [0.001, 1])",
                            real(0), SIX_DIGITS),
        "regularizers": Option("penalties compared, each at every strength above 0", None,
                               SAME),
        "epochs": Option("passes over the data per run (paper: 10000), rounded up to a "
                         "multiple of --passes-per-fit-epoch", integer(1)),
        "batch_size": Option("batch size (paper: not given)", integer(1)),
        "learning_rate": Option("initial Adam learning rate, cosine-decayed to 1%% "
                                "(paper: not given)", real(0, open_low=True)),
        "seed": SEED,
        "passes_per_fit_epoch": Option(
            "passes over the data per Keras epoch: more is faster; the shuffled order of "
            "the batches, and so the numbers, change with it", integer(1)),
        "monitor_every": Option("passes between CovarianceMonitor measurements, rounded "
                                "down to a multiple of --passes-per-fit-epoch", integer(1)),
    },
    "xor": {
        "seeds": Option("initializations per setting (with and without L_Sigma)", RUN_SEEDS),
        "strength": Option("lambda of L_Sigma on both hidden layers (paper: 0.2)", real(0)),
        "learning_rate": Option("Adam learning rate (paper: not given)",
                                real(0, open_low=True)),
        "steps_per_chunk": Option("training steps between convergence checks", integer(1)),
        "max_chunks": Option("most chunks before giving up on convergence", integer(1)),
        "tolerance": Option("a solved run has converged when the loss changed over a "
                            "chunk by at most this fraction of its value, or by at most "
                            "--abs-tolerance", real(0)),
        "abs_tolerance": Option("a solved run has converged when the loss changed over a "
                                "chunk by at most this much, or by at most --tolerance of "
                                "its value", real(0)),
        "active_fraction": Option("a unit is active if its variance is at least this "
                                  "fraction of its layer's largest", real(0, 1, open_low=True)),
        "seed": SEED,
    },
    "cifar10": {
        "data_dir": Option(
            "CIFAR-10 in the python-version layout", cifar10_directory(),
            omitted="keras.datasets.cifar10.load_data(), which reads Keras's copy in "
            "$KERAS_HOME/datasets (~/.keras/datasets if KERAS_HOME is unset) and "
            "downloads it there (170 MB) when it is missing; offline without that copy, "
            "Keras's download fails ('URL fetch failure') before anything is written"),
        "seeds": Option("initializations per Table 1 row (paper: 5); 0 runs the sweep "
                        "alone (needs --sweep)", integer(0, SEED_STRIDE)),
        "rows": Option("penalties, one Table 1 row each", None, SAME),
        "strength": Option("lambda of every penalty of Table 1 (paper: 0.08 for L_Sigma)",
                           real(0)),
        "train_samples": Option("training images, the first of the training set "
                                "(paper: 45000)", integer(1)),
        "val_samples": Option("validation images, the last of the training set "
                              "(paper: 5000; a covariance needs 2)", integer(2)),
        "test_samples": Option("test images, the first of the test set (paper: 10000; a "
                               "covariance needs 2)", integer(2)),
        "max_epochs": Option("most epochs; early stopping usually ends sooner", integer(1)),
        "patience": Option("epochs without a better validation MSE before stopping",
                           integer(0)),
        "batch_size": Option("batch size (paper: 100)", integer(1)),
        "learning_rate": Option("Adam learning rate (paper: 0.001)", real(0, open_low=True)),
        "tdv_dim": Option("d of TdV (CIFAR-10 has no known true dimension)",
                          integer(1, models.CONV_CODE_UNITS)),
        "pixels": Option("pixel scaling, with the output activation that matches: unit: "
                         "[0, 1], sigmoid; symmetric: [-1, 1], tanh; standardized: per "
                         "channel over the training images, linear (paper: not given)",
                         choice(("unit", "symmetric", "standardized"))),
        "code_activation": Option("activation of the 84-unit code (paper: not given)",
                                  choice(models.ACTIVATIONS)),
        "l1_reduction": Option("the L1 row's penalty: mean: lambda x the mean of |h| over "
                               "the batch and the units; sum: lambda x their sum, what an "
                               "activity regularizer added in the Keras releases of the "
                               "paper's time (paper: not given)", choice(("mean", "sum"))),
        "architecture": Option("paper: 120-unit dense layers around the code (540,583 "
                               "parameters); small: without them (372,727)",
                               choice(("paper", "small"))),
        "images": Option("write covariance heatmaps and spectra to TensorBoard every epoch"),
        "sweep": Option("also run Figure 6's lambda sweep: L_Sigma and L1 at every "
                        "--sweep-strengths value, seed 0"),
        "sweep_strengths": Option("lambda values of the sweep (Figure 6: 0.01 * 2^k for "
                                  "k = 0..10), distinct to 4 significant digits", real(0),
                                  FOUR_DIGITS),
        "seed": SEED,
    },
}

# Options that name penalties: their values are the keys of the experiment
# module's REGULARIZERS.
PENALTY_OPTIONS = ("regularizers", "rows")


def _checked_type(name, rule):
    """The argparse `type` of option `name`: parses one value, checks its rule."""

    def parse(text):
        try:
            value = rule.parse(text)
        except ValueError:
            value = text
        else:
            if rule.accepts(value):
                return value
        raise argparse.ArgumentTypeError(f"must be {rule.what}. Received: {name}={value!r}")

    return parse


class _Several(argparse.Action):
    """Stores an option's values as a tuple; with a `key`, refuses repeated ones."""

    def __init__(self, *args, key=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.key = key

    def __call__(self, parser, namespace, values, option_string=None):
        keys = [self.key(v) for v in values] if self.key else []
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise argparse.ArgumentError(
                self, f"each value may appear once; repeated: {', '.join(repeated)}. "
                f"Received: {self.dest}={tuple(values)!r}")
        setattr(namespace, self.dest, tuple(values))


def _shown(default):
    """`default` as it would be typed on the command line."""
    if isinstance(default, (tuple, list)):
        return " ".join(str(v) for v in default)
    return str(default)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written; adds each option's real default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or not action.option_strings
                or action.default in (None, argparse.SUPPRESS)):
            return text
        return f"{text} (default: {_shown(action.default)})"


def _defaults(command):
    """{option: default} of `command`: its Config fields, or run_demo's keywords."""
    if command == "demo":
        from keras_covreg.experiments.demo import run_demo

        return {name: p.default for name, p in inspect.signature(run_demo).parameters.items()
                if name != "out"}
    module = importlib.import_module(f"keras_covreg.experiments.{command}")
    return {field.name: field.default for field in dataclasses.fields(module.Config)}


def _add_option(parser, name, default, option, choices=None):
    flag = "--" + name.replace("_", "-")
    if option.rule is None and choices is None:  # an on/off flag
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                            help=option.help)
        return
    rule = option.rule or choice(tuple(choices))
    several = isinstance(default, tuple)
    text = f"{option.help}; {'each ' if several else ''}{rule.what}"
    if option.omitted:
        text += f". If omitted: {option.omitted}"
    kwargs = {"type": _checked_type(name, rule), "default": default, "help": text}
    if several:
        kwargs.update(nargs="+", action=_Several, key=option.distinct)
    if choices is not None:
        kwargs["metavar"] = "{" + ",".join(choices) + "}"
    parser.add_argument(flag, **kwargs)


def _add_options(parser, command):
    penalties: tuple[str, ...] = ()
    if command != "demo":
        module = importlib.import_module(f"keras_covreg.experiments.{command}")
        penalties = tuple(getattr(module, "REGULARIZERS", ()))
    for name, default in _defaults(command).items():
        choices = penalties if name in PENALTY_OPTIONS else None
        _add_option(parser, name, default, OPTIONS[command][name], choices)


def _cross_option_errors(command, args):
    """Constraints between options that no single option's rule can check."""
    errors = []
    if command == "synthetic":
        d = len(args.source_stds)
        for name in ("input_dim", "code_units"):
            if getattr(args, name) < d:
                flag = "--" + name.replace("_", "-")
                errors.append(
                    f"argument {flag}: must be at least the number of sources "
                    f"(--source-stds), {d}. Received: {name}={getattr(args, name)}, "
                    f"source_stds={args.source_stds!r}")
    if command == "cifar10" and args.seeds == 0 and not args.sweep:
        errors.append("argument --seeds: 0 runs no Table 1 row; give --seeds >= 1, or "
                      "--sweep to run the sweep alone. Received: seeds=0, sweep=False")
    return errors


# Environment variables that quiet the backends' C++ start-up logs; they must
# be set before the backend is imported. TF_CPP_MIN_LOG_LEVEL=3 keeps
# TensorFlow's info lines ("cpu_feature_guard", "oneDNN custom operations")
# and its errors from probing a GPU that is not there ("failed call to
# cuInit: UNKNOWN ERROR (303)") out; real errors still raise in Python.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
# Python loggers of the backends that log at start-up ("Falling back to cpu").
QUIET_LOGGERS = ("tensorflow", "absl", "jax._src.xla_bridge")


def quiet_backend_logs():
    """Keeps the backends' start-up log lines out of the terminal.

    Call before Keras is imported: sets `QUIET_ENVIRONMENT` (values a user has
    set in the environment are kept) and `QUIET_LOGGERS`, then imports Keras,
    and so its backend, with the process's standard error sent to
    /dev/null. TensorFlow 2.21 writes some lines while its libraries load,
    before its log level is read ("oneDNN custom operations are on", "Could
    not find cuda drivers"); only this keeps them out. An error raised by the
    import is still raised, after standard error is back.
    """
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "keras" not in sys.modules:
        with _stderr_to_devnull():
            import keras  # noqa: F401

            # On the JAX and torch backends Keras imports TensorFlow later
            # (`keras.utils.set_random_seed` seeds it too, when installed):
            # import it here, inside the quiet window.
            if importlib.util.find_spec("tensorflow") is not None:
                import tensorflow  # noqa: F401


@contextlib.contextmanager
def _stderr_to_devnull():
    """Sends file descriptor 2, which C++ libraries write to, to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _config(config_cls, args):
    values = {}
    for field in dataclasses.fields(config_cls):
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(field.default, tuple) else value
    return config_cls(**values)


def _experiment(module_name):
    def run(args):
        module = importlib.import_module(f"keras_covreg.experiments.{module_name}")
        exp, summary = module.run(_config(module.Config, args), args.out,
                                  restart=args.restart, jobs=args.jobs,
                                  on_worker_start=None if args.verbose else quiet_backend_logs)
        print(summary)
        print(f"Results in {exp.root}")
        from keras_covreg.experiments import runner

        print(f"TensorBoard (curves, pictures, HParams): {runner.tensorboard_command(exp)}")

    return run


def _demo(args):
    from keras_covreg.experiments.demo import run_demo

    run_demo(**{name: getattr(args, name) for name in OPTIONS["demo"]})


def build_parser():
    """The ``keras-covreg`` parser, with a subparser per command."""
    parser = argparse.ArgumentParser(
        prog="keras-covreg", formatter_class=HelpFormatter,
        description="Experiments of 'Disentangled activations in deep networks' "
        "(Kagebaeck & Mogren) with keras_covreg.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's and JAX's own log lines (CUDA probing, CPU "
                        "features, retracing), which are hidden otherwise")
    demo = sub.add_parser("demo", help=DEMO, description=DEMO, formatter_class=HelpFormatter,
                          parents=[common])
    _add_options(demo, "demo")
    demo.set_defaults(func=_demo, parser=demo)
    for name, summary in EXPERIMENTS.items():
        module = importlib.import_module(f"keras_covreg.experiments.{name}")
        p = sub.add_parser(name, help=summary, description=module.__doc__,
                           formatter_class=HelpFormatter, parents=[common])
        p.add_argument("--out", type=_checked_type("out", output_root()), default="runs",
                       help=f"output root: results go to <out>/{name}/")
        p.add_argument(
            "--restart", action="store_true",
            help=f"delete the runs, figures, summary and logs already in <out>/{name}/ and "
            "start over; without it, runs made with other options are refused",
        )
        p.add_argument(
            "--jobs", type=_checked_type("jobs", integer(1)), default=1,
            help="runs trained side by side, each in its own process: pinned to a GPU "
            "(several share one when there are more jobs than GPUs) or, without one, to "
            "its share of the CPU cores; the results are those of one run after another")
        _add_options(p, name)
        p.set_defaults(func=_experiment(name), parser=p)
    _add_analyze(sub, common)
    return parser


def _add_analyze(sub, common):
    from keras_covreg.experiments import analyze

    p = sub.add_parser("analyze", help=ANALYZE, description=analyze.__doc__,
                       formatter_class=HelpFormatter, parents=[common])
    _model_and_data(p, "")
    p.add_argument("--layers", nargs="+", action=_Several, key=SAME,
                   type=_checked_type("layers", Rule("a layer name", str, lambda v: v != "")),
                   help="names of the layers to measure; if omitted, every layer with one "
                   "floating output of rank >= 2")
    p.add_argument("--threshold", type=_checked_type("threshold", real(0, 1)),
                   default=0.01, help="a unit is switched off when its variance is below "
                   "this share of the largest unit variance of its layer")
    p.add_argument("--spatial-mode", type=_checked_type(
        "spatial_mode", choice(("channels", "flatten"))), default="channels",
        help="feature maps: channels are the features and every position an "
        "observation ('channels'), or each sample flattened ('flatten')")
    p.add_argument("--max-features", type=_checked_type("max_features", integer(1)),
                   default=4096, help="leave out (or, when named, refuse) layers with more "
                   "features; a covariance takes 8 p^2 bytes")
    p.add_argument("--out", type=_checked_type("out", output_root()),
                   help="also write analysis.json and PNG pictures of each layer's "
                   "covariance, correlations and spectrum into this directory")
    p.set_defaults(func=analyze.run, parser=p, imports=None)
    _add_prune(sub, common)


def _model_and_data(p, what):
    """The arguments `analyze` and `prune` share: the files and how to read them."""
    p.add_argument("model", type=_checked_type("model", existing_file((".keras", ".h5"))),
                   help=f"the saved model{what}: a .keras file (or a legacy .h5)")
    p.add_argument("--data", required=True,
                   type=_checked_type("data", existing_file((".npy", ".npz"))),
                   help="the probe inputs: a .npy array, or a .npz of one array (or one "
                   "per model input, named after the inputs)")
    p.add_argument("--max-samples", type=_checked_type("max_samples", integer(2)),
                   default=10_000, help="the most probe samples read")
    p.add_argument("--batch-size", type=_checked_type("batch_size", integer(1)),
                   help="probe batch size; if omitted, 16 MiB of inputs per batch (32 to "
                   "1,024 samples)")
    p.add_argument("--safe-mode", action=argparse.BooleanOptionalAction, default=True,
                   help="load with Keras's safe_mode, which refuses code stored in the "
                   "file (Lambda layers); turn off only for a file you trust")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   type=_checked_type("import", module_name()),
                   help="import MODULE before loading, to register the model's own "
                   "classes with Keras; may be repeated")


def _add_prune(sub, common):
    from keras_covreg.experiments import analyze

    p = sub.add_parser("prune", help=PRUNE, description=analyze.PRUNE_DESCRIPTION,
                       formatter_class=HelpFormatter, parents=[common])
    _model_and_data(p, " to prune")
    p.add_argument("--layers", nargs="+", action=_Several, key=SAME, required=True,
                   type=_checked_type("layers", Rule("a layer name", str, lambda v: v != "")),
                   help="names of the Dense or Conv layers whose switched-off units to remove")
    p.add_argument("--threshold", type=_checked_type("threshold", real(0, 1)),
                   default=0.01, help="a unit is switched off when its variance is below "
                   "this share of the largest unit variance of its layer")
    p.add_argument("--max-output-change", type=_checked_type("max_output_change", real(0)),
                   help="refuse, writing nothing, if any model output changes by more than "
                   "this on the data; if omitted, any change is accepted and reported")
    p.add_argument("-o", "--output", required=True,
                   type=_checked_type("output", Rule(
                       "a .keras path in a writable directory", str,
                       lambda v: v.endswith(".keras") and not os.path.isdir(v)
                       and _can_write_under(os.path.dirname(os.path.abspath(v))))),
                   help="where to write the smaller model")
    p.set_defaults(func=analyze.prune, parser=p, imports=None)


def main(argv=None):
    """Parses `argv`, checks every option, then runs the command.

    Returns:
        0; a bad option, or options that do not match the runs already in the
        output directory, exit with status 2 and a usage error instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    errors = _cross_option_errors(args.command, args)
    if errors:
        args.parser.error("\n".join(errors))
    if not args.verbose:
        quiet_backend_logs()
    try:
        args.func(args)
    except (ValueError, TypeError) as e:
        parser.exit(2, f"keras-covreg {args.command}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
