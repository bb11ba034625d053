"""The paper's experiments end to end, in tiny configurations."""

import csv
import dataclasses
import json
import math
import os
import pickle
import types

import numpy as np
import pytest
from PIL import Image

from keras_covreg import metrics
from keras_covreg.experiments import cifar10, cli, data, models, synthetic, xor


def keras_backend():
    import keras

    return keras.config.backend()


def test_model_builders():
    assert models.conv_autoencoder().count_params() == 540_583
    assert models.linear_autoencoder(20).get_layer("code").units == 10
    assert [l.name for l in models.xor_mlp().layers[1:3]] == ["hidden_1", "hidden_2"]
    with pytest.raises(ValueError, match=r"Received: input_shape=\(30, 30, 3\)"):
        models.conv_autoencoder(input_shape=(30, 30, 3))


def assert_png(path):
    assert os.path.getsize(path) > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100


def finite_numbers(result, keys):
    for key in keys:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]), key


TINY_SYNTHETIC = synthetic.Config(
    n_samples=200, projections=2, strengths=(0.0, 0.1), epochs=20, batch_size=100,
    passes_per_fit_epoch=10, monitor_every=10,
)


def test_synthetic_end_to_end_and_resume(tmp_path, monkeypatch):
    exp, summary = synthetic.run(TINY_SYNTHETIC, tmp_path)
    results = exp.results()
    assert len(results) == 2 * 3  # per projection: none, L_Sigma 0.1, L1 0.1
    for r in results:
        finite_numbers(r, ["mse", "cvr", "mapc", "tdv_unit", "tdv_pca", "ud90_unit", "ud90_pca",
                           "effective_rank", "loss_change_last_10pct"])
    with open(os.path.join(exp.root, "results.csv")) as f:
        assert len(list(csv.DictReader(f))) == len(results)
    for name in ("figure2_mapc_cvr.png", "figure3_tdv_ud.png", "convergence.png"):
        assert_png(exp.figure_path(name))
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0:2] for row in table[1:]] == [
        ["| none", "0"], ["| L_Sigma", "0.1"], ["| none", "0"], ["| L1", "0.1"]]
    assert os.listdir(exp.tensorboard_dir(results[0]["run_id"]))
    # A second invocation finds every run finished and trains nothing.
    monkeypatch.setattr(synthetic, "run_one", lambda **kw: pytest.fail("retrained"))
    _, again = synthetic.run(TINY_SYNTHETIC, tmp_path)
    assert again.split("invocation")[1] == summary.split("invocation")[1]


def test_same_seed_same_numbers(tmp_path):
    config = synthetic.Config(n_samples=100, projections=1, strengths=(0.5,),
                              regularizers=("l_sigma",), epochs=10, batch_size=50)
    a = synthetic.run(config, tmp_path / "a")[0].results()
    b = synthetic.run(config, tmp_path / "b")[0].results()
    for key in ("mse", "cvr", "final_loss"):
        assert a[0][key] == b[0][key]


