"""Loads a directory written by `dgating lm export-gpt2` with transformers itself and prints
its mean NLL on a token-id file, to compare with `dgating lm score DIR --token-ids FILE` of
the run or export it came from (one window: at most `block_size` ids).

    pip install torch "transformers<5" safetensors
    dgating lm export-gpt2 small --out small-hf
    python3 dgating-nn/tests/reference/gpt2_export_check.py small-hf ids.txt

Pruned heads are stored as `config.pruned_heads`, which transformers 4.x applies when it builds
the model (transformers 5 removed head pruning: use 4.x for pruned models). The script also
checks that every layer has the head count and MLP width the export says, and that
`from_pretrained` reported no missing, unexpected or mismatched weights. Tests never run it:
tests/gpt2_export.rs checks the same directory layout by reading it back in Rust; the output of
its last run is recorded in docs/LANGUAGE.md.
"""
import json
import sys

import torch
import transformers
from transformers import GPT2LMHeadModel

hf_dir, ids_file = sys.argv[1], sys.argv[2]
cfg = json.load(open(f"{hf_dir}/config.json"))
model, info = GPT2LMHeadModel.from_pretrained(hf_dir, output_loading_info=True)
model.eval()
bad = {k: v for k, v in info.items() if v}
assert not bad, f"loading problems: {bad}"
pruned = {int(k): v for k, v in cfg.get("pruned_heads", {}).items()}
for l, block in enumerate(model.transformer.h):
    heads = cfg["n_head"] - len(pruned.get(l, []))
    assert block.attn.num_heads == heads, (l, block.attn.num_heads, heads)
    assert block.mlp.c_fc.weight.shape[1] == cfg["n_inner"]
ids = [int(t) for t in open(ids_file).read().replace(",", " ").split()]
x = torch.tensor([ids])
with torch.no_grad():
    out = model(x, labels=x)
print("transformers", transformers.__version__, "torch", torch.__version__)
print("heads per layer", [b.attn.num_heads for b in model.transformer.h])
print(f"mean_nll {out.loss.item():.8f}")
