"""What CovarianceMonitor shows in TensorBoard: one curve per metric, tag
descriptions, comparable and legible pictures, HParams, Custom Scalars, Text
and Projector, read back from the event files and from a real server."""

import csv
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from keras_covreg import CovarianceMonitor, CovarianceRegularizer, _plots, metrics
from keras_covreg.callbacks import histogram_bins
from tests import backend_utils
from tests.events import Events

SCALARS = {"cvr", "mapc", "ud90_pca", "ud90_unit", "l_sigma", "effective_rank",
           "participation_ratio", "n_samples"}


def data(n=240, p=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, p)) @ rng.normal(size=(p, p))).astype("float32")


def model_with_code(units=4, regularizer=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    code = keras.layers.Dense(units, name="code", activity_regularizer=regularizer)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(6)(code))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def accumulator(path):
    return Events(path)


def all_tags(acc):
    tags = acc.Tags()
    return [t for kind in ("scalars", "tensors", "images", "histograms") for t in tags[kind]]


# -- One curve per metric --


def needs_keras_tensorboard():
    pytest.importorskip("tensorflow")
    if backend_utils.BACKEND != "tensorflow":
        pytest.skip("keras.callbacks.TensorBoard needs the TensorFlow backend here")


@pytest.mark.parametrize("order", ["monitor_first", "tensorboard_first"])
def test_each_metric_once_beside_keras_tensorboard(tmp_path, order):
    needs_keras_tensorboard()
    x = data()
    model = model_with_code()
    monitor = CovarianceMonitor("code", x[:64], log_dir=tmp_path, images=False)
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    csv_path = tmp_path / "log.csv"
    logger = keras.callbacks.CSVLogger(str(csv_path))
    callbacks = [monitor, board] if order == "monitor_first" else [board, monitor]
    history = model.fit(x, x, epochs=2, verbose=0, validation_data=(x[:64], x[:64]),
                        callbacks=callbacks + [logger])
    tags = all_tags(accumulator(tmp_path / "validation"))
    assert "epoch_loss" in tags and "code/cvr" in tags
    # Keras writes a log key `val_code_cvr` as `epoch_code_cvr`: none may appear.
    keras_form = [t for t in tags if t.startswith("epoch_code_")]
    assert keras_form == []
    assert len(tags) == len(set(tags))
    # The callbacks after the monitor still see every value.
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    for key in SCALARS - {"n_samples"}:
        assert float(rows[-1][f"val_code_{key}"]) == pytest.approx(
            history.history[f"val_code_{key}"][-1])
    # A later fit without the monitor: Keras's callback is itself again.
    model.fit(x, x, epochs=1, verbose=0, validation_data=(x[:64], x[:64]),
              callbacks=[board])
    assert "on_epoch_end" not in vars(board)


def test_several_monitors_and_fits_leave_keras_tensorboard_as_it_was(tmp_path):
    needs_keras_tensorboard()
    x = data()
    model = model_with_code()
    first = CovarianceMonitor("code", x[:64], log_dir=tmp_path / "a", images=False)
    second = CovarianceMonitor("code", x[:64], log_dir=tmp_path / "b", images=False,
                               log_prefix="probe_")
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "keras"))
    for _ in range(3):
        model.fit(x, x, epochs=1, verbose=0, validation_data=(x[:64], x[:64]),
                  callbacks=[first, second, board])
        assert "on_epoch_end" not in vars(board)
    tags = all_tags(accumulator(tmp_path / "keras" / "validation"))
    assert "epoch_loss" in tags and not [t for t in tags if "code" in t]
    tags = all_tags(accumulator(tmp_path / "keras" / "train"))
    assert not [t for t in tags if "code" in t]


# -- Descriptions --


