"""test_features_cli.py: `xent train`, `evaluate` and `predict` on feature files (.npy and CSV)
generated here (Gaussian blobs with features of different scales and offsets), end to end:

- L-BFGS on raw features (--normalize none) against scikit-learn's LogisticRegression (lbfgs,
  multinomial, the same C) on the same float32 rows: the objective, recomputed here in float64 from
  both models' weights, is at least as low as scikit-learn's (within 1e-6 relative in float64,
  1e-5 in float32), and the test predictions agree.
- --normalize standardize (CSV): the mean and std stored in the model are the training rows'
  (NumPy float64, ddof 0); the optimum equals scikit-learn's on StandardScaler'd rows; `predict`
  gives NumPy's softmax of the stored normalization and weights; `evaluate` gives NumPy's accuracy.
- Every bad input (rows, labels, lengths, dtypes, empty files, kinds) exits 2 with one line and
  leaves no output directory.

Skips (77) without numpy; the scikit-learn comparisons are skipped (said so) without sklearn.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from cli_harness import TMP, check, np, path, run, run_tests  # noqa: E402

try:
    from sklearn.linear_model import LogisticRegression
except ImportError:
    LogisticRegression = None

C_CLASSES, D = 4, 6
SCALE = np.array([1.0, 3.0, 0.5, 10.0, 2.0, 1.0])
OFFSET = np.array([5.0, -20.0, 0.0, 100.0, 1.0, -3.0])


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C_CLASSES, n)
    centers = np.random.default_rng(99).normal(size=(C_CLASSES, D)) * 2.0
    x = (centers[y] + rng.normal(size=(n, D))) * SCALE + OFFSET
    return x.astype(np.float32), y.astype(np.int64)


XTR, YTR = blobs(900, 1)
XTE, YTE = blobs(300, 2)


def write_csv(name, x, y, label_first=False, label_name="label"):
    with open(path(name), "w") as f:
        cols = [f"f{k}" for k in range(x.shape[1])]
        f.write(",".join([label_name] + cols if label_first else cols + [label_name]) + "\n")
        for row, lab in zip(x, y):
            vals = [repr(float(v)) for v in row]  # float32 values, exactly
            f.write(",".join([str(lab)] + vals if label_first else vals + [str(lab)]) + "\n")
    return path(name)


def read_safetensors(p):
    with open(p, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {"__metadata__": header.pop("__metadata__", {})}
    for k, v in header.items():
        a, b = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(v["shape"])
    return out


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def objective(x, y, w, b, C):
    """scikit-learn's objective divided by N, in float64: mean CE + ||W||^2 / (2 C N)."""
    z = x.astype(np.float64) @ w.astype(np.float64).T + b.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))
    return float(np.mean(lse - z[np.arange(len(y)), y]) + (w.astype(np.float64) ** 2).sum() / (2 * C * len(y)))


def model_inputs(model, x):
    """The rows as the model sees them: (x - mean) / std in float32 when it standardises."""
    if "input_mean" in model:
        return (x.astype(np.float32) - model["input_mean"]) / model["input_std"]
    return x.astype(np.float32)


def train_ok(out, *args):
    r = run("train", *args, "--out", out, "--no-report", "--threads", "2")
    check(r.returncode == 0, f"train {' '.join(map(str, args))}: rc {r.returncode}: {r.stderr.strip()}")
    return read_safetensors(os.path.join(TMP, out, "model.safetensors")) if r.returncode == 0 else None


def sklearn_fit(x, y, C):
    clf = LogisticRegression(C=C, solver="lbfgs", multi_class="multinomial", tol=1e-10, max_iter=20000)
    clf.fit(x.astype(np.float64), y)
    return clf


