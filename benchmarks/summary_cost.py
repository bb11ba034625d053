"""Cost of a covariance summary, against one eigendecomposition of the matrix.

`metrics.covariance_summary` (every metric: CVR, MAPC, UD90 on both bases,
TdV, effective rank, participation ratio, L_Sigma) and `numpy.linalg.eigvalsh`
on the same p x p covariance, timed alternately in one process, median of
`--rounds` (each timing repeats its call for 50 ms). Target: summary / eigvalsh <= 1.5 at p = 256, 1024 and 2048 (it
was 6.6 at p = 1024 when every metric took its own eigendecomposition and
check). Also prints the summary's time and the memory of the matrix.

Usage: python benchmarks/summary_cost.py [--rounds 5] [--sizes 256 1024 2048]
"""

import argparse
import statistics
import time

import numpy as np

from keras_covreg import metrics


# Each timing repeats its call for at least this long and reports the time
# per call: a single call at p = 256 (3 ms) is within the timer's noise.
MIN_TIMING_SECONDS = 0.05


def timed(fn):
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_TIMING_SECONDS:
            return elapsed / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    args = parser.parse_args()
    print(f"{'p':>6} {'summary s':>10} {'eigvalsh s':>11} {'ratio':>6} {'C MiB':>6}")
    for p in args.sizes:
        rng = np.random.default_rng(p)
        # A covariance of rank-deficient, correlated data, as a wide layer gives.
        h = rng.normal(size=(2 * p, p // 2)) @ rng.normal(size=(p // 2, p))
        cov = np.cov(h, rowvar=False)
        summary, eig = [], []
        for _ in range(args.rounds):
            summary.append(timed(lambda: metrics.covariance_summary(cov, d=10)))
            eig.append(timed(lambda: np.linalg.eigvalsh(cov)))
        s, e = statistics.median(summary), statistics.median(eig)
        print(f"{p:>6} {s:>10.4f} {e:>11.4f} {s / e:>6.2f} {cov.nbytes / 2**20:>6.1f}")


if __name__ == "__main__":
    main()
