#!/usr/bin/python3
"""scaling_model.py: alpha-beta model of one step of the vocabulary-parallel linear + cross-entropy
(docs/distributed.md) for K = 8..1024 ranks, xent's collectives side by side with Megatron-LM's
three all-reduces per token, against the measured single-rank compute time.

usage: scaling_model.py --t1 SECONDS [--tokens 8192 --hidden 1024 --vocab 32000 --block 512]
Not a simulator: it counts messages and bytes with textbook collective costs.
"""
import argparse
import math


def allreduce_small(K, n, a, b):
    """Recursive doubling: log2 K rounds, each one message of the whole vector."""
    return math.ceil(math.log2(K)) * (a + n / b)


def ring_allreduce(K, n, a, b):
    """Reduce-scatter + all-gather (ring, or xent's Alltoallv + Allgatherv): 2 (K-1) messages."""
    return 2 * (K - 1) * a + 2 * (K - 1) / K * n / b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--t1", type=float, required=True, help="measured single-rank step time (s)")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--block", type=int, default=512, help="tokens per round of collectives")
    ap.add_argument("--alpha", type=float, default=2e-6)
    ap.add_argument("--smoothing", action="store_true", help="label smoothing on (112 bytes/token)")
    a = ap.parse_args()
    N, H, nb = a.tokens, a.hidden, a.block
    blocks = math.ceil(N / nb)
    p1, p2 = (40, 72) if a.smoothing else (8, 40)
    print(f"N={N} H={H} V={a.vocab}, token block {nb} ({blocks} rounds), alpha {a.alpha*1e6:.0f} us, "
          f"single-rank compute {a.t1:.2f} s")
    print("| K | compute/rank | net | xent stats | xent dhidden | xent comm/compute | Megatron stats | Megatron dhidden | Megatron comm/compute |")
    print("|---|---|---|---|---|---|---|---|---|")
    for gbps in (100, 25):
        beta = gbps / 8 * 1e9
        for K in (8, 16, 32, 64, 128, 256, 512, 1024):
            comp = a.t1 / K
            x_stats = blocks * (allreduce_small(K, nb * p1, a.alpha, beta) + allreduce_small(K, nb * p2, a.alpha, beta))
            # one rank-ordered all-reduce of N x H per step, in rounds of 2^20 values
            x_dh = math.ceil(N * H / 2**20) * 2 * (K - 1) * a.alpha + 2 * (K - 1) / K * N * H * 4 / beta
            m_stats = 3 * allreduce_small(K, N * 4, a.alpha, beta)
            m_dh = ring_allreduce(K, N * H * 4, a.alpha, beta)
            xr = (x_stats + x_dh) / comp
            mr = (m_stats + m_dh) / comp
            print(f"| {K} | {comp*1e3:.1f} ms | {gbps} Gb/s | {x_stats*1e3:.2f} ms | {x_dh*1e3:.1f} ms | "
                  f"{xr:.2f}{' **>1**' if xr > 1 else ''} | {m_stats*1e3:.2f} ms | {m_dh*1e3:.1f} ms | "
                  f"{mr:.2f}{' **>1**' if mr > 1 else ''} |")


if __name__ == "__main__":
    main()
