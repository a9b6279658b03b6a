"""Reference values for dgating-nn/tests/lm_ops.rs (layer norm, causal softmax, causal
attention, tanh-GELU), computed in float64 with numpy from deterministic inputs
(`wave(n, a, b)[i] = sin(a*i + b)`), so the Rust test needs no Python.

    python3 dgating-nn/tests/reference/lm_ops.py

prints the literal arrays pasted into the test.
"""
import numpy as np


def wave(n, a, b):
    return np.sin(a * np.arange(n) + b)


def layer_norm(x, w, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def causal_softmax(s):
    tq, tk = s.shape[-2:]
    off = tk - tq
    mask = np.array([[0.0 if j <= off + i else -np.inf for j in range(tk)] for i in range(tq)])
    s = s + mask
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v):
    hs = q.shape[-1]
    return causal_softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(hs)) @ v


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def show(name, a):
    print(f"// {name} {list(a.shape)}")
    print("[" + ", ".join(f"{v:.10e}" for v in a.ravel()) + "]")


np.set_printoptions(precision=12)
x = wave(10, 0.7, 0.3).reshape(2, 5) * 2.0
show("layer_norm", layer_norm(x, 1 + 0.1 * np.arange(5), 0.05 * np.arange(5) - 0.1))
s = wave(12, 1.1, 0.2).reshape(3, 4) * 3.0
show("causal_softmax (3 queries, 4 keys)", causal_softmax(s))
q = wave(16, 0.9, 0.1).reshape(1, 2, 2, 4)
k = wave(24, 0.5, 1.0).reshape(1, 2, 3, 4)
v = wave(24, 1.7, -0.4).reshape(1, 2, 3, 4)
show("causal_attention (q 2, kv 3)", attention(q, k, v))
show("gelu", gelu(np.linspace(-3, 3, 7)))
