"""The ``keras-covreg`` command line: the paper's experiments and a demo.

    keras-covreg demo                      # one minute: L_Sigma on vs off
    keras-covreg xor --out runs            # Section 3.3, Figures 4 and 5
    keras-covreg synthetic --out runs      # Section 3.2, Figures 2 and 3
    keras-covreg cifar10 --data-dir DIR    # Section 3.4, Table 1 (and Figure 6)

Each experiment writes into ``<out>/<experiment>/``: a JSON per run, a CSV,
PNG figures, a markdown summary beside the paper's numbers, and TensorBoard
logs. Running the same command again resumes an interrupted sweep.
"""

import argparse
import dataclasses
import sys

HELP = {
    "synthetic": {
        "n_samples": "samples of the 4 sources (paper: 10000)",
        "source_stds": "standard deviations of the independent sources (paper: not given)",
        "input_dim": "dimension of the random projection (paper: not given)",
        "code_units": "units of the linear code (paper: 10)",
        "projections": "random projections averaged per point (paper: 10)",
        "strengths": "lambda values (paper: 0 and 8 log-spaced in [0.001, 1])",
        "regularizers": "penalties compared: l_sigma, l1",
        "epochs": "passes over the data per run (paper: 10000)",
        "batch_size": "batch size (paper: not given)",
        "learning_rate": "initial Adam learning rate, cosine-decayed to 1%%",
        "seed": "base seed: fixes data, projections and initializations",
        "passes_per_fit_epoch": "passes over the data per Keras epoch (speed only)",
        "monitor_every": "passes between CovarianceMonitor measurements",
    },
    "xor": {
        "seeds": "initializations per setting (with and without L_Sigma)",
        "strength": "lambda of L_Sigma on both hidden layers (paper: 0.2)",
        "learning_rate": "Adam learning rate (paper: not given)",
        "steps_per_chunk": "training steps between convergence checks",
        "max_chunks": "most chunks before giving up on convergence",
        "tolerance": "relative loss change per chunk that counts as converged",
        "abs_tolerance": "absolute loss change per chunk that counts as converged",
        "active_fraction": "a unit is active if its variance is at least this "
                           "fraction of its layer's largest",
        "seed": "base seed",
    },
    "cifar10": {
        "data_dir": "directory in the CIFAR-10 python-version layout; default: "
                    "keras.datasets.cifar10.load_data() (downloads)",
        "seeds": "initializations per row (paper: 5)",
        "rows": "penalties, one Table 1 row each: l_sigma, l1, none, decov",
        "strength": "lambda of every penalty (paper: 0.08 for L_Sigma)",
        "train_samples": "training images (paper: 45000)",
        "val_samples": "validation images held out of the training set (paper: 5000)",
        "test_samples": "test images (paper: 10000)",
        "max_epochs": "most epochs; early stopping usually ends sooner",
        "patience": "epochs without a better validation MSE before stopping",
        "batch_size": "batch size (paper: 100)",
        "learning_rate": "Adam learning rate (paper: 0.001)",
        "tdv_dim": "d of TdV (CIFAR-10 has no known true dimension)",
        "sweep": "also run Figure 6's lambda sweep (22 runs, seed 0)",
        "images": "write covariance heatmaps and spectra to TensorBoard every epoch",
        "sweep_strengths": "lambda values of the sweep (default 0.01 * 2^k, k=0..10)",
        "seed": "base seed",
    },
}


# Options that name penalties: their values are the keys of the experiment
# module's REGULARIZERS.
PENALTY_OPTIONS = ("regularizers", "rows")


def _add_config_arguments(parser, module, helps):
    for field in dataclasses.fields(module.Config):
        default = field.default
        flag = "--" + field.name.replace("_", "-")
        text = helps.get(field.name, "")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=default, help=text)
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else str
            shown = " ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in default)
            parser.add_argument(flag, type=kind, nargs="+", default=default,
                                choices=tuple(module.REGULARIZERS)
                                if field.name in PENALTY_OPTIONS else None,
                                help=f"{text} (default: {shown})")
        else:
            parser.add_argument(flag, type=type(default) if default is not None else str,
                                default=default, help=f"{text} (default: {default})")


def _config(config_cls, args):
    values = {}
    for field in dataclasses.fields(config_cls):
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(field.default, tuple) else value
    return config_cls(**values)


def _experiment(module_name):
    def run(args):
        import importlib

        module = importlib.import_module(f"keras_covreg.experiments.{module_name}")
        exp, summary = module.run(_config(module.Config, args), args.out)
        print(summary)
        print(f"Results in {exp.root}")

    return run


def _demo(args):
    from keras_covreg.experiments.demo import run_demo

    run_demo(strength=args.strength, epochs=args.epochs, seed=args.seed)


def build_parser():
    import importlib

    parser = argparse.ArgumentParser(
        prog="keras-covreg",
        description="Experiments of 'Disentangled activations in deep networks' "
        "(Kagebaeck & Mogren) with keras_covreg.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="train a linear autoencoder with and without L_Sigma (~1 min)"
    )
    demo.add_argument("--strength", type=float, default=0.3, help="lambda (default 0.3)")
    demo.add_argument("--epochs", type=int, default=50, help="epochs (default 50)")
    demo.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    demo.set_defaults(func=_demo)
    summaries = {
        "synthetic": "Section 3.2: random projections of 4 sources (Figures 2, 3)",
        "xor": "Section 3.3: the XOR network (Figures 4, 5)",
        "cifar10": "Section 3.4: conv autoencoder on CIFAR-10 (Table 1, Figure 6)",
    }
    for name, summary in summaries.items():
        module = importlib.import_module(f"keras_covreg.experiments.{name}")
        p = sub.add_parser(name, help=summary, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--out", default="runs", help="output directory (default: runs)")
        _add_config_arguments(p, module, HELP[name])
        p.set_defaults(func=_experiment(name))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError) as e:
        parser.exit(2, f"keras-covreg {args.command}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
