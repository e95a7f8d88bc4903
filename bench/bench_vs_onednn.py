#!/usr/bin/python3
"""bench_vs_onednn.py: xent's softmax family against oneDNN's softmax_v2 primitive (Debian's
libdnnl 2.6, bench/onednn/bench_onednn.cc), float32, same shapes, same thread count, in one run.

Each round runs every case once in each tool, alternating, so that a machine whose load changes
affects both alike; the table reports the median over rounds of each tool's median, the ratio
(oneDNN time / xent time: above 1 means xent is faster), GB/s, the share of xent's measured copy
bandwidth, and the implementation oneDNN chose (jit:avx512_core, jit:avx2, ref:any, ...). oneDNN
runs on its OpenMP runtime with OMP_NUM_THREADS = --threads (and OMP_WAIT_POLICY=passive, so that
its idle threads do not spin against xent's between calls). Not a test; never run by ctest.

  /usr/bin/python3 bench/bench_vs_onednn.py --xent build/xent --onednn build/bench/bench_onednn --threads 2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CASES = [(op, p, n, c) for (n, c) in ((4096, 1000), (65536, 10))
         for op in ("softmax", "log-softmax") for p in ("fwd", "bwd")]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xent", default="build/xent")
    ap.add_argument("--onednn", default="build/bench/bench_onednn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    if not os.path.exists(args.onednn):
        print(f"bench_vs_onednn: {args.onednn} not found (build it with libdnnl-dev installed)", file=sys.stderr)
        return 2
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="passive")
    times = {case: ([], []) for case in CASES}
    impl, copy = {}, []
    for _ in range(args.rounds):
        for case in CASES:
            op, p, n, c = case
            x = run_json([args.xent, "bench", op, "--shape", f"{n},{c}", "--pass", p, "--threads",
                          str(args.threads), "--reps", str(args.reps), "--json"])
            times[case][0].append(x["median_ms"])
            copy.append(x.get("copy_gbps", 0.0))
            d = run_json([args.onednn, op, p, str(n), str(c), str(args.reps)], env)
            times[case][1].append(d["median_ms"])
            impl[case] = d["impl"]
    bw = statistics.median(copy)
    print(f"float32, {args.threads} threads, {args.rounds} interleaved rounds of {args.reps} calls; "
          f"measured copy bandwidth {bw:.1f} GB/s")
    print("| op | pass | shape | xent ms | oneDNN ms | oneDNN / xent | xent GB/s (% of copy) | oneDNN impl |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in CASES:
        op, p, n, c = case
        tx, td = statistics.median(times[case][0]), statistics.median(times[case][1])
        gb = n * c * 4 * (2 if p == "fwd" else 3) / (tx * 1e6)
        print(f"| {op} | {p} | {n}x{c} | {tx:.3f} | {td:.3f} | {td / tx:.2f}x | {gb:.1f} ({100 * gb / bw:.0f}%) "
              f"| {impl[case]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
