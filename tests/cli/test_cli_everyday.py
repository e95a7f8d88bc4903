#!/usr/bin/python3
"""test_cli_everyday.py: end-to-end tests of `xent`'s everyday paths: where outputs go (links
followed and kept, FIFOs and /dev/stdout-like paths written directly, directories and missing
parents refused, no empty --out directory after a refused train), results printed on the
terminal (NumPy-style text, `--out -` as .npy bytes), --version and `xent info`, "did you mean",
ranges in words, the required --dim at rank >= 3, and the seeds' probability cross-entropy, nll
and bce explanations with the BCE curve.

Oracles: NumPy float64 formulas and the seed's published numbers; the file system itself (lstat,
readlink) for the output-path cases. Every path lives in a fresh temporary directory: /dev/stdout
is reached only through our own link to it, never named so that it could be replaced.

Usage: test_cli_everyday.py path/to/xent      (exit 0 pass, 1 fail, 77 skip)
"""
import io
import json
import os
import stat
import subprocess
import threading

from cli_harness import TMP, XENT, check, path, run, run_tests, save  # first: skips without numpy

import numpy as np  # noqa: E402


def one_error_line(p, rc, fragments, what):
    err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode()
    lines = err.splitlines()
    check(p.returncode == rc, f"{what}: exit {p.returncode}, expected {rc}; stderr {err!r}")
    check(len(lines) == 1 and lines[0].startswith("xent: error: "), f"{what}: expected one error line, got {err!r}")
    for f in fragments:
        check(f in err, f"{what}: stderr {err.strip()!r} lacks {f!r}")


X = np.array([[1, 2, 3], [2, 4, 6]], np.float32)
Y = np.array([0, 2])


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- where outputs go ------------------------------------------------------------------------------

