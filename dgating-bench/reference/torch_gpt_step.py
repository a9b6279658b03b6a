#!/usr/bin/env python3
"""PyTorch twin of `dgating-bench/examples/gpt_step_time.rs`: wall time of one training step of
a nanoGPT-layout GPT (zero_grad, forward, mean cross-entropy, backward, AdamW update) on CPU,
printed as one JSON line on stdout; the first and last step's loss go to stderr.

    python torch_gpt_step.py --n-layer 4 --n-head 8 --n-embd 256 --block 128 --batch 16 --threads 2

The model is written the way nanoGPT writes it (the idiomatic, fast PyTorch form): token +
position embeddings, pre-LayerNorm blocks (eps 1e-5), one fused `c_attn` Linear for q, k, v,
`F.scaled_dot_product_attention(is_causal=True)`, output projection, tanh-GELU MLP of width
4 * n_embd, final LayerNorm, output head tied to the token embedding, no dropout. Weights
N(0, 0.02^2), the two output projections N(0, 0.02^2 / (2 n_layer)), biases 0 (nanoGPT's and
`dgating_nn::model::Gpt::new`'s initialization). `torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.95),
eps=1e-8, weight_decay=0)` as dgating's `OptimizerKind::AdamW` with decay 0 (the dense model
has no gate factors). Synthetic batch: ids x.flat[i] = (i * 7919) % vocab, targets
y.flat[i] = (i * 7919 + 1) % vocab.

Timing: `time.perf_counter` around the full step; `--warmup` steps dropped, then median, p10 and
p90 (linear interpolation) of `--steps` steps.
"""

import argparse
import json
import math
import os
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch_gpt_step.py: PyTorch is not importable by this Python "
          f"({sys.executable}); install it (pip install torch) or pass another interpreter.",
          file=sys.stderr)
    sys.exit(2)


class Block(nn.Module):
    def __init__(self, c, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(c, eps=1e-5)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c, eps=1e-5)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, c):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(block, c)
        self.blocks = nn.ModuleList(Block(c, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(c, eps=1e-5)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" in name:
                nn.init.ones_(p)
            elif name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.T


def percentile(v, q):
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--vocab", type=int, default=83, help="83: Moby Dick, character-level")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    env = os.environ.get("RAYON_NUM_THREADS")
    p.add_argument("--threads", type=int, default=int(env) if env else (os.cpu_count() or 1))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n = a.batch * a.block
    i = torch.arange(n, dtype=torch.int64)
    x = ((i * 7919) % a.vocab).view(a.batch, a.block)
    y = ((i * 7919 + 1) % a.vocab).view(a.batch, a.block)
    model = Gpt(a.vocab, a.block, a.n_layer, a.n_head, a.n_embd)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    total = a.warmup + a.steps
    times = []
    for it in range(total):
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, a.vocab), y.view(-1))
        loss.backward()
        opt.step()
        ms = (time.perf_counter() - t0) * 1e3
        if it >= a.warmup:
            times.append(ms)
        if it == 0 or it + 1 == total:
            print(f"step {it}: loss {loss.item():.6f}", file=sys.stderr)
    times.sort()
    print(json.dumps({
        "impl": "pytorch", "model": f"gpt-{a.n_layer}x{a.n_head}-{a.n_embd}", "batch": a.batch,
        "block": a.block, "depth": 0, "threads": torch.get_num_threads(),
        "median_ms": round(percentile(times, 0.5), 4), "p10_ms": round(percentile(times, 0.1), 4),
        "p90_ms": round(percentile(times, 0.9), 4), "steps": a.steps,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
