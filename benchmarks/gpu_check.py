"""Checks keras_covreg on whatever accelerator the Keras backend finds.

Backend-agnostic (set KERAS_BACKEND=jax, torch or tensorflow). Prints:

1. the device;
2. L_Sigma's value and gradient against a float64 NumPy reference (max
   relative error), on a (256, 84) batch on the device;
3. the conv autoencoder (paper shape, batch 100): epoch time with L_Sigma on
   the code over epoch time without, alternating epochs (ABBA), median over
   rounds. Target on a GPU: <= 1.03;
4. CovarianceMonitor: one measurement over the probe set, and its metrics
   against the same metrics computed from a NumPy copy of the activations.

Usage: python benchmarks/gpu_check.py [--samples 10000] [--rounds 3]
"""

import argparse
import os
import statistics
import tempfile
import time

import keras
import numpy as np
from keras import ops

from keras_covreg import CovarianceMonitor, CovarianceRegularizer, metrics
from keras_covreg.experiments.models import conv_autoencoder


def device_description():
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return f"jax {jax.__version__}: {jax.devices()}"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"torch {torch.__version__}: {torch.cuda.get_device_name(0)}"
        return f"torch {torch.__version__}: cpu"
    import tensorflow as tf

    return f"tensorflow {tf.__version__}: {tf.config.list_logical_devices()}"


def value_and_gradient(reg, x):
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(reg.penalty)(x)
        return np.asarray(value), np.asarray(grad)
    if backend == "torch":
        xt = x.detach().clone().requires_grad_(True)
        value = reg.penalty(xt)
        value.backward()
        return value.detach().cpu().numpy(), xt.grad.cpu().numpy()
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        value = reg.penalty(x)
    return value.numpy(), tape.gradient(value, x).numpy()


def check_against_reference():
    h = np.random.default_rng(0).normal(size=(256, 84)) @ np.random.default_rng(1).normal(size=(84, 84))
    h = (h / 10).astype("float32")
    reg = CovarianceRegularizer(1.0)
    value, grad = value_and_gradient(reg, ops.convert_to_tensor(h))
    h64 = h.astype(np.float64)
    centered = h64 - h64.mean(axis=0)
    cov = centered.T @ centered / (len(h64) - 1)
    p = cov.shape[0]
    ref_value = np.abs(cov).sum() / p**2
    ref_grad = 2 * centered @ np.sign(cov) / ((len(h64) - 1) * p**2)
    value_err = abs(float(value) - ref_value) / ref_value
    grad_err = np.max(np.abs(grad - ref_grad)) / np.max(np.abs(ref_grad))
    return value_err, grad_err


def epoch_ratio(samples, rounds):
    x = np.random.default_rng(0).uniform(size=(samples, 32, 32, 3)).astype("float32")
    models = {}
    for name, reg in (("none", None), ("l_sigma", CovarianceRegularizer(0.08))):
        keras.utils.set_random_seed(0)
        model = conv_autoencoder(code_regularizer=reg)
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        model.fit(x[:1000], x[:1000], batch_size=100, epochs=1, verbose=0)
        models[name] = model
    times = {name: [] for name in models}
    for r in range(rounds):
        for name in ("none", "l_sigma") if r % 2 == 0 else ("l_sigma", "none"):
            start = time.perf_counter()
            models[name].fit(x, x, batch_size=100, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    t = {k: statistics.median(v) for k, v in times.items()}
    return t, models["l_sigma"], x


def monitor_check(model, x):
    probe = x[:2000]
    monitor = CovarianceMonitor("code", probe, log_dir=tempfile.mkdtemp())
    monitor.set_model(model)
    start = time.perf_counter()
    results = monitor.measure()["code"]
    seconds = time.perf_counter() - start
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    direct = metrics.covariance_summary(metrics.covariance(encoder.predict(probe, verbose=0)))
    err = max(abs(results[k] - direct[k]) / max(abs(direct[k]), 1e-12)
              for k in ("cvr", "l_sigma", "effective_rank"))
    return seconds, err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"keras {keras.__version__}, backend {keras.config.backend()}, {os.cpu_count()} CPUs")
    print(f"device: {device_description()}")
    value_err, grad_err = check_against_reference()
    print(f"L_Sigma vs float64 reference: value rel. error {value_err:.2e}, "
          f"gradient max rel. error {grad_err:.2e}")
    t, model, x = epoch_ratio(args.samples, args.rounds)
    print(f"conv autoencoder epoch ({args.samples} samples, batch 100): none "
          f"{t['none']:.2f} s, l_sigma {t['l_sigma']:.2f} s, ratio "
          f"{t['l_sigma'] / t['none']:.3f} (target on a GPU <= 1.03)")
    seconds, err = monitor_check(model, x)
    print(f"CovarianceMonitor: one measurement over 2000 probe samples {seconds:.2f} s; "
          f"max rel. difference from direct metrics {err:.1e}")


if __name__ == "__main__":
    main()
