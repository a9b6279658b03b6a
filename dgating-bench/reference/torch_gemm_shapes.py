"""The matrix products of one MLP training step in PyTorch: the twin of
`dgating-bench/examples/gemm_shapes.rs` (same shapes, same repetitions, one JSON line).

    python dgating-bench/reference/torch_gemm_shapes.py lenet-300-100 128 --threads 2
"""

import argparse
import json
import os
import sys
import time

try:
    import torch
except ImportError:
    print("torch is not importable with this interpreter", file=sys.stderr)
    sys.exit(2)

WIDTHS = {"lenet-300-100": [784, 300, 100, 10], "mlp-512": [784, 512, 512, 10]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=sorted(WIDTHS))
    p.add_argument("batch", type=int)
    p.add_argument("--threads", type=int, default=int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count())))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    products, flops = [], 0
    widths = WIDTHS[a.model]
    for l, (inp, out) in enumerate(zip(widths, widths[1:])):
        x, w, dy = torch.randn(a.batch, inp), torch.randn(out, inp), torch.randn(a.batch, out)
        products += [(x, w.t()), (dy.t(), x)]
        flops += 2 * 2 * a.batch * inp * out
        if l > 0:
            products.append((dy, w))
            flops += 2 * a.batch * inp * out
    with torch.no_grad():
        for _ in range(5):
            for x, y in products:
                x @ y
        ms = []
        for _ in range(40):
            t = time.perf_counter()
            for x, y in products:
                x @ y
            ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    median = (ms[19] + ms[20]) / 2
    print(json.dumps({"impl": "pytorch", "model": a.model, "batch": a.batch, "threads": a.threads,
                      "median_ms": round(median, 4), "gflops": round(flops / median / 1e6, 1)}))


if __name__ == "__main__":
    main()
