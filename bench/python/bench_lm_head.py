#!/usr/bin/python3
"""bench_lm_head.py: one training step of a language-model head, N tokens, H features, V
vocabulary, float32, reduction mean, no bias: F.linear + F.cross_entropy + backward (torch) vs
xent.torch.linear_cross_entropy + backward (xent), each in a fresh process, same threads.

Measured the same way for both, in the child process:
  time: wall-clock and process CPU time (all threads), median of --steps steps (after one warm-up step), each `loss = f(h, W, t); loss.backward()`
        with h.grad and W.grad reset to None first (as zero_grad(set_to_none=True)).
  peak extra memory: the inputs (h, W, t) are allocated and touched, the first step is run and
        the gradient buffers freed again (xent keeps them in its output cache, resident and part
        of the baseline, reported as cache_bytes_in_baseline; --no-buffer-cache turns the cache
        off so the step allocates them afresh as PyTorch does); then the peak RSS is reset (writing 5 to
        /proc/self/clear_refs) and VmRSS read as the baseline; one more step runs and the
        growth of VmHWM over the baseline is reported. It includes the gradients each returns
        (dh N*H*4 bytes and dW V*H*4 bytes, printed as grad_bytes) and everything else held at
        the peak: PyTorch's logits and their gradients; xent's workspace and BLAS buffers.
Not a test and asserts nothing. Run without --impl to run both children and print a summary:
    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_lm_head.py [--tokens 8192 --hidden 1024 --vocab 32000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    if args.impl == "xent":
        import xent
        import xent.torch as xt
        xent.set_num_threads(args.threads)
        if args.no_buffer_cache:
            xent.set_buffer_cache_limit(0)

        def step(h, W, t):
            return xt.linear_cross_entropy(h, W, t)
    else:
        def step(h, W, t):
            return F.cross_entropy(F.linear(h, W), t)
    N, H, V = args.tokens, args.hidden, args.vocab
    torch.manual_seed(0)
    h = torch.empty(N, H).uniform_(-1, 1).requires_grad_(True)
    W = torch.empty(V, H).uniform_(-0.05, 0.05).requires_grad_(True)
    t = torch.randint(0, V, (N,))

    def one():
        h.grad = None
        W.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step(h, W, t)
        loss.backward()
        return time.perf_counter() - t0, float(loss), time.process_time() - c0

    one()  # warm-up: libraries' first-use allocations, thread pools
    h.grad = None
    W.grad = None
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kib("VmRSS")
    cached = xent.buffer_cache_bytes() if args.impl == "xent" else 0  # freed gradients kept, in the baseline
    first, loss, first_cpu = one()
    peak_extra = (status_kib("VmHWM") - base) * 1024
    runs = [(first, first_cpu)] + [one()[::2] for _ in range(args.steps - 1)]
    times, cpu = [r[0] for r in runs], [r[1] for r in runs]
    print(json.dumps({"impl": args.impl, "tokens": N, "hidden": H, "vocab": V, "threads": args.threads,
                      "median_s": statistics.median(times), "min_s": min(times),
                      "cpu_s": statistics.median(cpu), "steps": len(times),
                      "loss": loss, "peak_extra_bytes": peak_extra, "cache_bytes_in_baseline": cached, "grad_bytes": (N * H + V * H) * 4}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["torch", "xent"])
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-buffer-cache", action="store_true",
                    help="xent: no cache of freed output buffers (xent.set_buffer_cache_limit(0))")
    args = ap.parse_args()
    if args.impl:
        return child(args)
    res = {}
    for impl in ("xent", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--impl", impl] + \
              [f"--{k}={getattr(args, k)}" for k in ("tokens", "hidden", "vocab", "threads", "steps")] + \
              (["--no-buffer-cache"] if args.no_buffer_cache else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res[impl] = json.loads(out.strip().splitlines()[-1])
        r = res[impl]
        print(f"{impl:5s} N={r['tokens']} H={r['hidden']} V={r['vocab']} threads={r['threads']}: step "
              f"{r['median_s']:.2f} s median (min {r['min_s']:.2f}, {r['steps']} steps), CPU {r['cpu_s']:.2f} s, loss {r['loss']:.6f}, "
              f"peak extra {r['peak_extra_bytes'] / 2**20:.1f} MiB (grads {r['grad_bytes'] / 2**20:.1f} MiB, "
              f"xent's cache in the baseline {r['cache_bytes_in_baseline'] / 2**20:.1f} MiB)", flush=True)
    x, p = res["xent"], res["torch"]
    print(f"time xent/torch {x['median_s'] / p['median_s']:.3f} (CPU time {x['cpu_s'] / p['cpu_s']:.3f}); peak extra xent/torch "
          f"{x['peak_extra_bytes'] / p['peak_extra_bytes']:.4f}; without the returned gradients "
          f"{(x['peak_extra_bytes'] - fresh_grads(x)) / (p['peak_extra_bytes'] - fresh_grads(p)):.4f}")


def fresh_grads(r):
    """Bytes of returned gradients the measured step had to allocate (none when reused from xent's cache)."""
    return max(0, r["grad_bytes"] - r["cache_bytes_in_baseline"])


if __name__ == "__main__":
    sys.exit(main())
