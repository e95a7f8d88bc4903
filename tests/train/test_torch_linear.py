#!/usr/bin/python3
"""test_torch_linear.py: a model written by `xent train` loads into torch.nn.Linear with
load_state_dict (no transposing by hand), and that layer's softmax equals `xent predict`'s
probabilities. The safetensors file is parsed here with json + NumPy (Debian has no
python3-safetensors). Skips (exit 77) without torch or NumPy.

    /usr/bin/python3 tests/train/test_torch_linear.py PATH/TO/xent
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)


def write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", t
        b, e = t["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(t["shape"]).copy())
    return tensors


def main():
    xent = sys.argv[1]
    rng = np.random.default_rng(0)
    h, w, C = 6, 5, 3
    with tempfile.TemporaryDirectory() as tmp:
        for prefix, n in (("train", 300), ("t10k", 40)):
            y = rng.integers(0, C, n)
            x = rng.integers(0, 100, (n, h, w))
            for c in range(C):
                x[y == c, :, c] += 120  # a learnable pattern
            write_idx(os.path.join(tmp, f"{prefix}-images-idx3-ubyte.gz"), x)
            write_idx(os.path.join(tmp, f"{prefix}-labels-idx1-ubyte.gz"), y)
        out = os.path.join(tmp, "out")
        subprocess.run([xent, "train", "--data", tmp, "--epochs", "3", "--batch-size", "16", "--out", out, "--quiet",
                        "--no-report"], check=True)
        state = read_safetensors(os.path.join(out, "model.safetensors"))
        layer = torch.nn.Linear(h * w, C)
        layer.load_state_dict(state)  # strict: exactly "weight" (C, D) and "bias" (C)
        test_x = np.frombuffer(gzip.open(os.path.join(tmp, "t10k-images-idx3-ubyte.gz")).read()[16:], dtype=np.uint8)
        test_x = torch.from_numpy(test_x.reshape(-1, h * w).astype(np.float32) / 255)
        with torch.no_grad():
            probs = torch.softmax(layer(test_x), dim=1)
        worst = 0.0
        for i in range(0, 40, 7):
            r = subprocess.run([xent, "predict", "--model", os.path.join(out, "model.safetensors"), "--images",
                                os.path.join(tmp, "t10k-images-idx3-ubyte.gz"), "--index", str(i), "--top", str(C),
                                "--json"], check=True, capture_output=True, text=True)
            top = json.loads(r.stdout)["top"]
            assert top[0]["class"] == int(probs[i].argmax()), (i, top, probs[i])
            for t in top:
                worst = max(worst, abs(t["probability"] - float(probs[i, t["class"]])))
        assert worst < 1e-5, f"xent predict and nn.Linear differ by {worst}"
        print(f"ok: nn.Linear.load_state_dict accepted the model; probabilities agree to {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