def test_every_tag_has_a_description(tmp_path):
    x = data()
    model = model_with_code()
    model.fit(x, x, epochs=1, verbose=0, callbacks=[
        CovarianceMonitor("code", x[:100], log_dir=tmp_path, true_dim=2)])
    acc = accumulator(tmp_path / "validation")
    tags = acc.Tags()
    described = tags["scalars"] + tags["images"] + tags["histograms"]
    assert len(described) == len(SCALARS) + 2 + 3 + 1
    for tag in described:
        text = acc.SummaryMetadata(tag).summary_description
        assert "N = 100 observations of p = 4 units" in text, tag
    assert "Lower is more decorrelated" in acc.SummaryMetadata("code/cvr").summary_description
    assert "Higher is better" in acc.SummaryMetadata("code/tdv_pca").summary_description
    assert "smoothing 0" in acc.SummaryMetadata("code/ud90_pca").summary_description
    # The monitor's docs page lists every tag.
    page = (pathlib.Path(__file__).parents[1] / "docs" / "monitor.md").read_text()
    for tag in described + [t for t in acc.Tags()["tensors"] if t.startswith("code/")]:
        assert f"`<layer>/{tag.split('/', 1)[1]}`" in page, tag


# -- Pictures --


def test_covariance_scale_is_fixed_at_the_first_measurement(tmp_path):
    x = data()
    model = model_with_code()
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    first = np.abs(metrics.covariance(encoder.predict(x[:100], verbose=0))).max()
    monitor = CovarianceMonitor("code", x[:100], log_dir=tmp_path)
    model.fit(x, x, epochs=3, verbose=0, callbacks=[monitor])
    acc = accumulator(tmp_path / "validation")
    description = acc.SummaryMetadata("code/covariance").summary_description
    assert f"±{first:.3g}" in description
    assert len(acc.Images("code/covariance")) == 4


def test_covariance_scale_given_by_the_user(tmp_path):
    x = data()
    model = model_with_code()
    model.fit(x, x, epochs=1, verbose=0, callbacks=[
        CovarianceMonitor("code", x[:100], log_dir=tmp_path / "a", covariance_limit=2.5)])
    acc = accumulator(tmp_path / "a" / "validation")
    assert "±2.5 " in acc.SummaryMetadata("code/covariance").summary_description
    with pytest.raises(ValueError, match="covariance_limit=0"):
        CovarianceMonitor("code", x, covariance_limit=0)
    with pytest.raises(ValueError, match="covariance_limit=inf"):
        CovarianceMonitor("code", x, covariance_limit=float("inf"))


def test_heatmap_colour_limits():
    cov = np.array([[4.0, -1.0], [-1.0, 1.0]])
    for limit, vmax, extend in ((None, 4.0, "neither"), (2.0, 2.0, "both"), (5.0, 5.0, "neither")):
        fig = _plots.matrix_figure(cov, title="t", label="covariance", limit=limit)
        image = fig.axes[0].images[0]
        assert image.norm.vmin == -vmax and image.norm.vmax == vmax
        assert fig.axes[1].get_ylabel() == "covariance"
        colorbar = image.colorbar
        assert colorbar.extend == extend
    _, pca, unit = metrics.spectral_summary(cov)
    correlation = _plots.covariance_figures(cov, name="code", when="epoch 0", pca=pca,
                                            unit=unit, correlation=np.eye(2))["correlation"]
    assert correlation.axes[0].images[0].norm.vmax == 1.0