def test_output_paths():
    xp = save("x.npy", X)
    want = softmax(X.astype(np.float64))

    # A relative symlink: the link stays a link, same target, and the target has the new content.
    with open(path("real.npy"), "wb") as f:
        f.write(b"old")
    os.symlink("real.npy", path("link.npy"))
    p = run("softmax", "--input", xp, "--out", path("link.npy"))
    check(p.returncode == 0, f"softmax --out link: {p.stderr!r}")
    check(os.path.islink(path("link.npy")) and os.readlink(path("link.npy")) == "real.npy",
          "the --out symlink was replaced or changed")
    check(np.allclose(np.load(path("real.npy")), want, rtol=1e-6), "the link's target lacks the new content")
    check(not [n for n in os.listdir(TMP) if ".tmp." in n], "a temporary was left behind")

    # A dangling link: its target is created, the link kept.
    os.symlink("made.npy", path("dangling.npy"))
    p = run("softmax", "--input", xp, "--out", path("dangling.npy"))
    check(p.returncode == 0 and os.path.islink(path("dangling.npy")) and os.path.isfile(path("made.npy")),
          f"dangling link: {p.stderr!r}")

    # Our own link to /dev/stdout, in a pipe: the bytes arrive on stdout, the link is kept.
    os.symlink("/dev/stdout", path("to_stdout"))
    p = run("softmax", "--input", xp, "--out", path("to_stdout"), stdout_bytes=True)
    check(p.returncode == 0, f"--out link-to-/dev/stdout: exit {p.returncode}, {p.stderr!r}")
    got = np.load(io.BytesIO(p.stdout)) if p.stdout.startswith(b"\x93NUMPY") else None
    check(got is not None and np.allclose(got, want, rtol=1e-6), "--out link-to-/dev/stdout: no .npy on stdout")
    check(os.path.islink(path("to_stdout")) and os.readlink(path("to_stdout")) == "/dev/stdout",
          "the link to /dev/stdout was replaced")
    # ... and through a real shell pipe into another process.
    sh = subprocess.run(f"'{XENT}' softmax --input '{xp}' --out '{path('to_stdout')}' | od -c | head -1",
                        shell=True, capture_output=True, text=True, timeout=60)
    check("N   U   M   P   Y" in sh.stdout, f"pipe through od: {sh.stdout!r} {sh.stderr!r}")

    # `--out -`: the .npy bytes on stdout; also for --grad-out.
    p = run("cross-entropy", "--input", xp, "--target", save("y.npy", Y), "--out", "-", stdout_bytes=True)
    check(p.returncode == 0 and abs(float(np.load(io.BytesIO(p.stdout))) - 1.2752688) < 1e-6,
          f"--out - : {p.stdout[:60]!r} {p.stderr!r}")
    p = run("cross-entropy", "--input", xp, "--target", path("y.npy"), "--out", path("l.npy"), "--grad-out", "-",
            stdout_bytes=True)
    g = np.load(io.BytesIO(p.stdout)) if p.returncode == 0 else None
    check(g is not None and g.shape == (2, 3), f"--grad-out - : {p.stderr!r}")
    p = run("cross-entropy", "--input", xp, "--target", path("y.npy"), "--out", "-", "--grad-out", "-")
    one_error_line(p, 2, ["same file"], "--out - --grad-out -")

    # A FIFO is written directly and stays a FIFO.
    os.mkfifo(path("fifo"))
    got = {}

    def reader():
        with open(path("fifo"), "rb") as f:
            got["bytes"] = f.read()

    t = threading.Thread(target=reader)
    t.start()
    p = run("softmax", "--input", xp, "--out", path("fifo"))
    t.join(timeout=60)
    check(p.returncode == 0, f"--out fifo: {p.stderr!r}")
    check(stat.S_ISFIFO(os.lstat(path("fifo")).st_mode), "the FIFO was replaced")
    check(got.get("bytes", b"").startswith(b"\x93NUMPY") and
          np.allclose(np.load(io.BytesIO(got["bytes"])), want, rtol=1e-6), "the FIFO's reader got no .npy")

    # A character device through our own link (/dev/null): written, the link kept.
    os.symlink("/dev/null", path("null"))
    p = run("softmax", "--input", xp, "--out", path("null"))
    check(p.returncode == 0 and os.path.islink(path("null")), f"--out link to /dev/null: {p.stderr!r}")

    # A directory, a missing parent: exit 2, one line, nothing created.
    os.mkdir(path("adir"))
    one_error_line(run("softmax", "--input", xp, "--out", path("adir")), 2, ["--out", "is a directory"], "--out dir")
    check(os.listdir(path("adir")) == [], "something was created in the --out directory")
    one_error_line(run("softmax", "--input", xp, "--out", path("nodir/y.npy")), 2, ["does not exist"],
                   "--out in a missing directory")
    check(not os.path.exists(path("nodir")), "the missing directory was created")

    # train refused before training starts leaves no --out directory behind.
    p = run("train", "--data", path("no_data_here"), "--out", path("run_out"), "--epochs", "1")
    check(p.returncode != 0 and not os.path.exists(path("run_out")),
          f"train that failed before training left {path('run_out')} (exit {p.returncode})")
    with open(path("a_file"), "w") as f:
        f.write("x")
    one_error_line(run("train", "--data", path("no_data_here"), "--out", path("a_file")), 2,
                   ["not a directory"], "train --out a file")


# --- results on the terminal ------------------------------------------------------------------------

def test_printed_results():
    xp = save("x.npy", X)
    yp = save("y.npy", Y)
    p = run("cross-entropy", "--input", xp, "--target", yp)
    check(p.returncode == 0 and p.stdout.strip() == "1.2752688", f"printed loss: {p.stdout!r} {p.stderr!r}")
    p = run("softmax", "--input", xp)
    want = np.array2string(softmax(X.astype(np.float64)).astype(np.float32))
    check(p.returncode == 0 and p.stdout.strip() == want, f"printed softmax:\n{p.stdout}\nwant\n{want}")
    p = run("cross-entropy", "--input", xp, "--target", yp, "--grad-out")
    check(p.returncode == 0 and p.stdout.startswith("loss:\n1.2752688\n") and "gradient:\n[[" in p.stdout,
          f"printed loss and gradient: {p.stdout!r}")
    big = np.random.default_rng(1).random((2000, 10)).astype(np.float32)
    p = run("softmax", "--input", save("big.npy", big), "--dim", "1")
    lines = p.stdout.splitlines()
    check(p.returncode == 0 and "..." in p.stdout and lines[-1] == "shape (2000, 10), dtype float32"
          and len(lines) < 12, f"summarised large array: {p.stdout!r}")


