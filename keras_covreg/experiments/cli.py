"""The ``keras-covreg`` command line."""

import argparse
import sys


def _demo(args):
    from keras_covreg.experiments.demo import run_demo

    run_demo(strength=args.strength, epochs=args.epochs, seed=args.seed)


def build_parser():
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