def visible_texts(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return [(t, t.get_window_extent(renderer)) for t in texts]


@pytest.mark.parametrize("p, scale", [(2, 1), (10, 1), (84, 1e-3), (500, 1), (1024, 40)])
def test_pictures_are_legible_at_tensorboards_card_size(p, scale):
    rng = np.random.default_rng(p)
    h = rng.normal(size=(3 * p, p)) * np.linspace(3, 0.01, p) * scale
    cov = metrics.covariance(h)
    std = np.sqrt(np.diag(cov))
    summary, pca, unit = metrics.spectral_summary(cov)
    figures = _plots.covariance_figures(
        cov, name="dense_layer_1", when="before training", pca=pca, unit=unit,
        cut=int(summary["ud90_pca"]), correlation=cov / np.outer(std, std),
        n_samples=123456, limit=0.5 * np.abs(cov).max(), limit_note="fixed")
    for kind, fig in figures.items():
        png = Image.open(io.BytesIO(_plots.to_png(fig)))
        width, height = png.size
        assert (width, height) == (340, 260), kind
        # Time Series cards scale a picture down to fit CARD_SIZE.
        scale = min(1.0, _plots.CARD_SIZE[0] / width, _plots.CARD_SIZE[1] / height)
        texts = visible_texts(fig)
        strings = [t.get_text() for t, _ in texts]
        assert "dense_layer_1: " + kind in strings
        if kind != "spectrum":
            assert fig.axes[1].get_ylabel() in strings  # the colour bar's label
        for text, box in texts:
            # In the card, type stays at least 8 pixels high.
            size_px = text.get_fontsize() * fig.dpi / 72 * scale
            assert size_px >= 8, (kind, text.get_text(), size_px)
            # Nothing is cut off at the picture's edges.
            assert box.x0 >= 0 and box.y0 >= 0, (kind, text.get_text(), box)
            assert box.x1 <= width and box.y1 <= height, (kind, text.get_text(), box)
        for i, (a, box_a) in enumerate(texts):
            for b, box_b in texts[i + 1:]:
                assert not box_a.overlaps(box_b), (kind, a.get_text(), b.get_text())


def test_pictures_less_often_than_scalars(tmp_path):
    x = data()
    model = model_with_code()
    model.fit(x, x, epochs=4, verbose=0, callbacks=[
        CovarianceMonitor("code", x[:64], log_dir=tmp_path, image_freq=2)])
    acc = accumulator(tmp_path / "validation")
    assert [e.step for e in acc.Scalars("code/cvr")] == [-1, 0, 1, 2, 3]
    assert [e.step for e in acc.Images("code/spectrum")] == [-1, 1, 3]
    with pytest.raises(ValueError, match="image_freq=0"):
        CovarianceMonitor("code", x, image_freq=0)


@pytest.mark.parametrize("p, bins", [(1, 1), (4, 2), (10, 4), (84, 10), (5000, 30)])
def test_histogram_bins_follow_the_width(p, bins):
    assert histogram_bins(p) == bins


def test_unit_variance_histogram(tmp_path):
    x = data()
    model = model_with_code(units=10)
    monitor = CovarianceMonitor("code", x[:100], log_dir=tmp_path)
    model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    buckets = accumulator(tmp_path / "validation").Histograms("code/unit_variance")[-1].buckets
    assert buckets.shape == (4, 3) and buckets[:, 2].sum() == 10
    variances = np.diag(monitor.covariances["code"])
    assert buckets[0, 0] == pytest.approx(variances.min())
    assert buckets[-1, 1] == pytest.approx(variances.max())


# -- Projector --


def test_projector_files(tmp_path):
    x = data()
    model = model_with_code()
    labels = [f"class {i % 3}" for i in range(len(x))]
    labels[1] = "tab\there"
    monitor = CovarianceMonitor("code", x, log_dir=tmp_path, batch_size=32,
                                projector_samples=50, projector_labels=labels)
    model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    run_dir = tmp_path / "validation"
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    config = text_format.Parse((run_dir / "projector_config.pbtxt").read_text(),
                               projector_config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    assert embedding.tensor_name == "code"
    vectors = np.loadtxt(run_dir / embedding.tensor_path, delimiter="\t")
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    np.testing.assert_allclose(vectors, encoder.predict(x[:50], verbose=0), rtol=1e-5, atol=1e-6)
    written = (run_dir / embedding.metadata_path).read_text().splitlines()
    assert written[:3] == ["class 0", "tab here", "class 2"] and len(written) == 50


def test_projector_needs_a_label_per_sample(tmp_path):
    x = data()
    with pytest.raises(ValueError, match="projector_samples"):
        CovarianceMonitor("code", x, projector_labels=["a"])
    model = model_with_code()
    monitor = CovarianceMonitor("code", x, log_dir=tmp_path, projector_samples=20,
                                projector_labels=["a"] * 5)
    with pytest.raises(ValueError, match="projector_labels"):
        model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])


def test_hparams_must_be_plain_values(tmp_path):
    with pytest.raises(TypeError, match="hparams"):
        CovarianceMonitor("code", data(), hparams={"strength": [0.1]})
    with pytest.raises(TypeError, match="hparams"):
        CovarianceMonitor("code", data(), hparams=[("strength", 0.1)])
    with pytest.raises(ValueError, match="finite"):
        CovarianceMonitor("code", data(), hparams={"strength": float("nan")})
    with pytest.raises(ValueError, match="empty"):
        CovarianceMonitor("code", data(), hparams={"": 1})
    # NumPy scalars, as a sweep over np.logspace gives them, are plain values.
    monitor = CovarianceMonitor("code", data(), hparams={"strength": np.float32(0.5),
                                                         "seed": np.int64(3)})
    assert monitor.hparams == {"strength": 0.5, "seed": 3}
    assert type(monitor.hparams["seed"]) is int


