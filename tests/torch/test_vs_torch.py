#!/usr/bin/python3
"""test_vs_torch.py: compares the `xent` command-line tool with PyTorch 1.13 (torch.nn.functional).

What it does. From one seed (printed; --seed to repeat) it builds several hundred cases: every
option combination of softmax / log-softmax / logsumexp, cross-entropy (int64, int32 and probability
targets, weight, ignore_index, reduction, label_smoothing), nll, bce and bce-with-logits, over the
shapes, dims, dtypes, reductions and smoothings of the shared case table tests/cases/cases.json
(also read by the C++ oracle and gradient tests: (C), (N, C), (N, C, d1), (N, C, d1, d2) with C in
{1, 3, 17, 33, 1000, ...}, float32 and float64), N = 0 batches, plus adversarial inputs (logits of
+-1e4 and +-max/4, -inf masks, all -inf rows, +inf, NaN, all targets ignored, BCE probabilities of
exactly 0 and 1, large logits for bce-with-logits).
For each case it writes .npy files, runs `xent <op> ... --out L.npy --grad-out G.npy` for every
instruction set the CPU supports (XENT_ISA; cross-entropy also without --grad-out, which takes another
library entry point), and compares the loss and d sum(loss) / d input with torch's (autograd of
.sum()). A subset of larger cases also runs with XENT_THREADS=1, 2 and 3 and must give identical
bits. Cases where PyTorch raises must make xent exit 2 with a message on stderr and leave existing
output files untouched.

What it is not: a unit test of the library (those are the C++ tests against tests/reference/), nor a
benchmark. It exits 0 when everything matches, 1 listing every failing case with a command line that
reproduces it, 77 ("SKIPPED: ...") when numpy or torch cannot be imported.

Tolerances (see compare() and term_scales()):
  float64: |xent - torch64| <= 1e-11 * max(|torch64|, T) elementwise, where T is the magnitude of the
    terms the result is a sum or difference of, in the shifted form PyTorch evaluates (log_softmax =
    (x - max) - log_s: T = |x - max| + log_s + 1, the 1 because log_s = log(s) of a rounded s >= 1
    is only accurate to about one eps absolute; cross-entropy = (max - x_t) + log_s likewise; a
    gradient p - y: T = w (p + y) / divisor). Two correct float64 implementations differ only by rounding, a few
    ulp (1e-16) of T plus ~log2(n) ulp for a reduction over n terms; 1e-11 leaves five orders of
    magnitude for that and still catches any formula error. The floor is needed where a value is a
    near-cancellation of larger terms (p - 1 with p ~ 1): there only accuracy relative to T is
    achievable. T is never the raw logit magnitude: shifting by the max keeps +-1e4 logits exact.
  float32: |xent32 - torch64| <= max(2 * |torch32 - torch64|, 4 ulp32(torch64), 2 eps32 * T):
    xent in float32 may be no less accurate than PyTorch in float32, elementwise. The ulp and T
    floors exist because torch32's error at one element can be zero by luck while any float32
    result carries up to half an ulp of its value, and a result computed from float32 terms (such
    as the rounded logsumexp output that the logsumexp gradient uses) carries about one eps32 of the
    terms' size.
  Both: NaN positions and infinities (with sign) must match torch in the case's dtype exactly;
    output dtype must be the input's, output shape torch's (0-d for a reduced loss).
"""

import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 - any import failure means "cannot run here"
    print(f"SKIPPED: numpy and torch are needed to compare xent with PyTorch ({type(e).__name__}: {e})")
    sys.exit(77)

import argparse
import concurrent.futures
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

TOL64 = 1e-11
EPS32 = float(np.finfo(np.float32).eps)
TINY64 = float(np.finfo(np.float64).tiny)
THREAD_COUNTS = (1, 2, 3)


def load_case_table():
    """The shared case table (tests/cases/cases.json): the shapes, dims, dtypes, reductions and label
    smoothings that the C++ oracle and gradient tests use too. This suite adds its own adversarial
    values, empty batches, error cases and thread cases around them."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases", "cases.json")
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    softmax = [(tuple(c["shape"]), tuple(c["dims"])) for c in table["softmax"]]
    shapes = {k: [tuple(s) for s in table[k]] for k in ("class_losses", "elementwise_losses")}
    if not (softmax and shapes["class_losses"] and shapes["elementwise_losses"] and table["dtypes"]):
        raise SystemExit(f"{path}: a list of cases is empty")
    th = table["threads"]
    thread_softmax = [(tuple(c["shape"]), tuple(c["dims"])) for c in th["softmax"]]
    thread_shapes = {k: [tuple(s) for s in th[k]] for k in ("class_losses", "elementwise_losses")}
    if not (thread_softmax and thread_shapes["class_losses"] and thread_shapes["elementwise_losses"]):
        raise SystemExit(f"{path}: a list of thread cases is empty")
    return (tuple(table["dtypes"]), tuple(table["reductions"]), tuple(float(v) for v in table["label_smoothing"]),
            softmax, shapes["class_losses"], shapes["elementwise_losses"],
            thread_softmax, thread_shapes["class_losses"], thread_shapes["elementwise_losses"])


(DTYPES, REDUCTIONS, SMOOTHINGS, SOFTMAX_SHAPES, CE_SHAPES, BCE_SHAPES,
 THREAD_SOFTMAX_SHAPES, THREAD_CE_SHAPES, THREAD_BCE_SHAPES) = load_case_table()

# CLI flag for each array a case may carry.
ARRAY_FLAGS = {"input": "--input", "target": "--target", "weight": "--weight", "pos_weight": "--pos-weight"}


@dataclass
class Case:
    name: str
    op: str                      # xent subcommand
    dtype: str                   # "float32" or "float64": the input's dtype
    arrays: dict                 # name -> np.ndarray, already in the dtype xent receives
    opts: dict = field(default_factory=dict)  # dim, ignore_index, reduction, label_smoothing (None: omit)
    expect_error: bool = False   # PyTorch raises: xent must exit 2
    stricter: bool = False       # with expect_error: PyTorch silently accepts it, xent refuses on purpose
    threads: bool = False        # also run with XENT_THREADS=1,2,3 and compare bits
    tags: tuple = ()             # "quirk": PyTorch accepts something odd (reported separately)
    # Filled by the reference pass:
    ref64: tuple = None          # (out, grad) from torch in float64
    ref32: tuple = None          # (out, grad) from torch in float32 (float32 cases only)
    scale: tuple = None          # (T_out, T_grad) term magnitudes, see module docstring
    ref_error: str = ""          # harness problem while computing references


# ----------------------------------------------------------------------------- input generation

class Gen:
    """Random inputs. Every case is drawn from one numpy Generator seeded by --seed."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.cases = []
        self.counter = itertools.count()

    def add(self, name, op, dtype, arrays, opts=None, **kw):
        arrays = {k: v for k, v in arrays.items() if v is not None}
        self.cases.append(Case(f"{next(self.counter):04d}:{name}", op, dtype, arrays, dict(opts or {}), **kw))

    def logits(self, shape, dtype, sigma=3.0):
        return self.rng.normal(0.0, sigma, size=shape).astype(dtype)

    def class_weight(self, C, dtype):
        return self.rng.uniform(0.2, 2.0, size=(C,)).astype(dtype)

    def prob_target(self, shape, dtype):
        """Rows (along the class dim) that sum to one."""
        cdim = 0 if len(shape) == 1 else 1
        z = self.rng.normal(0.0, 1.5, size=shape)
        z = np.exp(z - z.max(axis=cdim, keepdims=True)) if z.size else z
        z = z / z.sum(axis=cdim, keepdims=True) if z.size else z
        return z.astype(dtype)

    def index_target(self, shape, ignore_mode, tdtype, variant):
        """(target, ignore_index option). ignore_mode: default (no flag, no ignored targets),
        hit (some targets equal an ignore_index outside [0, C)), valid (ignore_index is a class)."""
        C = shape[0] if len(shape) == 1 else shape[1]
        tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
        t = self.rng.integers(0, C, size=tshape, dtype=np.int64) if C > 0 else np.zeros(tshape, np.int64)
        ii = None
        if ignore_mode == "hit":
            ii = (None, -1, C + 2)[variant % 3]  # None: the default -100, flag omitted
            value = -100 if ii is None else ii
            mask = self.rng.random(tshape) < 0.3
            if t.size > 1:
                mask.flat[self.rng.integers(0, t.size)] = False  # keep one target that counts
            elif t.ndim == 0:
                mask = np.asarray(variant % 2 == 1)
            t = np.where(mask, value, t)
        elif ignore_mode == "valid":
            ii = int(self.rng.integers(0, C))
            mask = self.rng.random(tshape) < 0.3
            t = np.where(mask, ii, t)
        return np.asarray(t).astype(tdtype), ii


