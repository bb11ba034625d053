"""The command line: every option checked at parse time, honest --help, reuse of runs."""

import argparse
import dataclasses
import functools
import inspect
import json
import os
import re
import sys
import types

import numpy as np
import pytest

from keras_covreg.experiments import analyze, cifar10, cli, demo, runner, synthetic, xor

MODULES = {"synthetic": synthetic, "xor": xor, "cifar10": cifar10}
COMMANDS = ("demo", *MODULES)

# At least one refused value for every option that takes a value: out of
# range, not a number, not finite, repeated, unknown, missing.
BAD_VALUES = {
    "demo": {
        "--strength": [["-1"], ["inf"], ["x"]],
        "--epochs": [["0"], ["2.5"]],
        "--n-samples": [["1"]],
        "--seed": [["-1"], [str(2**32)]],
    },
    "synthetic": {
        "--out": [[""], ["FILE"]],
        "--jobs": [["0"], ["two"]],
        "--n-samples": [["1"], ["-5"], ["ten"]],
        "--source-stds": [["1", "0"], ["1", "-2"], ["nan"]],
        "--input-dim": [["0"], ["3"]],  # 3 < the 4 default sources
        "--code-units": [["0"], ["2"]],
        "--projections": [["0"], ["1001"]],
        "--strengths": [["-0.1"], ["0.1", "0.1"], ["0.1", "0.1000000001"], ["inf"]],
        "--regularizers": [["l2"], ["l1", "l1"], ["none"]],
        "--epochs": [["0"], ["1e3"]],
        "--batch-size": [["0"]],
        "--learning-rate": [["0"], ["-0.01"], ["nan"]],
        "--seed": [["-1"], [str(cli.MAX_BASE_SEED + 1)]],
        "--passes-per-fit-epoch": [["0"]],
        "--monitor-every": [["0"]],
    },
    "xor": {
        "--out": [["FILE"]],
        "--jobs": [["0"], ["two"]],
        "--seeds": [["0"], ["-3"], ["1001"], ["two"]],
        "--strength": [["-1"], ["nan"]],
        "--learning-rate": [["0"], ["inf"]],
        "--steps-per-chunk": [["0"]],
        "--max-chunks": [["0"]],
        "--tolerance": [["-0.01"], ["inf"]],
        "--abs-tolerance": [["-0.00001"]],
        "--active-fraction": [["0"], ["1.5"]],
        "--seed": [["-1"], [str(cli.MAX_BASE_SEED + 1)]],
    },
    "cifar10": {
        "--out": [["FILE"]],
        "--jobs": [["0"], ["two"]],
        "--data-dir": [["MISSING"], ["FILE"], ["EMPTY_DIR"]],
        "--seeds": [["-1"], ["1001"], ["0"]],  # 0 without --sweep
        "--rows": [["l2"], ["l1", "l1"]],
        "--strength": [["-0.08"]],
        "--train-samples": [["0"]],
        "--val-samples": [["1"], ["0"]],
        "--test-samples": [["1"]],
        "--max-epochs": [["0"]],
        "--patience": [["-1"]],
        "--batch-size": [["0"]],
        "--learning-rate": [["0"]],
        "--tdv-dim": [["0"], ["85"]],
        "--pixels": [["zero_one"]],
        "--code-activation": [["softmax"]],
        "--l1-reduction": [["max"]],
        "--architecture": [["big"]],
        "--sweep-strengths": [["-1"], ["0.12345", "0.12346"]],
        "--seed": [["-2"]],
    },
    "analyze": {
        "--data": [["MISSING"], ["FILE"]],  # FILE: no .npy or .npz suffix
        "--layers": [["code", "code"], [""]],
        "--threshold": [["-0.1"], ["1.5"], ["nan"]],
        "--max-samples": [["1"], ["x"]],
        "--batch-size": [["0"]],
        "--spatial-mode": [["pixels"]],
        "--max-features": [["0"]],
        "--out": [["FILE"]],
        "--import": [["not a module"], ["a..b"]],
    },
    "prune": {
        "--data": [["MISSING"]],
        "--layers": [["code", "code"]],
        "--threshold": [["2"]],
        "--max-output-change": [["-1"], ["inf"]],
        "--max-samples": [["0"]],
        "--batch-size": [["-3"]],
        "-o": [["FILE"], ["EMPTY_DIR"]],  # no .keras suffix; a directory
        "--import": [["1module"]],
    },
}


def subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def value_options(parser):
    """The option strings of `parser`'s options that take values."""
    return {a.option_strings[0] for a in parser._actions
            if a.option_strings and a.nargs != 0 and not isinstance(
                a, argparse.BooleanOptionalAction)}


@pytest.fixture
def no_runs(monkeypatch):
    """Makes any experiment or demo that gets past the parser fail the test."""
    for module in (*MODULES.values(), analyze):
        monkeypatch.setattr(module, "run", lambda *a, **k: pytest.fail("it ran"))
    monkeypatch.setattr(demo, "run_demo", functools.wraps(demo.run_demo)(
        lambda **k: pytest.fail("it ran")))


def test_every_config_field_is_an_option_with_a_rule():
    for command in COMMANDS:
        assert set(cli.OPTIONS[command]) == set(cli._defaults(command)), command
    assert set(cli._defaults("demo")) == {
        name for name in inspect.signature(demo.run_demo).parameters if name != "out"}


def test_every_option_has_bad_values():
    for command, parser in subparsers().items():
        assert value_options(parser) == set(BAD_VALUES[command]), command


BAD_CASES = [
    pytest.param(command, flag, values, id=f"{command} {flag} {' '.join(values)}")
    for command, options in BAD_VALUES.items()
    for flag, cases in options.items() for values in cases
]


@pytest.mark.parametrize("command, flag, values", BAD_CASES)
def test_bad_value_is_a_usage_error_before_anything_is_written(
        tmp_path, capsys, no_runs, command, flag, values):
    (tmp_path / "FILE").write_text("")
    (tmp_path / "EMPTY_DIR").mkdir()
    paths = {"FILE": tmp_path / "FILE", "MISSING": tmp_path / "missing",
             "EMPTY_DIR": tmp_path / "EMPTY_DIR"}
    values = [str(paths.get(v, v)) for v in values]
    out = tmp_path / "out"
    argv = [command, flag, *values]
    if command != "demo" and flag != "--out":
        argv += ["--out", str(out)]
    if command in ("analyze", "prune"):  # a model file and --data are required
        (tmp_path / "model.keras").write_text("")
        (tmp_path / "x.npy").write_text("")
        argv.insert(1, str(tmp_path / "model.keras"))
        required = {"--data": [str(tmp_path / "x.npy")]}
        if command == "prune":
            required.update({"--layers": ["code"], "-o": [str(tmp_path / "s.keras")]})
        for other, value in required.items():
            if other != flag:
                argv += [other, *value]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    # An option with a short form is named by both: "argument -o/--output:".
    assert re.search(f"keras-covreg {command}: error: argument {flag}(/--[a-z-]+)?:", err)
    assert "Received: " in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("argv, flag", [
    (["synthetic", "--source-stds", "1", "1", "1", "1", "1", "--code-units", "4"],
     "--code-units"),
    (["synthetic", "--source-stds", "1", "1", "--input-dim", "1"], "--input-dim"),
    (["cifar10", "--seeds", "0", "--no-sweep"], "--seeds"),
])
def test_options_that_do_not_fit_together(tmp_path, capsys, no_runs, argv, flag):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"error: argument {flag}:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_good_values_reach_the_run(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(cifar10, "run", lambda config, out, restart, jobs, on_worker_start:
                        seen.update(config=config, out=out, restart=restart, jobs=jobs)
                        or (types.SimpleNamespace(root=out), ""))
    data_dir = tmp_path / "cifar"
    data_dir.mkdir()
    for name in cifar10.data.CIFAR10_FILES:
        (data_dir / name).write_bytes(b"")  # only their presence is checked here
    cli.main(["cifar10", "--data-dir", str(data_dir), "--seeds", "0", "--sweep",
              "--sweep-strengths", "0.5", "1", "--rows", "none", "l1", "--patience", "0",
              "--tdv-dim", "84", "--out", str(tmp_path / "out"), "--restart", "--jobs", "3"])
    config = seen["config"]
    assert (config.seeds, config.sweep, config.sweep_strengths) == (0, True, (0.5, 1.0))
    assert config.rows == ("none", "l1") and config.patience == 0 and config.tdv_dim == 84
    assert seen["restart"] is True and seen["jobs"] == 3
    args = cli.build_parser().parse_args(
        ["synthetic", "--source-stds", "2", "1", "0.5", "--strengths", "0", "1"])
    assert cli._config(synthetic.Config, args).source_stds == (2.0, 1.0, 0.5)
    assert args.strengths == (0.0, 1.0)