def test_version_and_info():
    p = run("--version")
    check(p.returncode == 0 and p.stdout.startswith("xent ") and p.stdout.strip().count(".") == 2,
          f"--version: {p.stdout!r}")
    version = p.stdout.strip()
    p = run("--help")
    check(version in p.stdout, f"--help lacks {version!r}")
    p = run("info")
    check(p.returncode == 0 and version in p.stdout and "isa:" in p.stdout and "threads:" in p.stdout,
          f"xent info: {p.stdout!r}")
    env = dict(os.environ, XENT_THREADS="1")
    p = subprocess.run([XENT, "info"], capture_output=True, text=True, env=env, timeout=30)
    check("threads: 1 " in p.stdout and p.stderr == "", f"XENT_THREADS=1 xent info: {p.stdout!r} {p.stderr!r}")
    # Bad values: the tool (not the library) warns once, in one line, and carries on with the
    # fallbacks it names.
    env = dict(os.environ, XENT_ISA="AVX9000", XENT_THREADS="many")
    p = subprocess.run([XENT, "info"], capture_output=True, text=True, env=env, timeout=30)
    lines = p.stderr.splitlines()
    check(p.returncode == 0 and len(lines) == 1 and lines[0].startswith("xent: warning: XENT_ISA=AVX9000 is not "
                                                                        "available on this CPU (available: ")
          and "XENT_THREADS=many is not a positive integer; using " in lines[0] and "isa: " in p.stdout,
          f"XENT_ISA=AVX9000 XENT_THREADS=many xent info: exit {p.returncode}, {p.stdout!r} {p.stderr!r}")
    # OpenBLAS's kernels are named; when they predate the CPU's AVX2 (forced here with Prescott's,
    # OpenBLAS's fallback for a CPU model it does not know) the tool says which OPENBLAS_CORETYPE to
    # set: in `xent info`, and once on stderr from a command that runs BLAS products, only after its
    # input was read (bad input still gets its one error line). Kernels that fit get no hint.
    with open("/proc/cpuinfo") as f:
        flags = set(f.read().split())
    avx2 = {"avx2", "fma"} <= flags
    better = "SkylakeX" if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags else "Haswell"
    for core in ("Prescott", "Haswell") if avx2 else ("Prescott",):
        env = dict(os.environ, OPENBLAS_CORETYPE=core)
        p = subprocess.run([XENT, "info"], capture_output=True, text=True, env=env, timeout=30)
        hinted = f"with OPENBLAS_CORETYPE={better} in the environment" in p.stdout
        check(p.returncode == 0 and f"blas: OpenBLAS, {core} kernels" in p.stdout and hinted == (avx2 and core == "Prescott"),
              f"OPENBLAS_CORETYPE={core} xent info: {p.stdout!r}")
    h, w = save("lh.npy", np.ones((4, 3), np.float32)), save("lw.npy", np.ones((5, 3), np.float32))
    t = save("lt.npy", np.array([0, 1, 2, 4]))
    env = dict(os.environ, OPENBLAS_CORETYPE="Prescott")
    p = subprocess.run([XENT, "linear-cross-entropy", "--hidden", h, "--weight", w, "--target", t, "--out", path("ll.npy")],
                       capture_output=True, text=True, env=env, timeout=30)
    notes = [line for line in p.stderr.splitlines() if line.startswith("xent: note: ")]
    check(p.returncode == 0 and len(p.stderr.splitlines()) == (1 if avx2 else 0) == len(notes)
          and abs(float(np.load(path("ll.npy"))) - np.log(5)) < 1e-6,
          f"OPENBLAS_CORETYPE=Prescott xent linear-cross-entropy: exit {p.returncode}, stderr {p.stderr!r}")
    p = subprocess.run([XENT, "linear-cross-entropy", "--hidden", path("missing.npy"), "--weight", w, "--target", t],
                       capture_output=True, text=True, env=env, timeout=30)
    one_error_line(p, 2, ["missing.npy"], "OPENBLAS_CORETYPE=Prescott xent linear-cross-entropy with a missing input")


# --- a CLI that helps -------------------------------------------------------------------------------

