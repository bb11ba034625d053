"""Output directory of an experiment: one JSON per run, a CSV, figures, summary.

Layout of ``<out>/<experiment>/``::

    runs/<run_id>.json     one finished run, written atomically
    results.csv            one line per finished run, rebuilt after each run
    figures/*.png          the paper's figures, with our numbers
    summary.md             our numbers beside the paper's
    tensorboard/<run_id>/  the run's hyperparameters and final results (HParams),
                           its loss curve, and CovarianceMonitor's event files
    tensorboard/           the sweep's HParams experiment: hyperparameters, metrics
    config.json            the options of the latest invocation

A sweep that is interrupted and started again with the same options skips
every run whose JSON exists, so it picks up where it stopped. A run is reused
only when every option that can change its result matches ``config.json``:
the options an experiment lists as only adding runs (more seeds, more
strengths) may differ, and then extend the sweep; any other difference is
refused with `OptionsMismatchError` before anything is written, unless
``restart=True`` deletes the old results first.
"""

import concurrent.futures
import csv
import dataclasses
import io
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time

from tqdm.auto import tqdm


def write_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    # mkstemp creates the file private (0600); give it the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# Result keys renamed since earlier releases: UD_90 was ``ud_pca`` and
# ``ud_unit`` (and ``<layer>_ud_pca`` in XOR) before it had one name across
# the package (``metrics.ud_name``). Every experiment measures q = 0.9.
RENAMED_KEYS = {"ud_pca": "ud90_pca", "ud_unit": "ud90_unit"}


def upgrade_result(result):
    """A run's result with the keys of earlier releases renamed."""
    upgraded = {}
    for key, value in result.items():
        for old, new in RENAMED_KEYS.items():
            if key == old or key.endswith("_" + old):
                key = key[: len(key) - len(old)] + new
        upgraded[key] = value
    return upgraded


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if hasattr(value, "item"):  # NumPy scalars
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class OptionsMismatchError(ValueError):
    """The output directory holds runs made with options that change results."""


# What an experiment directory holds; `restart` deletes exactly these.
OUTPUTS = ("runs", "figures", "tensorboard", "results.csv", "summary.md", "config.json")
_MISSING = "(not recorded)"


def _flag(name):
    return "--" + name.replace("_", "-")


def differing_options(old, new, *, adds_runs=()):
    """The options of `new` that differ from `old` and change a run's result.

    Args:
        old: the options saved in ``config.json`` (JSON values).
        new: the options of this invocation (JSON values).
        adds_runs: names of the options that only select which runs there
            are; they may differ.

    Returns:
        ``[(name, old value, new value), ...]``, sorted by name.

    Example:
        >>> differing_options({"seeds": 2, "strength": 0.2},
        ...                   {"seeds": 5, "strength": 0.5}, adds_runs=("seeds",))
        [('strength', 0.2, 0.5)]
    """
    return [(name, old.get(name, _MISSING), value) for name, value in sorted(new.items())
            if name not in adds_runs and old.get(name, _MISSING) != value]


def check_options(root, options, *, adds_runs=(), defaults=None):
    """Raises unless the runs in `root` may be reused under `options`.

    Args:
        root: an experiment directory, ``<out>/<name>``.
        options: the options of this invocation (JSON values).
        adds_runs: names of the options that may differ (see
            `differing_options`).
        defaults: the default of every option (JSON values). An option that
            ``config.json`` does not hold was added after its runs were made,
            and they were made as its default does; None to count such an
            option as differing.

    Raises:
        OptionsMismatchError: naming each option that differs, with the value
            the old runs were made with and the new one, and how to proceed.
    """
    how = ("Choose another output directory (--out), or --restart (restart=True) to "
           "delete them and start over.")
    path = os.path.join(root, "config.json")
    if not os.path.exists(path):
        runs = os.path.join(root, "runs")
        if os.path.isdir(runs) and any(n.endswith(".json") for n in os.listdir(runs)):
            raise OptionsMismatchError(
                f"{root} holds runs but no config.json to check their options against. "
                f"Copy the config.json of the invocation that made them beside them. {how} "
                f"Received: out={os.path.dirname(root)!r}")
        return
    with open(path) as f:
        old = {**(defaults or {}), **json.load(f)}
    differences = differing_options(old, options, adds_runs=adds_runs)
    if differences:
        listed = "; ".join(f"{_flag(name)}: {before!r} there, {after!r} now"
                           for name, before, after in differences)
        may = f" ({', '.join(_flag(n) for n in adds_runs)} may differ: they only add runs)" \
            if adds_runs else ""
        raise OptionsMismatchError(
            f"{root} holds runs made with other options, which change their results: "
            f"{listed}. A run is reused only when every such option matches{may}. {how} "
            f"Received: " + ", ".join(f"{name}={after!r}" for name, _, after in differences))