# --help


def help_lines(capsys, monkeypatch, command):
    """{option string: its entry in `command --help`, on one line}."""
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping inside a help text
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out.split("\noptions:\n")[1]
    # An entry starts with two spaces and its option strings; a help text
    # too long for that line is on the next, indented further.
    entries = re.split(r"\n(?=  -)", text.strip("\n"))
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries}


def shown_default(line):
    match = re.search(r"\(default: ([^()]*)\)$", line)
    return match and match.group(1)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_each_real_default_once(capsys, monkeypatch, command):
    lines = help_lines(capsys, monkeypatch, command)
    parser = subparsers()[command]
    defaults = cli._defaults(command)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        line = lines[action.option_strings[0]]
        assert line.count("default") <= 1, line
        if action.dest in defaults:
            assert action.default == defaults[action.dest], action.dest
        if action.default is None:
            assert shown_default(line) is None, line
            continue
        text = shown_default(line)
        assert text is not None, line
        if action.nargs == 0 or isinstance(action.default, bool):
            assert text == str(action.default), line
        elif isinstance(action.default, tuple):
            assert tuple(action.type(v) for v in text.split()) == action.default, line
        else:
            assert action.type(text) == action.default, line


def test_help_of_an_option_without_default_says_what_happens(capsys, monkeypatch):
    line = help_lines(capsys, monkeypatch, "cifar10")["--data-dir"]
    assert "If omitted: keras.datasets.cifar10.load_data()" in line
    assert "offline" in line


@pytest.mark.parametrize("module, field, shown", [
    (synthetic, "source_stds", "by default {}"),
    (synthetic, "code_units", "a {}-unit linear code"),
    (xor, "tolerance", "{:.0%} of its previous value (--tolerance)"),
    (xor, "abs_tolerance", "{:g} (--abs-tolerance)"),
    (xor, "max_chunks", "after {} chunks (--max-chunks)"),
    (xor, "steps_per_chunk", "chunks of {:,} steps"),
    (xor, "learning_rate", "learning rate {}"),
    (xor, "active_fraction", "at least {:.0%} of"),
    (xor, "strength", "lambda = {}"),
    (cifar10, "seeds", "over {} initializations (--seeds)"),
    (cifar10, "strength", "lambda ({}) for every"),
    (cifar10, "patience", "patience {} (--patience)"),
    (cifar10, "tdv_dim", "d = {} (--tdv-dim"),
    (cifar10, "learning_rate", "learning rate {}"),
    (cifar10, "batch_size", "batch {}"),
    (cifar10, "train_samples", "{:,} images"),
    (cifar10, "val_samples", "{:,} held-out"),
    (cifar10, "test_samples", "{:,} test images"),
])
def test_descriptions_state_the_defaults(module, field, shown):
    # The description of `--help` is the module's docstring: it may not
    # describe a default the options no longer have.
    default = getattr(module.Config, field)
    if isinstance(default, tuple):
        default = ", ".join(str(v) for v in default)
    assert shown.format(default) in " ".join(module.__doc__.split())


# Reusing runs


