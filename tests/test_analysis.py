"""keras_covreg.analyze and `keras-covreg analyze`: a saved model's layers
measured without training, against float64 references of the same outputs."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_covreg import CovarianceRegularizer, analyze, metrics
from keras_covreg.analysis import default_layers
from keras_covreg.experiments import cli
from tests import backend_utils, reference


def planted_model():
    """Dense 4 -> 6 whose units 1 and 4 are dead: zero weights in, constant out."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="pixels")
    code = keras.layers.Dense(6, activation="tanh", name="code",
                              activity_regularizer=CovarianceRegularizer(0.1))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(code))
    kernel, bias = model.get_layer("code").get_weights()
    kernel[:, [1, 4]] = 0.0
    bias[[1, 4]] = [0.3, -0.2]
    model.get_layer("code").set_weights([kernel, bias])
    return model


def probe_data(n=400):
    return np.random.default_rng(1).normal(size=(n, 4)).astype("float32")


def test_dead_units_are_switched_off_and_metrics_match_the_reference():
    model = planted_model()
    x = probe_data()
    found = analyze(model, x)
    assert list(found) == ["code", "out"]
    code = found["code"]
    assert code.switched_off.tolist() == [1, 4]
    assert code.units == 6 and code.n_samples == 400
    h = backend_utils.to_numpy(keras.Model(model.inputs, model.get_layer("code").output)(x))
    c = reference.covariance(h)
    np.testing.assert_allclose(code.covariance, c, rtol=1e-5, atol=1e-9)
    assert code.summary["cvr"] == pytest.approx(reference.cvr(c), rel=1e-5)
    assert code.summary["ud90_pca"] == reference.ud(c, 0.9, "pca")
    assert code.summary["ud90_unit"] == reference.ud(c, 0.9, "unit")
    assert code.summary["effective_rank"] == pytest.approx(
        reference.effective_rank(c, "pca"), rel=1e-5)
    # The threshold is relative to the largest unit variance of the layer.
    variances = np.diag(c)
    between = float(np.sort(variances)[2] / variances.max()) * 1.01
    assert len(analyze(model, x, layers="code", threshold=between)["code"].switched_off) == 3


def test_default_layers_skip_inputs_integer_and_rank_1_outputs():
    inputs = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    ints = keras.layers.Discretization(bin_boundaries=[0.0], name="ints")(conv)
    flat = keras.layers.Flatten(name="flat")(conv)
    total = keras.layers.Lambda(lambda t: keras.ops.sum(t, axis=-1), name="total")(flat)
    model = keras.Model(inputs, [ints, total, flat])
    assert [layer.name for layer in default_layers(model)] == ["conv", "flat"]
    found = analyze(model, np.random.default_rng(0).normal(size=(20, 5, 5, 2)))
    assert found["conv"].units == 3 and found["conv"].n_samples == 20 * 3 * 3
    assert found["flat"].units == 27 and found["flat"].n_samples == 20


def test_layers_too_wide_are_left_out_or_refused():
    inputs = keras.Input((6, 6, 4))
    conv = keras.layers.Conv2D(5, 3, name="conv")(inputs)
    flat = keras.layers.Flatten(name="flat")(conv)  # 4 x 4 x 5 = 80 features
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(flat))
    x = np.random.default_rng(0).normal(size=(30, 6, 6, 4))
    with pytest.warns(UserWarning, match="'flat' \\(80 features\\)"):
        found = analyze(model, x, max_features=50)
    assert list(found) == ["conv", "out"]
    with pytest.raises(ValueError, match="'conv' has 80 features with spatial_mode='flatten'"):
        analyze(model, x, layers="conv", spatial_mode="flatten", max_features=50)


def test_a_subclassed_model_needs_named_layers():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.code = keras.layers.Dense(3, name="code")

        def call(self, x):
            return self.code(x)

    model = Net()
    x = probe_data()
    model(x[:2])
    with pytest.raises(ValueError, match="name the layers to measure with `layers=`"):
        analyze(model, x)
    assert analyze(model, x, layers="code")["code"].units == 3


