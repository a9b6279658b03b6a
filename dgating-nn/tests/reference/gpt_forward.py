"""Reference logits for dgating-nn/tests/gpt.rs: the GPT of dgating's `GptConfig` (pre-LN
blocks, causal multi-head attention, tanh-GELU MLP, final LayerNorm, head tied to `wte`)
written in numpy (float64), with deterministic weights: the tensor with index `n` in sorted key
order holds `0.25 * sin(0.37 * i + 1.1 * n + 0.2)` at flat index `i`.

Blocks have 3, 0 and 1 heads of size 2 and MLP widths 5, 6, 0 (the shapes a pruned model
has), vocabulary 7, context 6, n_embd 8.

    python3 dgating-nn/tests/reference/gpt_forward.py
"""
import numpy as np

V, P, C, HS = 7, 6, 8, 2
HEADS, MLP = [3, 0, 1], [5, 6, 0]


def shapes():
    s = {"wte.weight": [V, C], "wpe.weight": [P, C], "ln_f.weight": [C], "ln_f.bias": [C]}
    for l, (h, m) in enumerate(zip(HEADS, MLP)):
        b = f"blocks.{l}."
        for ln in ["ln1", "ln2"]:
            s[b + ln + ".weight"] = [C]
            s[b + ln + ".bias"] = [C]
        for x in "qkv":
            s[b + f"attn.{x}.weight"] = [h * HS, C]
            s[b + f"attn.{x}.bias"] = [h * HS]
        s[b + "attn.proj.weight"] = [C, h * HS]
        s[b + "attn.proj.bias"] = [C]
        s[b + "mlp.fc.weight"] = [m, C]
        s[b + "mlp.fc.bias"] = [m]
        s[b + "mlp.proj.weight"] = [C, m]
        s[b + "mlp.proj.bias"] = [C]
    return s


W = {}
for n, (k, shape) in enumerate(sorted(shapes().items())):
    size = int(np.prod(shape))
    W[k] = (0.25 * np.sin(0.37 * np.arange(size) + 1.1 * n + 0.2)).reshape(shape)


def ln(x, p):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * W[p + ".weight"] + W[p + ".bias"]


def lin(x, p):
    return x @ W[p + ".weight"].T + W[p + ".bias"]


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(ids):
    B, T = ids.shape
    x = W["wte.weight"][ids] + W["wpe.weight"][:T]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l, (h, m) in enumerate(zip(HEADS, MLP)):
        b = f"blocks.{l}."
        if h:
            a = ln(x, b + "ln1")
            q, k, v = (lin(a, b + f"attn.{z}").reshape(B, T, h, HS).transpose(0, 2, 1, 3) for z in "qkv")
            s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HS) + mask
            e = np.exp(s - s.max(-1, keepdims=True))
            y = (e / e.sum(-1, keepdims=True)) @ v
            x = x + lin(y.transpose(0, 2, 1, 3).reshape(B, T, h * HS), b + "attn.proj")
        else:
            x = x + W[b + "attn.proj.bias"]
        if m:
            x = x + lin(gelu(lin(ln(x, b + "ln2"), b + "mlp.fc")), b + "mlp.proj")
        else:
            x = x + W[b + "mlp.proj.bias"]
    return ln(x, "ln_f") @ W["wte.weight"].T


logits = forward(np.array([[1, 4, 6, 0, 2], [3, 3, 5, 1, 0]]))
print("// logits [2, 5, 7]")
print("[" + ", ".join(f"{v:.10e}" for v in logits.ravel()) + "]")
