#!/usr/bin/env bash
# The CIFAR-10 ablation of docs/reproduction.md ("Which unstated choice makes
# the paper's numbers appear"): one of the paper's unstated choices changed at
# a time from our protocol, every Table 1 row (L_Sigma, L1, none) in every
# cell, 3 seeds, on a subset small enough for a 2-core CPU.
#
#   docs/scripts/cifar10_ablation.sh DATA_DIR OUT [cells...]
#
# Each cell is one `keras-covreg cifar10` invocation into OUT/<cell>; a cell
# that is interrupted resumes when run again. Without cells, all of them in
# the order below. Then: python docs/scripts/ablation_table.py OUT
set -euo pipefail
data_dir=$1 out=$2
shift 2
common=(--data-dir "$data_dir" --seeds 3 --rows l_sigma l1 none
        --train-samples 5000 --val-samples 1000 --test-samples 2000 --max-epochs 40
        --no-images --jobs "${JOBS:-2}")
declare -A cells=(
  [baseline]=""
  [l1_sum]="--l1-reduction sum --rows l1"
  [symmetric]="--pixels symmetric"
  [linear]="--code-activation linear"
  [relu]="--code-activation relu"
  [standardized]="--pixels standardized"
  [sigmoid]="--code-activation sigmoid"
  [small]="--architecture small"
  [patience10]="--patience 10"
  [symmetric_l1_sum]="--pixels symmetric --l1-reduction sum"
  [linear_l1_sum]="--code-activation linear --l1-reduction sum"
)
order=(baseline l1_sum symmetric linear relu small patience10 standardized sigmoid)
for cell in "${@:-${order[@]}}"; do
  echo "=== $cell: ${cells[$cell]} ($(date -u +%H:%M:%S))"
  # shellcheck disable=SC2086  # the cell's options are words
  keras-covreg cifar10 "${common[@]}" ${cells[$cell]} --out "$out/$cell"
done