def test_npy_lbfgs_matches_sklearn():
    xs, ys = path("x.npy"), path("y.npy")
    np.save(xs, XTR)
    np.save(ys, YTR)
    np.save(path("xt.npy"), XTE.astype(np.float64))  # float64 features are read too
    np.save(path("yt.npy"), YTE.astype(np.int32))
    C = 0.5
    runs = {}
    for dtype in ("float64", "float32"):
        runs[dtype] = train_ok(f"npy_{dtype}", "--train", "x.npy", "--train-labels", "y.npy", "--test", "xt.npy",
                               "--test-labels", "yt.npy", "--optimizer", "lbfgs", "--C", C, "--normalize", "none",
                               "--dtype", dtype, "--tol", "1e-7")
    if None in runs.values():
        return
    check(runs["float64"]["__metadata__"].get("normalization") == "none", "the model records normalization none")
    check("input_mean" not in runs["float64"], "no mean/std tensors for normalization none")
    if LogisticRegression is None:
        print("SKIP: scikit-learn is not importable; the optimum is not compared")
        return
    clf = sklearn_fit(XTR, YTR, C)
    f_sk = objective(XTR, YTR, clf.coef_, clf.intercept_, C)
    for dtype, rel in (("float64", 1e-6), ("float32", 1e-5)):
        m = runs[dtype]
        f_x = objective(XTR, YTR, m["weight"], m["bias"], C)
        print(f"  {dtype}: objective xent {f_x:.12g}, scikit-learn {f_sk:.12g}")
        check(f_x <= f_sk * (1 + rel), f"{dtype}: xent's objective {f_x:.10g} is above scikit-learn's {f_sk:.10g} (rel {rel})")
        check(f_x >= f_sk * (1 - 1e-4), f"{dtype}: xent's objective {f_x:.10g} is implausibly below scikit-learn's {f_sk:.10g}")
        pred_x = np.argmax(XTE.astype(np.float64) @ m["weight"].T.astype(np.float64) + m["bias"], axis=1)
        agree = np.mean(pred_x == clf.predict(XTE.astype(np.float64)))
        check(agree >= 0.99, f"{dtype}: test predictions agree with scikit-learn's on {agree:.4f} of rows")
        with open(os.path.join(TMP, f"npy_{dtype}", "metrics.json")) as f:
            acc = json.load(f)["final"]["test_accuracy"]
        z = model_inputs(m, XTE) @ m["weight"].T + m["bias"]
        check(abs(acc - np.mean(np.argmax(z, axis=1) == YTE)) < 1e-12, f"{dtype}: metrics.json test accuracy {acc} is NumPy's")


