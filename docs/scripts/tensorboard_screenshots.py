"""Screenshots of TensorBoard's dashboards for CovarianceMonitor, for the docs.

Trains the demo's linear autoencoder (4 sources in 20 dimensions, 10-unit
code) for a few epochs with and without L_Sigma, with `CovarianceMonitor`
(hparams, projector on) beside Keras's `TensorBoard` callback; starts a real
`tensorboard` server on the logs; and takes headless-browser screenshots
of the Time Series, Images, HParams, Custom Scalars and Projector dashboards,
driving Debian's `chromium` through `chromedriver` (packages `chromium` and
`chromium-driver`) with `selenium` (pip), which waits for the pictures to load
(``chromium --screenshot`` alone captures the page before they arrive).

Usage:
    KERAS_BACKEND=tensorflow python docs/scripts/tensorboard_screenshots.py \\
        [--out docs/images] [--logdir DIR] [--epochs 15]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import keras
import numpy as np

from keras_covreg import CovarianceMonitor, CovarianceRegularizer
from keras_covreg.experiments import data, models

# Dashboard -> (URL after the server's address, window height in pixels).
DASHBOARDS = {
    "timeseries": ("?tagFilter=code#timeseries", 1500),
    "timeseries_images": ("?tagFilter=covariance|spectrum#timeseries", 1000),
    "images": ("#images", 1400),
    "hparams": ("#hparams", 800),
    "custom_scalars": ("#custom_scalars", 1000),
    "projector": ("#projector", 900),
}
# Time Series opens with its settings pane: cut it off (pixels from the left
# that are kept), so that the cards fill the picture in the docs.
KEEP_WIDTH = {"timeseries": 1030, "timeseries_images": 1030}
# Seconds to wait for a dashboard to draw after its pictures have loaded.
SETTLE_SECONDS = 6


def train(logdir, epochs):
    x, sources = data.projected_sources(2400, 20, seed=0)
    x_train, x_val = x[:2000], x[2000:]
    # The Projector's labels: which of the 4 sources is largest in a sample.
    labels = [f"source {k + 1}" for k in np.argmax(np.abs(sources[2000:]), axis=1)]
    for name, strength in (("none", 0.0), ("l_sigma_0.3", 0.3)):
        keras.utils.set_random_seed(0)
        reg = CovarianceRegularizer(strength) if strength else None
        model = models.linear_autoencoder(20, code_regularizer=reg)
        model.compile(keras.optimizers.Adam(0.01), "mse")
        run_dir = os.path.join(logdir, name)
        monitor = CovarianceMonitor(
            "code", log_dir=run_dir, true_dim=4,
            hparams={"penalty": "l_sigma" if strength else "none", "strength": strength},
            projector_samples=400,
            projector_labels=labels,
        )
        callbacks = [monitor]
        if keras.config.backend() == "tensorflow":
            callbacks.append(keras.callbacks.TensorBoard(run_dir, write_graph=False))
        model.fit(x_train, x_train, batch_size=100, epochs=epochs, verbose=0,
                  validation_data=(x_val, x_val), callbacks=callbacks)
        print(name, {k: round(v, 3) for k, v in monitor.results["code"].items()})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(url, path, height):
    """Opens `url` in headless chromium and saves the window once it has drawn."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size=1280,{height}"):
        options.add_argument(flag)
    # The Debian binaries, named so that selenium does not look for others online.
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(url)
        time.sleep(SETTLE_SECONDS)
        loaded = "return Array.from(document.images).every(i => i.complete);"
        for _ in range(60):
            if driver.execute_script(loaded):
                break
            time.sleep(0.5)
        time.sleep(2)
        driver.save_screenshot(path)
    finally:
        driver.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("docs", "images"))
    parser.add_argument("--logdir", default=None, help="keep the logs here (default: a temp dir)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=list(DASHBOARDS), choices=list(DASHBOARDS))
    args = parser.parse_args()
    if shutil.which("chromedriver") is None:
        sys.exit("needs Debian's chromium and chromium-driver packages, and selenium (pip)")
    logdir = args.logdir or tempfile.mkdtemp()
    if not os.path.exists(os.path.join(logdir, "none")):
        train(logdir, args.epochs)
    os.makedirs(args.out, exist_ok=True)
    port = free_port()
    tensorboard = shutil.which("tensorboard") or os.path.join(
        os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen(
        [tensorboard, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port),
         # Every step of every picture, as the docs recommend (images=0 would
         # show none: TensorBoard 2.21 then serves zero samples).
         "--samples_per_plugin", "images=1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(5)  # let the server load the event files
        for name in args.only:
            where, height = DASHBOARDS[name]
            path = os.path.abspath(os.path.join(args.out, f"tensorboard_{name}.png"))
            screenshot(base + where, path, height)
            if name in KEEP_WIDTH:
                from PIL import Image

                with Image.open(path) as image:
                    image.crop((0, 0, KEEP_WIDTH[name], image.height)).save(path)
            print(path)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
