#!/usr/bin/env python3
"""PyTorch twin of `dgating-bench/examples/step_time.rs`: wall time of one training step
(zero_grad, forward, cross-entropy, backward, SGD-momentum update) for ONE configuration on
CPU, printed as one JSON line on stdout; the first and last step's loss go to stderr.

    python torch_train_step.py --model lenet-300-100 --batch 128 --depth 3 --threads 2

Same arguments as the Rust example. The math mirrors dgating exactly:

* ReLU MLP, PyTorch's default `nn.Linear` initialization (U(-1/sqrt(in), 1/sqrt(in)) for
  weight and bias, as `dgating_nn::GatedLinear::new`).
* `--depth D >= 2`: every hidden layer (not the output layer) is D-gated on its output
  neurons: weight omega [out, in], bias omega_b [out], gates gamma [out, D-1] initialised to 1,
  forward `h = (x @ omega.T + omega_b) * prod(gamma, dim=1)` -- dgating scales the
  activations the same way (the same function as W = omega * prod(gamma)).
* Mean cross-entropy; `torch.optim.SGD(lr=0.01, momentum=0.9)` with coupled weight decay
  1e-4 on omega, omega_b and gamma of gated layers and 0 on everything else (dgating's
  `Optimizer::new(Sgd { momentum: 0.9 }, params, gate_wd = 1e-4, ungated_wd = 0.0)`; a dense
  model has no gate factors, so no decay at all). Both add `wd * theta` to the gradient
  before the momentum buffer, and both start the buffer at the first gradient.
* Synthetic batch: x.flat[i] = ((i * 7919) % 256) / 255 (f32), labels i % 10.

Timing: `time.perf_counter` around the full step; `--warmup` steps are dropped, then median,
p10 and p90 (linear interpolation, numpy's default) of `--steps` steps.
"""

import argparse
import json
import math
import os
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch_train_step.py: PyTorch is not importable by this Python "
          f"({sys.executable}); install it (pip install torch) or pass another interpreter.",
          file=sys.stderr)
    sys.exit(2)

MODELS = {"lenet-300-100": [784, 300, 100, 10], "mlp-512": [784, 512, 512, 10]}


def default_threads():
    env = os.environ.get("RAYON_NUM_THREADS")
    return int(env) if env else (os.cpu_count() or 1)


class GatedMlp(torch.nn.Module):
    """ReLU MLP; with depth >= 2 the hidden layers are D-gated on their output neurons."""

    def __init__(self, widths, depth):
        super().__init__()
        self.linears = torch.nn.ModuleList(
            torch.nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:]))
        hidden = len(widths) - 2
        self.gates = torch.nn.ParameterList(
            torch.nn.Parameter(torch.ones(widths[l + 1], depth - 1)) for l in range(hidden)
        ) if depth >= 2 else torch.nn.ParameterList()

    def forward(self, x):
        h = x
        last = len(self.linears) - 1
        for l, lin in enumerate(self.linears):
            h = F.linear(h, lin.weight, lin.bias)
            if l < len(self.gates):
                h = h * self.gates[l].prod(dim=1)
            if l < last:
                h = F.relu(h)
        return h

    def param_groups(self, gate_wd, ungated_wd):
        """Gate factors (omega, omega_b, gamma of gated layers) vs the rest."""
        gated, ungated = [], []
        for l, lin in enumerate(self.linears):
            (gated if l < len(self.gates) else ungated).extend([lin.weight, lin.bias])
        gated.extend(self.gates)
        groups = [{"params": gated, "weight_decay": gate_wd},
                  {"params": ungated, "weight_decay": ungated_wd}]
        return [g for g in groups if g["params"]]


def percentile(sorted_vals, q):
    pos = q * (len(sorted_vals) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="lenet-300-100")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--depth", type=int, default=0, help="0 = dense, else D >= 2")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="torch.set_num_threads (default: $RAYON_NUM_THREADS, else os.cpu_count())")
    a = p.parse_args()
    if a.depth == 1 or a.depth < 0:
        p.error("--depth must be 0 (dense) or >= 2")
    if a.batch < 1 or a.steps < 1 or a.threads < 1 or a.warmup < 0:
        p.error("--batch, --steps, --threads must be >= 1 and --warmup >= 0")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    widths = MODELS[a.model]
    n = a.batch * widths[0]
    x = ((torch.arange(n, dtype=torch.int64) * 7919) % 256).to(torch.float32).div_(255.0)
    x = x.reshape(a.batch, widths[0])
    y = torch.arange(a.batch, dtype=torch.int64) % 10

    model = GatedMlp(widths, a.depth)
    opt = torch.optim.SGD(model.param_groups(1e-4, 0.0), lr=0.01, momentum=0.9)

    total = a.warmup + a.steps
    times = []
    for it in range(total):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        elapsed = (time.perf_counter() - t0) * 1e3
        if it >= a.warmup:
            times.append(elapsed)
        if it == 0 or it + 1 == total:
            v = loss.item()
            if not math.isfinite(v):
                print(f"non-finite loss {v} at step {it}", file=sys.stderr)
                sys.exit(1)
            print(f"step {it}: loss {v:.6f}", file=sys.stderr)
    times.sort()
    print(json.dumps({
        "impl": "pytorch", "model": a.model, "batch": a.batch, "depth": a.depth,
        "threads": torch.get_num_threads(),
        "median_ms": round(percentile(times, 0.5), 4),
        "p10_ms": round(percentile(times, 0.1), 4),
        "p90_ms": round(percentile(times, 0.9), 4),
        "steps": a.steps,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