def fake_xor_run(calls):
    """A stand-in for xor.run_one that trains nothing."""

    def run_one(*, run_id, exp, config, seed, regularized, trainers=None):
        calls.append(run_id)
        covariance = np.diag([1.0, 0.5, 0.0, 0.0]).tolist()
        return {"experiment": "xor", "seed": seed, "regularized": regularized,
                "solved": True, "converged": True, "minimal": regularized, "steps": 1,
                "hidden_1_active": 2, "hidden_2_active": 1,
                "hidden_1_covariance": covariance, "hidden_2_covariance": covariance}

    return run_one


@pytest.fixture
def xor_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(xor, "run_one", fake_xor_run(calls))
    return calls


def listed(message):
    """The differing options an OptionsMismatchError lists."""
    return message.split("change their results:")[1].split("A run is reused")[0]


def xor_cli(out, *options):
    return cli.main(["xor", "--out", str(out), *options])


def saved_options(out, name="xor"):
    with open(os.path.join(out, name, "config.json")) as f:
        return json.load(f)


def test_other_options_are_refused(tmp_path, capsys, xor_calls):
    assert xor_cli(tmp_path, "--seeds", "2", "--learning-rate", "0.2") == 0
    trained = list(xor_calls)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "xor").rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        xor_cli(tmp_path, "--seeds", "5", "--strength", "0.5", "--learning-rate", "0.1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--learning-rate: 0.2 there, 0.1 now" in err
    assert "--strength: 0.2 there, 0.5 now" in err
    assert "--seeds" not in listed(err)  # more seeds are no conflict
    assert "--out" in err and "--restart" in err and "Traceback" not in err
    assert xor_calls == trained
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "xor").rglob("*") if p.is_file()}
    assert after == before
    # The Python API refuses the same way.
    config = xor.Config(seeds=2, learning_rate=0.1)
    with pytest.raises(runner.OptionsMismatchError, match="learning-rate: 0.2 there, 0.1 now"):
        xor.run(config, tmp_path)


def test_more_seeds_extend_a_finished_sweep(tmp_path, capsys, xor_calls):
    assert xor_cli(tmp_path, "--seeds", "2") == 0
    assert xor_cli(tmp_path, "--seeds", "3") == 0
    assert xor_calls == [
        "l_sigma_seed00", "l_sigma_seed01", "none_seed00", "none_seed01",
        "l_sigma_seed02", "none_seed02"]
    assert "| L_Sigma (0.2) | 3 |" in capsys.readouterr().out
    assert saved_options(tmp_path)["seeds"] == 3
    with open(tmp_path / "xor" / "results.csv") as f:
        assert len(f.read().splitlines()) == 1 + 6
    # Fewer seeds report part of the runs and train nothing.
    assert xor_cli(tmp_path, "--seeds", "1") == 0
    assert len(xor_calls) == 6 and "| L_Sigma (0.2) | 1 |" in capsys.readouterr().out


def test_restart_deletes_the_old_runs(tmp_path, xor_calls):
    assert xor_cli(tmp_path, "--seeds", "2", "--learning-rate", "0.2") == 0
    (tmp_path / "xor" / "notes.txt").write_text("mine")
    assert xor_cli(tmp_path, "--seeds", "1", "--learning-rate", "0.1", "--restart") == 0
    assert xor_calls[4:] == ["l_sigma_seed00", "none_seed00"]
    assert sorted(os.listdir(tmp_path / "xor" / "runs")) == [
        "l_sigma_seed00.json", "none_seed00.json"]
    assert saved_options(tmp_path)["learning_rate"] == 0.1
    assert (tmp_path / "xor" / "notes.txt").read_text() == "mine"


