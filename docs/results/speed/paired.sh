#!/bin/bash
# Paired training-step timing, dgating vs PyTorch, 2 threads, interleaved (each configuration's
# two programs back to back, rounds repeated). Usage, from anywhere in the repository:
#   cargo build --release -p dgating-bench --example conv_step_time --example gpt_step_time
#   PYTHON=/path/to/python-with-torch docs/results/speed/paired.sh [ROUNDS] > out.jsonl
# One JSON line per measurement on stdout (docs/PERFORMANCE.md reads them).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
P=${PYTHON:-python}
for round in $(seq "${1:-2}"); do
  for cfg in "--model lenet5 --batch 128" "--model vgg11 --width 0.25 --size 32 --batch 64"; do
    for d in 0 3; do
      target/release/examples/conv_step_time $cfg --depth $d --threads 2 --steps 20
      $P dgating-bench/reference/torch_conv_step.py $cfg --depth $d --threads 2 --steps 20
    done
  done
  target/release/examples/gpt_step_time --threads 2 --steps 10
  $P dgating-bench/reference/torch_gpt_step.py --threads 2 --steps 10
  target/release/examples/gpt_step_time --threads 2 --steps 10 --depth 3
done