def test_csv_standardize_and_predict_round_trip():
    write_csv("train.csv", XTR, YTR, label_first=True, label_name="species")
    write_csv("test.csv", XTE, YTE, label_first=True, label_name="species")
    C = 1.0
    m = train_ok("csv_std", "--train", "train.csv", "--test", "test.csv", "--label-column", "species", "--optimizer",
                 "lbfgs", "--C", C, "--dtype", "float64", "--tol", "1e-7")
    if m is None:
        return
    check(m["__metadata__"].get("normalization") == "standardize", "standardize is the default for float features")
    mean, std = XTR.astype(np.float64).mean(axis=0), XTR.astype(np.float64).std(axis=0)
    check(np.allclose(m["input_mean"], mean, rtol=1e-6, atol=1e-6), f"stored mean {m['input_mean']} vs NumPy {mean}")
    check(np.allclose(m["input_std"], std, rtol=1e-6), f"stored std {m['input_std']} vs NumPy {std}")
    if LogisticRegression is not None:
        xs = model_inputs(m, XTR)
        clf = sklearn_fit(xs, YTR, C)
        f_sk = objective(xs, YTR, clf.coef_, clf.intercept_, C)
        f_x = objective(xs, YTR, m["weight"], m["bias"], C)
        check(f_sk * (1 - 1e-4) <= f_x <= f_sk * (1 + 1e-6),
              f"standardized: xent's objective {f_x:.10g} vs scikit-learn's {f_sk:.10g} on the same rows")
    else:
        print("SKIP: scikit-learn is not importable; the standardized optimum is not compared")
    # predict: NumPy's softmax of the stored normalization and weights, for rows of the CSV.
    p_np = softmax(model_inputs(m, XTE).astype(np.float64) @ m["weight"].T.astype(np.float64) + m["bias"])
    for i in (0, 7, 123, 299):
        r = run("predict", "--model", "csv_std/model.safetensors", "--features", "test.csv", "--label-column", "species",
                "--index", i, "--top", C_CLASSES, "--json")
        check(r.returncode == 0, f"predict row {i}: {r.stderr.strip()}")
        if r.returncode != 0:
            continue
        j = json.loads(r.stdout)
        got = np.zeros(C_CLASSES)
        for t in j["top"]:
            got[t["class"]] = t["probability"]
        check(np.allclose(got, p_np[i], atol=2e-6), f"predict row {i}: {got} vs NumPy {p_np[i]}")
        check(j["label"] == YTE[i], f"predict row {i}: true label {j['label']} vs {YTE[i]}")
    # A CSV without a label column: every column is a feature (rows to predict).
    with open(path("nolabel_rows.csv"), "w") as f:
        f.write(",".join(f"f{k}" for k in range(D)) + "\n" + ",".join(repr(float(v)) for v in XTE[7]) + "\n")
    r = run("predict", "--model", "csv_std/model.safetensors", "--features", "nolabel_rows.csv", "--json")
    check(r.returncode == 0 and json.loads(r.stdout)["predicted"] == int(np.argmax(p_np[7])) and "label" not in json.loads(r.stdout),
          f"predict on an unlabeled CSV row: {r.stdout.strip()[:200]} {r.stderr.strip()}")
    # .npy rows to predict, without labels.
    np.save(path("rows.npy"), XTE[:5])
    r = run("predict", "--model", "csv_std/model.safetensors", "--features", "rows.npy", "--index", 4, "--json")
    check(r.returncode == 0 and json.loads(r.stdout)["predicted"] == int(np.argmax(p_np[4])),
          f"predict on .npy rows: {r.stdout.strip()[:200]} {r.stderr.strip()}")
    # evaluate: NumPy's accuracy, from the CSV and from the same rows as .npy.
    np.save(path("xte.npy"), XTE)
    np.save(path("yte.npy"), YTE)
    want = float(np.mean(np.argmax(p_np, axis=1) == YTE))
    for args in (("--test", "test.csv", "--label-column", "0"), ("--test", "xte.npy", "--test-labels", "yte.npy")):
        r = run("evaluate", "--model", "csv_std/model.safetensors", *args, "--json")
        check(r.returncode == 0 and abs(json.loads(r.stdout)["accuracy"] - want) < 1e-12,
              f"evaluate {args}: {r.stdout[:120]} {r.stderr.strip()} (NumPy {want})")


