"""PyTorch twin of dgating-bench/examples/conv_step_time.rs: wall time of one conv-net training
step (forward in training mode, mean cross-entropy, backward, SGD momentum 0.9 with coupled
weight decay 1e-4 on the gate factors) for ONE configuration, one JSON line on stdout.

    python3 torch_conv_step.py --model lenet5 --batch 128 --depth 0 --threads 2
    python3 torch_conv_step.py --model vgg11 --width 0.25 --size 32 --batch 64 --depth 3 --threads 2

Same architectures as dgating's presets: lenet5 (conv 5x5 6 [pad 2 at 28x28] - relu - maxpool 2 -
conv 5x5 16 - relu - maxpool 2 - flatten - 120 - 84 - 10, conv biases, no batch norm) and the
CIFAR-style vgg11 (3x3 convs without bias + batch norm + relu, channel plan 64 M 128 M 256 256
M 512 512 M 512 512 M times the width, the 4th pool dropped at 28x28, global average pooling,
one linear layer). --depth D >= 2 gates what dgating gates: the filters and biases of lenet5's
second conv and the 120/84 hidden neurons, or the batch-norm scale and shift of every vgg conv
but the first, each group scaled by the product of D-1 gates (initialised to 1); the gated
forward is the same function (`w = omega * prod(gamma)`).
Synthetic batch: x.flat[i] = ((i*7919) mod 256)/255, labels i mod 10.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def scaled(c, w):
    return max(1, int(round(c * w)))


class Gates(torch.nn.Module):
    def __init__(self, n, depth):
        super().__init__()
        self.g = torch.nn.Parameter(torch.ones(n, depth - 1)) if depth else None

    def prod(self):
        return self.g.prod(dim=1) if self.g is not None else None


class LeNet5(torch.nn.Module):
    def __init__(self, size, width, depth):
        super().__init__()
        c1, c2, h1, h2 = scaled(6, width), scaled(16, width), scaled(120, width), scaled(84, width)
        self.pad = 2 if size < 32 else 0
        self.conv1 = torch.nn.Conv2d(1 if size < 32 else 3, c1, 5, padding=self.pad)
        self.conv2 = torch.nn.Conv2d(c1, c2, 5)
        self.fc1 = torch.nn.Linear(c2 * 25, h1)
        self.fc2 = torch.nn.Linear(h1, h2)
        self.head = torch.nn.Linear(h2, 10)
        self.g2, self.g3, self.g4 = Gates(c2, depth), Gates(h1, depth), Gates(h2, depth)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        p = self.g2.prod()
        if p is None:
            x = self.conv2(x)
        else:
            x = F.conv2d(x, self.conv2.weight * p[:, None, None, None], self.conv2.bias * p)
        x = F.max_pool2d(F.relu(x), 2).flatten(1)
        for fc, g in ((self.fc1, self.g3), (self.fc2, self.g4)):
            p = g.prod()
            x = F.relu(fc(x) if p is None else fc(x) * p)
        return self.head(x)


class Vgg(torch.nn.Module):
    def __init__(self, size, width, depth, plan=(64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0)):
        super().__init__()
        self.layers, self.gates = torch.nn.ModuleList(), torch.nn.ModuleList()
        self.kinds = []
        c, pools, convs = (1 if size < 32 else 3), 0, 0
        for v in plan:
            if v == 0:
                pools += 1
                if not (pools == 4 and size < 32):
                    self.kinds.append("pool")
                continue
            o = scaled(v, width)
            self.layers.append(torch.nn.Conv2d(c, o, 3, padding=1, bias=False))
            self.layers.append(torch.nn.BatchNorm2d(o))
            self.gates.append(Gates(o, depth if convs > 0 else 0))
            self.kinds.append("conv")
            c, convs = o, convs + 1
        self.head = torch.nn.Linear(c, 10)

    def forward(self, x):
        i = 0
        for k in self.kinds:
            if k == "pool":
                x = F.max_pool2d(x, 2)
                continue
            conv, bn, g = self.layers[2 * i], self.layers[2 * i + 1], self.gates[i]
            p = g.prod()
            w, b = (bn.weight, bn.bias) if p is None else (bn.weight * p, bn.bias * p)
            x = F.relu(F.batch_norm(conv(x), bn.running_mean, bn.running_var, w, b, True, 0.1, 1e-5))
            i += 1
        return self.head(x.mean(dim=(2, 3)))


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--model", default="lenet5")
    a.add_argument("--width", type=float, default=1.0)
    a.add_argument("--size", type=int, default=28)
    a.add_argument("--batch", type=int, default=128)
    a.add_argument("--depth", type=int, default=0)
    a.add_argument("--warmup", type=int, default=5)
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = a.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = (LeNet5 if args.model == "lenet5" else Vgg)(args.size, args.width, args.depth)
    ch = 1 if args.size < 32 else 3
    n = args.batch * ch * args.size * args.size
    x = ((torch.arange(n, dtype=torch.int64) * 7919) % 256).float().div(255).reshape(args.batch, ch, args.size, args.size)
    y = torch.arange(args.batch) % 10
    factors = [p for name, p in model.named_parameters() if ".g" in name or name.startswith("g")]
    gated = {id(p) for p in factors}
    groups = [{"params": [p for p in model.parameters() if id(p) not in gated], "weight_decay": 0.0}]
    if factors:
        groups.append({"params": factors, "weight_decay": 1e-4})
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()

    def q(p):
        pos = p * (len(times) - 1)
        lo, hi = int(pos), min(int(pos) + 1, len(times) - 1)
        return times[lo] + (times[hi] - times[lo]) * (pos - lo)

    print(json.dumps({"impl": "pytorch", "model": args.model, "width": args.width, "size": args.size,
                      "batch": args.batch, "depth": args.depth, "threads": args.threads,
                      "median_ms": round(q(0.5), 3), "p10_ms": round(q(0.1), 3), "p90_ms": round(q(0.9), 3),
                      "steps": args.steps}))


main()