def test_suggestions_and_words():
    xp = save("x.npy", X)
    yp = save("y.npy", Y)
    one_error_line(run("softmx", "--input", xp), 2, ["'softmx'", "did you mean 'softmax'?"], "xent softmx")
    # A misspelled required option is reported as unknown, with the right name, not as --input missing.
    p = run("softmax", "--inptu", xp)
    one_error_line(p, 2, ["unknown option '--inptu'", "did you mean '--input'?"], "--inptu")
    check("required" not in p.stderr, f"--inptu reported as a missing required option: {p.stderr!r}")
    one_error_line(run("cross-entropy", "--input", xp, "--target", yp, "--label_smoothing", "0.1"), 2,
                   ["did you mean '--label-smoothing'?"], "--label_smoothing")
    one_error_line(run("cross-entropy", "--input", xp, "--target", yp, "--label-smoothing=0.1", "--zzzzzz"), 2,
                   ["unknown option '--zzzzzz'"], "--zzzzzz")
    one_error_line(run("explain", "cross-entropi"), 2, ["did you mean 'cross-entropy'?", "softmax"],
                   "explain cross-entropi")
    for args in (["explain"], ["explain", "nonsense"]):
        p = run(*args)
        one_error_line(p, 2, ["cross-entropy", "softmax", "nll", "bce"], " ".join(args))
    # Ranges in words, not CLI11's "Value 0 not in range ...".
    p = run("softmax", "--input", xp, "--threads", "0")
    one_error_line(p, 2, ["--threads must be at least 1"], "--threads 0")
    check("not in range" not in p.stderr, f"raw range message: {p.stderr!r}")
    for args in (["bench", "softmax", "--threads", "0"], ["bench", "linear-cross-entropy", "--threads", "0"]):
        one_error_line(run(*args), 2, ["--threads must be at least 1; got 0"], " ".join(args))
    one_error_line(run("train", "--data", path("nothing"), "--checkpoint", path("nodir/c.ckpt"), "--out",
                       path("ck_out")), 2, ["--checkpoint", "does not exist"], "train --checkpoint in a missing directory")
    check(not os.path.exists(path("ck_out")), "train refused for --checkpoint left its --out directory")
    # --dim at rank >= 3.
    x3 = save("x3.npy", np.zeros((2, 3, 4)))
    one_error_line(run("log-softmax", "--input", x3), 2, ["--dim is required"], "rank 3 without --dim")
    p = run("logsumexp", "--input", x3, "--dim", "-1")
    check(p.returncode == 0 and "1.38629436" in p.stdout, f"logsumexp rank 3 --dim -1: {p.stdout!r}")
    # The linear bench's one spelling; the old one is unknown.
    p = run("bench", "linear-cross-entropy", "--help")
    check(p.returncode == 0 and "--tokens" in p.stdout, "xent bench linear-cross-entropy --help")
    one_error_line(run("bench-linear-cross-entropy"), 2, ["unknown command"], "bench-linear-cross-entropy")
    p = run("linear-cross-entropy", "--help")
    check("--class-weight is given" in p.stdout, "linear-cross-entropy --reduction help names --class-weight")


# --- the seeds: probabilities, one-hot targets, nll, bce ---------------------------------------------

SEED_P = np.array([[.25, .25, .25, .25], [.01, .01, .01, .96]])
SEED_ANSWER = 0.71355817782  # the seed's "Correct answer"


