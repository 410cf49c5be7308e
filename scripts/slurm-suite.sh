#!/usr/bin/env bash
# A suite spread over a Slurm job array: task I of N runs share I/N of the suite's runs,
# every share writing into its own folder; merge them afterwards with `episodic report`.
#
#   sbatch --array=0-7 scripts/slurm-suite.sh examples/configs/grid-fashion.toml 8
#   # when every task has finished:
#   episodic report results/shards/*/ --out results/shards-report
#
# Each run skips itself when a complete results file of the same configuration is already
# in its folder, so a resubmitted array (after a timeout or a preempted node) only runs
# what is missing. Needs the `episodic` binary on PATH (cargo install --path crates/episodic-cli)
# or in EPISODIC_BIN.
#SBATCH --job-name=episodic-suite
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --output=results/shards/slurm-%A_%a.log
set -euo pipefail
grid=${1:?usage: slurm-suite.sh GRID.toml SHARDS}
shards=${2:?usage: slurm-suite.sh GRID.toml SHARDS}
index=${SLURM_ARRAY_TASK_ID:?run me with sbatch --array=0-$((shards - 1))}
bin=${EPISODIC_BIN:-episodic}
out="results/shards/$index"
mkdir -p "$out"
exec "$bin" suite --config "$grid" --shard "$index/$shards" --out-dir "$out" \
  --threads "${SLURM_CPUS_PER_TASK:-1}" --no-report