def test_csv_class_name_labels():
    # Labels given as names: the classes are the names in byte order, so a model trained on names
    # is the same bytes as one trained on their sorted indices; evaluate and predict map names
    # through the model's classes; --class-names sets the order.
    names = np.array(["setosa", "virginica", "versi color", "Other"])
    order = sorted(names.tolist())  # ['Other', 'setosa', 'versi color', 'virginica']
    as_index = {n: order.index(n) for n in names}
    for split, x, y in (("tr", XTR, YTR), ("te", XTE, YTE)):
        write_csv(f"names_{split}.csv", x, names[y])
        write_csv(f"index_{split}.csv", x, np.array([as_index[n] for n in names[y]]))
    common = ("--optimizer", "lbfgs", "--tol", "1e-6")
    m_names = train_ok("csv_names", "--train", "names_tr.csv", "--test", "names_te.csv", *common)
    m_index = train_ok("csv_index", "--train", "index_tr.csv", "--test", "index_te.csv", *common)
    if m_names is None or m_index is None:
        return
    meta = m_names["__metadata__"]["class_names"]
    got = json.loads(meta) if isinstance(meta, str) else meta
    check(got == order, f"class names from the label column: {got} vs {order}")
    check(np.array_equal(m_names["weight"], m_index["weight"]) and np.array_equal(m_names["bias"], m_index["bias"]),
          "a model trained on names equals the one trained on their sorted indices, bit for bit")
    yte_index = np.array([as_index[n] for n in names[YTE]])
    r = run("evaluate", "--model", "csv_names/model.safetensors", "--test", "names_te.csv", "--json")
    want = float(np.mean(np.argmax(model_inputs(m_names, XTE) @ m_names["weight"].T + m_names["bias"], axis=1) == yte_index))
    check(r.returncode == 0 and abs(json.loads(r.stdout)["accuracy"] - want) < 1e-12,
          f"evaluate on names: {r.stdout[:120]} {r.stderr.strip()} (NumPy {want})")
    for i in (0, 5):
        r = run("predict", "--model", "csv_names/model.safetensors", "--features", "names_te.csv", "--index", i, "--json")
        check(r.returncode == 0 and json.loads(r.stdout).get("label") == yte_index[i],
              f"predict row {i} on names: true label {r.stdout.strip()[:160]} {r.stderr.strip()} vs {yte_index[i]}")
    # --class-names gives the order (and may add a class); the names must cover the labels.
    given = ["virginica", "versi color", "setosa", "Other", "unseen"]
    m_given = train_ok("csv_given", "--train", "names_tr.csv", "--test", "names_te.csv", *common,
                       "--class-names", ",".join(given))
    if m_given is not None:
        meta = m_given["__metadata__"]["class_names"]
        check((json.loads(meta) if isinstance(meta, str) else meta) == given, f"--class-names order kept: {meta}")
        check(m_given["weight"].shape == (5, D), f"5 named classes: weight {m_given['weight'].shape}")
        z_given = model_inputs(m_given, XTE) @ m_given["weight"].T + m_given["bias"]
        z_names = model_inputs(m_names, XTE) @ m_names["weight"].T + m_names["bias"]
        same = np.mean(np.array(given)[np.argmax(z_given, axis=1)] == np.array(order)[np.argmax(z_names, axis=1)])
        check(same >= 0.99, f"predictions with --class-names order agree with sorted order on {same:.4f} of rows")
    err = refused("a label missing from --class-names", "--train", "names_tr.csv", "--test", "names_te.csv",
                  "--class-names", "setosa,virginica,Other")
    check("'versi color' is not one of the 3 classes" in err, f"missing class name: {err}")
    refused("--class-names with a name twice", "--train", "names_tr.csv", "--test", "names_te.csv",
            "--class-names", "setosa,virginica,Other,versi color,setosa")
    err = refused("names in train, numbers in test", "--train", "names_tr.csv", "--test", "index_te.csv")
    check("class names but" in err and "class numbers" in err, f"names vs numbers: {err}")
    with open(path("alien_te.csv"), "w") as f:
        f.write(",".join(f"f{k}" for k in range(D)) + ",label\n" + ",".join(["1"] * D) + ",daisy\n")
    err = refused("evaluate: a name the model lacks", "--model", "csv_names/model.safetensors", "--test", "alien_te.csv",
                  cmd="evaluate")
    check("'daisy' is not one of the 4 classes (Other, setosa, versi color, virginica)" in err, f"unknown name: {err}")


def test_sgd_on_shaped_npy_and_report():
    # (N, 2, 3) float rows keep their shape in the model; SGD with the report on.
    np.save(path("x3.npy"), XTR.reshape(-1, 2, 3))
    np.save(path("xt3.npy"), XTE.reshape(-1, 2, 3))
    np.save(path("y3.npy"), YTR)
    np.save(path("yt3.npy"), YTE)
    r = run("train", "--train", "x3.npy", "--train-labels", "y3.npy", "--test", "xt3.npy", "--test-labels", "yt3.npy",
            "--epochs", 20, "--out", "sgd3", "--threads", 2)
    check(r.returncode == 0, f"SGD on (N, 2, 3) rows: {r.stderr.strip()}")
    if r.returncode == 0:
        with open(os.path.join(TMP, "sgd3", "metrics.json")) as f:
            acc = json.load(f)["final"]["test_accuracy"]
        # The optimum's accuracy here (scikit-learn, L-BFGS on the same rows) is 0.97.
        check(acc > 0.92, f"SGD on standardized blobs: test accuracy {acc}")
        m = read_safetensors(os.path.join(TMP, "sgd3", "model.safetensors"))
        check(m["__metadata__"].get("input_shape") == "[2,3]", f"input_shape {m['__metadata__'].get('input_shape')}")
        check(os.path.exists(os.path.join(TMP, "sgd3", "report.html")), "the report is written for feature data")