def clear(root):
    """Deletes an experiment's results (`OUTPUTS`) from `root`, nothing else."""
    for name in OUTPUTS:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


class Experiment:
    """The output directory of one experiment, and its finished runs.

    Args:
        out: the output root (``--out``).
        name: the experiment's name, a subdirectory of `out`.
        config: the options of this invocation (a dict), saved in
            ``config.json``.
        adds_runs: names of the options that only add runs: they may differ
            from those of the runs already there.
        restart: delete the results already there first.
        defaults: the options' defaults, for a ``config.json`` written before
            an option existed (see `check_options`).

    Raises:
        OptionsMismatchError: if the directory holds runs made with options
            that change results (see `check_options`); nothing is written then.
        ValueError: if the directory cannot be made (e.g. `out` lies on a
            read-only file system).
    """

    def __init__(self, out, name, config, *, adds_runs=(), restart=False, defaults=None):
        self.root = os.path.join(os.fspath(out), name)
        self.runs_dir = os.path.join(self.root, "runs")
        self.figures_dir = os.path.join(self.root, "figures")
        config = _jsonable(config)
        if restart:
            clear(self.root)
        else:
            check_options(self.root, config, adds_runs=adds_runs, defaults=defaults)
        try:
            os.makedirs(self.runs_dir, exist_ok=True)
            os.makedirs(self.figures_dir, exist_ok=True)
        except OSError as e:
            raise ValueError(f"Cannot make the output directory {self.root!r}: "
                             f"{e.strerror or e}. Received: out={os.fspath(out)!r}") from e
        write_atomic(
            os.path.join(self.root, "config.json"),
            json.dumps(config, indent=2, sort_keys=True),
        )

    def run_path(self, run_id):
        return os.path.join(self.runs_dir, f"{run_id}.json")

    def tensorboard_dir(self, run_id):
        return os.path.join(self.root, "tensorboard", run_id)

    def load(self, run_id):
        """The saved result of `run_id`, or None if it has not finished."""
        path = self.run_path(run_id)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return upgrade_result(json.load(f))

    def save(self, run_id, result):
        """Saves a finished run atomically and rebuilds results.csv."""
        result = _jsonable(dict(result, run_id=run_id))
        write_atomic(self.run_path(run_id), json.dumps(result, indent=2, sort_keys=True))
        self.write_csv()
        return result

    def results(self):
        """Every finished run, sorted by run id."""
        out = []
        for name in sorted(os.listdir(self.runs_dir)):
            if name.endswith(".json"):
                with open(os.path.join(self.runs_dir, name)) as f:
                    out.append(upgrade_result(json.load(f)))
        return out

    def write_csv(self):
        rows = [
            {k: v for k, v in r.items() if not isinstance(v, (list, dict))}
            for r in self.results()
        ]
        fields = sorted({k for row in rows for k in row})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(os.path.join(self.root, "results.csv"), buffer.getvalue())

    def figure_path(self, name):
        return os.path.join(self.figures_dir, name)

    def write_summary(self, text):
        write_atomic(os.path.join(self.root, "summary.md"), text)

    def sweep_in_processes(self, plan, run_one, *, config, jobs, prepare=None,
                           on_worker_start=None, desc, on_result=None):
        """`sweep` with the runs in `jobs` worker processes (see `run_sweep`).

        Each worker is pinned to a `worker_slots` entry before anything
        imports a backend, calls `prepare` once, then trains runs as they
        come. Each result is saved here as soon as its run ends, so an
        interrupted sweep keeps every finished run; an error in a run stops
        the sweep (the runs already running finish first) and is raised.
        """
        results = {run_id: self.load(run_id) for run_id, _ in plan}
        todo = [(run_id, kwargs) for run_id, kwargs in plan if results[run_id] is None]
        context = multiprocessing.get_context("spawn")
        slots = context.Queue()
        for slot in worker_slots(min(jobs, max(len(todo), 1))):
            slots.put(slot)
        kwargs_of = dict(plan)
        with tqdm(total=len(plan), initial=len(plan) - len(todo), desc=desc,
                  unit="run") as bar:
            if todo:
                with concurrent.futures.ProcessPoolExecutor(
                        max_workers=min(jobs, len(todo)), mp_context=context,
                        initializer=_start_worker,
                        initargs=(slots, prepare, config, on_worker_start)) as pool:
                    futures = {pool.submit(_run_in_worker, run_one, run_id, self, config,
                                           kwargs): run_id for run_id, kwargs in todo}
                    try:
                        for future in concurrent.futures.as_completed(futures):
                            run_id = futures[future]
                            results[run_id] = self.save(run_id, future.result())
                            bar.set_postfix_str(run_id)
                            bar.update()
                    except BaseException:
                        for future in futures:
                            future.cancel()
                        raise
        for run_id, result in results.items():
            if on_result is not None:
                on_result(run_id, kwargs_of[run_id], result)
        return [results[run_id] for run_id, _ in plan]

    def sweep(self, plan, run_fn, *, desc, on_result=None):
        """Runs every (run_id, kwargs) of `plan` not already finished.

        Shows a progress bar; returns the results of the whole plan in order.
        `on_result(run_id, kwargs, result)` is called for every run, finished
        now or before.
        """
        results = []
        with tqdm(total=len(plan), desc=desc, unit="run") as bar:
            for run_id, kwargs in plan:
                result = self.load(run_id)
                if result is None:
                    bar.set_postfix_str(run_id)
                    start = time.perf_counter()
                    result = run_fn(run_id=run_id, **kwargs)
                    result["seconds"] = time.perf_counter() - start
                    result = self.save(run_id, result)
                if on_result is not None:
                    on_result(run_id, kwargs, result)
                results.append(result)
                bar.update()
        return results