@pytest.mark.parametrize("kwargs, error", [
    ({"run": None}, "run=None"), ({"run": ""}, "run=''"),
    ({"log_prefix": None}, "log_prefix=None"), ({"images": "no"}, "images='no'"),
    ({"projector_samples": 5, "projector_labels": "abcdef"}, "projector_labels='abcdef'"),
])
def test_bad_arguments_fail_at_construction(kwargs, error):
    with pytest.raises(TypeError, match=error):
        CovarianceMonitor("code", data(), **kwargs)


# -- A real TensorBoard server --


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, logdir):
        exe = shutil.which("tensorboard") or os.path.join(
            os.path.dirname(sys.executable), "tensorboard")
        if not os.path.exists(exe):
            pytest.skip("the tensorboard command is not installed")
        self.port = _free_port()
        self.process = subprocess.Popen(
            # TensorBoard's defaults (the fast loader where installed), as a
            # user starts it.
            [exe, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def get(self, path, body=None):
        url = f"http://127.0.0.1:{self.port}/data/plugin{path}"
        request = urllib.request.Request(
            url, data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_for(self, path, ready, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                answer = self.get(path)
                if ready(answer):
                    return answer
            except OSError:
                pass
            time.sleep(0.5)
        if self.process.poll() is not None:
            pytest.skip("tensorboard did not start: "
                        + self.process.stderr.read().decode()[-500:])
        raise AssertionError(f"tensorboard never served {path}")

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def test_tensorboard_server_dashboards(tmp_path):
    x = data()
    for strength in (0.0, 0.5):
        model = model_with_code(regularizer=CovarianceRegularizer(strength) if strength else None)
        model.fit(x, x, epochs=2, verbose=0, callbacks=[CovarianceMonitor(
            "code", x[:64], log_dir=tmp_path / f"strength_{strength}",
            hparams={"strength": strength, "penalty": "l_sigma" if strength else "none"},
            projector_samples=20, projector_labels=[str(i % 2) for i in range(64)])])
    server = Server(tmp_path)
    try:
        runs = ("strength_0.0/validation", "strength_0.5/validation")
        scalars = server.wait_for("/scalars/tags", lambda a: all("code/cvr" in a.get(r, {})
                                                                 for r in runs))
        # Scalars, with their descriptions.
        assert set(scalars[runs[0]]) == {f"code/{k}" for k in SCALARS}
        assert "Lower is more decorrelated" in scalars[runs[0]]["code/cvr"]["description"]
        assert "&lt;" not in scalars[runs[0]]["code/l_sigma"]["description"]  # no raw HTML
        histograms = server.get("/histograms/tags")
        assert "buckets" in histograms[runs[0]]["code/unit_variance"]["description"]
        values = server.get(f"/scalars/scalars?run={runs[1]}&tag=code/cvr")
        assert [v[1] for v in values] == [-1, 0, 1]
        images = server.get("/images/tags")
        assert {"code/covariance", "code/correlation", "code/spectrum"} == set(images[runs[0]])
        assert "fixed" in images[runs[0]]["code/covariance"]["description"]
        # HParams: two sessions with their hyperparameters and the monitor's metrics.
        experiment = server.get("/hparams/experiment", {"experimentName": ""})
        names = {h["name"] for h in experiment["hparamInfos"]}
        assert names == {"strength", "penalty"}
        metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"code/cvr", "code/mapc", "code/ud90_pca"} <= metric_tags
        groups = server.get("/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
            "colParams": [], "startIndex": 0, "sliceSize": 10})
        sessions = {g["hparams"]["penalty"]: g for g in groups["sessionGroups"]}
        assert set(sessions) == {"none", "l_sigma"}
        assert sessions["l_sigma"]["hparams"]["strength"] == 0.5
        cvr = [m["value"] for m in sessions["l_sigma"]["metricValues"]
               if m["name"]["tag"] == "code/cvr"]
        last = server.get(f"/scalars/scalars?run={runs[1]}&tag=code/cvr")[-1][2]
        assert cvr == [pytest.approx(last)]
        # Custom Scalars: the layout per watched layer, merged across runs.
        layout = server.get("/custom_scalars/layout")
        (category,) = layout["category"]
        assert category["title"] == "code (CovarianceMonitor)"
        charts = {c["title"]: c["multiline"]["tag"] for c in category["chart"]}
        assert charts["UD90 on both bases"] == ["^code/ud90_(pca|unit)$"]
        assert charts["loss"] == ["^epoch_loss$"]
        # Text: the configuration of each run.
        text = server.get("/text/tags")
        assert text[runs[1]] == ["code/config"]
        (entry,) = server.get(f"/text/text?run={runs[1]}&tag=code/config")
        assert "CovarianceRegularizer" in entry["text"] and "strength" in entry["text"]
        # Projector: the embedding and its labels.
        projector_runs = server.get("/projector/runs")
        assert set(projector_runs) == set(runs)
        info = server.get(f"/projector/info?run={runs[0]}")
        (embedding,) = info["embeddings"]
        assert embedding["tensorName"] == "code" and embedding["tensorShape"] == [20, 4]
    finally:
        server.close()


# -- The experiments' sweeps in the HParams dashboard --


def test_experiment_sweep_writes_hparams_sessions_and_results(tmp_path):
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    from keras_covreg.experiments import xor

    config = xor.Config(seeds=2, steps_per_chunk=5, max_chunks=1)
    exp, _ = xor.run(config, tmp_path)
    root = tmp_path / "xor" / "tensorboard"
    acc = accumulator(root)
    experiment = hparams_metadata.parse_experiment_plugin_data(
        acc.SummaryMetadata("_hparams_/experiment").plugin_data.content)
    domains = {h.name: [v for v in h.domain_discrete.values] for h in experiment.hparam_infos}
    assert {k: [getattr(v, v.WhichOneof("kind")) for v in vs] for k, vs in domains.items()} == {
        "penalty": ["l_sigma", "none"], "strength": [0.0, 0.2], "seed": [0.0, 1.0]}
    assert [m.name.tag for m in experiment.metric_infos] == [
        f"result/{key}" for key in xor.HPARAMS_METRICS]
    for result in exp.results():
        run = accumulator(root / result["run_id"])
        start = hparams_metadata.parse_session_start_info_plugin_data(
            run.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
        assert start.hparams["penalty"].string_value == (
            "l_sigma" if result["regularized"] else "none")
        assert start.hparams["seed"].number_value == result["seed"]
        for key in ("hidden_1_cvr", "final_loss", "steps"):
            (event,) = run.Scalars(f"result/{key}")
            assert event.value == pytest.approx(result[key], rel=1e-6)
        assert [e.value for e in run.Scalars("epoch_loss")] == pytest.approx(result["loss_history"])
    # Reporting again replaces, never adds, the run's summary file.
    xor.run(config, tmp_path)
    files = [f for f in os.listdir(root / exp.results()[0]["run_id"]) if f.endswith(".hparams")]
    assert len(files) == 1


def test_cli_closing_message_gives_the_tensorboard_command(tmp_path, capsys):
    from keras_covreg.experiments import cli, runner

    cli.main(["xor", "--seeds", "1", "--steps-per-chunk", "5", "--max-chunks", "1",
              "--out", str(tmp_path)])
    out = capsys.readouterr().out
    logdir = tmp_path / "xor" / "tensorboard"
    assert (f"tensorboard --logdir {logdir} --samples_per_plugin "
            f"{runner.SAMPLES_PER_PLUGIN}") in out


def test_wide_heatmaps_show_block_means():
    rng = np.random.default_rng(0)
    cov = metrics.covariance(rng.normal(size=(600, 300)))
    cov[5, :] = cov[:, 5] = np.nan
    fig = _plots.matrix_figure(cov, title="t", label="covariance", subtitle="epoch 1")
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (150, 150)  # 2 x 2 blocks: at most MAX_CELLS a side
    block = cov[:2, :2]
    assert shown[0, 0] == pytest.approx(block.mean())
    assert shown[2, 2] == pytest.approx(np.nanmean(cov[4:6, 4:6]))
    assert fig.axes[0].get_xlabel() == "unit (means of 2\u00d72 blocks)"
    assert fig.axes[0].get_xlim() == (-0.5, 299.5)