def test_a_rerun_rebuilds_a_deleted_results_csv(tmp_path, xor_calls):
    assert xor_cli(tmp_path, "--seeds", "1") == 0
    csv_path = tmp_path / "xor" / "results.csv"
    first = csv_path.read_text()
    os.remove(csv_path)
    assert xor_cli(tmp_path, "--seeds", "1") == 0
    assert len(xor_calls) == 2  # nothing trained again
    assert csv_path.read_text() == first


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_output_directory_that_cannot_be_made_is_an_error_not_a_traceback(
        capsys, xor_calls):
    # /proc takes no new directories, not even from root (for whom a
    # permission check would pass).
    with pytest.raises(SystemExit) as exit_info:
        xor_cli("/proc/keras_covreg_test")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "keras-covreg xor: error: Cannot make the output directory" in err
    assert "out='/proc/keras_covreg_test'" in err and "Traceback" not in err
    assert xor_calls == []


def test_runs_without_config_json_are_refused(tmp_path, xor_calls):
    assert xor_cli(tmp_path, "--seeds", "1") == 0
    os.remove(tmp_path / "xor" / "config.json")
    with pytest.raises(runner.OptionsMismatchError, match="no config.json"):
        xor.run(xor.Config(seeds=1), tmp_path)


def test_cifar10_refuses_before_loading_data(tmp_path, monkeypatch):
    old = cifar10.Config(data_dir="somewhere", learning_rate=0.01)
    os.makedirs(tmp_path / "cifar10")
    with open(tmp_path / "cifar10" / "config.json", "w") as f:
        json.dump(runner._jsonable(dataclasses.asdict(old)), f)
    monkeypatch.setattr(cifar10, "load_splits", lambda c: pytest.fail("loaded the data"))
    # More seeds, rows and a sweep only add runs; a learning rate changes them.
    new = dataclasses.replace(old, seeds=9, rows=("l1",), sweep=True, learning_rate=0.001)
    with pytest.raises(runner.OptionsMismatchError, match=r"--learning-rate: 0.01 there") as e:
        cifar10.run(new, tmp_path)
    assert "seeds" not in listed(str(e.value)) and "rows" not in listed(str(e.value))
    assert os.listdir(tmp_path / "cifar10") == ["config.json"]


class OnlyResultOptions:
    """A Config whose options in ADDS_RUNS cannot be read."""

    def __init__(self, config, hidden):
        self._config, self._hidden = config, hidden

    def __getattr__(self, name):
        if name in self._hidden:
            raise AssertionError(f"a run read {name}, which should only add runs")
        return getattr(self._config, name)


@pytest.mark.parametrize("module, config", [
    (xor, xor.Config(seeds=1, steps_per_chunk=5, max_chunks=1)),
    (synthetic, synthetic.Config(n_samples=20, projections=1, strengths=(0.0, 0.1),
                                 regularizers=("l1",), epochs=1, batch_size=10,
                                 passes_per_fit_epoch=1)),
])
def test_options_that_add_runs_do_not_change_one(tmp_path, module, config):
    # A run must not read them, and the plan must give a run the same
    # arguments whatever they are.
    exp = runner.Experiment(tmp_path, "check", dataclasses.asdict(config))
    hidden = OnlyResultOptions(config, module.ADDS_RUNS)
    for run_id, kwargs in module.plan(config):
        module.run_one(run_id=run_id, exp=exp, config=hidden, **kwargs)
    more = {"xor": dict(seeds=3), "synthetic": dict(
        projections=2, strengths=(0.0, 0.1, 0.5), regularizers=("l_sigma", "l1"))}
    bigger = dict(module.plan(dataclasses.replace(config, **more[module.__name__.split(".")[-1]])))
    for run_id, kwargs in module.plan(config):
        assert bigger[run_id] == kwargs


def test_cifar10_plan_gives_each_run_the_same_arguments_whatever_adds_runs():
    small = cifar10.Config(seeds=1, rows=("l1",))
    big = dataclasses.replace(small, seeds=3, rows=("l1", "none"), sweep=True,
                              sweep_strengths=(0.5, 1.0))
    bigger = dict(cifar10.plan(big))
    for run_id, kwargs in cifar10.plan(dataclasses.replace(small, sweep=True,
                                                          sweep_strengths=(1.0,))):
        assert bigger[run_id] == kwargs