def bcast_shape(shape, mode):
    """Weight shapes for bce: full, last dim (C,), first dim kept (N, 1, ...), scalar ()."""
    if mode == "full":
        return tuple(shape)
    if mode == "last":
        return (shape[-1],)
    if mode == "first":
        return (shape[0],) + (1,) * (len(shape) - 1)
    if mode == "scalar":
        return ()
    if mode == "one":
        return (1,)
    raise ValueError(mode)


# SOFTMAX_SHAPES (shape, dims), CE_SHAPES (classes on dim 1), BCE_SHAPES, DTYPES, REDUCTIONS and
# SMOOTHINGS come from the shared case table (load_case_table above).


def gen_softmax_family(g):
    for op in ("softmax", "log-softmax", "logsumexp"):
        for dtype in DTYPES:
            for shape, dims in SOFTMAX_SHAPES:
                for d in dims:
                    g.add(f"{op}/{shape}/dim{d}/{dtype}", op, dtype, {"input": g.logits(shape, dtype)}, {"dim": d})
            # Adversarial rows.
            x = (g.rng.choice([-1.0, 1.0], size=(4, 17)) * 1e4 + g.rng.normal(0, 3, size=(4, 17))).astype(dtype)
            g.add(f"{op}/logits+-1e4/dim1/{dtype}", op, dtype, {"input": x}, {"dim": 1})
            g.add(f"{op}/logits+-1e4/dim0/{dtype}", op, dtype, {"input": x}, {"dim": 0})
            huge = float(np.finfo(dtype).max) / 4
            x = g.logits((3, 9), "float64")
            x[:, ::3] = g.rng.choice([-huge, huge], size=x[:, ::3].shape)
            g.add(f"{op}/logits+-max_over_4/{dtype}", op, dtype, {"input": x.astype(dtype)}, {"dim": 1})
            x = g.logits((5, 64), dtype, sigma=40.0)  # exp underflows to (sub)normal values
            g.add(f"{op}/wide-logits-sigma40/{dtype}", op, dtype, {"input": x}, {"dim": -1})
            for shape, d in (((6, 33), 1), ((3, 1000), 1), ((4, 7, 5), 1)):
                x = g.logits(shape, dtype)
                m = g.rng.random(shape) < 0.4
                keep = np.moveaxis(np.zeros(shape, bool), d, 0)
                keep[0] = True  # the first class of every row stays finite
                m &= ~np.moveaxis(keep, 0, d)
                x[m] = -np.inf
                g.add(f"{op}/neg-inf-mask/{shape}/{dtype}", op, dtype, {"input": x}, {"dim": d})
            x = g.logits((4, 17), dtype)
            x[g.rng.random((4, 17)) < 0.3] = -np.inf
            x[2, :] = -np.inf
            x[0, 0] = 0  # row 0 keeps a finite value
            g.add(f"{op}/all-neg-inf-row/{dtype}", op, dtype, {"input": x}, {"dim": 1})
            x = g.logits((4, 5), dtype)
            x[1, 3] = np.inf
            x[2, 0], x[2, 4] = np.inf, -np.inf
            g.add(f"{op}/pos-inf/{dtype}", op, dtype, {"input": x}, {"dim": 1})
            x = g.logits((3, 5), dtype)
            x[0, 2] = np.nan
            g.add(f"{op}/nan/{dtype}", op, dtype, {"input": x}, {"dim": 1})


