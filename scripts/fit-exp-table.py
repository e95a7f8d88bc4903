#!/usr/bin/python3
"""fit-exp-table.py: derives the constants of the float32 SIMD exponential (src/cpu/exp-inl.h,
exp_nonpos_normal): the table 2^(j/4) as a float and its relative rest, ln2/4 split for Cody-Waite,
and the degree-2 polynomial P with exp(r) - 1 = r + r^2 P(r) on |r| <= ln2/8, fitted to the
relative error of exp(r) by iteratively reweighted least squares (Lawson's algorithm, which
converges to the minimax fit). Prints them and the fit's error in float32 ulps. Not run by the
tests: the ulp test (tests/kernels/test_tables.cc, ExpUlpBound) checks the result.
Needs python3-mpmath and python3-numpy.
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 40
LN2 = mp.log(2)


def main():
    for j in range(4):
        t = mp.power(2, mp.mpf(j) / 4)
        hi = np.float32(float(t))
        rho = np.float32(float((t - mp.mpf(float(hi))) / mp.mpf(float(hi))))
        print(f"2^({j}/4): hi {float(hi)!r}  rho {float(rho)!r}")
    c = LN2 / 4
    hi = mp.floor(c * 2**17 + mp.mpf(0.5)) / 2**17  # 15 significant bits: k * hi is exact for |k| < 2^9
    print(f"ln2/4: hi {float(hi)!r}  lo {float(np.float32(float(c - hi)))!r}  4/ln2 {float(np.float32(float(4 / LN2)))!r}")
    h = LN2 / 8 * (1 + mp.mpf("1e-4"))  # k's rounding with a float 4/ln2 widens |r| slightly
    xs = np.array([float(h * mp.cos(mp.pi * (i + 0.5) / 2000)) for i in range(2000)])
    g = np.array([float((mp.exp(mp.mpf(x)) - 1 - x) / mp.mpf(x) ** 2) for x in xs])
    w = xs**2 / np.exp(xs)  # the error of g, weighted into the relative error of exp(r)
    vander = np.vander(xs, 3, increasing=True)
    u = np.ones_like(xs) / len(xs)
    for _ in range(200):
        s = np.sqrt(u) * w
        coef = np.linalg.lstsq(vander * s[:, None], g * s, rcond=None)[0]
        err = np.abs((vander @ coef - g) * w)
        u = u * err / np.sum(u * err)
    c32 = coef.astype(np.float32)
    err32 = np.max(np.abs((vander @ c32.astype(np.float64) - g) * w))
    print("P:", ", ".join(repr(float(v)) for v in c32), f" relative error {err32:.3g} = {err32 / 2**-24:.3f} ulp")


if __name__ == "__main__":
    main()