def test_resume_and_val_split_on_features():
    # A run resumed from a checkpoint ends with the same model bytes (normalization included), and
    # --normalize may not change on resume; --val-split holds out feature rows too.
    write_csv("r_train.csv", XTR, YTR)
    write_csv("r_test.csv", XTE, YTE)
    common = ("--train", "r_train.csv", "--test", "r_test.csv", "--no-report", "-q", "--val-split", 0.25)
    runs = [run("train", *common, "--epochs", 4, "--out", "r_full"),
            run("train", *common, "--epochs", 2, "--out", "r_half", "--checkpoint", "r_ck.safetensors"),
            run("train", *common, "--epochs", 4, "--out", "r_res", "--resume", "r_ck.safetensors")]
    check(all(r.returncode == 0 for r in runs), f"resume runs: {[r.stderr.strip() for r in runs]}")
    if all(r.returncode == 0 for r in runs):
        with open(os.path.join(TMP, "r_full", "model.safetensors"), "rb") as a, \
                open(os.path.join(TMP, "r_res", "model.safetensors"), "rb") as b:
            check(a.read() == b.read(), "a resumed feature run differs from the uninterrupted one")
        with open(os.path.join(TMP, "r_full", "metrics.json")) as f:
            j = json.load(f)
        check(j["val_images"] == 225 and j["train_images"] == 675, f"--val-split 0.25 of 900 rows: {j['val_images']}")
    err = refused("--normalize changed on resume", *common, "--epochs", 4, "--resume", "r_ck.safetensors",
                  "--normalize", "none")
    check("conflicts with the checkpoint" in err, err)


