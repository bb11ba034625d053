"""Cost of CovarianceMonitor, and StreamingCovariance against numpy.cov.

1. The conv autoencoder (paper shape) trained on 45,000 synthetic 32x32x3
   images, batch 100: epoch time with a CovarianceMonitor on the code (10,000
   probe samples, images on) over epoch time without one, epochs alternating
   on one model in one process (ABBA order), median over rounds.
   Target on CPU: <= 1.10.
   The time spent inside the monitor's hook is also printed, as
   (epoch + monitor) / epoch: the difference of two epoch times is noisy.
   With ``--model wide``: an MLP on the flattened images (3072 -> 1024 ->
   256 -> 84 -> 256 -> 3072) with the monitor on three layers, one of 1024
   features. Target: <= 1.10 as well.
2. StreamingCovariance over 10^5 x 84 float32 samples in batches, against one
   numpy.cov call on the same in-memory data: throughput ratio, median over
   rounds. Target: >= 0.7.

Usage: python benchmarks/monitor_overhead.py [--rounds 3] [--train 45000]
           [--model conv|wide]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_covreg import CovarianceMonitor, CovarianceRegularizer  # noqa: E402
from keras_covreg.experiments.models import conv_autoencoder  # noqa: E402
from keras_covreg.metrics import StreamingCovariance  # noqa: E402


class TimedMonitor(CovarianceMonitor):
    """Adds up the time spent in the monitor's own epoch hooks."""

    seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.seconds += time.perf_counter() - start


def wide_mlp():
    """An MLP autoencoder on flattened 32x32x3 images, widest layer 1024."""
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(1024, activation="tanh", name="wide")(h)
    h = keras.layers.Dense(256, activation="tanh", name="mid")(h)
    h = keras.layers.Dense(84, name="code",
                           activity_regularizer=CovarianceRegularizer(0.08))(h)
    h = keras.layers.Dense(256, activation="tanh")(h)
    h = keras.layers.Dense(32 * 32 * 3)(h)
    return keras.Model(inputs, keras.layers.Reshape((32, 32, 3))(h))


def monitor_ratio(rounds, n_train, n_probe, which="conv"):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n_train, 32, 32, 3)).astype("float32")
    probe = rng.uniform(size=(n_probe, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    if which == "wide":
        model, watched = wide_mlp(), ["wide", "mid", "code"]
    else:
        model, watched = conv_autoencoder(code_regularizer=CovarianceRegularizer(0.08)), "code"
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    log_dir = tempfile.mkdtemp()
    monitor = TimedMonitor(watched, probe, log_dir=log_dir, max_samples=n_probe)
    model.fit(x[:1000], x[:1000], batch_size=100, epochs=1, verbose=0)  # warm up

    done = [0]

    def epoch(callbacks):
        # One more epoch of one long training, as a user's fit runs them: a
        # fit that starts at epoch 0 also measures the model before training,
        # which a long training does once, not every epoch.
        start = time.perf_counter()
        model.fit(x, x, batch_size=100, initial_epoch=done[0], epochs=done[0] + 1,
                  verbose=0, callbacks=callbacks)
        done[0] += 1
        return time.perf_counter() - start

    epoch([monitor])  # trace the probe, measure before training
    monitor.seconds = 0.0
    times = {"without": [], "with": []}
    for r in range(rounds):
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        for name in order:
            times[name].append(epoch([monitor] if name == "with" else []))
    result = {k: statistics.median(v) for k, v in times.items()}
    result["monitor"] = monitor.seconds / rounds
    return result


def streaming_ratio(rounds, n=100_000, p=84, batch=2_000):
    x = np.random.default_rng(0).normal(size=(n, p)).astype("float32")
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        np.cov(x, rowvar=False)
        t_numpy = time.perf_counter() - start
        start = time.perf_counter()
        acc = StreamingCovariance()
        for i in range(0, n, batch):
            acc.update(x[i : i + batch])
        acc.covariance()
        t_stream = time.perf_counter() - start
        ratios.append(t_numpy / t_stream)
    return statistics.median(ratios)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", type=int, default=45_000)
    parser.add_argument("--probe", type=int, default=10_000)
    parser.add_argument("--model", choices=["conv", "wide"], default="conv")
    args = parser.parse_args()
    print(f"keras {keras.__version__}, backend {keras.config.backend()}, "
          f"{os.cpu_count()} CPUs")
    ratio = streaming_ratio(max(args.rounds, 11))
    print(f"StreamingCovariance throughput / numpy.cov throughput "
          f"(100000 x 84, batches of 2000): {ratio:.2f} (target >= 0.7)")
    t = monitor_ratio(args.rounds, args.train, args.probe, args.model)
    name = {"conv": "conv autoencoder", "wide": "wide MLP (3 watched layers)"}[args.model]
    print(f"{name} epoch ({args.train} samples): without monitor "
          f"{t['without']:.2f} s, with monitor ({args.probe} probe samples) "
          f"{t['with']:.2f} s, ratio {t['with'] / t['without']:.3f} (target <= 1.10)")
    # The difference of two noisy epoch times can be smaller than the noise;
    # the time inside the monitor's own hook is measured directly as well.
    print(f"time inside the monitor per epoch {t['monitor']:.2f} s: (epoch without + "
          f"monitor) / epoch without = {1 + t['monitor'] / t['without']:.3f}")


if __name__ == "__main__":
    main()
