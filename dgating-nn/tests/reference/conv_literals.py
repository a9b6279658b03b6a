"""Literal expected values for dgating-nn/tests/conv_ops.rs (forward of conv2d, batch norm,
max/avg pooling), computed with plain numpy loops written from the definitions (PyTorch's
semantics: cross-correlation, zero padding, biased batch variance, floor of partial windows).

Run: python3 dgating-nn/tests/reference/conv_literals.py   (numpy only; optional, the test
holds the printed numbers)."""
import numpy as np

x = np.array([np.sin(0.37 * i) for i in range(2 * 2 * 5 * 5)]).reshape(2, 2, 5, 5)
w = np.array([0.5 * np.cos(0.29 * i) for i in range(3 * 2 * 3 * 3)]).reshape(3, 2, 3, 3)
b = np.array([0.1, -0.2, 0.3])


def conv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for bi in range(n):
        for oi in range(o):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[bi, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[bi, oi, i, j] = (patch * w[oi]).sum() + b[oi]
    return y


def bn_train(x, g, be, eps=1e-5):
    m = x.mean(axis=(0, 2, 3), keepdims=True)
    v = x.var(axis=(0, 2, 3), keepdims=True)  # biased
    return (x - m) / np.sqrt(v + eps) * g.reshape(1, -1, 1, 1) + be.reshape(1, -1, 1, 1), m.ravel(), v.ravel()


def pool(x, k, s, f):
    n, c, h, wd = x.shape
    ho, wo = (h - k) // s + 1, (wd - k) // s + 1
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = f(x[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return y


np.set_printoptions(precision=10, floatmode="fixed", linewidth=200)
y1 = conv(x, w, b, 1, 1)
print("conv s1 p1 y[0,0,0,:] =", y1[0, 0, 0, :].tolist())
print("conv s1 p1 y[1,2,4,:] =", y1[1, 2, 4, :].tolist())
y2 = conv(x, w, b, 2, 0)
print("conv s2 p0 shape", y2.shape, "y[1,1] =", y2[1, 1].ravel().tolist())
g = np.array([1.5, -0.5, 2.0])
be = np.array([0.25, 0.0, -1.0])
yb, m, v = bn_train(y1, g, be)
print("bn mean =", m.tolist())
print("bn var =", v.tolist())
print("bn y[0,1,2,:] =", yb[0, 1, 2, :].tolist())
print("maxpool 2/2 y[1,0] =", pool(x, 2, 2, np.max)[1, 0].ravel().tolist())
print("avgpool 3/2 y[0,1] =", pool(x, 3, 2, np.mean)[0, 1].ravel().tolist())
