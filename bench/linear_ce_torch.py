#!/usr/bin/python3
"""linear_ce_torch.py: PyTorch's unfused linear + cross-entropy, forward and backward, timed and
memory-measured the way `xent bench linear-cross-entropy` measures xent, for bench_linear.sh.

Not a test and not a general benchmark: one shape per process (peak RSS is a per-process
high-water mark), float32 (or --dtype bf16: hidden, weight and bias in bfloat16), reduction mean. Prints one JSON object:
  {"impl": "torch", "tokens": N, "hidden": H, "vocab": V, "threads": T, "median_ms": ...,
   "peak_extra_bytes": ..., "grad_bytes": ..., "reps": ...}
peak_extra_bytes is the growth of the process's peak RSS (getrusage ru_maxrss) over the first
forward+backward, from the resident set just before it (/proc/self/statm), after the inputs exist
and have been touched (filled in place, so no freed temporary inflates the baseline), minus the
bytes of the gradients PyTorch returns (dH, dW, db), which xent writes into caller buffers
allocated beforehand; so it counts only PyTorch's temporaries (logits, log-probabilities, their gradients, allocator slack).
With --max-gib the address space is capped, so a case that does not fit raises inside PyTorch's
allocator and is reported as {"error": "OOM", ...} instead of waking the OOM killer.
"""
import argparse
import json
import resource
import statistics
import sys
import time


def maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bias", action="store_true")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--max-gib", type=float, default=0,
                    help="cap the address space (RLIMIT_AS) so that running out of memory raises here "
                         "instead of waking the OOM killer on a shared machine; 0: no cap")
    args = ap.parse_args()
    if args.max_gib > 0:
        cap = int(args.max_gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch is not installed", file=sys.stderr)
        return 77
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    N, H, V = args.tokens, args.hidden, args.vocab
    # Filled in place: no temporaries that would raise the peak RSS before the measurement.
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    h = torch.empty(N, H, dtype=dt).uniform_(-1, 1).requires_grad_()
    w = torch.empty(V, H, dtype=dt).uniform_(-H ** -0.5, H ** -0.5).requires_grad_()
    b = torch.empty(V, dtype=dt).uniform_(-0.1, 0.1).requires_grad_() if args.bias else None
    t = torch.randint(0, V, (N,), dtype=torch.int64)

    def step():
        h.grad = None
        w.grad = None
        if b is not None:
            b.grad = None
        loss = F.cross_entropy(F.linear(h, w, b), t)
        loss.backward()
        return loss

    grad_bytes = (N * H + V * H + (V if b is not None else 0)) * (2 if args.dtype == "bf16" else 4)
    base = rss_bytes()  # the current resident set; an earlier higher peak would hide growth
    t0 = time.perf_counter()
    first_c0 = time.process_time()
    try:
        step()
    except (RuntimeError, MemoryError) as e:  # DefaultCPUAllocator: can't allocate memory
        print(json.dumps({"impl": "torch", "tokens": N, "hidden": H, "vocab": V, "error": "OOM",
                          "detail": str(e).splitlines()[0][:200]}))
        return 0
    first_ms = (time.perf_counter() - t0) * 1e3
    first_cpu_ms = (time.process_time() - first_c0) * 1e3
    peak = maxrss_bytes() - base - grad_bytes
    times = [first_ms]
    c0 = time.process_time()
    for _ in range(args.reps - 1):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    cpu_ms = (time.process_time() - c0) * 1e3 / (args.reps - 1) if args.reps > 1 else first_cpu_ms
    if args.reps > 1:
        times = times[1:]  # the first run also pays one-time costs (thread start-up)
    print(json.dumps({
        "impl": "torch", "torch_version": torch.__version__, "dtype": args.dtype, "tokens": N, "hidden": H,
        "vocab": V,
        "threads": torch.get_num_threads(), "median_ms": statistics.median(times),
        "min_ms": min(times), "cpu_ms": cpu_ms, "peak_extra_bytes": max(peak, 0), "grad_bytes": grad_bytes,
        "reps": len(times)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
