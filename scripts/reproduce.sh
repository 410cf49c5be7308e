#!/usr/bin/env bash
# Reproduces the README's results table: GEM on both MNIST continua over seeds 0, 1, 2 and
# the `single` baseline at seed 0, with the paper's settings, at 1 thread.
# Writes results/*.json and a report (results/report/index.html, summary.csv) with the CLI
# alone; prints the README's markdown table when python3 is there (it is needed for nothing
# else). About 4 minutes on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/episodic
mkdir -p results
for benchmark in mnist-permutations mnist-rotations; do
  for seed in 0 1 2; do
    "$bin" run --benchmark "$benchmark" --method gem --seed "$seed" --threads 1 \
      --out "results/gem-$benchmark-seed$seed.json" > /dev/null
  done
  "$bin" run --benchmark "$benchmark" --method single --seed 0 --threads 1 \
    --out "results/single-$benchmark-seed0.json" > /dev/null
done
"$bin" report results/gem-*-seed[012].json results/single-*-seed0.json --out results/report
if ! command -v python3 > /dev/null; then
  echo "python3 not found: the table is not printed; results/report/summary.csv has the figures"
  exit 0
fi
python3 - <<'PY'
import glob, json
print("| method | benchmark | seed | ACC | BWT | FWT | BWT /T | FWT /T | projected steps | seconds |")
print("|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob("results/*-seed*.json")):
    r = json.load(open(path))
    c, m, ref = r["config"], r["metrics"], r["metrics_reference_convention"]
    print(f"| {c['method']['name']} | {c['benchmark']} | {c['seed']} | {m['acc']:.4f} | {m['bwt']:+.4f} "
          f"| {m['fwt']:+.4f} | {ref['bwt']:+.4f} | {ref['fwt']:+.4f} | {r['projected_steps']} "
          f"| {r['timing']['total_seconds']:.1f} |")
PY