def test_seeds():
    pp = save("seed_p.npy", SEED_P)
    idx = save("seed_idx.npy", np.array([3, 3]))
    onehot = save("seed_onehot.npy", np.array([[0, 0, 0, 1], [0, 0, 0, 1]], np.float64))
    for tp, what in [(idx, "class indices"), (onehot, "one-hot targets")]:
        p = run("cross-entropy", "--input", pp, "--input-kind", "probabilities", "--target", tp)
        got = float(p.stdout) if p.returncode == 0 else None
        check(got is not None and abs(got - SEED_ANSWER) < 1e-11, f"seed with {what}: {p.stdout!r} {p.stderr!r}")
    # No row is renormalised (row 1 sums to 0.99): the logits path on log(p) would renormalise and differ.
    p = run("cross-entropy", "--input", save("seed_logp.npy", np.log(SEED_P)), "--target", onehot)
    check(p.returncode == 0 and abs(float(p.stdout) - SEED_ANSWER) > 1e-3,
          f"cross-entropy on log(p) as logits should renormalise (0.70853), got {p.stdout!r}")
    # The gradient against the formula d/dp of mean(-log p[n, y]) = -1 / (N p) at the picked entries.
    p = run("cross-entropy", "--input", pp, "--input-kind", "probabilities", "--target", idx, "--out",
            path("l.npy"), "--grad-out", path("g.npy"))
    want = np.zeros_like(SEED_P)
    want[:, 3] = -1 / (2 * SEED_P[:, 3])
    check(p.returncode == 0 and np.allclose(np.load(path("g.npy")), want, rtol=1e-12), "probability grad")
    # Soft targets and --reduction none against NumPy; --eps clamps p from below; zeros cost 100 by default.
    rng = np.random.default_rng(3)
    q = rng.random((5, 4)); q /= q.sum(1, keepdims=True)
    t = rng.random((5, 4)); t /= t.sum(1, keepdims=True)
    p = run("cross-entropy", "--input", save("q.npy", q), "--input-kind", "probabilities", "--target",
            save("t.npy", t), "--reduction", "none", "--out", path("none.npy"))
    check(p.returncode == 0 and np.allclose(np.load(path("none.npy")), -(t * np.log(q)).sum(1), rtol=1e-12),
          f"soft targets, reduction none: {p.stderr!r}")
    z = save("z.npy", np.array([[0.0, 1.0]]))
    p = run("cross-entropy", "--input", z, "--input-kind", "probabilities", "--target", save("t0.npy", np.array([0])))
    check(p.returncode == 0 and abs(float(p.stdout) - 100.0) < 1e-12, f"p = 0 costs 100: {p.stdout!r}")
    p = run("cross-entropy", "--input", z, "--input-kind", "probabilities", "--target", path("t0.npy"), "--eps", "1e-7")
    check(p.returncode == 0 and abs(float(p.stdout) + np.log(1e-7)) < 1e-9, f"--eps 1e-7: {p.stdout!r}")
    one_error_line(run("cross-entropy", "--input", save("bad.npy", np.array([[1.5, -0.5]])), "--input-kind",
                       "probabilities", "--target", path("t0.npy")), 2, ["[0, 1]", "1.5"], "probabilities outside [0, 1]")

    # explain: the loop form, the dot-product form and the library side by side.
    for target in ["[3,3]", "[[0,0,0,1],[0,0,0,1]]"]:
        p = run("explain", "cross-entropy", "--probs", "[[.25,.25,.25,.25],[.01,.01,.01,.96]]", "--target", target,
                "--dtype", "float64")
        check(p.returncode == 0 and p.stdout.count("0.71355817782") == 3 and "loop form" in p.stdout
              and "dot-product form" in p.stdout and "diagonal" in p.stdout,
              f"explain --probs {target}: {p.stdout[-400:]!r}")
    p = run("explain", "nll", "--logp", "[[-2.4076,-1.4076,-0.4076],[-4.1429,-2.1429,-0.1429]]", "--target", "[0,2]")
    check(p.returncode == 0 and "1.2752" in p.stdout and "equals" in p.stdout, f"explain nll: {p.stdout[-300:]!r}")
    # Logits that look like probabilities: a warning on stderr, the explanation still runs.
    p = run("explain", "cross-entropy", "--logits", "[[0.09,0.2447,0.6653],[0.0159,0.1173,0.8668]]", "--target",
            "[0,2]")
    check(p.returncode == 0 and "warning" in p.stderr and "--probs" in p.stderr, f"probability-like logits: {p.stderr!r}")
    p = run("explain", "cross-entropy", "--logits", "[[1,2,3],[2,4,6]]", "--target", "[0,2]")
    check(p.returncode == 0 and p.stderr == "", f"real logits warned: {p.stderr!r}")
    # bce: the -100 clamp in the table, the curve as PNG and SVG.
    p = run("explain", "bce", "--probs", "[0.0, 0.1, 0.9, 1.0]", "--target", "[1, 1, 1, 0]", "--png", path("b.png"),
            "--svg", path("b.svg"), "--dtype", "float64")
    want = np.mean([100, -np.log(0.1), -np.log(0.9), 100])
    check(p.returncode == 0 and f"{want:.4f}" in p.stdout and "equals" in p.stdout, f"explain bce: {p.stdout!r}")
    png = open(path("b.png"), "rb").read() if os.path.exists(path("b.png")) else b""
    svg = open(path("b.svg"), "rb").read() if os.path.exists(path("b.svg")) else b""
    check(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10000, f"bce PNG: {len(png)} bytes")
    check(b"<svg" in svg and len(svg) > 10000, f"bce SVG: {len(svg)} bytes")
    one_error_line(run("explain", "bce", "--probs", "[0.5]", "--target", "[1]", "--png", path("adir")), 2,
                   ["--png", "is a directory"], "explain bce --png a directory")


