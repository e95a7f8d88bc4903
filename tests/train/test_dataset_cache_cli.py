"""test_dataset_cache_cli.py: the decoded-dataset cache of `xent train` / `xent evaluate` for gzip'd
IDX inputs (src/io/dataset_cache.h), end to end on small synthetic gzip'd IDX files written here:

- first run: every gzip'd file a miss, one entry each (0600, in a 0700 directory), each entry
  ending with exactly the bytes Python's gzip decodes from its source;
- second run: every file a hit, and the same model bytes and per-epoch metrics;
- a corrupted entry (one pixel byte flipped, which the IDX parser alone cannot see), a truncated
  one, one with bytes appended, or a garbage header: a miss, and the entry rewritten;
- a changed source (new mtime; new content of the same size with the old mtime put back): a miss,
  and the model is the one --no-cache trains on the new data;
- a symbolic link planted at an entry path is neither read, followed nor replaced;
- an unwritable cache (directory under a file, no HOME) still trains (exit 0) with one note line
  on stderr, none under --quiet; --no-cache writes nothing; plain inputs are never cached;
- the default directory: $XENT_CACHE_DIR, else $XDG_CACHE_HOME/xent (absolute only), else
  $HOME/.cache/xent;
- two runs at once filling the same cache both succeed and leave entries that hit;
- entries whose source is gone, and day-old temporaries, are removed when an entry is written.

Usage: test_dataset_cache_cli.py XENT. Needs only the standard library.
"""
import gzip
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

XENT = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="xent_dataset_cache_")
FAILURES = []
ROLES = ["train_images", "train_labels", "test_images", "test_labels"]
NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)


def p(*parts):
    return os.path.join(TMP, *parts)


def idx_bytes(dims, payload):
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)


def make_set(n, seed, h=6, w=6, classes=3):
    rng = random.Random(seed)
    labels = [rng.randrange(classes) for _ in range(n)]
    pix = bytearray()
    for y in labels:  # class y brightens row y, so there is something to learn
        for r in range(h):
            for c in range(w):
                pix.append(min(255, rng.randrange(120) + (120 if r == y else 0)))
    return idx_bytes([n, h, w], pix), idx_bytes([n], labels)


def write_dataset(d, level=6):
    os.makedirs(d, exist_ok=True)
    (tri, trl), (tei, tel) = make_set(240, 1), make_set(60, 2)
    for role, raw in zip(ROLES, [tri, trl, tei, tel]):
        with open(os.path.join(d, NAMES[role] + ".gz"), "wb") as f:
            f.write(gzip.compress(raw, compresslevel=level, mtime=0))
    return d


def run(*args, env=None, cache=None):
    e = dict(os.environ)
    for k in ("XENT_CACHE_DIR", "XDG_CACHE_HOME"):
        e.pop(k, None)
    e["HOME"] = p("home")
    if cache is not None:
        e["XENT_CACHE_DIR"] = cache
    if env:
        for k, v in env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
    return subprocess.run([XENT, *map(str, args)], capture_output=True, text=True, cwd=TMP, env=e, timeout=120)


def train(data, out, *extra, env=None, cache=None):
    r = run("train", "--data", data, "--out", out, "--epochs", 2, "--batch-size", 32, "--threads", 2, "--no-report",
            "--quiet", *extra, env=env, cache=cache)
    check(r.returncode == 0, f"train {out}: exit {r.returncode}, stderr {r.stderr!r}")
    return r


def metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def uses(out):
    m = metrics(out).get("load_cache", {})
    return [m.get(r) for r in ROLES]


def model(out):
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        return f.read()


def epochs_without_time(out):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in metrics(out)["epochs"]]