def run_sweep(name, config, out, *, plan, run_one, report, adds_runs=(), restart=False,
              prepare=None, hparams=None, metrics=(), jobs=1, on_worker_start=None):
    """Runs (or resumes, or extends) every run of an experiment, then reports.

    Args:
        name: the experiment's name (its subdirectory of `out`).
        config: the experiment's options, a dataclass.
        out: the output root.
        plan: ``plan(config)`` -> [(run_id, kwargs), ...]; a run's id must
            name every kwarg that changes its result.
        run_one: ``run_one(run_id=, exp=, config=, **context, **kwargs)`` ->
            the result dict of one run. A module-level function when
            ``jobs > 1`` (it is sent to other processes).
        report: ``report(exp, results, config, seconds)`` -> summary text.
        adds_runs: names of the options that only change which runs `plan`
            returns, never the result of a run: they may differ from those
            of the runs already in the directory.
        restart: delete the results already in the directory first.
        prepare: optional ``prepare(config)`` -> the `context` of `run_one`
            (e.g. data loaded once), called after the options are checked and
            before anything is written; once per worker process when
            ``jobs > 1`` (a module-level function then).
        hparams: optional ``hparams(kwargs, config)`` -> the hyperparameters
            of a run for TensorBoard's HParams dashboard (what differs between
            runs); the run's kwargs when None.
        metrics: the result keys shown as the HParams dashboard's metrics.
        jobs: how many runs train side by side, each in a process of its own
            pinned to a share of the CPU cores or to a GPU (`worker_slots`).
            A run seeds itself, so its result does not depend on `jobs` or on
            which runs came before it in its process. Defaults to 1: every
            run in this process, one after another.
        on_worker_start: optional function each worker process calls first,
            after pinning and before `prepare` (e.g. to quiet the backend's
            start-up logs); module-level.

    Returns:
        ``(experiment, summary text)``.

    Raises:
        OptionsMismatchError: see `check_options`.
        ValueError: if two runs of the plan share an id, or `jobs` < 1.
    """
    start = time.perf_counter()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"`jobs` must be an integer >= 1. Received: jobs={jobs!r}")
    runs = plan(config)
    ids = [run_id for run_id, _ in runs]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"Two runs of the plan share an id: {', '.join(repeated)}. "
                         f"Received: config={config!r}")
    options = _jsonable(dataclasses.asdict(config))
    defaults = _jsonable(dataclasses.asdict(type(config)()))
    if not restart:
        check_options(os.path.join(os.fspath(out), name), options, adds_runs=adds_runs,
                      defaults=defaults)
    context = prepare(config) if prepare is not None and jobs == 1 else {}
    exp = Experiment(out, name, options, adds_runs=adds_runs, restart=restart,
                     defaults=defaults)
    run_hparams = hparams or (lambda kwargs, config: dict(kwargs))

    def on_result(run_id, kwargs, result):
        write_tensorboard_run(exp.tensorboard_dir(run_id), run_hparams(kwargs, config),
                              result, metrics)

    if jobs == 1:
        results = exp.sweep(
            runs,
            lambda run_id, **kw: run_one(run_id=run_id, exp=exp, config=config, **context,
                                         **kw),
            desc=name, on_result=on_result)
    else:
        results = exp.sweep_in_processes(
            runs, run_one, config=config, jobs=jobs, prepare=prepare,
            on_worker_start=on_worker_start, desc=name, on_result=on_result)
    exp.write_csv()  # also when every run was already there and results.csv was not
    write_tensorboard_experiment(
        os.path.join(exp.root, "tensorboard"),
        [run_hparams(kwargs, config) for _, kwargs in runs], metrics)
    return exp, report(exp, results, config, time.perf_counter() - start)