# --- predict and evaluate on a small synthetic IDX dataset -------------------------------------------

def write_idx(name, array):
    import struct
    a = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path(name), "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, a.ndim))
        f.write(struct.pack(">" + "I" * a.ndim, *a.shape))
        f.write(a.tobytes())
    return path(name)


def test_predict_and_evaluate():
    rng = np.random.default_rng(5)
    d = path("idx")
    os.makedirs(d)
    C, H, W = 4, 6, 5
    for split, n in [("train", 200), ("t10k", 60)]:
        y = rng.integers(0, C, size=n)
        x = rng.integers(0, 60, size=(n, H, W))
        for i in range(n):  # a bright column per class, learnable in one epoch
            x[i, :, y[i]] = 250
        write_idx(f"idx/{split}-images-idx3-ubyte", x)
        write_idx(f"idx/{split}-labels-idx1-ubyte", y)
    model = path("idx_run/model.safetensors")
    p = run("train", "--data", d, "--out", path("idx_run"), "--epochs", "2", "--no-report", "-q")
    check(p.returncode == 0 and os.path.exists(model), f"train on the synthetic set: {p.stderr!r}")
    accs = []
    for k in [1, 2, C]:
        p = run("evaluate", "--model", model, "--data", d, "--top-k", k, "--json")
        j = json.loads(p.stdout) if p.returncode == 0 else {}
        accs.append(j.get("top_k_accuracy", j.get("accuracy")))
        if k == 1:
            check("top_k" not in j and "accuracy" in j, f"evaluate --top-k 1: {j}")
    check(accs[0] <= accs[1] <= accs[2] == 1.0, f"top-k accuracy not monotone up to 1 at k = C: {accs}")
    one_error_line(run("evaluate", "--model", model, "--data", d, "--top-k", "0"), 2, ["--top-k must be at least 1"],
                   "evaluate --top-k 0")
    images = path("idx/t10k-images-idx3-ubyte")
    labels = np.frombuffer(open(path("idx/t10k-labels-idx1-ubyte"), "rb").read()[8:], np.uint8)
    p = run("predict", "--model", model, "--images", images, "--index", 3, "--show", "--png", path("img.png"))
    check(p.returncode == 0 and f"true label: {labels[3]} " in p.stdout, f"predict true label: {p.stdout!r} {p.stderr!r}")
    check(sum(1 for line in p.stdout.splitlines() if line.startswith("  ") and len(line) == 2 + 2 * W) >= H,
          f"predict --show drew no {H} x {W} image: {p.stdout!r}")
    png = open(path("img.png"), "rb").read() if os.path.exists(path("img.png")) else b""
    check(png.startswith(b"\x89PNG"), "predict --png wrote no PNG")
    p = run("predict", "--model", model, "--images", images, "--index", 5, "--json")
    j = json.loads(p.stdout) if p.returncode == 0 else {}
    check(j.get("label") == int(labels[5]) and "correct" in j, f"predict --json label: {j}")
    one_error_line(run("predict", "--model", model, "--images", images, "--top", "0"), 2, ["--top must be at least 1"],
                   "predict --top 0")


def main():
    run_tests([test_output_paths, test_printed_results, test_version_and_info, test_suggestions_and_words,
               test_seeds, test_predict_and_evaluate])


if __name__ == "__main__":
    main()
