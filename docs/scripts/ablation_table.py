"""The table of the CIFAR-10 ablation, from the runs of cifar10_ablation.sh.

    python docs/scripts/ablation_table.py OUT [--markdown]

Reads OUT/<cell>/cifar10/runs/*.json and prints, per cell and penalty, the
mean and standard deviation over seeds of the test-set metrics, with the
options the cell changed (read from its config.json against the defaults).
A cell that ran only some rows (l1_sum: only L1) takes the other rows from
the baseline cell, whose runs are the same runs: the option changes only L1.
"""

import argparse
import glob
import json
import math
import os
import statistics

from keras_covreg.experiments import cifar10

ROWS = ("l_sigma", "l1", "none", "decov")
COLUMNS = [  # (result key, header, format)
    ("cvr", "CVR", ".2f"), ("ud90_pca", "UD90 (PCA)", ".1f"),
    ("ud90_unit", "UD90 (units)", ".1f"), ("mse", "MSE", ".4f"),
    ("mse_01", "MSE [0, 1]", ".4f"), ("effective_rank", "eff. rank", ".1f"),
    ("units_kept", "units kept", ".1f"), ("pruned_mse", "MSE pruned", ".4f"),
    ("epochs", "epochs", ".0f"),
]
PAPER = {"l_sigma": "6.56 / 35.18 / 0.0398", "l1": "4.03 / 20.59 / 0.0569",
         "none": "20.00 / 41.69 / 0.0365"}


def cell_runs(root):
    runs = []
    for path in sorted(glob.glob(os.path.join(root, "cifar10", "runs", "*.json"))):
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def config_of(root):
    with open(os.path.join(root, "cifar10", "config.json")) as f:
        return json.load(f)


def changed(root):
    """The options of the cell that differ from the defaults, as flags."""
    config = config_of(root)
    defaults = vars(cifar10.Config())
    shown = ("pixels", "code_activation", "l1_reduction", "architecture", "patience")
    return " ".join(f"--{k.replace('_', '-')} {config[k]}" for k in shown
                    if k in config and config[k] != defaults[k]) or "(none)"


def cell(values, fmt):
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    args = parser.parse_args()
    cells = sorted(d for d in os.listdir(args.out)
                   if os.path.isfile(os.path.join(args.out, d, "cifar10", "config.json")))
    order = ["baseline"] + [c for c in cells if c != "baseline"]
    baseline = cell_runs(os.path.join(args.out, "baseline")) if "baseline" in cells else []
    header = ["cell", "changed", "penalty", "seeds"] + [h for _, h, _ in COLUMNS] + [
        "paper CVR / UD90 / MSE"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    minutes = 0.0
    for name in (c for c in order if c in cells):
        runs = cell_runs(os.path.join(args.out, name))
        minutes += sum(r.get("seconds", 0.0) for r in runs) / 60
        for row in ROWS:
            group = [r for r in runs if r["regularizer"] == row]
            # Only rows the cell does not run at all come from the baseline.
            rows_run = config_of(os.path.join(args.out, name))["rows"]
            borrowed = not group and name != "baseline" and row not in rows_run
            if borrowed:
                group = [r for r in baseline if r["regularizer"] == row]
            if not group:
                continue
            label = cifar10.LABELS[row] + (" (baseline's runs)" if borrowed else "")
            print("| " + " | ".join(
                [name, changed(os.path.join(args.out, name)), label, str(len(group))]
                + [cell([r.get(key) for r in group], fmt) for key, _, fmt in COLUMNS]
                + [PAPER.get(row, "-")]) + " |")
    print(f"\n{minutes:.0f} minutes of run time in all (the runs' own clocks).")


if __name__ == "__main__":
    main()
