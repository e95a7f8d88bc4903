#!/usr/bin/python3
"""bench_vs_torch.py: xent against PyTorch's torch.nn.functional on the CPU, same shapes, same
thread count, one run; prints a ratio table (and --markdown for docs/performance.md).

PyTorch is timed twice, each in its own process:
  default  as users run it: glibc's allocator as shipped, so the large temporaries of every call
           (log-probabilities, gradients) are fresh mmaps that page-fault on first touch;
  tuned    with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_/MALLOC_TOP_PAD_ set so freed memory
           stays mapped and later calls reuse it without faults.
xent is timed by `xent bench --json` (median of repeated calls on buffers it allocated once).
Medians everywhere. Not a test: it asserts nothing and is never run by ctest.

Case sets (--cases, comma-separated): default (the README's table), prob (cross-entropy with
probability targets, and with label smoothing 0.1 on class-index targets), all. Cases are named
op[:variant]/pass/NxC, e.g. cross-entropy:prob/fwd+bwd/4096x1000, cross-entropy:ls0.1/fwd+bwd/...

  /usr/bin/python3 bench/bench_vs_torch.py --xent build/xent --threads 1,2
  /usr/bin/python3 bench/bench_vs_torch.py --xent build/xent --threads 2 --cases prob
  /usr/bin/python3 bench/bench_vs_torch.py --xent build/xent --threads 2 --dtype bf16 \
      --only cross-entropy/fwd+bwd/8192x32000
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (op, pass, N, C): the shapes of the speed targets (docs/performance.md) and the README's table.
CASES = [
    ("cross-entropy", "fwd+bwd", 4096, 1000),
    ("cross-entropy", "fwd+bwd", 8192, 32000),
    ("cross-entropy", "fwd+bwd", 1024, 128256),
    ("cross-entropy", "fwd+bwd", 65536, 10),
    ("cross-entropy", "fwd", 8192, 32000),
    ("softmax", "fwd", 4096, 1000),
    ("softmax", "fwd", 8192, 32000),
    ("log-softmax", "fwd", 4096, 1000),
    ("log-softmax", "fwd", 8192, 32000),
    ("bce-with-logits", "fwd+bwd", 4096, 1000),
]

# (op, pass, N, C, options): cross-entropy's other targets, opt-in (--cases prob). options are
# `xent bench`'s --target / --label-smoothing; PyTorch gets F.cross_entropy(x, t, label_smoothing=...)
# with t a float (N, C) tensor of rows summing to 1 for "prob".
PROB_CASES = [
    ("cross-entropy", "fwd+bwd", 4096, 1000, {"target": "prob"}),
    ("cross-entropy", "fwd+bwd", 8192, 32000, {"target": "prob"}),
    ("cross-entropy", "fwd+bwd", 65536, 10, {"target": "prob"}),
    ("cross-entropy", "fwd+bwd", 8192, 32000, {"label_smoothing": 0.1}),
    ("cross-entropy", "fwd+bwd", 4096, 1000, {"label_smoothing": 0.1}),
]

CASE_SETS = {"default": CASES, "prob": PROB_CASES}


def case_key(op, pas, N, C, opts):
    """op[:prob][:lsEPS]/pass/NxC; the default cases keep their plain op/pass/NxC names."""
    variant = ":prob" if opts.get("target") == "prob" else ""
    if opts.get("label_smoothing"):
        variant += f":ls{opts['label_smoothing']:g}"
    return f"{op}{variant}/{pas}/{N}x{C}"


def selected_cases(args):
    """(key, op, pass, N, C, options) of the chosen sets, in order, filtered by --only. With --only
    and no --cases, every set is searched."""
    names = (args.cases or ("all" if args.only else "default")).split(",")
    if "all" in names:
        names = list(CASE_SETS)
    only = set(args.only.split(",")) if args.only else None
    out, seen = [], set()
    for name in names:
        for c in CASE_SETS[name]:
            op, pas, N, C = c[:4]
            opts = c[4] if len(c) > 4 else {}
            key = case_key(op, pas, N, C, opts)
            if key in seen or (only is not None and key not in only):
                continue
            seen.add(key)
            out.append((key, op, pas, N, C, opts))
    return out

TUNED_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(1 << 40),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
    "MALLOC_TOP_PAD_": str(1 << 30),
}


def torch_worker(args):
    """Runs in a child process: times every case with PyTorch, prints one JSON line per case."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.worker_threads)
    # bf16: PyTorch's own bfloat16 CPU kernels (1.13 has none for float16 in this family).
    dtype = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16}[args.dtype]
    gen_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    gen = torch.Generator().manual_seed(0)
    for key, op, pas, N, C, opts in selected_cases(args):
        x0 = (torch.rand(N, C, generator=gen, dtype=gen_dtype) * 8 - 4).to(dtype)
        t_idx = torch.randint(0, C, (N,), generator=gen)
        t_prob = torch.rand(N, C, generator=gen, dtype=gen_dtype).to(dtype)
        ce_target = t_idx
        if opts.get("target") == "prob":
            t_prob /= t_prob.sum(1, keepdim=True)  # rows of probabilities, as xent bench's
            ce_target = t_prob
        ls = float(opts.get("label_smoothing", 0.0))

        def call():
            if op == "cross-entropy":
                if pas == "fwd":
                    with torch.no_grad():
                        F.cross_entropy(x0, ce_target, label_smoothing=ls)
                else:
                    x = x0.detach().requires_grad_(True)
                    F.cross_entropy(x, ce_target, label_smoothing=ls).backward()
            elif op == "softmax":
                with torch.no_grad():
                    torch.softmax(x0, 1)
            elif op == "log-softmax":
                with torch.no_grad():
                    torch.log_softmax(x0, 1)
            elif op == "bce-with-logits":
                x = x0.detach().requires_grad_(True)
                F.binary_cross_entropy_with_logits(x, t_prob).backward()

        call()  # warm-up
        samples = []
        start = time.perf_counter()
        while len(samples) < args.reps or (time.perf_counter() - start < args.min_time and len(samples) < 1000):
            t0 = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t0)
        print(json.dumps({"case": key, "median_ms": statistics.median(samples) * 1e3,
                          "reps": len(samples)}), flush=True)
        del x0, t_idx, t_prob, ce_target


