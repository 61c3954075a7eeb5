#!/usr/bin/env python
"""Train the small digits CNN that ships as mlms_ir's embedded default model.

What it does
------------
1. Loads scikit-learn's bundled ``digits`` data set (1797 8x8 grayscale
   images, 10 classes) and makes a fixed, stratified split:
   ``train_test_split(test_size=0.25, random_state=0, stratify=y)``.
   Pixels (0..16) are scaled to [0, 1] by dividing by 16.0 and laid out as
   ``N x 1 x 8 x 8`` float32 (NCHW).
2. Trains a small CNN deterministically on the CPU (seed 0,
   ``torch.use_deterministic_algorithms(True)``, one thread, Adam, batch 64)::

       features.conv1  Conv(1->16, 3x3, pad 1) + features.bn1 BatchNorm + ReLU
       features.conv2  Conv(16->32, 3x3, pad 1) + features.bn2 BatchNorm + ReLU
       features.pool   MaxPool 2x2            (8x8 -> 4x4)
       features.conv3  Conv(32->64, 3x3, pad 1) + ReLU
       classifier.flatten, classifier.fc1 Linear(1024->64) + ReLU,
       classifier.dropout Dropout(0.2), classifier.fc2 Linear(64->10)

3. Exports it in eval mode with the TorchScript ONNX exporter (opset 17,
   input ``image`` [batch,1,8,8], output ``logits`` [batch,10], dynamic batch,
   constant folding on) to ``<out-dir>/digits_cnn.onnx`` as a single file,
   then adds a doc string and ``metadata_props`` with onnx and re-saves it.
4. Checks the ONNX file with onnxruntime (CPUExecutionProvider) on the test
   split: top-1/top-5 accuracy and the largest absolute difference between
   the torch and onnxruntime logits.
5. Writes ``<out-dir>/digits_cnn.json`` describing the model, the data, the
   measured figures, the sha256 of the ONNX file and the tool versions, and
   prints the figures.

How to reproduce
----------------
From the repository root, with torch, onnx, onnxruntime, scikit-learn and
numpy installed::

    python tools/train_digits_cnn.py                  # writes zoo/builtin/
    python tools/train_digits_cnn.py --epochs 40 --out-dir /tmp/digits

Training is deterministic for a given machine and library versions; the
same versions on the same kind of CPU should give the same weights and the
same sha256. Different torch/CPU builds may differ in the last bits of the
weights (and so in the hash) while the accuracy stays the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import OrderedDict

import numpy as np

from mlms_ir.files import sha256_of

DEFAULT_EPOCHS = 40
SEED = 0
LR = 1e-3
BATCH_SIZE = 64
OPSET = 17
LABELS = [str(i) for i in range(10)]
SPLIT_DESC = "test_size=0.25, random_state=0, stratify=y"
PREPROCESS_DESC = "pixels/16.0, NCHW 1x8x8 float32"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help="training epochs (default: %(default)s)")
    p.add_argument("--out-dir", default=os.path.join("zoo", "builtin"),
                   help="output directory (default: %(default)s)")
    return p.parse_args(argv)


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y)
    return (np.ascontiguousarray(x_tr), np.ascontiguousarray(x_te),
            y_tr, y_te)


def build_model():
    import torch.nn as nn

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(OrderedDict([
                ("conv1", nn.Conv2d(1, 16, kernel_size=3, padding=1)),
                ("bn1", nn.BatchNorm2d(16)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(16, 32, kernel_size=3, padding=1)),
                ("bn2", nn.BatchNorm2d(32)),
                ("relu2", nn.ReLU()),
                ("pool", nn.MaxPool2d(2)),
                ("conv3", nn.Conv2d(32, 64, kernel_size=3, padding=1)),
                ("relu3", nn.ReLU()),
            ]))
            self.classifier = nn.Sequential(OrderedDict([
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(64 * 4 * 4, 64)),
                ("relu", nn.ReLU()),
                ("dropout", nn.Dropout(0.2)),
                ("fc2", nn.Linear(64, 10)),
            ]))

        def forward(self, image):
            return self.classifier(self.features(image))

    return DigitsCNN()


def train(model, x_tr, y_tr, epochs):
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt = torch.from_numpy(x_tr)
    yt = torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(SEED)
    n = xt.shape[0]
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, BATCH_SIZE):
            idx = perm[i:i + BATCH_SIZE]
            opt.zero_grad()
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        if epoch == 0 or (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            print(f"epoch {epoch + 1:3d}/{epochs}  train loss {total / n:.4f}",
                  flush=True)


def topk_accuracy(logits, y, k):
    topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(topk == y[:, None], axis=1)))


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()

    import torch
    import onnx
    import onnxruntime as ort

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    x_tr, x_te, y_tr, y_te = load_data()
    print(f"digits: {len(x_tr)} train / {len(x_te)} test", flush=True)

    model = build_model()
    train(model, x_tr, y_tr, args.epochs)
    model.eval()

    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_te)).numpy()
    torch_top1 = topk_accuracy(torch_logits, y_te, 1)

    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "digits_cnn.onnx")
    json_path = os.path.join(args.out_dir, "digits_cnn.json")

    example = torch.from_numpy(x_te[:1])
    torch.onnx.export(
        model, example, onnx_path,
        dynamo=False,
        opset_version=OPSET,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True,
    )

    m = onnx.load(onnx_path)
    m.doc_string = (
        "Small CNN classifying 8x8 grayscale digits (scikit-learn digits), "
        "trained by tools/train_digits_cnn.py. Input 'image': float32 "
        "[batch,1,8,8], pixel values / 16.0 (range 0..1). Output 'logits': "
        "float32 [batch,10], classes '0'..'9'.")
    meta = OrderedDict([
        ("mlms_ir.source", "tools/train_digits_cnn.py"),
        ("mlms_ir.dataset", "sklearn digits"),
        ("mlms_ir.split", SPLIT_DESC),
        ("mlms_ir.preprocess", PREPROCESS_DESC),
        ("mlms_ir.labels", ",".join(LABELS)),
        ("mlms_ir.task", "image-classification"),
    ])
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, onnx_path)  # single file; the model is far below 2 GB

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ort_logits = sess.run(["logits"], {"image": x_te})[0]
    top1 = topk_accuracy(ort_logits, y_te, 1)
    top5 = topk_accuracy(ort_logits, y_te, 5)
    max_abs_diff = float(np.max(np.abs(ort_logits - torch_logits)))
    digest = sha256_of(onnx_path)
    size = os.path.getsize(onnx_path)

    info = {
        "name": "digits-cnn",
        "task": "image-classification",
        "framework": "pytorch",
        "file": os.path.basename(onnx_path),
        "opset": OPSET,
        "input": {"name": "image", "shape": ["batch", 1, 8, 8],
                  "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", 10],
                   "dtype": "float32"},
        "preprocessing": ("sklearn digits pixel values (0..16) divided by "
                          "16.0 to [0, 1]; float32, NCHW, shape 1x8x8 per "
                          "image"),
        "labels": LABELS,
        "dataset": {"name": "sklearn-digits", "split": SPLIT_DESC,
                    "n_train": int(len(y_tr)), "n_test": int(len(y_te))},
        "accuracy": {"top1": top1, "top5": top5,
                     "measured_with": "onnxruntime CPUExecutionProvider"},
        "sha256": digest,
        "size_bytes": size,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__,
                     "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "training": {"epochs": args.epochs, "seed": SEED,
                     "optimizer": "Adam", "lr": LR, "batch_size": BATCH_SIZE,
                     "deterministic": True, "num_threads": 1},
        "max_abs_diff_torch_vs_ort": max_abs_diff,
        "source": "tools/train_digits_cnn.py",
    }
    try:
        import sklearn
        info["versions"]["scikit-learn"] = sklearn.__version__
    except Exception:  # pragma: no cover
        pass
    with open(json_path, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")

    print(f"wrote {onnx_path} ({size} bytes) and {json_path}")
    print(f"torch top-1 accuracy: {torch_top1:.4f}")
    print(f"onnxruntime top-1 accuracy: {top1:.4f}  top-5: {top5:.4f} "
          f"(n_test={len(y_te)})")
    print(f"max abs diff torch vs onnxruntime logits: {max_abs_diff:.3g}")
    print(f"sha256: {digest}")
    print(f"elapsed: {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
