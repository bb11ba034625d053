"""Output directory of an experiment: one JSON per run, a CSV, figures, summary.

Layout of ``<out>/<experiment>/``::

    runs/<run_id>.json     one finished run, written atomically
    results.csv            one line per finished run, rebuilt after each run
    figures/*.png          the paper's figures, with our numbers
    summary.md             our numbers beside the paper's
    tensorboard/<run_id>/  CovarianceMonitor event files (where a run has them)

A sweep that is interrupted and started again with the same options skips
every run whose JSON exists, so it picks up where it stopped.
"""

import csv
import dataclasses
import io
import json
import math
import os
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


class Experiment:
    """The output directory of one experiment, and its finished runs.

    Args:
        out: the output root (``--out``).
        name: the experiment's name, a subdirectory of `out`.
        config: the options of this invocation, saved in ``config.json``.
    """

    def __init__(self, out, name, config):
        self.root = os.path.join(os.fspath(out), name)
        self.runs_dir = os.path.join(self.root, "runs")
        self.figures_dir = os.path.join(self.root, "figures")
        os.makedirs(self.runs_dir, exist_ok=True)
        os.makedirs(self.figures_dir, exist_ok=True)
        write_atomic(
            os.path.join(self.root, "config.json"),
            json.dumps(_jsonable(config), indent=2, sort_keys=True),
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
            return json.load(f)

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
                    out.append(json.load(f))
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

    def sweep(self, plan, run_fn, *, desc):
        """Runs every (run_id, kwargs) of `plan` not already finished.

        Shows a progress bar; returns the results of the whole plan in order.
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
                results.append(result)
                bar.update()
        return results


def run_sweep(name, config, out, *, plan, run_one, report, **context):
    """Runs (or resumes) every run of an experiment, then writes its report.

    Args:
        name: the experiment's name (its subdirectory of `out`).
        config: the experiment's options, a dataclass.
        out: the output root.
        plan: ``plan(config)`` -> [(run_id, kwargs), ...].
        run_one: ``run_one(run_id=, exp=, config=, **context, **kwargs)`` ->
            the result dict of one run.
        report: ``report(exp, results, config, seconds)`` -> summary text.
        **context: passed to every `run_one` (e.g. data loaded once).

    Returns:
        ``(experiment, summary text)``.
    """
    start = time.perf_counter()
    exp = Experiment(out, name, dataclasses.asdict(config))
    results = exp.sweep(
        plan(config),
        lambda run_id, **kw: run_one(run_id=run_id, exp=exp, config=config, **context, **kw),
        desc=name,
    )
    return exp, report(exp, results, config, time.perf_counter() - start)


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