def test_a_plan_with_two_runs_of_one_id_is_refused(tmp_path):
    config = synthetic.Config(strengths=(0.1, 0.1000000001))
    with pytest.raises(ValueError, match="share an id: p00_l1_0.1"):
        synthetic.run(config, tmp_path)
    assert not (tmp_path / "synthetic").exists()


def test_differing_options_names_old_and_new():
    assert runner.differing_options({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3], "c": 0}) == [
        ("b", [1, 2], [1, 3]), ("c", "(not recorded)", 0)]


def test_cli_module_runs_as_a_script(tmp_path):
    # python -m keras_covreg.experiments.cli, as docs/scripts/cifar10_gpu.sh
    # runs it, refuses a bad option with status 2 too.
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "keras_covreg.experiments.cli", "xor", "--seeds", "0",
         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "argument --seeds" in result.stderr
    assert not (tmp_path / "out").exists()


# No backend for --help and argument errors (issue 11): parsing must not import
# Keras or any backend, so that it answers at once and quietly.

BACKENDS = ("keras", "tensorflow", "jax", "torch")
LOADED_AFTER_PARSING = """
import sys
from keras_covreg.experiments import cli
try:
    cli.main(sys.argv[1:])
except SystemExit as e:
    print("exit", e.code)
print("loaded", *[name for name in {backends!r} if name in sys.modules])
"""


@pytest.mark.parametrize("argv", [
    ["--help"], ["xor", "--help"], ["synthetic", "--help"], ["cifar10", "--help"],
    ["demo", "--help"], ["xor", "--seeds", "0"], ["cifar10", "--tdv-dim", "85"],
], ids=" ".join)
def test_parsing_loads_no_backend(argv):
    import subprocess

    code = LOADED_AFTER_PARSING.format(backends=BACKENDS)
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                            text=True, timeout=120, check=False)
    last = result.stdout.strip().splitlines()
    assert last[-2] == ("exit 0" if "--help" in argv else "exit 2"), result.stderr[-2000:]
    assert last[-1] == "loaded", last[-1]  # nothing after the word: no backend


def test_the_check_sees_a_loaded_backend():
    # The script above does report a module that parsing would have loaded.
    import subprocess

    code = "import keras\n" + LOADED_AFTER_PARSING.format(backends=BACKENDS)
    result = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert "keras" in result.stdout.strip().splitlines()[-1].split()


def test_quiet_backend_logs_keeps_what_the_user_set(monkeypatch):
    import logging

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    for name in cli.QUIET_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    cli.quiet_backend_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert os.environ["GRPC_VERBOSITY"] == "ERROR"
    assert all(logging.getLogger(n).level == logging.ERROR for n in cli.QUIET_LOGGERS)


def test_verbose_is_an_option_of_every_command():
    for command in COMMANDS:
        assert cli.build_parser().parse_args([command, "--verbose"]).verbose
        assert not cli.build_parser().parse_args([command]).verbose


# The lines TensorFlow writes to a terminal when it starts (issue 11).
BACKEND_NOISE = ("cuInit", "cpu_feature_guard", "oneDNN", "absl::InitializeLog",
                 "cuda drivers")


def demo_stderr(*flags):
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "keras_covreg.experiments.cli", "demo", "--epochs", "1",
         "--n-samples", "20", *flags], capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
        check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "metrics of the code" in result.stdout
    return result.stderr


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="TensorFlow's start-up lines")
def test_backend_start_up_lines_only_with_verbose():
    assert not [line for line in demo_stderr().splitlines()
                if any(word in line for word in BACKEND_NOISE)]
    # With --verbose they are there: the check above can see them.
    assert any(word in demo_stderr("--verbose") for word in BACKEND_NOISE)


def test_hparams_metric_descriptions_prefer_the_longest_match():
    assert runner._metric_description("best_val_mse").startswith("best validation MSE")
    assert runner._metric_description("pruned_mse").endswith("of the pruned model")
    assert runner._metric_description("hidden_1_cvr").startswith("covariance-variance")
    assert runner._metric_description("unknown") == "unknown"
