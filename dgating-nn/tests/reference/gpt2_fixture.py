"""Writes the tiny random GPT-2 of dgating-nn/tests/data/gpt2-tiny and prints the numbers
tests/gpt2_import.rs pins: transformers' own mean NLL (`labels = input_ids`) and logits.

    pip install torch transformers safetensors
    python3 dgating-nn/tests/reference/gpt2_fixture.py dgating-nn/tests/data/gpt2-tiny

The model is `GPT2LMHeadModel(GPT2Config(vocab_size=61, n_positions=16, n_embd=24, n_layer=2,
n_head=4))` with every parameter redrawn as N(0, 0.3^2) (seed 13) so that biases and
LayerNorms matter too, saved by transformers itself (`save_pretrained`, safetensors).
Recorded with torch 2.15.0 and transformers 5.24.0.
"""
import json
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

out = sys.argv[1]
torch.manual_seed(13)
cfg = GPT2Config(vocab_size=61, n_positions=16, n_embd=24, n_layer=2, n_head=4)
model = GPT2LMHeadModel(cfg).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        p.copy_(torch.randn_like(p) * 0.3)
model.save_pretrained(out, safe_serialization=True)
ids = torch.tensor([[(7 * i + 3) % 61 for i in range(16)]])
with torch.no_grad():
    full = model(ids, labels=ids)
    short = model(ids[:, :9], labels=ids[:, :9])
print("ids", ids[0].tolist())
print(f"mean_nll_16 {full.loss.item():.10f}")
print(f"mean_nll_9 {short.loss.item():.10f}")
print("logits[0, 5, :6]", [f"{v:.8f}" for v in full.logits[0, 5, :6].tolist()])
print("logits[0, 15, -3:]", [f"{v:.8f}" for v in full.logits[0, 15, -3:].tolist()])
print(json.dumps(json.load(open(f"{out}/config.json")), sort_keys=True)[:200])