def write_png(name, pixels, color_type=0):
    """A PNG written by hand (zlib + chunks): color_type 0 gray, 2 RGB (gray repeated), 6 RGBA (alpha 255)."""
    import zlib
    h, w = pixels.shape
    chans = {0: 1, 2: 3, 6: 4}[color_type]
    px = np.repeat(pixels[:, :, None], chans, axis=2)
    if color_type == 6:
        px[:, :, 3] = 255
    raw = b"".join(b"\x00" + px[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path(name), "wb") as f:
        f.write(png)
    return png


def test_uint8_npy_images_and_png_predict():
    # uint8 .npy images train a pixel model (x / 255, as IDX); predict on one of them as a PNG
    # (gray, RGB, RGBA) gives the probabilities predict gives on the .npy row.
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 600)
    img = np.clip(rng.normal(60, 30, size=(600, 4, 5)) + (y[:, None, None] * 60), 0, 255).astype(np.uint8)
    np.save(path("u8_x.npy"), img)
    np.save(path("u8_y.npy"), y)
    r = run("train", "--train", "u8_x.npy", "--train-labels", "u8_y.npy", "--test", "u8_x.npy", "--test-labels",
            "u8_y.npy", "--out", "u8", "--no-report", "-q", "--epochs", 5)
    check(r.returncode == 0, f"uint8 .npy training: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    m = read_safetensors(os.path.join(TMP, "u8", "model.safetensors"))
    check(m["__metadata__"]["normalization"].startswith("x / 255"), f"pixel model: {m['__metadata__']['normalization']}")
    ref = run("predict", "--model", "u8/model.safetensors", "--features", "u8_x.npy", "--index", 17, "--top", 3, "--json")
    check(ref.returncode == 0, f"predict on the .npy row: {ref.stderr.strip()}")
    want = softmax((img[17].reshape(1, -1).astype(np.float32) / 255) @ m["weight"].T + m["bias"])[0]
    for ct in (0, 2, 6):
        write_png(f"row17_{ct}.png", img[17], ct)
        p = run("predict", "--model", "u8/model.safetensors", "--images", f"row17_{ct}.png", "--top", 3, "--json")
        check(p.returncode == 0, f"predict on a PNG (color type {ct}): {p.stderr.strip()}")
        if p.returncode == 0 and ref.returncode == 0:
            got = {t["class"]: t["probability"] for t in json.loads(p.stdout)["top"]}
            exp = {t["class"]: t["probability"] for t in json.loads(ref.stdout)["top"]}
            check(got == exp, f"PNG color type {ct}: {got} vs the .npy row {exp}")
            check(np.allclose([got[c] for c in range(3)], want, atol=2e-6), f"PNG vs NumPy: {got} vs {want}")
    write_png("wrong_size.png", np.zeros((5, 4), dtype=np.uint8))
    err = refused("PNG of another size", "--model", "u8/model.safetensors", "--images", "wrong_size.png", cmd="predict")
    check("5 x 4 image, the model" in err, err)
    good = open(path("row17_0.png"), "rb").read()
    with open(path("cut.png"), "wb") as f:
        f.write(good[:-20])
    refused("truncated PNG", "--model", "u8/model.safetensors", "--images", "cut.png", cmd="predict")
    with open(path("huge.png"), "wb") as f:
        f.write(good[:16] + struct.pack(">II", 100000, 100000) + good[24:])
    err = refused("PNG declaring 100000 x 100000", "--model", "u8/model.safetensors", "--images", "huge.png", cmd="predict")
    check("1 to 4096 pixels a side" in err, err)


def refused(what, *args, cmd="train"):
    out = "refused_" + str(abs(hash(what)))
    extra = ("--out", out) if cmd == "train" else ()
    r = run(cmd, *args, *extra)
    err = r.stderr.strip()
    check(r.returncode == 2, f"{what}: exit {r.returncode}, expected 2 ({err})")
    check(err.startswith("xent: error:") and "\n" not in err, f"{what}: expected one error line, got {err!r}")
    check(not os.path.exists(os.path.join(TMP, out)), f"{what}: the output directory was created")
    return err


def test_bad_inputs_are_refused():
    hdr = "a,b,label\n"
    files = {
        "cols.csv": hdr + "1,2,0\n3,1\n",
        "text.csv": hdr + "1,x,0\n",
        "nan.csv": hdr + "1,nan,0\n",
        "inf.csv": hdr + "inf,1,0\n",
        "empty_field.csv": hdr + "1,,0\n",
        "neg.csv": hdr + "1,2,-1\n",
        "frac.csv": hdr + "1,2,1.5\n",
        "nolabel.csv": "a,b,c\n1,2,0\n",
        "empty.csv": "",
        "header_only.csv": hdr,
        "quote.csv": hdr + '1,"2,0\n',
        "ok.csv": hdr + "1,2,0\n2,1,1\n",
        "wide.csv": "a,b,c,label\n1,2,3,0\n2,1,3,1\n",
        "big_label.csv": hdr + "1,2,7\n",
    }
    for name, text in files.items():
        with open(path(name), "w") as f:
            f.write(text)
    for name, frag in (("cols.csv", "data row 2 has 2 fields, the header has 3"), ("text.csv", "found 'x'"),
                       ("nan.csv", "found 'nan'"), ("inf.csv", "found 'inf'"), ("empty_field.csv", "empty field"),
                       ("neg.csv", "found '-1'"), ("frac.csv", "integer class label"), ("nolabel.csv", "no label column"),
                       ("empty.csv", "empty"), ("header_only.csv", "no data rows"), ("quote.csv", "not closed")):
        err = refused(name, "--train", name, "--test", "ok.csv")
        check(frag in err and name in err, f"{name}: message {err!r} lacks {frag!r}")
    refused("label index out of range", "--train", "ok.csv", "--test", "ok.csv", "--label-column", "9")
    refused("train/test widths differ", "--train", "ok.csv", "--test", "wide.csv")
    refused("--test missing", "--train", "ok.csv")
    refused("labels file for a CSV", "--train", "ok.csv", "--train-labels", "y.npy", "--test", "ok.csv")
    refused("not .csv or .npy", "--train", "ok.txt", "--test", "ok.csv")
    # .npy
    np.save(path("x.npy"), XTR)
    np.save(path("y.npy"), YTR)
    np.save(path("y_short.npy"), YTR[:-1])
    np.save(path("y_float.npy"), YTR.astype(np.float32))
    yneg = YTR.copy()
    yneg[5] = -2
    np.save(path("y_neg.npy"), yneg)
    xnan = XTR.copy()
    xnan[3, 2] = np.nan
    np.save(path("x_nan.npy"), xnan)
    np.save(path("x_int.npy"), XTR.astype(np.int32))
    np.save(path("x_1d.npy"), XTR[:, 0])
    np.save(path("x_empty.npy"), XTR[:0])
    np.save(path("y_empty.npy"), YTR[:0])
    np.save(path("x_huge.npy"), np.full((len(YTR), D), 1e300))
    base = ("--test", "x.npy", "--test-labels", "y.npy")
    for what, feats, labs, frag in (("labels shorter", "x.npy", "y_short.npy", "has 900 rows but"),
                                    ("float labels", "x.npy", "y_float.npy", "integer class labels"),
                                    ("negative label", "x.npy", "y_neg.npy", "negative"),
                                    ("NaN feature", "x_nan.npy", "y.npy", "row 3, feature 2"),
                                    ("int features", "x_int.npy", "y.npy", "float32 or float64"),
                                    ("rank-1 features", "x_1d.npy", "y.npy", "(N, ...)"),
                                    ("no rows", "x_empty.npy", "y_empty.npy", "no rows"),
                                    ("beyond float32", "x_huge.npy", "y.npy", "float32's range")):
        err = refused(what, "--train", feats, "--train-labels", labs, *base)
        check(frag in err, f"{what}: message {err!r} lacks {frag!r}")
    refused("npy without labels", "--train", "x.npy", *base)
    refused("missing file", "--train", "nothere.npy", "--train-labels", "y.npy", *base)
    refused("--normalize with IDX-like data", "--train", "x.npy", "--train-labels", "y.npy", *base, "--normalize", "minmax")
    refused("--train with --data", "--train", "x.npy", "--train-labels", "y.npy", *base, "--data", TMP)
    # evaluate / predict against a model: labels beyond its classes, the wrong kind of rows.
    r = run("train", "--train", "ok.csv", "--test", "ok.csv", "--out", "tiny", "--no-report", "--epochs", 1)
    check(r.returncode == 0, f"tiny model: {r.stderr.strip()}")
    err = refused("label beyond the model's classes", "--model", "tiny/model.safetensors", "--test", "big_label.csv",
                  cmd="evaluate")
    check("outside [0, 2)" in err, f"out-of-range label message: {err!r}")
    np.save(path("u8.npy"), np.zeros((2, 2), dtype=np.uint8))
    np.save(path("y2.npy"), np.array([0, 1]))
    err = refused("uint8 images for a float model", "--model", "tiny/model.safetensors", "--test", "u8.npy",
                  "--test-labels", "y2.npy", cmd="evaluate")
    check("unsigned-byte pixels, but the model takes float features" in err, err)
    refused("predict: wrong width", "--model", "tiny/model.safetensors", "--features", "x.npy", cmd="predict")
    refused("predict: --show on float rows", "--model", "tiny/model.safetensors", "--features", "ok.csv", "--show",
            cmd="predict")
    # --class-names may name more classes than the labels show (a class absent from the data).
    with open(path("names5.txt"), "w") as f:
        f.write("a\nb\nc\nd\ne\n")
    r = run("train", "--train", "ok.csv", "--test", "ok.csv", "--out", "five", "--no-report", "--epochs", 1,
            "--class-names", "@names5.txt")
    check(r.returncode == 0, f"--class-names with 5 names for labels 0-1: {r.stderr.strip()}")
    if r.returncode == 0:
        m5 = read_safetensors(os.path.join(TMP, "five", "model.safetensors"))
        check(m5["weight"].shape == (5, 2), f"5 named classes give a (5, 2) weight, found {m5['weight'].shape}")
    refused("one name for two classes", "--train", "ok.csv", "--test", "ok.csv", "--class-names", "solo")
    refused("predict: index out of range", "--model", "tiny/model.safetensors", "--features", "ok.csv", "--index", 2,
            cmd="predict")


if __name__ == "__main__":
    run_tests([test_npy_lbfgs_matches_sklearn, test_csv_standardize_and_predict_round_trip, test_csv_class_name_labels,
               test_sgd_on_shaped_npy_and_report, test_resume_and_val_split_on_features,
               test_uint8_npy_images_and_png_predict, test_bad_inputs_are_refused])