def run_torch(threads, tuned, args):
    env = dict(os.environ)
    for k in TUNED_ENV:
        env.pop(k, None)
    if tuned:
        env.update(TUNED_ENV)
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--worker-threads", str(threads),
           "--dtype", args.dtype, "--reps", str(args.reps), "--min-time", str(args.min_time)]
    if args.only:
        cmd += ["--only", args.only]
    if args.cases:
        cmd += ["--cases", args.cases]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"PyTorch worker failed: {out.stderr.strip()[-500:]}")
    results = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return {r["case"]: r["median_ms"] for r in results}


def run_xent(op, pas, N, C, opts, threads, args):
    cmd = [args.xent, "bench", op, "--shape", f"{N},{C}", "--dtype", args.dtype, "--pass", pas,
           "--threads", str(threads), "--json", "--min-time", str(args.min_time)]
    if "target" in opts:
        cmd += ["--target", opts["target"]]
    if "label_smoothing" in opts:
        cmd += ["--label-smoothing", repr(float(opts["label_smoothing"]))]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--xent", default="build/xent", help="path to the xent binary (default build/xent)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--dtype", default="f32", choices=["f32", "f64", "bf16"],
                   help="element type of both sides (bf16: xent's and PyTorch's bfloat16 kernels)")
    p.add_argument("--reps", type=int, default=3, help="at least this many timed calls per case (default 3)")
    p.add_argument("--min-time", type=float, default=0.3, help="and at least this many seconds (default 0.3)")
    p.add_argument("--cases", default=None,
                   help=f"comma-separated case sets: {', '.join(CASE_SETS)}, or all (default: default)")
    p.add_argument("--only", default="", help="comma-separated cases op[:variant]/pass/NxC (default: all of --cases)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    for name in (args.cases.split(",") if args.cases else []):
        if name not in CASE_SETS and name != "all":
            p.error(f"--cases expects a comma-separated list of {', '.join(CASE_SETS)} or all, found '{name}'")
    if args.torch_worker:
        torch_worker(args)
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench_vs_torch: PyTorch is not installed for this Python; skipping", file=sys.stderr)
        return 0
    if not os.access(args.xent, os.X_OK):
        print(f"bench_vs_torch: no xent binary at {args.xent} (build it, or pass --xent)", file=sys.stderr)
        return 2
    if not selected_cases(args):
        known = [c[0] for c in selected_cases(argparse.Namespace(cases="all", only=""))]
        print(f"bench_vs_torch: --only matches no case; expected some of {', '.join(known)}, found '{args.only}'",
              file=sys.stderr)
        return 2

    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch_default = run_torch(threads, False, args)
        torch_tuned = run_torch(threads, True, args)
        for key, op, pas, N, C, opts in selected_cases(args):
            x = run_xent(op, pas, N, C, opts, threads, args)
            rows.append((key, threads, x["median_ms"], torch_default.get(key), torch_tuned.get(key), x["gbps"],
                         x["copy_gbps"], x["isa"]))

    head = ["case", "threads", "xent ms", "torch ms", "torch tuned ms", "speed-up", "speed-up tuned", "xent GB/s",
            "copy GB/s", "% of copy"]
    lines = []
    for key, th, xm, td, tt, gb, cp, isa in rows:
        lines.append([key, str(th), f"{xm:.3f}", f"{td:.2f}" if td else "-", f"{tt:.2f}" if tt else "-",
                      f"{td / xm:.1f}x" if td else "-", f"{tt / xm:.1f}x" if tt else "-", f"{gb:.1f}", f"{cp:.1f}",
                      f"{100 * gb / cp:.0f}%" if cp else "-"])
    isa = rows[0][7] if rows else "?"
    print(f"xent ({isa}) vs PyTorch {__import__('torch').__version__}, dtype {args.dtype}, medians; "
          f"GB/s counts logits read once and outputs written once; copy = memcpy read+write GB/s, same threads"
          + ("; :prob cases count their N*C targets read once too" if any(":prob" in r[0] for r in rows) else ""))
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for l in lines:
            print("| " + " | ".join(l) + " |")
    else:
        widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
        print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for l in lines:
            print("  ".join(v.rjust(w) for v, w in zip(l, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