@pytest.mark.parametrize("kwargs, error, match", [
    ({"threshold": -0.1}, ValueError, "threshold=-0.1"),
    ({"threshold": 1.5}, ValueError, "threshold=1.5"),
    ({"threshold": "x"}, TypeError, "threshold='x'"),
    ({"q": 0}, ValueError, "q=0"),
    ({"max_features": 0}, ValueError, "max_features=0"),
    ({"spatial_mode": "pixels"}, ValueError, "spatial_mode='pixels'"),
    ({"layers": "nope"}, ValueError, "analyze: no layer named 'nope'"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        analyze(planted_model(), probe_data(), **kwargs)


def test_switched_off_units_against_hand_values():
    c = np.diag([4.0, 0.039, 0.04, 0.0])
    assert metrics.switched_off_units(c).tolist() == [1, 3]  # 1% of 4 is 0.04
    assert metrics.switched_off_units(c, threshold=0).tolist() == [3]
    assert metrics.switched_off_units(np.zeros((2, 2))).tolist() == [0, 1]


# -- the command line -------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    model = planted_model()
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", probe_data())
    return tmp_path


def analyze_cli(*argv):
    return cli.main(["analyze", *map(str, argv)])


def test_cli_prints_the_table_and_writes_json_and_pictures(saved, capsys):
    assert analyze_cli(saved / "model.keras", "--data", saved / "x.npy",
                       "--out", saved / "out") == 0
    printed = capsys.readouterr().out
    assert "| code | 6 | 400 |" in printed and "2 of 6 |" in printed
    assert "code: switched off (variance < 0.01 x the largest): units 1, 4" in printed
    written = json.loads((saved / "out" / "analysis.json").read_text())
    expected = analyze(keras.saving.load_model(saved / "model.keras"), probe_data())
    by_layer = {row["layer"]: row for row in written["layers"]}
    assert by_layer["code"]["switched_off"] == [1, 4]
    assert by_layer["code"]["cvr"] == pytest.approx(expected["code"].summary["cvr"], rel=1e-9)
    assert sorted(os.listdir(saved / "out")) == sorted(
        ["analysis.json"] + [f"{layer}_{kind}.png" for layer in ("code", "out")
                             for kind in ("covariance", "correlation", "spectrum")])


def error_of(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        analyze_cli(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_cli_refuses_code_in_the_files(saved, capsys):
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2),
                            keras.layers.Dense(2)])
    lam.save(saved / "lambda.keras")
    err = error_of(capsys, saved / "lambda.keras", "--data", saved / "x.npy")
    assert "safe_mode" in err and "--no-safe-mode" in err
    assert analyze_cli(saved / "lambda.keras", "--data", saved / "x.npy", "--no-safe-mode") == 0
    np.save(saved / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = error_of(capsys, saved / "model.keras", "--data", saved / "objects.npy")
    assert "argument --data" in err and "Python objects" in err


def test_cli_data_that_does_not_fit(saved, capsys):
    np.save(saved / "wide.npy", np.zeros((10, 5), "float32"))
    err = error_of(capsys, saved / "model.keras", "--data", saved / "wide.npy")
    assert "argument --data" in err and "(10, 5)" in err and "(None, 4)" in err
    np.savez(saved / "two.npz", a=probe_data(), b=probe_data())
    err = error_of(capsys, saved / "model.keras", "--data", saved / "two.npz")
    assert "several arrays (a, b)" in err and "pixels" in err
    np.savez(saved / "named.npz", pixels=probe_data(), labels=np.zeros(400))
    assert analyze_cli(saved / "model.keras", "--data", saved / "named.npz") == 0


def test_cli_custom_objects_need_their_module(saved, capsys, monkeypatch):
    (saved / "my_layers.py").write_text(
        "import keras\n\n\n"
        "@keras.saving.register_keras_serializable(package='my_layers')\n"
        "class Twice(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return 2 * x\n")
    # Saved in another process, so that the class is registered here only
    # through --import.
    script = ("import keras, my_layers\n"
              "m = keras.Sequential([keras.Input((4,)), my_layers.Twice(name='twice')])\n"
              f"m.save({str(saved / 'custom.keras')!r})\n")
    subprocess.run([sys.executable, "-c", script], cwd=saved, check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(saved)})
    monkeypatch.syspath_prepend(str(saved))
    err = error_of(capsys, saved / "custom.keras", "--data", saved / "x.npy")
    assert "uses 'Twice', which Keras does not know" in err and "--import MODULE" in err
    assert analyze_cli(saved / "custom.keras", "--data", saved / "x.npy",
                       "--import", "my_layers") == 0
    assert "| twice | 4 | 400 |" in capsys.readouterr().out


def test_cli_prune_writes_a_smaller_model(saved, capsys):
    out = saved / "smaller.keras"
    assert cli.main(["prune", str(saved / "model.keras"), "--data", str(saved / "x.npy"),
                     "--layers", "code", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "code: removed 2 of 6 units (1, 4)" in printed and f"Wrote {out}" in printed
    smaller = keras.saving.load_model(out)
    assert smaller.get_layer("code").units == 4
    x = probe_data()
    expected = backend_utils.to_numpy(planted_model()(x, training=False))
    np.testing.assert_allclose(backend_utils.to_numpy(smaller(x, training=False)), expected,
                               atol=1e-6 * np.abs(expected).max())
    with pytest.raises(SystemExit):
        cli.main(["prune", str(saved / "model.keras"), "--data", str(saved / "x.npy"),
                  "--layers", "code", "-o", str(saved / "model.keras")])
    assert "is the model being pruned" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["prune", str(saved / "model.keras"), "--data", str(saved / "x.npy"),
                  "--layers", "code", "--max-output-change", "0", "-o",
                  str(saved / "other.keras")])
    assert "max_output_change=0" in capsys.readouterr().err
    assert not (saved / "other.keras").exists()
