#!/usr/bin/env bash
# Table 1 of the CIFAR-10 experiment on one GPU with the JAX backend, as run for
# docs/reproduction.md. The autoencoder is far too small to fill a GPU, so the
# four rows train in four processes side by side, each running its seeds one
# after another; a run killed at the time limit leaves the finished ones.
#
#   docs/scripts/cifar10_gpu.sh DATA_DIR OUT SECONDS [cifar10 options...]
#
# Then merge OUT/*/cifar10/runs/*.json into one directory, copy one
# OUT/*/cifar10/config.json beside them (they differ only in --rows, which only
# adds runs), and run `keras-covreg cifar10` there with the same options to
# write the summary.
set -u
data_dir=$1 out=$2 seconds=$3
shift 3
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
# Four processes share the GPU: no process may take 75% of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# Every seed of a row compiles the same programs: compile them once.
export JAX_COMPILATION_CACHE_DIR=/tmp/keras-covreg-jax-cache
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
mkdir -p "$out"
for row in l_sigma l1 none decov; do
    timeout "$seconds" python3 -m keras_covreg.experiments.cli cifar10 \
        --data-dir "$data_dir" --out "$out/$row" --rows "$row" "$@" \
        >"$out/$row.log" 2>&1 &
done
wait
