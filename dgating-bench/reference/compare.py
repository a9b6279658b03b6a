#!/usr/bin/env python3
"""Side-by-side training-step time, dgating (candle) vs PyTorch CPU, interleaved in one run.

Builds nothing: build the Rust example first, from the workspace root,

    cargo build --release -p dgating-bench --example step_time
    /tmp/torchenv/bin/python dgating-bench/reference/compare.py --rounds 3

For each round and each configuration (model, batch, depth) it runs the Rust example
(`target/release/examples/step_time`) and `torch_train_step.py` once each, alternating which
of the two goes first, every process with the same thread count (`RAYON_NUM_THREADS`,
`OMP_NUM_THREADS` and `MKL_NUM_THREADS` in the environment, and `--threads`), and prints a
markdown table of the per-step medians. `--json FILE` saves every raw result line.
Exit status 2: PyTorch is not importable or the Rust example is not built.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONFIGS = [("lenet-300-100", 128, 0), ("lenet-300-100", 128, 3), ("mlp-512", 256, 0), ("mlp-512", 256, 3)]


def run_one(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"no JSON line from: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1])
    result["stderr"] = proc.stderr.strip().splitlines()
    return result


def fmt(values):
    return " / ".join(f"{v:.2f}" for v in values)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int,
                   default=int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count() or 1),
                   help="threads for both (default: $RAYON_NUM_THREADS, else os.cpu_count())")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/examples/step_time")
    p.add_argument("--python", default=sys.executable, help="interpreter with torch (default: this one)")
    p.add_argument("--json", type=Path, help="save the raw results here")
    a = p.parse_args()
    if a.rounds < 1 or a.threads < 1:
        p.error("--rounds and --threads must be >= 1")

    probe = subprocess.run([a.python, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        print(f"compare.py: PyTorch is not importable by {a.python}; install it (pip install torch) "
              "or pass --python /path/to/python-with-torch. This comparison is optional.", file=sys.stderr)
        sys.exit(2)
    torch_version = probe.stdout.strip()
    if not a.binary.is_file():
        print(f"compare.py: {a.binary} not found; build it first from the workspace root:\n"
              "    cargo build --release -p dgating-bench --example step_time", file=sys.stderr)
        sys.exit(2)

    env = dict(os.environ)
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(a.threads)
    common = ["--warmup", str(a.warmup), "--steps", str(a.steps), "--threads", str(a.threads)]

    results = []
    k = 0
    for rnd in range(a.rounds):
        for model, batch, depth in CONFIGS:
            args = ["--model", model, "--batch", str(batch), "--depth", str(depth)] + common
            cmds = {"dgating": [str(a.binary)] + args,
                    "pytorch": [a.python, str(HERE / "torch_train_step.py")] + args}
            order = ["dgating", "pytorch"] if k % 2 == 0 else ["pytorch", "dgating"]
            k += 1
            for impl in order:
                r = run_one(cmds[impl], env)
                if r["threads"] != a.threads:
                    sys.exit(f"{impl} ran with {r['threads']} threads, asked for {a.threads}")
                r["round"] = rnd
                results.append(r)
                print(f"round {rnd + 1}/{a.rounds} {impl:8} {model:14} b{batch:<4} D{depth}: "
                      f"median {r['median_ms']:.2f} ms", file=sys.stderr)

    def medians(impl, model, batch, depth):
        return [r["median_ms"] for r in results
                if (r["impl"], r["model"], r["batch"], r["depth"]) == (impl, model, batch, depth)]

    summary = {}
    print(f"\nOne training step (fwd + CE + bwd + SGD-momentum), f32 CPU, {a.threads} threads, "
          f"median of {a.steps} steps after {a.warmup} warm-up; torch {torch_version}; "
          f"per-round medians, then [median of {a.rounds} rounds].\n")
    print("| config | dgating ms | pytorch ms | dgating / pytorch |")
    print("|---|---|---|---|")
    for model, batch, depth in CONFIGS:
        dg, pt = medians("dgating", model, batch, depth), medians("pytorch", model, batch, depth)
        mdg, mpt = statistics.median(dg), statistics.median(pt)
        summary[(model, batch, depth)] = (mdg, mpt)
        name = f"{model} b{batch} " + ("dense" if depth == 0 else f"D={depth}")
        print(f"| {name} | {fmt(dg)} [**{mdg:.2f}**] | {fmt(pt)} [**{mpt:.2f}**] | {mdg / mpt:.2f} |")

    print("\nD-Gating overhead (gated step time / dense step time, medians of rounds):\n")
    print("| model | depth | dgating | pytorch |")
    print("|---|---|---|---|")
    for model, batch, depth in CONFIGS:
        if depth == 0:
            continue
        dense = summary[(model, batch, 0)]
        gated = summary[(model, batch, depth)]
        print(f"| {model} b{batch} | D={depth} | {gated[0] / dense[0]:.2f}x | {gated[1] / dense[1]:.2f}x |")

    if a.json:
        a.json.write_text(json.dumps({"threads": a.threads, "rounds": a.rounds, "warmup": a.warmup,
                                      "steps": a.steps, "torch": torch_version, "results": results},
                                     indent=1) + "\n")
        print(f"\nraw results: {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