def steps_per_execution(steps):
    """`steps` for `compile(steps_per_execution=)`, or 1 where Keras refuses more.

    Grouping many small training steps into one call saves Keras's per-step
    Python overhead; Keras's torch backend (3.15) refuses any value above 1.
    The numbers are the same either way: only how the steps are dispatched
    changes.
    """
    import keras

    return 1 if keras.config.backend() == "torch" else steps


# -- runs side by side -------------------------------------------------------


def visible_gpus():
    """The NVIDIA GPUs a run may be pinned to, as ``CUDA_VISIBLE_DEVICES`` entries.

    ``CUDA_VISIBLE_DEVICES`` when it is set (empty: none); else the GPUs that
    ``nvidia-smi -L`` lists; else none. Reads no backend.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    try:
        found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                               timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [line for line in found.stdout.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(lines))] if found.returncode == 0 else []


def worker_slots(jobs, *, cores=None, gpus=None):
    """What each of `jobs` worker processes is pinned to.

    With GPUs, worker k gets GPU k mod (number of GPUs): several workers
    share a GPU when there are more workers than GPUs (a small model leaves
    a large GPU mostly idle). Without, the CPU cores are dealt out in turn,
    so that each worker has its own ``len(cores) // jobs`` or one more (and
    workers share cores only when there are more workers than cores).

    Args:
        jobs: the number of workers, >= 1.
        cores: the CPU cores to share; those this process may run on when
            None.
        gpus: the GPUs to share (`visible_gpus` when None).

    Returns:
        One dict per worker: ``{"gpu": "0"}`` or ``{"cores": [0, 2]}``.

    Example:
        >>> worker_slots(2, cores=[0, 1, 2, 3, 4], gpus=[])
        [{'cores': [0, 2, 4]}, {'cores': [1, 3]}]
        >>> worker_slots(3, cores=[0], gpus=["0", "1"])
        [{'gpu': '0'}, {'gpu': '1'}, {'gpu': '0'}]
    """
    gpus = visible_gpus() if gpus is None else list(gpus)
    if gpus:
        return [{"gpu": gpus[k % len(gpus)]} for k in range(jobs)]
    cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
    return [{"cores": cores[k::jobs] or [cores[k % len(cores)]]} for k in range(jobs)]


# Thread-count variables of the backends' CPU thread pools, set in a worker to
# its number of cores (TensorFlow reads the TF_ ones, PyTorch and NumPy's BLAS
# the others, when they start).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS")


def pin_this_process(slot):
    """Pins this process to a `worker_slots` entry; call before any backend starts.

    A GPU slot sets ``CUDA_VISIBLE_DEVICES`` and lets JAX and TensorFlow take
    GPU memory as they need it instead of most of it up front, so that
    processes can share a GPU. A CPU slot restricts the process to its cores
    (`os.sched_setaffinity`, which TensorFlow, JAX and PyTorch read to size
    their thread pools) and sets `THREAD_VARIABLES` to their number.
    """
    if "gpu" in slot:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot["gpu"]
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        return
    os.sched_setaffinity(0, slot["cores"])
    for name in THREAD_VARIABLES:
        os.environ[name] = str(len(slot["cores"]))
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"


# The state of a worker process of `Experiment.sweep_in_processes`.
_WORKER: dict = {}


def _start_worker(slots, prepare, config, on_start):
    pin_this_process(slots.get())
    try:
        if on_start is not None:
            on_start()
        _WORKER["context"] = prepare(config) if prepare is not None else {}
    except Exception as e:  # raised with the first run, where the caller sees it
        _WORKER["error"] = e


def _run_in_worker(run_one, run_id, exp, config, kwargs):
    if "error" in _WORKER:
        raise _WORKER["error"]
    start = time.perf_counter()
    result = run_one(run_id=run_id, exp=exp, config=config, **_WORKER["context"], **kwargs)
    result["seconds"] = time.perf_counter() - start
    return result


# What the HParams dashboard says of a metric, by result key (a key ending in
# one of these, e.g. hidden_1_cvr, takes its description).
METRIC_DESCRIPTIONS = {
    "cvr": "covariance-variance ratio of the code at the end, in [1, p]; lower is "
           "more decorrelated",
    "mapc": "mean absolute Pearson correlation of the code's units, in [0, 1]",
    "ud90_pca": "UD90, principal components holding 90% of the code's variance",
    "ud90_unit": "UD90, units holding 90% of the code's variance",
    "tdv_pca": "share of the variance in the top d principal components; higher is better",
    "tdv_unit": "share of the variance in the top d units; higher is better",
    "active": "units whose variance is at least the active fraction of the largest",
    "mse": "reconstruction mean squared error (test data for CIFAR-10)",
    "mse_01": "reconstruction mean squared error in pixels scaled to [0, 1]",
    "units_kept": "code units left after prune_units removed the switched-off ones",
    "pruned_mse": "reconstruction mean squared error of the pruned model",
    "best_val_mse": "best validation MSE (early stopping's epoch)",
    "final_loss": "training loss at the end, penalty included",
    "epochs": "epochs trained",
    "passes": "passes over the data",
    "steps": "training steps",
    "solved": "1 when the network classifies the four XOR patterns",
    "minimal": "1 when solved with 2 active units in layer 1 and 1 in layer 2",
}


def _metric_description(key):
    """The description of a result key: its own, else that of its longest suffix."""
    if key in METRIC_DESCRIPTIONS:
        return METRIC_DESCRIPTIONS[key]
    suffixes = sorted((s for s in METRIC_DESCRIPTIONS if key.endswith("_" + s)), key=len)
    return METRIC_DESCRIPTIONS[suffixes[-1]] if suffixes else key


def _hparam_value(value):
    """A value as the HParams dashboard takes it: bool, float or str."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


