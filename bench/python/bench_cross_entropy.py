#!/usr/bin/python3
"""bench_cross_entropy.py: F.cross_entropy vs xent.torch.cross_entropy, forward + backward from
Python, float32, reduction mean, the same thread count for both (torch.set_num_threads and
xent.set_num_threads). Reports the wall-clock median and minimum, and the median process CPU time
(all threads; steadier than wall time on a shared machine). Times include all Python and autograd overhead: one call of
`loss = f(x, t); loss.backward()` on a leaf x with requires_grad, grad reset to None between calls.

Not a test and asserts nothing; prints one line per shape and implementation and the ratio.
    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_cross_entropy.py [--threads 2] [--reps 7]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import xent
import xent.torch as xt


def time_fwd_bwd(fn, x, t, reps):
    times, cpu = [], []
    for _ in range(reps + 1):  # the first call warms up (page faults of fresh buffers), not counted
        x.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        loss = fn(x, t)
        loss.backward()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times[1:]), min(times[1:]), statistics.median(cpu[1:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--shapes", default="8192x32000,65536x10")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    xent.set_num_threads(args.threads)
    print(f"# torch {torch.__version__} threads {torch.get_num_threads()}, xent isa {xent.isa()} threads "
          f"{xent.get_num_threads()}, float32, reduction mean, fwd+bwd, median (min) of {args.reps}")
    for shape in args.shapes.split(","):
        N, C = (int(v) for v in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        x = (torch.randn(N, C, generator=g) * 3).requires_grad_(True)
        t = torch.randint(0, C, (N,), generator=g)
        res = {}
        for name, fn in (("torch", F.cross_entropy), ("xent", xt.cross_entropy)):
            res[name] = time_fwd_bwd(fn, x, t, args.reps)
            print(f"{N}x{C} {name:5s} {res[name][0] * 1e3:9.2f} ms ({res[name][1] * 1e3:.2f}), "
                  f"CPU {res[name][2] * 1e3:.2f} ms", flush=True)
        print(f"{N}x{C} speedup (torch / xent, medians): wall {res['torch'][0] / res['xent'][0]:.1f}x, "
              f"CPU time {res['torch'][2] / res['xent'][2]:.1f}x", flush=True)


if __name__ == "__main__":
    main()
