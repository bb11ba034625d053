"""Generates the example pictures of docs/monitor.md.

Trains the demo's linear autoencoder (4 sources in 20 dimensions, 10-unit
code) with and without L_Sigma, watches the code with CovarianceMonitor, and
saves the monitor's last covariance, correlation and spectrum pictures.

Usage: python docs/scripts/monitor_images.py [--out docs/images]
"""

import argparse
import os
import tempfile

import keras
import numpy as np

from keras_covreg import CovarianceMonitor, CovarianceRegularizer, _plots, metrics
from keras_covreg.experiments import data, models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("docs", "images"))
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    x, _ = data.projected_sources(2000, 20, seed=0)
    monitors = {}
    for name, reg in (("none", None), ("l_sigma", CovarianceRegularizer(0.3))):
        keras.utils.set_random_seed(0)
        model = models.linear_autoencoder(20, code_regularizer=reg)
        model.compile(keras.optimizers.Adam(0.01), "mse")
        monitor = CovarianceMonitor("code", x, log_dir=tempfile.mkdtemp(), true_dim=4)
        model.fit(x, x, batch_size=100, epochs=args.epochs, verbose=0, callbacks=[monitor])
        monitors[name] = monitor
    # One colour scale for both runs, as `covariance_limit` gives the monitor,
    # so that the same red means the same covariance in both pictures.
    limit = max(float(np.abs(m.covariances["code"]).max()) for m in monitors.values())
    for name, monitor in monitors.items():
        cov = monitor.covariances["code"]
        when = f"{args.epochs} epochs, {'no penalty' if name == 'none' else 'L_Sigma 0.3'}"
        summary, pca, unit = metrics.spectral_summary(cov)
        figures = _plots.covariance_figures(
            cov, name="code", when=when, correlation=monitor.correlations["code"],
            pca=pca, unit=unit, cut=int(summary["ud90_pca"]),
            n_samples=int(monitor.results["code"]["n_samples"]), limit=limit,
            limit_note="shared",
        )
        for kind, fig in figures.items():
            path = os.path.join(args.out, f"monitor_{kind}_{name}.png")
            with open(path, "wb") as f:
                f.write(_plots.to_png(fig))
            print(path)
        print(name, {k: round(v, 3) for k, v in monitor.results["code"].items()})
        print("  unit variances, largest first:", np.sort(np.diag(cov))[::-1])


if __name__ == "__main__":
    main()
