#!/usr/bin/env python3
"""The bundled Fashion-MNIST subset: the first 10,000 images of the official training set,
reordered by the stratified interleave of mnist-10k (see ../README.md, section 4).

Standard library only.  Usage:

    python3 fashion_mnist_10k.py [SRC_DIR] [OUT_DIR]

SRC_DIR  the IDX files of Debian's `dataset-fashion-mnist` (default
         /usr/share/datasets/fashion-mnist: train-images-idx3-ubyte.gz,
         train-labels-idx1-ubyte.gz).
OUT_DIR  default: the data/fashion-mnist-10k folder next to this script.

Outputs are byte-for-byte deterministic (gzip level 9, mtime 0, no file name).
"""

import gzip
import hashlib
import io
import os
import struct
import sys
from fractions import Fraction

N = 10000


def read_idx(path, magic):
    data = gzip.open(path, "rb").read()
    (m,) = struct.unpack(">I", data[:4])
    if m != magic:
        raise SystemExit(f"{path}: magic {m:#x}, expected {magic:#x}")
    ndim = m & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def write_gz(path, payload):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as f:
        f.write(payload)
    open(path, "wb").write(buf.getvalue())
    print(os.path.basename(path), len(buf.getvalue()), hashlib.sha256(buf.getvalue()).hexdigest())


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "fashion-mnist-10k")
    (n, h, w), pixels = read_idx(os.path.join(src, "train-images-idx3-ubyte.gz"), 0x803)
    (nl,), labels = read_idx(os.path.join(src, "train-labels-idx1-ubyte.gz"), 0x801)
    assert (n, nl, h, w) == (60000, 60000, 28, 28), (n, nl, h, w)
    size = h * w
    by_class = {}
    for i in range(N):
        by_class.setdefault(labels[i], []).append(i)
    keys = []
    for d, idx in by_class.items():
        for k, i in enumerate(idx):
            keys.append((Fraction(2 * k + 1, 2 * len(idx)), d, i))
    keys.sort()
    order = [i for _, _, i in keys]
    print("class counts:", {d: len(v) for d, v in sorted(by_class.items())})
    os.makedirs(out, exist_ok=True)
    img = struct.pack(">IIII", 0x803, N, h, w) + b"".join(pixels[i * size:(i + 1) * size] for i in order)
    lab = struct.pack(">II", 0x801, N) + bytes(labels[i] for i in order)
    write_gz(os.path.join(out, "images-idx3-ubyte.gz"), img)
    write_gz(os.path.join(out, "labels-idx1-ubyte.gz"), lab)


main()
