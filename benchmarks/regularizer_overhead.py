"""Training-step cost of L_Sigma, measured side by side in one process.

Prints two kinds of ratio, each the median over several alternating rounds:

* conv autoencoder (the paper's shape: batch 100, 84-unit code, 32x32x3
  synthetic input, 540,583 parameters): step time with L_Sigma on the code
  over step time without. Target on the TensorFlow CPU backend: <= 1.03.
  The step time of the same model with L_Sigma at strength 0 is printed too:
  on TensorFlow 2.21 CPU it has read a few percent *below* the model without
  any regularizer, a difference in how the two graphs are optimized, not a
  cost of the penalty.
* a dense layer of width 1024 and 4096 (batch 256): the time L_Sigma adds to
  a training step (value and gradient) over the time of one N x p x p matrix
  product on the same machine. Forming C takes one such product and its
  gradient another, so 2 is the floor for an exact L1 norm of C. Target: <= 3.
  The isolated value-and-gradient time of the penalty, over the same product,
  is printed beside it.

Usage: python benchmarks/regularizer_overhead.py [--rounds 7] [--steps 20]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_covreg import CovarianceRegularizer  # noqa: E402
from keras_covreg.experiments.models import conv_autoencoder  # noqa: E402


def step_timer(model, x, y):
    """Returns a function that times `steps` training steps on one batch."""
    model.train_on_batch(x, y)  # trace and warm up

    def timed(steps):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        return (time.perf_counter() - start) / steps

    return timed


def alternate(timers, rounds, steps):
    """Median seconds per step of each timer, the timers run in turn.

    The order is reversed every other round, so that neither timer always
    runs first (ABBA), which cancels drift in the machine's speed.
    """
    samples = {name: [] for name in timers}
    names = list(timers)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            samples[name].append(timers[name](steps))
    return {name: statistics.median(s) for name, s in samples.items()}


def conv_autoencoder_ratio(rounds, steps):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(100, 32, 32, 3)).astype("float32")
    timers = {}
    configs = (
        ("none", None),
        ("l_sigma", CovarianceRegularizer(0.08)),
        # Same graph as l_sigma with a zero weight: separates the penalty's
        # cost from TensorFlow optimizing the two graphs differently.
        ("l_sigma_0", CovarianceRegularizer(0.0)),
    )
    for name, reg in configs:
        keras.utils.set_random_seed(0)
        model = conv_autoencoder(code_regularizer=reg)
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        timers[name] = step_timer(model, x, x)
    t = alternate(timers, rounds, steps)
    return t["l_sigma"] / t["none"], t


def wide_layer_ratios(width, rounds, steps, batch=256):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, width)).astype("float32")
    y = rng.normal(size=(batch, width)).astype("float32")
    timers = {}
    for name, reg in (("none", None), ("l_sigma", CovarianceRegularizer(0.08))):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((width,)), keras.layers.Dense(width, activity_regularizer=reg)]
        )
        model.compile(keras.optimizers.SGD(1e-3), "mse")
        timers[name] = step_timer(model, x, y)

    h = tf.constant(x)
    product = tf.function(lambda a: tf.matmul(a, a, transpose_a=True))
    reg = CovarianceRegularizer(0.08)

    @tf.function
    def value_and_gradient(a):
        with tf.GradientTape() as tape:
            tape.watch(a)
            value = reg.penalty(a)
        return value, tape.gradient(value, a)

    for name, fn in (("product", product), ("penalty", value_and_gradient)):
        fn(h)

        def timed(steps, fn=fn):
            start = time.perf_counter()
            for _ in range(steps):
                out = fn(h)
            np.asarray(out[0] if isinstance(out, tuple) else out)
            return (time.perf_counter() - start) / steps

        timers[name] = timed
    t = alternate(timers, rounds, steps)
    added = (t["l_sigma"] - t["none"]) / t["product"]
    isolated = t["penalty"] / t["product"]
    return added, isolated, t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"keras {keras.__version__}, backend {keras.config.backend()}, "
          f"{os.cpu_count()} CPUs, {args.rounds} rounds x {args.steps} steps")
    ratio, t = conv_autoencoder_ratio(args.rounds, args.steps)
    print(f"conv autoencoder step: none {t['none'] * 1e3:.1f} ms, "
          f"l_sigma {t['l_sigma'] * 1e3:.1f} ms, ratio {ratio:.3f} (target <= 1.03); "
          f"l_sigma with strength 0 {t['l_sigma_0'] * 1e3:.1f} ms")
    for width in (1024, 4096):
        added, isolated, t = wide_layer_ratios(width, args.rounds, args.steps)
        print(f"dense {width} (batch 256): step none {t['none'] * 1e3:.2f} ms, "
              f"l_sigma {t['l_sigma'] * 1e3:.2f} ms, one NxPxP product "
              f"{t['product'] * 1e3:.2f} ms; added/product {added:.2f} (target <= 3), "
              f"isolated value+grad/product {isolated:.2f}")


if __name__ == "__main__":
    main()