def entries(cache):
    if not os.path.isdir(cache):
        return {}
    out = {}
    for name in os.listdir(cache):
        for role, base in NAMES.items():
            if name.startswith(base + ".") and name.endswith(".xent-cache"):
                out[role] = os.path.join(cache, name)
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    data = write_dataset(p("data"))
    cache = p("cache")
    # --- first run: misses, entries written privately, holding exactly the decoded bytes
    train(data, p("r1"), "--cache-dir", cache)
    check(uses(p("r1")) == ["miss"] * 4, f"first run: expected 4 misses, got {uses(p('r1'))}")
    check(metrics(p("r1"))["load_cache"].get("dir") == cache, "metrics.json names the cache directory")
    ents = entries(cache)
    check(sorted(ents) == sorted(ROLES), f"one entry per file, found {sorted(os.listdir(cache))}")
    check(stat.S_IMODE(os.stat(cache).st_mode) == 0o700, f"cache dir mode {oct(os.stat(cache).st_mode)}")
    check(not [n for n in os.listdir(cache) if ".tmp." in n], "no temporaries left behind")
    for role, e in ents.items():
        check(stat.S_IMODE(os.stat(e).st_mode) == 0o600, f"{e}: mode {oct(os.stat(e).st_mode)}, expected 0600")
        decoded = gzip.decompress(read(os.path.join(data, NAMES[role] + ".gz")))
        check(read(e).endswith(decoded), f"{e} does not end with the decoded bytes of its source")
    pristine = {role: read(e) for role, e in ents.items()}

    # --- second run: hits, same bits and metrics; --no-cache trains the same model
    train(data, p("r2"), "--cache-dir", cache)
    check(uses(p("r2")) == ["hit"] * 4, f"second run: expected 4 hits, got {uses(p('r2'))}")
    check(model(p("r2")) == model(p("r1")), "a cache hit trains different model bytes")
    check(epochs_without_time(p("r2")) == epochs_without_time(p("r1")), "a cache hit gives different metrics")
    train(data, p("nc"), "--no-cache", cache=p("nc_cache"))
    check(uses(p("nc")) == ["off"] * 4, f"--no-cache: expected off, got {uses(p('nc'))}")
    check(not os.path.exists(p("nc_cache")), "--no-cache created its cache directory")
    check(model(p("nc")) == model(p("r1")), "--no-cache trains different model bytes")

    # --- damaged entries: ignored, and rewritten to the pristine entry
    img = ents["train_images"]
    n = len(pristine["train_images"])

    def damage(label, fn):
        with open(img, "r+b") as f:
            fn(f)
        out = p("dmg_" + label)
        train(data, out, "--cache-dir", cache)
        check(uses(out) == ["miss", "hit", "hit", "hit"], f"{label} entry: expected a miss for train images, got {uses(out)}")
        check(read(img) == pristine["train_images"], f"{label} entry was not rewritten")
        check(model(out) == model(p("r1")), f"{label} entry: different model bytes")

    def flip_pixel(f):
        f.seek(n - 7)
        b = f.read(1)
        f.seek(n - 7)
        f.write(bytes([b[0] ^ 0x10]))
    damage("flipped-pixel", flip_pixel)
    damage("truncated", lambda f: f.truncate(n - 100))
    damage("appended", lambda f: (f.seek(0, 2), f.write(b"\0" * 16)))
    damage("garbage-header", lambda f: f.write(b"not a cache entry"))
    damage("short", lambda f: f.truncate(10))

    # --- a changed source misses and never serves the old data
    src = os.path.join(data, NAMES["train_images"] + ".gz")
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touch: same bytes, new mtime
    train(data, p("touched"), "--cache-dir", cache)
    check(uses(p("touched"))[0] == "miss", f"touched source: expected a miss, got {uses(p('touched'))}")
    train(data, p("touched2"), "--cache-dir", cache)
    check(uses(p("touched2"))[0] == "hit", f"after the touch, the new entry should hit: {uses(p('touched2'))}")
    # New content of the same size (stored deflate blocks: one pixel changed keeps the size), with
    # the old mtime put back: the stamp's ctime and gzip trailer still differ.
    data2 = write_dataset(p("data2"), level=0)
    src2 = os.path.join(data2, NAMES["train_images"] + ".gz")
    train(data2, p("s1"), "--cache-dir", cache)
    old = os.stat(src2)
    raw = bytearray(gzip.decompress(read(src2)))
    for k in range(16, len(raw), 7):
        raw[k] = 255 - raw[k]
    new = gzip.compress(bytes(raw), compresslevel=0, mtime=0)
    check(len(new) == old.st_size, "test setup: the rewritten source should keep its size")
    with open(src2, "r+b") as f:
        f.write(new)
    os.utime(src2, ns=(old.st_atime_ns, old.st_mtime_ns))
    check(os.stat(src2).st_size == old.st_size and os.stat(src2).st_mtime_ns == old.st_mtime_ns, "test setup: same stamp")
    train(data2, p("s2"), "--cache-dir", cache)
    check(uses(p("s2"))[0] == "miss", f"rewritten source (same size and mtime): expected a miss, got {uses(p('s2'))}")
    train(data2, p("s2nc"), "--no-cache")
    check(model(p("s2")) == model(p("s2nc")), "a rewritten source trained on stale cached data")
    check(model(p("s2")) != model(p("s1")), "test setup: the changed pixels should change the model")

    # --- symbolic links at the entry path: not read, not followed, not replaced
    victim = p("victim")
    with open(victim, "wb") as f:
        f.write(b"precious")
    os.remove(img)
    os.symlink(victim, img)
    r = train(data, p("link"), "--cache-dir", cache)
    check(uses(p("link"))[0] == "miss", f"a link at the entry path: expected a miss, got {uses(p('link'))}")
    check(read(victim) == b"precious", "the link's target was overwritten")
    check(os.path.islink(img) and os.readlink(img) == victim, "the planted link was replaced")
    check(r.stderr == "", f"--quiet: expected no note, got {r.stderr!r}")
    r = run("train", "--data", data, "--out", p("link2"), "--epochs", 1, "--no-report", "--cache-dir", cache)
    notes = [ln for ln in r.stderr.splitlines() if "note" in ln]
    check(r.returncode == 0 and len(notes) == 1 and "symbolic link" in notes[0],
          f"a link at the entry path: expected exit 0 and one note, got {r.returncode} {r.stderr!r}")
    # A link to a valid copy of the entry is not read through either.
    os.remove(img)
    good = p("good_copy")
    with open(good, "wb") as f:
        f.write(pristine["train_images"])
    os.chmod(good, 0o600)
    os.symlink(good, img)
    train(data, p("link3"), "--cache-dir", cache)
    check(uses(p("link3"))[0] == "miss", f"a link to a valid entry: expected a miss, got {uses(p('link3'))}")
    os.remove(img)

    # --- an entry others may write is not trusted
    train(data, p("w1"), "--cache-dir", cache)
    os.chmod(img, 0o666)
    train(data, p("w2"), "--cache-dir", cache)
    check(uses(p("w2"))[0] == "miss", f"a world-writable entry: expected a miss, got {uses(p('w2'))}")
    check(stat.S_IMODE(os.stat(img).st_mode) == 0o600, "the rewritten entry should be 0600 again")

    # --- a cache that cannot be written never fails the run
    with open(p("a_file"), "w") as f:
        f.write("x")
    bad = p("a_file", "cache")
    r = run("train", "--data", data, "--out", p("u1"), "--epochs", 2, "--batch-size", 32, "--threads", 2,
            "--no-report", "--cache-dir", bad)
    notes = [ln for ln in r.stderr.splitlines() if "note" in ln]
    check(r.returncode == 0, f"unwritable cache: exit {r.returncode}, stderr {r.stderr!r}")
    check(len(notes) == 1 and bad in notes[0], f"unwritable cache: expected one note naming {bad}, got {r.stderr!r}")
    check(model(p("u1")) == model(p("r1")), "unwritable cache: different model bytes")
    r = train(data, p("u2"), "--cache-dir", bad)
    check(r.stderr == "", f"unwritable cache under --quiet: expected silence, got {r.stderr!r}")
    r = run("train", "--data", data, "--out", p("u3"), "--epochs", 1, "--no-report",
            env={"HOME": None, "XDG_CACHE_HOME": None})
    notes = [ln for ln in r.stderr.splitlines() if "note" in ln]
    check(r.returncode == 0 and len(notes) == 1 and "no cache directory" in notes[0],
          f"no HOME: expected exit 0 and one note, got {r.returncode} {r.stderr!r}")
    check(uses(p("u3")) == ["off"] * 4, f"no HOME: expected off, got {uses(p('u3'))}")
    r = run("evaluate", "--model", os.path.join(p("r1"), "model.safetensors"), "--data", data, "--cache-dir", bad)
    check(r.returncode == 0 and len([ln for ln in r.stderr.splitlines() if "note" in ln]) == 1,
          f"evaluate with an unwritable cache: exit {r.returncode}, stderr {r.stderr!r}")
    r = run("train", "--data", data, "--no-cache", "--cache-dir", cache)
    check(r.returncode == 2 and "--no-cache" in r.stderr, f"--no-cache with --cache-dir: expected exit 2, got {r.returncode}")

    # --- the default directory
    train(data, p("d1"), cache=p("env_cache"))
    check(sorted(entries(p("env_cache"))) == sorted(ROLES), "XENT_CACHE_DIR was not used")
    train(data, p("d2"), env={"XDG_CACHE_HOME": p("xdg")})
    check(sorted(entries(p("xdg", "xent"))) == sorted(ROLES), "XDG_CACHE_HOME/xent was not used")
    train(data, p("d3"), env={"XDG_CACHE_HOME": "relative/xdg"})
    home_cache = p("home", ".cache", "xent")
    check(sorted(entries(home_cache)) == sorted(ROLES), "HOME/.cache/xent was not used (a relative XDG_CACHE_HOME is ignored)")
    check(not os.path.exists(p("relative")), "a relative XDG_CACHE_HOME was used")
    check(stat.S_IMODE(os.stat(p("home", ".cache")).st_mode) == 0o700, "~/.cache should be created 0700")
    train(data, p("d4"), env={"XDG_CACHE_HOME": "relative/xdg"})
    check(uses(p("d4")) == ["hit"] * 4, f"HOME/.cache/xent second run: expected hits, got {uses(p('d4'))}")

    # --- entries of sources that are gone are removed when another entry is written
    pr = p("prune_cache")
    gone = write_dataset(p("gone"))
    train(gone, p("g1"), "--cache-dir", pr)
    shutil.rmtree(gone)
    stale_tmp, fresh_tmp, other = (os.path.join(pr, n) for n in ("x.xent-cache.tmp.abc123", "y.xent-cache.tmp.def456",
                                                                   "notes.txt"))
    for f in (stale_tmp, fresh_tmp, other):
        with open(f, "w") as fh:
            fh.write("x")
    os.utime(stale_tmp, (0, 1_000_000))
    train(data, p("g2"), "--cache-dir", pr)
    left = sorted(os.listdir(pr))
    check(len([n for n in left if n.endswith(".xent-cache")]) == 4, f"entries of a deleted dataset were kept: {left}")
    check(sorted(entries(pr)) == sorted(ROLES) and
          all(read(e).endswith(gzip.decompress(read(os.path.join(data, NAMES[r] + ".gz")))) for r, e in entries(pr).items()),
          "the entries of the present dataset should be kept")
    check(os.path.exists(fresh_tmp) and os.path.exists(other) and not os.path.exists(stale_tmp),
          f"expected the day-old temporary removed and the fresh one and other files kept: {left}")

    # --- evaluate reads the cache too, and gives the same accuracy
    r1 = run("evaluate", "--model", os.path.join(p("r1"), "model.safetensors"), "--data", data, "--json", cache=cache)
    r2 = run("evaluate", "--model", os.path.join(p("r1"), "model.safetensors"), "--data", data, "--json", "--no-cache")
    check(r1.returncode == 0 and r1.stdout == r2.stdout and r1.stderr == "",
          f"evaluate through the cache differs: {r1.stdout!r} vs {r2.stdout!r}, {r1.stderr!r}")

    # --- plain inputs are never cached
    plain = p("plain")
    os.makedirs(plain)
    for role in ROLES:
        with open(os.path.join(plain, NAMES[role]), "wb") as f:
            f.write(gzip.decompress(read(os.path.join(data, NAMES[role] + ".gz"))))
    train(plain, p("pl"), "--cache-dir", p("plain_cache"))
    check(uses(p("pl")) == ["plain"] * 4, f"plain inputs: expected plain, got {uses(p('pl'))}")
    check(not entries(p("plain_cache")), "plain inputs were cached")
    check(model(p("pl")) == model(p("r1")), "plain inputs: different model bytes")

    # --- two runs at once filling one cache
    conc = p("conc_cache")
    args = ["--data", data, "--epochs", 2, "--batch-size", 32, "--threads", 1, "--no-report", "--quiet",
            "--cache-dir", conc]
    procs = [subprocess.Popen([XENT, "train", *map(str, args), "--out", p(f"c{k}")], stderr=subprocess.PIPE, cwd=TMP)
             for k in range(3)]
    for k, pr in enumerate(procs):
        _, err = pr.communicate(timeout=120)
        check(pr.returncode == 0 and not err, f"concurrent run {k}: exit {pr.returncode}, stderr {err!r}")
    check(all(model(p(f"c{k}")) == model(p("r1")) for k in range(3)), "concurrent runs: different model bytes")
    train(data, p("c_after"), "--cache-dir", conc)
    check(uses(p("c_after")) == ["hit"] * 4, f"after concurrent runs: expected hits, got {uses(p('c_after'))}")
    check(not [n for n in os.listdir(conc) if ".tmp." in n], "concurrent runs left temporaries")


try:
    main()
finally:
    shutil.rmtree(TMP, ignore_errors=True)
if FAILURES:
    print(f"{len(FAILURES)} check(s) failed")
    sys.exit(1)
print("PASS")