def write_tensorboard_run(log_dir, hparams, result, metrics):
    """Writes one run's HParams session, final metrics and loss curve.

    Replaces what an earlier report wrote for the run. The metrics go under
    ``result/<key>`` at step 0; ``loss_history`` (one value per fit epoch)
    becomes ``epoch_loss``, the tag of Keras's `TensorBoard` callback.
    """
    from keras_covreg import _events

    writer = _events.SummaryWriter.replacing(log_dir, "hparams")
    try:
        writer.hparams({k: _hparam_value(v) for k, v in hparams.items()},
                       trial_id=os.path.basename(log_dir))
        for key in metrics:
            value = result.get(key)
            if isinstance(value, (bool, int, float)) and math.isfinite(value):
                writer.scalar(f"result/{key}", float(value), 0,
                              description=_metric_description(key))
        for epoch, loss in enumerate(result.get("loss_history") or ()):
            writer.scalar("epoch_loss", loss, epoch,
                          description="training loss per fit epoch, penalty included")
    finally:
        writer.close()


def write_tensorboard_experiment(log_dir, hparams, metrics):
    """Declares the sweep to the HParams dashboard: its hyperparameters' values
    and the metrics, so that the table, parallel coordinates and scatter plots
    show them in this order."""
    from keras_covreg import _events

    domains: dict[str, set] = {}
    for run in hparams:
        for name, value in run.items():
            domains.setdefault(name, set()).add(_hparam_value(value))
    writer = _events.SummaryWriter.replacing(log_dir, "hparams")
    try:
        writer.hparams_experiment(
            {name: list(values) for name, values in domains.items()},
            [(f"result/{key}", "", _metric_description(key)) for key in metrics])
    finally:
        writer.close()


# TensorBoard keeps 10 pictures per tag unless told otherwise; a number above
# any run's count of pictures shows them all ("images=0" shows none in
# TensorBoard 2.21: the images dashboard then serves zero samples).
SAMPLES_PER_PLUGIN = "images=100000"


def tensorboard_command(exp):
    """The command that shows an experiment's TensorBoard logs, every picture included."""
    return (f"tensorboard --logdir {os.path.join(exp.root, 'tensorboard')} "
            f"--samples_per_plugin {SAMPLES_PER_PLUGIN}")


def run_minutes(results):
    """Minutes the runs took, summed over their own recorded times.

    Unlike the time of one invocation, this stays the same when a sweep is
    resumed or only its report is redrawn from results already on disk.
    """
    return sum(r.get("seconds", 0.0) for r in results) / 60


def mean_std(values):
    """Mean and sample standard deviation of the finite values (NaN if none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return mean, math.sqrt(var)


def markdown_table(header, rows):
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
