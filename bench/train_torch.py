#!/usr/bin/env python3
"""train_torch.py: the PyTorch baseline for `xent train`: d2l.ai's softmax regression from scratch.

Same recipe as xent's defaults: W (784 x 10) ~ N(0, 0.01), b = 0, minibatch SGD with lr 0.1,
batch 256, 10 epochs, reshuffled every epoch, F.cross_entropy with reduction mean, pixels / 255.
Reads the same IDX .gz files with gzip + numpy. Prints train loss, train accuracy and test
accuracy per epoch (as d2l does) and the wall time of loading + training + evaluation.

--loader dataloader (default) iterates like d2l (torch.utils.data.DataLoader, shuffle=True,
batch 256, over a TensorDataset); --loader tensor shuffles with torch.randperm and slices tensors,
the fastest plain-PyTorch way. Not a test: nothing is asserted.

    /usr/bin/python3 bench/train_torch.py --data ../shared/data/fashion-mnist --threads 2
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def find(data, prefixes, kind, rank):
    for p in prefixes:
        for sep in ("-", "."):
            for ext in (".gz", ""):
                path = os.path.join(data, f"{p}-{kind}{sep}idx{rank}-ubyte{ext}")
                if os.path.isfile(path):
                    return path
    sys.exit(f"train_torch.py: no {kind} file for {prefixes} in {data}")


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{rank}I", raw[4:4 + 4 * rank])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loader", choices=["dataloader", "tensor"], default="dataloader")
    ap.add_argument("--json", action="store_true", help="print one JSON line with the results at the end")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    imgs = {s: read_idx(find(args.data, p, "images", 3)) for s, p in (("train", ["train"]), ("test", ["t10k", "test"]))}
    labs = {s: read_idx(find(args.data, p, "labels", 1)) for s, p in (("train", ["train"]), ("test", ["t10k", "test"]))}
    X = {s: torch.from_numpy(imgs[s].reshape(len(imgs[s]), -1).copy()).float() / 255 for s in imgs}
    y = {s: torch.from_numpy(labs[s].astype(np.int64)) for s in labs}
    t_load = time.perf_counter() - t0

    D, C = X["train"].shape[1], int(max(y["train"].max(), y["test"].max())) + 1
    W = torch.normal(0, 0.01, size=(D, C), requires_grad=True)
    b = torch.zeros(C, requires_grad=True)

    def net(x):
        return x @ W + b

    if args.loader == "dataloader":
        train_iter = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X["train"], y["train"]),
                                                 batch_size=args.batch_size, shuffle=True)
        test_iter = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X["test"], y["test"]),
                                                batch_size=args.batch_size, shuffle=False)
    else:
        n = len(y["train"])

        def train_iter_fn():
            perm = torch.randperm(n)
            for s in range(0, n, args.batch_size):
                idx = perm[s:s + args.batch_size]
                yield X["train"][idx], y["train"][idx]

        class TrainIter:
            def __iter__(self):
                return train_iter_fn()

        train_iter = TrainIter()
        test_iter = [(X["test"], y["test"])]

    def evaluate_accuracy(it):
        correct = total = 0
        with torch.no_grad():
            for xb, yb in it:
                correct += int((net(xb).argmax(dim=1) == yb).sum())
                total += len(yb)
        return correct / total

    history = []
    t1 = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), loader {args.loader}; loaded in {t_load:.3f} s")
    print(f"  {'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'test acc':>8}  {'time':>8}")
    for epoch in range(1, args.epochs + 1):
        te = time.perf_counter()
        loss_sum = correct = total = 0.0
        for xb, yb in train_iter:
            y_hat = net(xb)
            loss = F.cross_entropy(y_hat, yb)
            loss.backward()
            with torch.no_grad():
                W -= args.lr * W.grad
                b -= args.lr * b.grad
                W.grad.zero_()
                b.grad.zero_()
            loss_sum += float(loss) * len(yb)
            correct += float((y_hat.argmax(dim=1) == yb).sum())
            total += len(yb)
        test_acc = evaluate_accuracy(test_iter)
        history.append((epoch, loss_sum / total, correct / total, test_acc, time.perf_counter() - te))
        print(f"  {epoch:5d}  {loss_sum / total:10.4f}  {correct / total:9.4f}  {test_acc:8.4f}  {history[-1][4]:6.3f} s",
              flush=True)
    t_train = time.perf_counter() - t1
    total = time.perf_counter() - t0
    print(f"done: test accuracy {history[-1][3]:.4f}; loading {t_load:.3f} s, training {t_train:.3f} s, "
          f"loading + training + evaluation {total:.3f} s (process, with imports: {time.perf_counter() - T_START:.3f} s)")
    if args.json:
        print(json.dumps({"test_accuracy": history[-1][3], "load_seconds": t_load, "train_seconds": t_train,
                          "seconds": total, "loader": args.loader, "threads": args.threads, "seed": args.seed}))


if __name__ == "__main__":
    main()
