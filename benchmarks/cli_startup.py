"""Wall time of `keras-covreg --help` and of a refused option, and what they load.

    python benchmarks/cli_startup.py

Runs each command 5 times in a fresh interpreter and prints the median wall
time, next to `python -c "import keras"` for scale. Issue 11 asked for the
help and argument errors in under 2 s with no backend loaded.
"""

import statistics
import subprocess
import sys
import time

REPEATS = 5
COMMANDS = {
    "keras-covreg --help": [sys.executable, "-m", "keras_covreg.experiments.cli", "--help"],
    "keras-covreg xor --help": [sys.executable, "-m", "keras_covreg.experiments.cli", "xor",
                                "--help"],
    "keras-covreg xor --seeds 0 (refused)": [sys.executable, "-m",
                                             "keras_covreg.experiments.cli", "xor",
                                             "--seeds", "0"],
    "python -c 'import keras' (for scale)": [sys.executable, "-c", "import keras"],
}


def wall_time(argv):
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - start


def main():
    for name, argv in COMMANDS.items():
        times = [wall_time(argv) for _ in range(REPEATS)]
        print(f"{name:42s} median {statistics.median(times):6.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}, {REPEATS} runs)")


if __name__ == "__main__":
    main()