def gen_cross_entropy(g):
    i = 0
    for dtype in DTYPES:
        # Class-index targets: every combination of the options.
        for tdtype, weighted, ign, red, ls in itertools.product(
                ("int64", "int32"), (False, True), ("default", "hit", "valid"), REDUCTIONS, SMOOTHINGS):
            shape = CE_SHAPES[i % len(CE_SHAPES)]
            i += 1
            C = shape[0] if len(shape) == 1 else shape[1]
            t, ii = g.index_target(shape, ign, tdtype, i)
            g.add(f"ce/idx-{tdtype}/w{int(weighted)}/ign-{ign}{'' if ii is None else f'({ii})'}/{red}/ls{ls}/{shape}/{dtype}",
                  "cross-entropy", dtype,
                  {"input": g.logits(shape, dtype), "target": t,
                   "weight": g.class_weight(C, dtype) if weighted else None},
                  {"ignore_index": ii, "reduction": red, "label_smoothing": ls})
        # Probability targets (ignore_index stays at its default; -3 once: negative is allowed).
        for weighted, red, ls in itertools.product((False, True), REDUCTIONS, SMOOTHINGS):
            shape = CE_SHAPES[i % len(CE_SHAPES)]
            i += 1
            C = shape[0] if len(shape) == 1 else shape[1]
            g.add(f"ce/prob/w{int(weighted)}/{red}/ls{ls}/{shape}/{dtype}", "cross-entropy", dtype,
                  {"input": g.logits(shape, dtype), "target": g.prob_target(shape, dtype),
                   "weight": g.class_weight(C, dtype) if weighted else None},
                  {"reduction": red, "label_smoothing": ls, "ignore_index": -3 if i % 7 == 0 else None})
        # Unnormalised (but non-negative) probability targets: PyTorch does not check the sum.
        x = g.logits((5, 6), dtype)
        g.add(f"ce/prob-unnormalised/{dtype}", "cross-entropy", dtype,
              {"input": x, "target": g.rng.uniform(0, 1, (5, 6)).astype(dtype)}, {"reduction": "mean"})
        # All defaults (no option flags at all).
        g.add(f"ce/defaults/{dtype}", "cross-entropy", dtype,
              {"input": g.logits((6, 5), dtype), "target": g.rng.integers(0, 5, (6,))}, {})
        # Empty batches and empty spatial dims.
        for red in REDUCTIONS:
            for shape in ((0, 4), (2, 5, 0), (0, 3, 2)):
                tshape = shape[:1] + shape[2:]
                g.add(f"ce/empty-idx/{shape}/{red}/{dtype}", "cross-entropy", dtype,
                      {"input": g.logits(shape, dtype), "target": np.zeros(tshape, np.int64),
                       "weight": g.class_weight(shape[1], dtype)}, {"reduction": red})
            g.add(f"ce/empty-prob/{red}/{dtype}", "cross-entropy", dtype,
                  {"input": g.logits((0, 4), dtype), "target": g.prob_target((0, 4), dtype)},
                  {"reduction": red, "label_smoothing": 0.05})
        # Adversarial.
        for k, red in enumerate(REDUCTIONS):
            for ls in (0.0, 0.05):
                shape = (6, 17)
                x = (g.rng.choice([-1.0, 1.0], size=shape) * 1e4 + g.rng.normal(0, 3, size=shape))
                t = g.rng.integers(0, 17, size=(6,))
                t[:3] = x[:3].argmax(axis=1)  # confident rows: loss ~ 0 from logits ~ 1e4
                g.add(f"ce/logits+-1e4/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                      {"input": x.astype(dtype), "target": t, "weight": g.class_weight(17, dtype)},
                      {"reduction": red, "label_smoothing": ls})
                x = g.logits((8, 33), dtype)
                t = g.rng.integers(0, 33, size=(8,))
                m = g.rng.random((8, 33)) < 0.5
                m[np.arange(8), t] = False
                x[m] = -np.inf  # masked logits; ls > 0 makes the loss +inf, as in PyTorch
                g.add(f"ce/neg-inf-mask/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                      {"input": x, "target": t}, {"reduction": red, "label_smoothing": ls})
                x2 = x.copy()
                x2[3, t[3]] = -np.inf  # the target itself masked: loss +inf
                g.add(f"ce/neg-inf-target/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                      {"input": x2, "target": t}, {"reduction": red, "label_smoothing": ls})
                x3 = x.copy()
                x3[5, :] = -np.inf  # all -inf row: NaN loss and gradient row
                g.add(f"ce/all-neg-inf-row/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                      {"input": x3, "target": t}, {"reduction": red, "label_smoothing": ls})
                x4 = g.logits((4, 9), dtype)
                x4[1, 4] = np.nan
                g.add(f"ce/nan-logit/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                      {"input": x4, "target": g.rng.integers(0, 9, (4,))}, {"reduction": red, "label_smoothing": ls})
                x5 = g.logits((5, 64), dtype, sigma=40.0)
                g.add(f"ce/wide-logits-sigma40/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                      {"input": x5, "target": g.rng.integers(0, 64, (5,))}, {"reduction": red, "label_smoothing": ls})
                # All targets ignored: mean is NaN (0/0), sum 0, none zeros; gradient zero.
                for tdtype in ("int64", "int32"):
                    g.add(f"ce/all-ignored/{tdtype}/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                          {"input": g.logits((4, 5), dtype), "target": np.full((4,), 2, tdtype),
                           "weight": g.class_weight(5, dtype) if tdtype == "int32" else None},
                          {"reduction": red, "label_smoothing": ls, "ignore_index": 2})
                # Probability targets over -inf logits: 0 * -inf is NaN in PyTorch.
                xp = g.logits((4, 6), dtype)
                xp[1, 2] = -np.inf
                g.add(f"ce/prob-neg-inf-logit/{red}/ls{ls}/{dtype}", "cross-entropy", dtype,
                      {"input": xp, "target": g.prob_target((4, 6), dtype)}, {"reduction": red, "label_smoothing": ls})
        # Torch 1.13 treats a negative label_smoothing as 0 without a word; xent refuses anything
        # outside [0, 1] (docs/numerics.md, "Deliberate differences").
        g.add(f"ce/refused-label-smoothing-negative/{dtype}", "cross-entropy", dtype,
              {"input": g.logits((4, 3), dtype), "target": g.rng.integers(0, 3, (4,))},
              {"label_smoothing": -0.1}, expect_error=True, stricter=True)


def gen_nll(g):
    i = 0
    for dtype in DTYPES:
        for tdtype, weighted, ign, red in itertools.product(
                ("int64", "int32"), (False, True), ("default", "hit", "valid"), REDUCTIONS):
            shape = CE_SHAPES[i % len(CE_SHAPES)]
            i += 1
            C = shape[0] if len(shape) == 1 else shape[1]
            t, ii = g.index_target(shape, ign, tdtype, i)
            x = g.rng.normal(-2.0, 1.0, size=shape).astype(dtype)  # log-probabilities, need not normalise
            g.add(f"nll/{tdtype}/w{int(weighted)}/ign-{ign}{'' if ii is None else f'({ii})'}/{red}/{shape}/{dtype}",
                  "nll", dtype,
                  {"input": x, "target": t, "weight": g.class_weight(C, dtype) if weighted else None},
                  {"ignore_index": ii, "reduction": red})
        for red in REDUCTIONS:
            x = g.rng.normal(-2.0, 1.0, size=(6, 7)).astype(dtype)
            t = g.rng.integers(0, 7, size=(6,))
            m = g.rng.random((6, 7)) < 0.5
            m[np.arange(6), t] = False
            x[m] = -np.inf
            g.add(f"nll/neg-inf-input/{red}/{dtype}", "nll", dtype, {"input": x, "target": t}, {"reduction": red})
            x2 = x.copy()
            x2[2, t[2]] = -np.inf  # loss +inf
            g.add(f"nll/neg-inf-target/{red}/{dtype}", "nll", dtype, {"input": x2, "target": t}, {"reduction": red})
            g.add(f"nll/all-ignored/{red}/{dtype}", "nll", dtype,
                  {"input": x, "target": np.full((6,), -100, np.int64), "weight": g.class_weight(7, dtype)},
                  {"reduction": red})
            g.add(f"nll/empty/{red}/{dtype}", "nll", dtype,
                  {"input": g.logits((0, 3), dtype), "target": np.zeros((0,), np.int64)}, {"reduction": red})


def gen_bce(g):
    i = 0
    for dtype in DTYPES:
        for wmode, red in itertools.product((None, "full", "last", "first", "scalar"), REDUCTIONS):
            shape = BCE_SHAPES[i % len(BCE_SHAPES)]
            i += 1
            p = g.rng.uniform(0.001, 0.999, size=shape).astype(dtype)
            t = (g.rng.uniform(0, 1, size=shape) if i % 2 else g.rng.integers(0, 2, size=shape)).astype(dtype)
            w = g.rng.uniform(0.2, 2.0, size=bcast_shape(shape, wmode)).astype(dtype) if wmode else None
            g.add(f"bce/w-{wmode}/{red}/{shape}/{dtype}", "bce", dtype, {"input": p, "target": t, "weight": w},
                  {"reduction": red})
        for red in REDUCTIONS:
            # Probabilities exactly 0 and 1: log is clamped at -100, the gradient's divisor at 1e-12.
            p = np.array([[0, 1, 0, 1, 0.5, 0, 1], [1e-30 if dtype == "float64" else 1e-40, 1 - 1e-7, 0.25, 0, 1, 0.999, 1e-3]],
                         dtype=np.float64).astype(dtype)
            t = np.array([[0, 1, 1, 0, 0.3, 0.5, 0.5], [1, 0, 0, 0.2, 1, 1, 0.7]], dtype=dtype)
            g.add(f"bce/prob-0-and-1/{red}/{dtype}", "bce", dtype, {"input": p, "target": t}, {"reduction": red})
            g.add(f"bce/prob-0-and-1-weighted/{red}/{dtype}", "bce", dtype,
                  {"input": p, "target": t, "weight": g.rng.uniform(0.2, 2, (7,)).astype(dtype)}, {"reduction": red})
            g.add(f"bce/empty/{red}/{dtype}", "bce", dtype,
                  {"input": np.zeros((0, 4), dtype), "target": np.zeros((0, 4), dtype)}, {"reduction": red})
        # Torch quirk: targets outside [0, 1] are accepted.
        g.add(f"bce/quirk-target-outside-0-1/{dtype}", "bce", dtype,
              {"input": np.array([0.2, 0.7, 0.5], dtype), "target": np.array([1.5, -0.5, 2.0], dtype)},
              {"reduction": "none"}, tags=("quirk",))


def gen_bce_logits(g):
    i = 0
    for dtype in DTYPES:
        for wmode, pwmode, red in itertools.product((None, "full", "last"), (None, "last", "full"), REDUCTIONS):
            shape = BCE_SHAPES[i % len(BCE_SHAPES)]
            i += 1
            x = g.logits(shape, dtype)
            t = (g.rng.uniform(0, 1, size=shape) if i % 2 else g.rng.integers(0, 2, size=shape)).astype(dtype)
            w = g.rng.uniform(0.2, 2.0, size=bcast_shape(shape, wmode)).astype(dtype) if wmode else None
            pw = g.rng.uniform(0.2, 4.0, size=bcast_shape(shape, pwmode)).astype(dtype) if pwmode else None
            g.add(f"bcel/w-{wmode}/pw-{pwmode}/{red}/{shape}/{dtype}", "bce-with-logits", dtype,
                  {"input": x, "target": t, "weight": w, "pos_weight": pw}, {"reduction": red})
        big = float(np.finfo(dtype).max) / 1e3  # sums of 36 weighted terms stay finite
        vals = np.array([1e4, -1e4, 100, -100, 30, -30, 1e30, -1e30, big, -big, 0, 1e-30], np.float64)
        for red in REDUCTIONS:
            x = np.stack([vals] * 3).astype(dtype)
            t = np.stack([np.zeros(12), np.ones(12), np.full(12, 0.25)]).astype(dtype)
            g.add(f"bcel/large-logits/{red}/{dtype}", "bce-with-logits", dtype, {"input": x, "target": t},
                  {"reduction": red})
            g.add(f"bcel/large-logits-pos-weight/{red}/{dtype}", "bce-with-logits", dtype,
                  {"input": x, "target": t, "pos_weight": g.rng.uniform(0.2, 4, (12,)).astype(dtype),
                   "weight": g.rng.uniform(0.2, 2, (3, 1)).astype(dtype)}, {"reduction": red})
            g.add(f"bcel/empty/{red}/{dtype}", "bce-with-logits", dtype,
                  {"input": np.zeros((0, 4), dtype), "target": np.zeros((0, 4), dtype),
                   "pos_weight": np.ones((4,), dtype)}, {"reduction": red})
        g.add(f"bcel/pos-weight-one/{dtype}", "bce-with-logits", dtype,
              {"input": g.logits((3, 4), dtype), "target": g.rng.uniform(0, 1, (3, 4)).astype(dtype),
               "pos_weight": g.rng.uniform(0.2, 4, (1,)).astype(dtype)}, {"reduction": "sum"})
        g.add(f"bcel/quirk-target-outside-0-1/{dtype}", "bce-with-logits", dtype,
              {"input": np.array([0.2, -1.7, 3.5], dtype), "target": np.array([1.5, -0.5, 2.0], dtype)},
              {"reduction": "none"}, tags=("quirk",))


def gen_threads(g):
    """Larger cases (enough rows to be split across threads), on the shapes of the shared table's
    "threads" lists (test_threads.cc uses the same); bits must not depend on XENT_THREADS. Ops,
    dtypes and options are spread over the shapes in turn."""
    r = g.rng
    k = 0
    for shape, dims in THREAD_SOFTMAX_SHAPES:
        for d in dims:
            op, dtype = ("softmax", "log-softmax", "logsumexp")[k % 3], DTYPES[k % len(DTYPES)]
            k += 1
            g.add(f"threads/{op}/{shape}/dim{d}/{dtype}", op, dtype, {"input": g.logits(shape, dtype)}, {"dim": d},
                  threads=True)
    variants = (  # (target kind, target dtype, class weight, options)
        ("idx", "int64", True, {"reduction": "mean", "label_smoothing": 0.05}),
        ("idx", "int32", False, {"reduction": "sum"}),
        ("idx", "int64", False, {"reduction": "none", "label_smoothing": 0.05}),
        ("prob", None, False, {"reduction": "sum"}),
        ("prob", None, True, {"reduction": "mean"}),
        ("nll", "int64", True, {"reduction": "mean"}),
    )
    for i, (kind, tdtype, weighted, opts) in enumerate(variants):
        shape = THREAD_CE_SHAPES[i % len(THREAD_CE_SHAPES)]
        dtype = DTYPES[i % len(DTYPES)]
        C, tshape = shape[1], shape[:1] + shape[2:]
        w = g.class_weight(C, dtype) if weighted else None
        if kind == "prob":
            arrays = {"input": g.logits(shape, dtype), "target": g.prob_target(shape, dtype), "weight": w}
            g.add(f"threads/ce-prob/{shape}/{opts['reduction']}/{dtype}", "cross-entropy", dtype, arrays, opts,
                  threads=True)
            continue
        t = r.integers(0, C, tshape)
        t[r.random(tshape) < 0.1] = -100
        t = t.astype(tdtype)
        if kind == "nll":
            x = r.normal(-3, 1, shape).astype(dtype)
            g.add(f"threads/nll/{shape}/{opts['reduction']}/{dtype}", "nll", dtype,
                  {"input": x, "target": t, "weight": w}, opts, threads=True)
        else:
            g.add(f"threads/ce-idx-{tdtype}/{shape}/{opts['reduction']}/{dtype}", "cross-entropy", dtype,
                  {"input": g.logits(shape, dtype), "target": t, "weight": w}, opts, threads=True)
    for i, shape in enumerate(THREAD_BCE_SHAPES):
        last = shape[-1]
        g.add(f"threads/bce/{shape}/mean/float64", "bce", "float64",
              {"input": r.uniform(0.001, 0.999, shape), "target": r.uniform(0, 1, shape),
               "weight": r.uniform(0.2, 2, (last,))}, {"reduction": "mean"}, threads=True)
        g.add(f"threads/bcel/{shape}/sum/float32", "bce-with-logits", "float32",
              {"input": g.logits(shape, "float32"), "target": r.uniform(0, 1, shape).astype(np.float32),
               "pos_weight": r.uniform(0.2, 4, (last,)).astype(np.float32)}, {"reduction": "sum"}, threads=True)


def gen_long_rows(g):
    """Few long rows (>= 256 KiB each, fewer than 8 rows): the library splits each row into chunks of
    65536 values run on several threads. Every loss the split path takes, a -inf block across the
    first chunk boundary (with target 0 there: NaN loss, gradient finite, as in PyTorch), and the
    same bits for every thread count; a +inf logit in the second chunk (NaN row)."""
    r = g.rng
    C = 70000
    x = g.logits((2, C), "float32")
    g.add("long/ce-prob/(2,70000)/w/ls0.1/mean/float32", "cross-entropy", "float32",
          {"input": x, "target": g.prob_target((2, C), "float32"), "weight": g.class_weight(C, "float32")},
          {"reduction": "mean", "label_smoothing": 0.1}, threads=True)
    xm = g.logits((3, C), "float32")
    xm[1, 65500:65600] = -np.inf
    xm[2, 66000] = np.inf  # NaN loss and gradient row
    pm = g.prob_target((3, C), "float32")
    pm[1, 65500:65600] = 0
    pm[0, 65500:65600] = 0
    g.add("long/ce-prob/(3,70000)/neg-inf-block-target0/pos-inf/none/float32", "cross-entropy", "float32",
          {"input": xm, "target": pm}, {"reduction": "none"}, threads=True)
    t = r.integers(0, C, (3,))
    t[1] = -100
    g.add("long/ce-idx/(3,70000)/w/ls0.1/ign/none/float32", "cross-entropy", "float32",
          {"input": g.logits((3, C), "float32"), "target": t, "weight": g.class_weight(C, "float32")},
          {"reduction": "none", "label_smoothing": 0.1}, threads=True)
    g.add("long/ce-idx/(2,65537)/ls0.05/mean/float64", "cross-entropy", "float64",
          {"input": g.logits((2, 65537), "float64"), "target": np.array([0, 65536])},
          {"reduction": "mean", "label_smoothing": 0.05}, threads=True)
    g.add("long/ce-prob/(2,65537)/sum/float64", "cross-entropy", "float64",
          {"input": g.logits((2, 65537), "float64"), "target": g.prob_target((2, 65537), "float64")},
          {"reduction": "sum", "label_smoothing": 0.0}, threads=True)
    g.add("long/nll/(2,70000)/w/mean/float32", "nll", "float32",
          {"input": r.normal(-12, 1, (2, C)).astype(np.float32), "target": np.array([3, C - 1]),
           "weight": g.class_weight(C, "float32")}, {"reduction": "mean"}, threads=True)
    g.add("long/nll/(3,65537)/ign/none/float64", "nll", "float64",
          {"input": r.normal(-12, 1, (3, 65537)), "target": np.array([65536, -100, 0])},
          {"reduction": "none"}, threads=True)


def gen_errors(g):
    """Inputs PyTorch refuses; xent must exit 2. Each is checked to raise in torch too."""
    f64 = "float64"
    x = g.logits((4, 3), f64)
    t = np.array([0, 1, 2, 1])
    p = g.prob_target((4, 3), f64)
    E = dict(expect_error=True)
    g.add("error/ce-target-eq-C", "cross-entropy", f64, {"input": x, "target": np.array([0, 1, 3, 1])}, {}, **E)
    g.add("error/ce-target-eq-C-int32", "cross-entropy", f64,
          {"input": x, "target": np.array([0, 1, 3, 1], np.int32)}, {"reduction": "sum"}, **E)
    g.add("error/ce-target-negative", "cross-entropy", f64, {"input": x, "target": np.array([0, -1, 2, 1])}, {}, **E)
    g.add("error/ce-target-negative-ignore-elsewhere", "cross-entropy", f64,
          {"input": x, "target": np.array([0, -100, 2, 1])}, {"ignore_index": -1}, **E)
    g.add("error/ce-target-oob-unbatched", "cross-entropy", f64, {"input": x[0], "target": np.array(7)}, {}, **E)
    g.add("error/nll-target-eq-C", "nll", f64, {"input": x, "target": np.array([0, 1, 3, 1])}, {}, **E)
    g.add("error/ce-label-smoothing-1.5", "cross-entropy", f64, {"input": x, "target": t},
          {"label_smoothing": 1.5}, **E)
    g.add("error/ce-prob-label-smoothing-1.5", "cross-entropy", f64, {"input": x, "target": p},
          {"label_smoothing": 1.5}, **E)
    g.add("error/ce-prob-ignore-index-0", "cross-entropy", f64, {"input": x, "target": p}, {"ignore_index": 0}, **E)
    g.add("error/ce-prob-ignore-index-5", "cross-entropy", f64, {"input": x, "target": p}, {"ignore_index": 5}, **E)
    g.add("error/ce-weight-wrong-size", "cross-entropy", f64, {"input": x, "target": t, "weight": np.ones(4)}, {}, **E)
    g.add("error/ce-weight-wrong-dtype", "cross-entropy", f64,
          {"input": x, "target": t, "weight": np.ones(3, np.float32)}, {}, **E)
    g.add("error/ce-target-batch-mismatch", "cross-entropy", f64, {"input": x, "target": np.array([0, 1, 2, 1, 0])},
          {}, **E)
    g.add("error/ce-target-rank-mismatch", "cross-entropy", f64,
          {"input": g.logits((2, 3, 4), f64), "target": np.zeros((2, 5), np.int64)}, {}, **E)
    g.add("error/nll-float-target", "nll", f64, {"input": x, "target": p}, {}, **E)
    g.add("error/bce-input-above-1", "bce", f64, {"input": np.array([0.2, 1.5]), "target": np.array([0.0, 1.0])},
          {}, **E)
    g.add("error/bce-input-negative", "bce", "float32",
          {"input": np.array([0.2, -0.25], np.float32), "target": np.array([0.0, 1.0], np.float32)}, {}, **E)
    g.add("error/bce-input-nan", "bce", f64, {"input": np.array([0.2, np.nan]), "target": np.array([0.0, 1.0])},
          {"reduction": "none"}, **E)
    g.add("error/bce-target-shape", "bce", f64, {"input": np.full((2, 3), 0.5), "target": np.full((3,), 0.5)}, {},
          **E)
    g.add("error/bce-weight-not-broadcastable", "bce", f64,
          {"input": np.full((2, 3), 0.5), "target": np.full((2, 3), 0.5), "weight": np.ones(2)}, {}, **E)
    g.add("error/bcel-pos-weight-not-broadcastable", "bce-with-logits", f64,
          {"input": x, "target": p, "pos_weight": np.ones(4)}, {}, **E)
    g.add("error/bcel-target-shape", "bce-with-logits", f64, {"input": x, "target": p[0]}, {}, **E)
    g.add("error/softmax-dim-out-of-range", "softmax", f64, {"input": x}, {"dim": 2}, **E)
    g.add("error/log-softmax-dim-out-of-range-neg", "log-softmax", f64, {"input": x}, {"dim": -3}, **E)
    g.add("error/logsumexp-dim-out-of-range", "logsumexp", "float32", {"input": x.astype(np.float32)}, {"dim": 5},
          **E)


def build_cases(seed):
    g = Gen(seed)
    gen_softmax_family(g)
    gen_cross_entropy(g)
    gen_nll(g)
    gen_bce(g)
    gen_bce_logits(g)
    gen_threads(g)
    gen_long_rows(g)
    gen_errors(g)
    return g.cases


# ----------------------------------------------------------------------------- PyTorch references

def torch_eval(case, tdtype):
    """(out, grad) as float64 numpy arrays (grad = d out.sum() / d input), computed by torch in tdtype."""
    a = case.arrays
    x = torch.from_numpy(np.array(a["input"], dtype=np.float64)).to(tdtype).requires_grad_(True)

    def fl(name):
        return None if name not in a else torch.from_numpy(np.array(a[name], dtype=np.float64)).to(tdtype)

    def tgt():
        t = a["target"]
        if np.issubdtype(t.dtype, np.integer):
            return torch.from_numpy(np.array(t, dtype=np.int64))  # torch 1.13 only takes int64 indices
        return fl("target")

    def wt():
        w = a.get("weight")
        if w is None:
            return None
        if w.dtype == a["input"].dtype:
            return fl("weight")
        return torch.from_numpy(np.array(w))  # a deliberate dtype mismatch (error cases)

    o = case.opts
    red = o.get("reduction") or "mean"
    ii = o.get("ignore_index")
    ii = -100 if ii is None else ii
    ls = o.get("label_smoothing")
    ls = 0.0 if ls is None else ls
    op = case.op
    if op == "softmax":
        out = F.softmax(x, o["dim"])
    elif op == "log-softmax":
        out = F.log_softmax(x, o["dim"])
    elif op == "logsumexp":
        out = torch.logsumexp(x, o["dim"])
    elif op == "cross-entropy":
        out = F.cross_entropy(x, tgt(), weight=wt(), ignore_index=ii, reduction=red, label_smoothing=ls)
    elif op == "nll":
        out = F.nll_loss(x, tgt(), weight=wt(), ignore_index=ii, reduction=red)
    elif op == "bce":
        out = F.binary_cross_entropy(x, fl("target"), weight=wt(), reduction=red)
    elif op == "bce-with-logits":
        out = F.binary_cross_entropy_with_logits(x, fl("target"), weight=wt(), reduction=red,
                                                 pos_weight=fl("pos_weight"))
    else:
        raise ValueError(op)
    if out.requires_grad:
        out.sum().backward()
    grad = x.grad if x.grad is not None else torch.zeros_like(x)
    return out.detach().to(torch.float64).numpy().copy(), grad.to(torch.float64).numpy().copy()


def fin(a):
    """|a| with NaN and infinities replaced by 0 (term magnitudes only count finite values)."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), np.abs(a), 0.0)


def class_dim(x):
    return 0 if x.ndim <= 1 else 1


def term_scales(case):
    """(T_out, T_grad): magnitude of the terms that each result element is computed from, float64,
    broadcastable to the result. Used only as an absolute floor of the tolerance (module docstring)."""
    a = case.arrays
    x = np.array(a["input"], dtype=np.float64)
    op, o = case.op, case.opts
    xt = torch.from_numpy(x)
    if op in ("softmax", "log-softmax", "logsumexp"):
        d = o["dim"]
        if x.ndim == 0:  # a scalar is a one-element vector; the results stay 0-d
            t_out, t_grad = term_scales(Case(case.name, op, case.dtype, {"input": x.reshape(1)}, {"dim": 0}))
            return np.reshape(t_out, ()), np.reshape(t_grad, ())
        n = x.shape[d]
        p = fin(torch.softmax(xt, d).numpy())
        lse = torch.logsumexp(xt, d, keepdim=True).numpy()
        m = torch.amax(xt, d, keepdim=True).numpy() if x.size else np.zeros_like(lse)
        # log_s = log(sum(exp(x - max))) >= 0. The sum s >= 1 is rounded (and summed in some
        # order), so log_s carries an absolute error of a few eps whatever its size: hence the 1.
        log_s = fin(lse - m) + 1
        shift = fin(x - m)                # |x - max|
        if op == "softmax":
            return p, 2 * p               # exp(x - max) / s; y * (1 - sum y)
        if op == "log-softmax":           # (x - max) - log_s; 1 - n * exp(y)
            return shift + log_s, 1 + n * p * (1 + shift + log_s)
        # max + log_s; exp(x - lse). The gradient is computed from the rounded output lse (float32
        # in a float32 case), whose rounding error eps * |lse| / 2 becomes a relative error of p.
        return (fin(m) + log_s).squeeze(d), p * (1 + fin(lse) + shift + log_s)

    red = o.get("reduction") or "mean"
    if op in ("cross-entropy", "nll"):
        cd = class_dim(x)
        C = x.shape[cd]
        w = np.abs(np.array(a["weight"], np.float64)) if "weight" in a else np.ones(C)
        wmax = float(w.max()) if w.size else 1.0
        shp = [1] * x.ndim
        shp[cd] = C
        wb = w.reshape(shp)
        t = a["target"]
        if np.issubdtype(t.dtype, np.integer):
            ii = o.get("ignore_index")
            ii = -100 if ii is None else ii
            t64 = np.array(t, np.int64)
            valid = t64 != ii
            onehot = (np.expand_dims(t64, cd) == np.arange(C).reshape(shp)).astype(np.float64)
            validb = np.expand_dims(valid, cd).astype(np.float64)
            divisor = float((onehot * wb).sum()) if C else 0.0
        else:
            onehot = fin(t)
            validb = np.ones(x.shape[:cd] + (1,) + x.shape[cd + 1:]) if x.ndim > 1 else np.ones((1,))
            divisor = float(x.size // C) if C else 0.0
        if op == "cross-entropy":
            # loss_c = lse - x_c = (max - x_c) + log_s: terms |max - x_c| and log_s, weighted by the
            # smoothed target (1 - ls) y_c + ls / C and the class weight.
            ls = max(o.get("label_smoothing") or 0.0, 0.0)
            lse = torch.logsumexp(xt, cd, keepdim=True).numpy()
            m = torch.amax(xt, cd, keepdim=True).numpy() if x.size else np.zeros_like(lse)
            term = fin(x - m) + fin(lse - m) + 1   # + 1: log_s's absolute error (softmax family)
            ysm = onehot * (1 - ls) + ls / C
            row = (wb * ysm * term * validb).sum(axis=cd)
            p = fin(torch.softmax(xt, cd).numpy())
            grad_terms = wmax * (p * (1 + ls) + ysm)
        else:
            row = (wb * onehot * fin(x) * validb).sum(axis=cd)   # -w[t] x[t]
            grad_terms = np.full(x.shape, wmax)
        if red == "none":
            return row, grad_terms
        div = divisor if (red == "mean" and divisor > 0) else 1.0
        return np.array(row.sum() / div), grad_terms / div

    # bce / bce-with-logits, elementwise.
    t = np.array(a["target"], np.float64)
    w = np.broadcast_to(np.array(a["weight"], np.float64), x.shape) if "weight" in a else np.ones(x.shape)
    w = np.abs(w)
    if op == "bce":
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = np.maximum(np.log(x), -100)
            l1p = np.maximum(np.log1p(-x), -100)
        loss_terms = w * (fin(t) * fin(lp) + fin(1 - t) * fin(l1p))
        grad_terms = w * (np.abs(x) + np.abs(t)) / np.maximum(x * (1 - x), 1e-12)
    else:
        pw = np.broadcast_to(np.array(a["pos_weight"], np.float64), x.shape) if "pos_weight" in a else np.ones(x.shape)
        lw = np.abs(1 + (pw - 1) * t)
        m = np.maximum(-x, 0)
        loss_terms = w * (np.abs(1 - t) * fin(x) + lw * (fin(m) + np.log(2)))
        sig = torch.sigmoid(xt).numpy()
        grad_terms = w * ((np.abs(pw * t) + np.abs(1 - t)) * sig + np.abs(pw * t))
    if red == "none":
        return loss_terms, grad_terms
    div = float(x.size) if (red == "mean" and x.size) else 1.0
    return np.array(loss_terms.sum() / div), grad_terms / div


def compute_references(cases):
    torch.set_num_threads(1)
    for c in cases:
        try:
            if c.expect_error and c.stricter:
                continue  # a deliberate refusal (docs/numerics.md): nothing to ask PyTorch
            if c.expect_error:
                try:
                    torch_eval(c, torch.float64)
                except Exception:  # noqa: BLE001 - any exception is PyTorch refusing the input
                    continue
                c.ref_error = "harness: PyTorch accepted this input, so it is not an error case"
                continue
            c.ref64 = torch_eval(c, torch.float64)
            if c.dtype == "float32":
                c.ref32 = torch_eval(c, torch.float32)
            with np.errstate(all="ignore"):
                c.scale = term_scales(c)
        except Exception as e:  # noqa: BLE001
            c.ref_error = f"harness: PyTorch failed on a case it should accept: {type(e).__name__}: {e}"


# ----------------------------------------------------------------------------- running xent

def case_dir(root, case):
    return os.path.join(root, re.sub(r"[^A-Za-z0-9_.-]+", "_", case.name))


def write_inputs(root, case):
    d = case_dir(root, case)
    os.makedirs(d, exist_ok=True)
    paths = {}
    for k, v in case.arrays.items():
        paths[k] = os.path.join(d, f"{k}.npy")
        np.save(paths[k], np.array(v, order="C"))  # C order, and 0-d stays 0-d
    return d, paths


def xent_command(xent, case, paths, out, grad):
    cmd = [xent, case.op]
    for k in ("input", "target", "weight", "pos_weight"):
        if k in paths:
            cmd += [ARRAY_FLAGS[k], paths[k]]
    o = case.opts
    if o.get("dim") is not None:
        cmd += ["--dim", str(o["dim"])]
    if o.get("ignore_index") is not None:
        cmd += ["--ignore-index", str(o["ignore_index"])]
    if o.get("reduction") is not None:
        cmd += ["--reduction", o["reduction"]]
    if o.get("label_smoothing") is not None:
        cmd += ["--label-smoothing", repr(float(o["label_smoothing"]))]
    cmd += ["--out", out]
    if grad:
        cmd += ["--grad-out", grad]
    return cmd


@dataclass
class Run:
    case: Case
    isa: str          # "" = not pinned
    threads: int      # 0 = not pinned
    with_grad: bool
    cmd: list
    env: dict
    out: str
    grad: str
    rc: int = None
    stderr: str = ""
    seconds: float = 0.0

    def shell(self):
        env = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + " ".join(shlex.quote(a) for a in self.cmd)


SENTINEL = b"xent torch_compare sentinel: must survive a failed run\n"


def make_run(xent, root, case, paths, isa, threads, with_grad):
    d = case_dir(root, case)
    tag = f"{isa or 'default'}.t{threads}.{'g' if with_grad else 'f'}"
    out = os.path.join(d, f"out.{tag}.npy")
    grad = os.path.join(d, f"grad.{tag}.npy") if with_grad else None
    env = {}
    if isa:
        env["XENT_ISA"] = isa
    if threads:
        env["XENT_THREADS"] = str(threads)
    return Run(case, isa, threads, with_grad, xent_command(xent, case, paths, out, grad), env, out, grad)


def execute(run):
    env = dict(os.environ)
    env.pop("XENT_ISA", None)
    env.pop("XENT_THREADS", None)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # xent links OpenBLAS; its thread start-up is not under test
    env.update(run.env)
    if run.case.expect_error:  # existing outputs must survive the failure untouched
        for p in (run.out, run.grad):
            if p:
                with open(p, "wb") as f:
                    f.write(SENTINEL)
    else:
        for p in (run.out, run.grad):
            if p and os.path.exists(p):
                os.unlink(p)
    t0 = time.perf_counter()
    try:
        r = subprocess.run(run.cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        run.rc, run.stderr = r.returncode, r.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        run.rc, run.stderr = "timeout", "timed out after 120 s"
    except OSError as e:
        run.rc, run.stderr = "oserror", str(e)
    run.seconds = time.perf_counter() - t0
    return run


# ----------------------------------------------------------------------------- comparison

def ulp32(v):
    return np.spacing(np.abs(v).astype(np.float32)).astype(np.float64)


def special_pattern(a):
    return np.where(np.isnan(a), 3, np.where(np.isposinf(a), 1, np.where(np.isneginf(a), 2, 0)))


def compare(got, ref64, ref_same, T, dtype):
    """-> (ok, worst err/allowed, max |err|, message). got: xent's array as float64."""
    if got.shape != ref64.shape:
        return False, np.inf, np.inf, f"shape {list(got.shape)}, expected {list(ref64.shape)}"
    if got.size == 0:
        return True, 0.0, 0.0, ""
    pg, pr = special_pattern(got), special_pattern(ref_same)
    if not np.array_equal(pg, pr):
        idx = np.argwhere(pg != pr)[0]
        i = tuple(idx)
        return (False, np.inf, np.inf,
                f"NaN/inf pattern differs ({int((pg != pr).sum())} elements), first at {list(idx)}: "
                f"xent {got[i]!r}, torch {ref_same[i]!r}")
    T = np.broadcast_to(np.asarray(T, np.float64), got.shape)
    T = np.where(np.isfinite(T), T, 0.0)  # an overflowing term sum says nothing; |ref| then rules
    both = pg == 0
    # Where torch64 is not finite but the case's dtype is (float32 only), compare with torch32.
    ref = np.where(np.isfinite(ref64), ref64, ref_same)
    with np.errstate(all="ignore"):
        err = np.where(both, np.abs(got - ref), 0.0)
        if dtype == "float64":
            allowed = TOL64 * np.maximum(np.abs(ref), T) + 8 * TINY64
        else:
            e32 = np.abs(ref_same - ref)
            allowed = np.maximum.reduce([2 * e32, 4 * ulp32(ref), 2 * EPS32 * T])
            allowed = np.where(allowed > 0, allowed, np.finfo(np.float32).smallest_subnormal)
        ratio = np.where(both, err / allowed, 0.0)
    worst = float(ratio.max())
    maxerr = float(err.max())
    if worst <= 1.0:
        return True, worst, maxerr, ""
    k = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return (False, worst, maxerr,
            f"{int((ratio > 1).sum())} of {got.size} elements out of tolerance; worst at {list(k)}: "
            f"xent {got[k]!r}, torch64 {ref64[k]!r}" + (f", torch32 {ref_same[k]!r}" if dtype == "float32" else "")
            + f", |err| {err[k]:.3g} > allowed {allowed[k]:.3g}")


def load_npy(path, dtype):
    a = np.load(path, allow_pickle=False)
    if a.dtype != np.dtype(dtype):
        raise ValueError(f"{os.path.basename(path)} has dtype {a.dtype}, expected {dtype}")
    return a.astype(np.float64)


def check_run(run):
    """-> (ok, message, stats) for one finished run."""
    c = run.case
    if c.expect_error:
        if run.rc != 2:
            return False, f"expected exit 2 (PyTorch raises), got {run.rc}; stderr: {run.stderr.strip()[:300]!r}", None
        if not run.stderr.strip():
            return False, "exit 2 but nothing on stderr", None
        for p in (run.out, run.grad):
            if p:
                with open(p, "rb") as f:
                    if f.read() != SENTINEL:
                        return False, f"failed run modified existing output {os.path.basename(p)}", None
        return True, "", None
    if run.rc != 0:
        return False, f"exit {run.rc}: {run.stderr.strip()[:400]}", None
    if run.isa and isa_warning(run.stderr):
        return False, f"XENT_ISA={run.isa} was not honoured: {run.stderr.strip()[:300]}", None
    stats = {}
    try:
        out = load_npy(run.out, c.dtype)
        grad = load_npy(run.grad, c.dtype) if run.grad else None
    except Exception as e:  # noqa: BLE001
        return False, f"cannot read xent's output: {e}", None
    msgs = []
    for what, got, k in (("loss/output", out, 0), ("gradient", grad, 1)):
        if got is None:
            continue
        ref64 = c.ref64[k]
        ref_same = c.ref32[k] if c.dtype == "float32" else ref64
        ok, worst, maxerr, msg = compare(got, ref64, ref_same, c.scale[k], c.dtype)
        stats[what] = (worst, maxerr)
        if not ok:
            msgs.append(f"{what}: {msg}")
    return not msgs, "; ".join(msgs), stats


def file_bits(path):
    with open(path, "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------- ISA discovery

def discover_isas(xent, probe_paths, probe_case, root):
    """Names XENT_ISA accepts. Sources, first that answers: a listing subcommand (`xent isa`,
    `xent bench --list-isas`, ...), or the warning the tool prints for an unknown XENT_ISA
    ("... (available: avx2, sse4, scalar) ..."). Each name is then checked to be honoured (exit 0 and
    no warning about XENT_ISA); "scalar" always exists."""
    candidates, how = [], "no listing found"
    for args in (["isa", "--list"], ["isa"], ["isas"], ["bench", "--list-isas"], ["--list-isas"]):
        try:
            r = subprocess.run([xent] + args, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            for tok in re.findall(r"[A-Za-z][A-Za-z0-9_]*", r.stdout.decode("utf-8", "replace")):
                if tok.lower() not in candidates and tok.lower() != "auto" and len(tok) <= 24:
                    candidates.append(tok.lower())
            if candidates:
                how = "from `xent " + " ".join(args) + "`"
                break
    if not candidates:
        r = execute(make_run(xent, root, probe_case, probe_paths, "no_such_isa_xyz", 0, False))
        m = re.search(r"available: ([A-Za-z0-9_, ]+)", r.stderr)
        if m:
            candidates = [n.strip().lower() for n in m.group(1).split(",") if n.strip()]
            how = "from the tool's warning for an unknown XENT_ISA"
    if "scalar" not in candidates:
        candidates.append("scalar")

    def honoured(name):
        r = execute(make_run(xent, root, probe_case, probe_paths, name, 0, False))
        return r.rc == 0 and not isa_warning(r.stderr)

    isas = [n for n in candidates if honoured(n)]
    return isas or ["scalar"], f"{how}; candidates {candidates}"


def isa_warning(stderr):
    """True if xent says the pinned XENT_ISA was not used."""
    return "XENT_ISA" in stderr


# ----------------------------------------------------------------------------- main

def family(case):
    op = case.op
    if case.expect_error:
        return "errors"
    if case.name.split(":", 1)[1].startswith("threads/"):
        return f"threads/{op}"
    if op == "cross-entropy":
        return "ce-prob" if case.arrays["target"].dtype.kind == "f" else "ce-index"
    return op


def plan_runs(xent, root, cases, paths_of, isas):
    runs = []
    for c in cases:
        if c.ref_error:
            continue
        if c.expect_error:
            runs.append(make_run(xent, root, c, paths_of[c.name], "", 0, True))
            continue
        for isa in isas:
            runs.append(make_run(xent, root, c, paths_of[c.name], isa, 0, True))
            # Without --grad-out the CLI calls a different library entry point only for
            # cross-entropy (cross_entropy_forward instead of cross_entropy_fused); elsewhere the
            # output comes from the same forward call either way.
            if c.op == "cross-entropy":
                runs.append(make_run(xent, root, c, paths_of[c.name], isa, 0, False))
            if c.threads:
                for n in THREAD_COUNTS:
                    runs.append(make_run(xent, root, c, paths_of[c.name], isa, n, True))
    return runs


def check_all(done, failures):
    """Compares every finished run; -> summary table {(isa, family, dtype): row}. Appends failures."""
    table = {}
    for r in done:
        c = r.case
        ok, msg, stats = check_run(r)
        key = (r.isa or "default", family(c), c.dtype)
        row = table.setdefault(key, {"cases": set(), "runs": 0, "fail": 0, "worst": 0.0, "maxerr": 0.0})
        row["cases"].add(c.name)
        row["runs"] += 1
        for worst, maxerr in (stats or {}).values():
            row["worst"] = max(row["worst"], worst)
            row["maxerr"] = max(row["maxerr"], maxerr)
        if not ok:
            row["fail"] += 1
            where = f"isa={r.isa or 'default'} threads={r.threads or 'default'} {'fused' if r.with_grad else 'forward'}"
            failures.append((c.name, where, msg, r.shell()))
    return table


def check_thread_bits(done, failures):
    """Output and gradient files must be the same bytes for every XENT_THREADS; -> comparisons made."""
    by_case = {}
    for r in done:
        if r.threads and r.rc == 0:
            by_case.setdefault((r.case.name, r.isa), []).append(r)
    n = 0
    for (name, isa), rs in by_case.items():
        base = rs[0]
        for r in rs[1:]:
            n += 1
            for a, b, what in ((base.out, r.out, "output"), (base.grad, r.grad, "gradient")):
                try:
                    same = file_bits(a) == file_bits(b)
                except OSError as e:
                    same, what = False, f"{what} ({e})"
                if not same:
                    failures.append((name, f"isa={isa}", f"{what} bits differ between XENT_THREADS={base.threads} "
                                     f"and XENT_THREADS={r.threads}", f"{base.shell()}\n      {r.shell()}"))
    return n


def print_table(table):
    print(f"\n{'isa':<10} {'family':<26} {'dtype':<8} {'cases':>5} {'runs':>5} {'fail':>5} "
          f"{'worst err/allowed':>18} {'max |err|':>10}")
    for key in sorted(table):
        row = table[key]
        print(f"{key[0]:<10} {key[1]:<26} {key[2]:<8} {len(row['cases']):>5} {row['runs']:>5} {row['fail']:>5} "
              f"{row['worst']:>18.3g} {row['maxerr']:>10.3g}")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xent", required=True, help="path to the xent binary")
    ap.add_argument("--seed", default="20240611", help="integer seed, or 'random' (printed either way)")
    ap.add_argument("--only", default=None, help="run only the cases whose name contains this (or matches it as a regex)")
    ap.add_argument("--isas", default=None, help="comma-separated XENT_ISA names (default: discover)")
    ap.add_argument("--jobs", type=int, default=2, help="xent processes run at once")
    ap.add_argument("--keep", action="store_true", help="keep all files, also on success")
    ap.add_argument("--list", action="store_true", help="list case names and exit")
    return ap.parse_args()


def main():
    args = parse_args()
    seed = int.from_bytes(os.urandom(4), "little") if args.seed == "random" else int(args.seed)
    t_start = time.perf_counter()
    print(f"torch_compare: seed {seed} (repeat with --seed {seed}); torch {torch.__version__}, numpy {np.__version__}")
    cases = build_cases(seed)
    if args.only:
        def selected(name):
            try:
                return args.only in name or re.search(args.only, name) is not None
            except re.error:
                return False
        cases = [c for c in cases if selected(c.name)]
    if args.list:
        for c in cases:
            print(c.name)
        return 0
    xent = os.path.abspath(args.xent)
    if not os.access(xent, os.X_OK):
        print(f"FAILED: xent binary {xent} not found or not executable")
        return 1

    t0 = time.perf_counter()
    compute_references(cases)
    t_ref = time.perf_counter() - t0

    root = tempfile.mkdtemp(prefix="xent_torch_")
    failures = []  # (case name, where, message, command)
    paths_of = {}
    for c in cases:
        _, paths_of[c.name] = write_inputs(root, c)
        if c.ref_error:
            failures.append((c.name, "-", c.ref_error, "(harness)"))
    probe = Case("isa-probe", "softmax", "float64", {"input": np.zeros((2, 3))}, {"dim": 1})
    _, probe_paths = write_inputs(root, probe)
    if args.isas:
        isas, how = args.isas.split(","), "from --isas"
    else:
        isas, how = discover_isas(xent, probe_paths, probe, root)
    print(f"torch_compare: instruction sets {isas} ({how})")

    runs = plan_runs(xent, root, cases, paths_of, isas)
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = list(pool.map(execute, runs))
    t_xent = time.perf_counter() - t0

    table = check_all(done, failures)
    n_thread_checks = check_thread_bits(done, failures)
    print_table(table)
    failed_cases = sorted({f[0] for f in failures})
    print(f"\ntorch_compare: {len(cases)} cases, {len(done)} xent runs on {len(isas)} instruction set(s), "
          f"{n_thread_checks} thread-count bit comparisons; torch {t_ref:.1f} s, xent {t_xent:.1f} s, "
          f"total {time.perf_counter() - t_start:.1f} s; seed {seed}")
    if not args.keep:  # keep only what reproduces a failure
        for c in cases + [probe]:
            if c.name not in failed_cases:
                shutil.rmtree(case_dir(root, c), ignore_errors=True)
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
    if not failures:
        print("torch_compare: PASSED" + (f" (files kept in {root})" if args.keep else ""))
        return 0
    n_quirk = sum(1 for n in failed_cases if "quirk" in n)
    print(f"\ntorch_compare: FAILED: {len(failed_cases)} case(s), {len(failures)} failing run(s)"
          + (f"; {n_quirk} of the cases are 'quirk' cases (PyTorch accepts an odd input)" if n_quirk else ""))
    print(f"The failing cases' files are kept in {root}; repeat one case with:\n  {sys.argv[0]} --xent {args.xent} "
          f"--seed {seed} --only '<case name>'")
    for name, where, msg, cmd in failures:
        print(f"FAIL {name} [{where}]\n      {msg}\n      {cmd}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
