#!/usr/bin/python3
"""bench_cross_entropy.py: F.cross_entropy vs xent.torch.cross_entropy, forward + backward from
Python, reduction mean, float32 unless --dtypes says more (bfloat16, float16: PyTorch 1.13 has no
CPU float16 kernel, so float16 runs xent only), the same thread count for both
(torch.set_num_threads and xent.set_num_threads). Three implementations:
  torch     F.cross_entropy
  xent      xent.torch.cross_entropy (default grad_in_forward=True: one fused call in forward)
  xent-lse  xent.torch.cross_entropy(..., grad_in_forward=False) (forward, then a backward that
            reads the logits again)

Time: one call of `loss = f(x, t); loss.backward()` on a leaf x with requires_grad, x.grad reset
to None between calls, including all Python and autograd overhead. The implementations run
interleaved (rep 1 of each, rep 2 of each, ...; the order rotates) so that a shared machine's load
hits them alike; one warm-up call each is not counted. Reports the wall-clock median and minimum,
the median process CPU time (all threads; steadier than wall time on a shared machine), and the
load average before and after.

Memory (--memory): each implementation in a fresh process (this script with --child), xent's
output cache off (xent.set_buffer_cache_limit(0)) so that every step allocates its gradient as
PyTorch does: x and t allocated and touched, one warm-up step, x.grad freed, peak RSS reset
(writing 5 to /proc/self/clear_refs) and VmRSS read as the baseline, one more step, and the growth
of VmHWM over the baseline reported. `--logits leaf`: x is the caller's leaf tensor (held
throughout); `--logits intermediate`: the step is f(x * 1.0, t), so the logits are a temporary
that the graph may or may not keep (x * 1.0 saves nothing for its own backward).

Not a test and asserts nothing.
    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_cross_entropy.py [--threads 2] [--reps 7]
        [--dtypes float32,bfloat16,float16]
    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_cross_entropy.py --memory [--shapes 8192x32000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

IMPLS = ("torch", "xent", "xent-lse")


def make_fn(impl):
    import torch.nn.functional as F
    import xent.torch as xt
    if impl == "torch":
        return F.cross_entropy
    if impl == "xent":
        return xt.cross_entropy
    return lambda x, t: xt.cross_entropy(x, t, grad_in_forward=False)


def inputs(N, C, dtype="float32"):
    import torch
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(N, C, generator=g) * 3).to(getattr(torch, dtype)).requires_grad_(True)
    t = torch.randint(0, C, (N,), generator=g)
    return x, t


def step(fn, x, t, intermediate=False):
    x.grad = None
    t0, c0 = time.perf_counter(), time.process_time()
    loss = fn(x * 1.0 if intermediate else x, t)
    loss.backward()
    return time.perf_counter() - t0, time.process_time() - c0


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args):
    import torch
    import xent
    torch.set_num_threads(args.threads)
    xent.set_num_threads(args.threads)
    xent.set_buffer_cache_limit(0)
    N, C = (int(v) for v in args.shapes.split("x"))
    x, t = inputs(N, C)
    fn = make_fn(args.child)
    inter = args.logits == "intermediate"
    step(fn, x, t, inter)  # warm-up: first-use allocations, thread pools
    x.grad = None
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kib("VmRSS")
    wall, cpu = step(fn, x, t, inter)
    peak = (status_kib("VmHWM") - base) * 1024
    print(json.dumps({"impl": args.child, "shape": args.shapes, "logits": args.logits, "peak_extra_bytes": peak,
                      "logits_bytes": N * C * 4, "wall_s": wall, "cpu_s": cpu}))


def memory(args):
    for shape in args.shapes.split(","):
        for logits in ("leaf", "intermediate"):
            for impl in IMPLS:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", impl, "--shapes", shape,
                                      "--threads", str(args.threads), "--logits", logits],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                mib = r["peak_extra_bytes"] / 2**20
                print(f"{shape} logits={logits:12s} {impl:8s} peak extra RSS {mib:8.1f} MiB "
                      f"({r['peak_extra_bytes'] / r['logits_bytes']:.2f} x the logits)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--shapes", default="8192x32000,65536x10")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--dtypes", default="float32", help="comma-separated: float32, bfloat16, float16 (time only)")
    ap.add_argument("--memory", action="store_true", help="peak extra RSS, each implementation in a fresh process")
    ap.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--logits", choices=("leaf", "intermediate"), default="leaf", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.memory:
        return memory(args)
    import torch
    import xent
    torch.set_num_threads(args.threads)
    xent.set_num_threads(args.threads)
    impls = args.impls.split(",")
    print(f"# torch {torch.__version__} threads {torch.get_num_threads()}, xent isa {xent.isa()} threads "
          f"{xent.get_num_threads()}, reduction mean, fwd+bwd, interleaved, median (min) of {args.reps}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for dtype in args.dtypes.split(","):
        names = [n for n in impls if not (dtype == "float16" and n == "torch")]  # no CPU Half kernels
        for shape in args.shapes.split(","):
            N, C = (int(v) for v in shape.split("x"))
            x, t = inputs(N, C, dtype)
            fns = {name: make_fn(name) for name in names}
            for name in names:
                step(fns[name], x, t)  # warm-up
            runs = {name: [] for name in names}
            for rep in range(args.reps):
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    runs[name].append(step(fns[name], x, t))
            res = {}
            for name in names:
                w = [r[0] for r in runs[name]]
                c = [r[1] for r in runs[name]]
                res[name] = (statistics.median(w), min(w), statistics.median(c))
                print(f"{N}x{C} {dtype:8s} {name:8s} {res[name][0] * 1e3:9.2f} ms ({res[name][1] * 1e3:.2f}), "
                      f"CPU {res[name][2] * 1e3:.2f} ms", flush=True)
            if "torch" in res:
                for name in names:
                    if name != "torch":
                        print(f"{N}x{C} {dtype:8s} speedup torch / {name} (medians): wall "
                              f"{res['torch'][0] / res[name][0]:.1f}x, CPU time {res['torch'][2] / res[name][2]:.1f}x",
                              flush=True)
            del x
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