def test_xor_end_to_end(tmp_path):
    config = xor.Config(seeds=2, steps_per_chunk=50, max_chunks=2)
    exp, summary = xor.run(config, tmp_path)
    results = exp.results()
    assert len(results) == 4
    for r in results:
        finite_numbers(r, ["final_loss", "hidden_1_active", "hidden_2_active", "steps"])
        assert isinstance(r["solved"], bool) and isinstance(r["minimal"], bool)
        assert np.asarray(r["hidden_1_covariance"]).shape == (4, 4)
        # Pruning keeps exactly the active units, and the decisions with them.
        if r["pruned_units"] is not None:
            assert r["pruned_units"] == [r["hidden_1_active"], r["hidden_2_active"]]
            assert r["pruned_same_decisions"] and r["pruned_max_change"] < 1e-3
    for fig in (4, 5):
        for layer in xor.LAYERS:
            for kind in ("covariance", "spectrum"):
                assert_png(exp.figure_path(f"figure{fig}_{layer}_{kind}.png"))
    rows = [line for line in summary.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| L_Sigma (0.2)", "| none"]


def test_xor_convergence_test_is_relative_or_absolute(tmp_path):
    never = xor.Config(seeds=1, learning_rate=0.1, steps_per_chunk=100, max_chunks=3,
                       tolerance=0.0, abs_tolerance=0.0)
    for r in xor.run(never, tmp_path / "never")[0].results():
        assert not r["converged"] and r["steps"] == 300
    # Any change counts as converged: a run stops at the first solved chunk
    # after the first.
    always = dataclasses.replace(never, max_chunks=6, abs_tolerance=1e9)
    results = xor.run(always, tmp_path / "always")[0].results()
    assert any(r["solved"] for r in results)
    for r in results:
        assert r["converged"] == r["solved"]
        if r["solved"]:
            assert r["steps"] < 600


def write_fake_cifar(directory, n=30, skip=(), corrupt=()):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in data.CIFAR10_FILES:
        if name in skip:
            continue
        path = os.path.join(directory, name)
        if name in corrupt:
            with open(path, "wb") as f:
                f.write(b"not a pickle")
            continue
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        with open(path, "wb") as f:
            pickle.dump(batch, f)
    return str(directory)


def test_cifar10_end_to_end(tmp_path):
    config = cifar10.Config(
        data_dir=write_fake_cifar(tmp_path / "cifar"), seeds=1, train_samples=100,
        val_samples=20, test_samples=30, max_epochs=1, sweep=True,
        sweep_strengths=(0.01, 0.1),
    )
    exp, summary = cifar10.run(config, tmp_path / "out")
    results = exp.results()
    assert len(results) == 4 + 4
    for r in results:
        finite_numbers(r, ["cvr", "ud90_pca", "ud90_unit", "mse", "mapc", "tdv_pca",
                           "effective_rank", "best_val_mse"])
        assert r["parameters"] == 540_583 and r["n_test"] == 30
        assert r["mse_01"] == r["mse"]  # pixels in [0, 1]
    rows = [line for line in summary.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| L_Sigma", "| L1", "| none", "| DeCov"]
    assert "| 6.56 |" in rows[0] and "| 0.0365 |" in rows[2]
    assert_png(exp.figure_path("figure6_sweep.png"))
    assert_png(exp.figure_path("pruning.png"))
    with open(exp.run_path("l_sigma_seed0")) as f:
        assert json.load(f)["regularizer"] == "l_sigma"
    # The Projector gets the validation codes, labelled with their class names.
    validation = os.path.join(exp.tensorboard_dir("l_sigma_seed0"), "validation")
    with open(os.path.join(validation, "code.projector_labels.tsv")) as f:
        names = f.read().splitlines()
    (_, y_train), _ = cifar10.data.load_cifar10(config.data_dir)
    assert names == [cifar10.CLASS_NAMES[int(label)] for label in y_train[-20:, 0]]


def test_cifar10_pixel_scalings_and_their_mse_in_unit_pixels():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    unit, scale = cifar10.scale_pixels(train, "unit", train)
    assert unit.min() >= 0 and unit.max() <= 1 and scale.tolist() == [1, 1, 1]
    symmetric, scale = cifar10.scale_pixels(train, "symmetric", train)
    np.testing.assert_allclose(symmetric, 2 * unit - 1, atol=1e-6)
    assert scale.tolist() == [0.5, 0.5, 0.5]
    standard, scale = cifar10.scale_pixels(train, "standardized", train)
    flat = standard.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-5)
    # One step of a standardized pixel is the channel's std in [0, 1] pixels.
    std = train.reshape(-1, 3).std(axis=0) / 255
    np.testing.assert_allclose(scale, std)
    np.testing.assert_allclose(standard * scale, unit - unit.reshape(-1, 3).mean(axis=0),
                               atol=1e-5)
    with pytest.raises(ValueError, match="pixels='raw'"):
        cifar10.scale_pixels(train, "raw", train)


def test_cifar10_choices_where_the_paper_is_silent(tmp_path):
    import keras

    config = cifar10.Config(
        data_dir=write_fake_cifar(tmp_path / "cifar"), seeds=1, rows=("l1", "none"),
        train_samples=100, val_samples=20, test_samples=30, max_epochs=1, images=False,
        pixels="symmetric", code_activation="relu", l1_reduction="sum",
        architecture="small")
    exp, summary = cifar10.run(config, tmp_path / "out")
    results = {r["regularizer"]: r for r in exp.results()}
    for r in results.values():
        assert r["parameters"] == 372_727
        # [-1, 1] pixels: twice the error, four times the squared error.
        assert r["mse_01"] == pytest.approx(r["mse"] / 4, rel=1e-9)
        assert [p["threshold"] for p in r["pruned"]] == list(cifar10.PRUNE_THRESHOLDS)
        kept = [p["units_kept"] for p in r["pruned"]]
        assert kept == sorted(kept, reverse=True) and 1 <= kept[-1] <= 84
        assert r["units_kept"] == r["pruned"][2]["units_kept"]
    assert "372,727 parameters (small architecture), 84-unit relu code" in summary
    assert "L1 the sum of |h|" in summary and "[-1, 1]" in summary
    assert_png(exp.figure_path("pruning.png"))
    # The builder takes the code's activation and the output's.
    model = models.conv_autoencoder(code_activation="relu", output_activation="tanh",
                                    dense_units=0)
    assert model.get_layer("code").activation is keras.activations.relu
    # A run directory written before these options existed is reused under
    # the defaults, and refused under others.
    config_path = os.path.join(exp.root, "config.json")
    with open(config_path) as f:
        saved = json.load(f)
    for key in ("pixels", "code_activation", "l1_reduction", "architecture"):
        del saved[key]
    with open(config_path, "w") as f:
        json.dump(saved, f)
    with pytest.raises(cifar10.runner.OptionsMismatchError, match="--pixels: 'unit' there"):
        cifar10.run(config, tmp_path / "out")


def test_cifar10_reader_matches_layout(tmp_path):
    directory = write_fake_cifar(tmp_path, n=5)
    (x_train, y_train), (x_test, y_test) = data.load_cifar10(directory)
    assert x_train.shape == (25, 32, 32, 3) and y_train.shape == (25, 1)
    assert x_test.shape == (5, 32, 32, 3) and x_train.dtype == np.uint8
    with open(os.path.join(directory, "data_batch_1"), "rb") as f:
        raw = pickle.load(f)[b"data"][0]
    # The first pixel's R, G, B come from the three planes.
    assert x_train[0, 0, 0].tolist() == [raw[0], raw[1024], raw[2048]]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: write_fake_cifar(d, skip=("data_batch_3",)), "missing 'data_batch_3'"),
        (lambda d: write_fake_cifar(d, corrupt=("test_batch",)), "'test_batch' is not a readable"),
        (lambda d: str(d / "nowhere"), "Received: data_dir="),
    ],
)
def test_malformed_cifar_directory(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        data.load_cifar10(make(tmp_path))


def test_cifar_reader_refuses_code_and_wrong_shapes(tmp_path):
    directory = write_fake_cifar(tmp_path)
    with open(os.path.join(directory, "data_batch_2"), "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f)
    with pytest.raises(ValueError, match="refusing posix.system|refusing os.system"):
        data.load_cifar10(directory)
    with open(os.path.join(directory, "data_batch_2"), "wb") as f:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(ValueError, match=r"'data_batch_2' holds data of shape \(3, 100\)"):
        data.load_cifar10(directory)


def test_cli_runs_and_reports_bad_data_dir(tmp_path, capsys):
    assert cli.main(["xor", "--out", str(tmp_path), "--seeds", "1", "--steps-per-chunk",
                     "20", "--max-chunks", "1"]) == 0
    assert "XOR experiment" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cifar10", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "Received: data_dir=" in capsys.readouterr().err


def test_default_sources_make_ud90_four():
    # A perfect code of the default sources needs all 4 of them for 90% of the
    # variance, as the paper's UD90 = 4 for L_Sigma implies.
    cov = np.diag(np.square(data.SOURCE_STDS))
    assert metrics.utilized_dimensions(cov, from_covariance=True) == 4
    assert len(set(data.SOURCE_STDS)) == 4  # non-degenerate


def test_cli_options_reach_the_config():
    parser = cli.build_parser()
    config = cli._config(cifar10.Config, parser.parse_args(["cifar10", "--no-images"]))
    assert config.images is False and config.sweep is False
    config = cli._config(cifar10.Config, parser.parse_args(["cifar10", "--sweep"]))
    assert config.images is True and config.sweep is True
    args = parser.parse_args(["synthetic", "--source-stds", "2", "1", "0.5"])
    assert cli._config(synthetic.Config, args).source_stds == (2.0, 1.0, 0.5)


def test_synthetic_uses_the_given_sources(tmp_path):
    # Five sources: TdV on the PCA basis with d = 5 is 1 for any linear code,
    # and clearly below 1 if the default d = 4 were used.
    config = synthetic.Config(n_samples=100, source_stds=(2.0, 1.5, 1.0, 1.0, 1.0),
                              projections=1,
                              strengths=(0.1,), regularizers=("l_sigma",), epochs=10,
                              batch_size=50)
    exp, summary = synthetic.run(config, tmp_path)
    assert "5 sources (stds (2.0, 1.5, 1.0, 1.0, 1.0))" in summary
    assert exp.results()[0]["tdv_pca"] == pytest.approx(1.0, abs=1e-3)


def test_help_lists_every_option(capsys):
    for name, module in (("synthetic", synthetic), ("xor", xor), ("cifar10", cifar10)):
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        text = capsys.readouterr().out
        for field in module.Config.__dataclass_fields__:
            assert "--" + field.replace("_", "-") in text


def test_xor_seeds_share_one_model_and_train_as_fresh_ones(tmp_path):
    # Issue 11: a model per seed traced the same training step once per seed,
    # and TensorFlow warned of retracing. The seeds of a setting now share one
    # compiled model, restored to a freshly built model's state before each
    # run: the numbers must be those of a fresh model, bit for bit.
    config = xor.Config(steps_per_chunk=5, max_chunks=2)
    exp = types.SimpleNamespace(tensorboard_dir=lambda run_id: str(tmp_path / run_id))
    trainers = {}
    shared = [xor.run_one(run_id=f"s{seed}", exp=exp, config=config, seed=seed,
                          regularized=True, trainers=trainers) for seed in (0, 1, 0)]
    fresh = [xor.run_one(run_id=f"f{seed}", exp=exp, config=config, seed=seed,
                         regularized=True) for seed in (0, 1)]
    assert len(trainers) == 1
    assert shared[0]["loss_history"] == fresh[0]["loss_history"]
    assert shared[1]["loss_history"] == fresh[1]["loss_history"]
    assert shared[2]["loss_history"] == shared[0]["loss_history"]  # the state was reset
    assert shared[0]["loss_history"] != shared[1]["loss_history"]


RETRACING_SCRIPT = """
import logging, sys, types
from keras_covreg.experiments import xor

records = []
handler = logging.Handler(logging.WARNING)
handler.emit = records.append
# TensorFlow's logger does not propagate to the root logger: listen to it.
logging.getLogger("tensorflow").addHandler(handler)
config = xor.Config(steps_per_chunk=5, max_chunks=1)
exp = types.SimpleNamespace(tensorboard_dir=lambda run_id: sys.argv[1] + "/" + run_id)
for trainers in ({}, None):
    del records[:]
    for seed in range(6):
        xor.run_one(run_id=f"{trainers is None}{seed}", exp=exp, config=config, seed=seed,
                    regularized=False, trainers=trainers)
    print(sum("retracing" in r.getMessage() for r in records))
"""


@pytest.mark.skipif(keras_backend() != "tensorflow", reason="TensorFlow's tracing warning")
def test_xor_seeds_do_not_retrace(tmp_path):
    # In a process of its own: TensorFlow warns at most twice per traced
    # function a process, and other tests may have used those up.
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", RETRACING_SCRIPT, str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    shared, one_model_per_seed = result.stdout.split()[-2:]
    assert shared == "0"
    # Without the shared model the warning comes: the check can see it.
    assert one_model_per_seed != "0"


def test_results_of_earlier_releases_read_with_todays_names(tmp_path):
    config = xor.Config(seeds=1, steps_per_chunk=5, max_chunks=1)
    exp, _ = xor.run(config, tmp_path)
    path = exp.run_path(exp.results()[0]["run_id"])
    with open(path) as f:
        result = json.load(f)
    # The names UD_90 had before it had one across the package.
    old = {k.replace("ud90_", "ud_"): v for k, v in result.items()}
    assert "hidden_1_ud_pca" in old and "hidden_1_ud90_pca" not in old
    with open(path, "w") as f:
        json.dump(old, f)
    loaded = {r["run_id"]: r for r in exp.results()}[result["run_id"]]
    assert loaded == result
    _, summary = xor.run(config, tmp_path)  # the report reads them too
    assert "| L_Sigma" in summary


def comparable(results):
    """Run results without what depends on the machine's load (times)."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in results]


def test_runs_side_by_side_give_the_results_of_one_after_another(tmp_path):
    # Two worker processes, each pinned to its share of the cores; every run
    # seeds itself, so neither the process nor the runs before it matter.
    config = synthetic.Config(n_samples=200, projections=2, strengths=(0.0, 0.05),
                              regularizers=("l_sigma",), epochs=20, batch_size=100,
                              monitor_every=10)
    one, _ = synthetic.run(config, tmp_path / "one")
    two, summary = synthetic.run(config, tmp_path / "two", jobs=2)
    assert len(two.results()) == 4
    assert comparable(two.results()) == comparable(one.results())
    assert summary.splitlines()[0] == "# Synthetic experiment (Section 3.2)"
    # A rerun finds every run done and starts no process.
    again, _ = synthetic.run(config, tmp_path / "two", jobs=2)
    assert comparable(again.results()) == comparable(one.results())


def test_worker_slots_deal_out_cores_or_gpus():
    from keras_covreg.experiments import runner

    assert runner.worker_slots(2, cores=[0, 1], gpus=[]) == [{"cores": [0]}, {"cores": [1]}]
    assert runner.worker_slots(3, cores=[0, 1], gpus=[]) == [
        {"cores": [0]}, {"cores": [1]}, {"cores": [0]}]
    assert runner.worker_slots(4, cores=[5], gpus=["0"]) == [{"gpu": "0"}] * 4
    with pytest.raises(ValueError, match="jobs=0"):
        synthetic.run(synthetic.Config(), "unused", jobs=0)


def test_an_error_in_a_worker_reaches_the_caller(tmp_path):
    # The data is read in each worker; its error is the caller's.
    directory = write_fake_cifar(tmp_path / "cifar", corrupt=("test_batch",))
    config = cifar10.Config(data_dir=directory, seeds=1, rows=("none", "l1"),
                            train_samples=20, val_samples=5, test_samples=5, max_epochs=1)
    with pytest.raises(ValueError, match="'test_batch' is not a readable"):
        cifar10.run(config, tmp_path / "out", jobs=2)
    assert os.listdir(tmp_path / "out" / "cifar10" / "runs") == []
