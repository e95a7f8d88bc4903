#!/usr/bin/python3
"""test_report_browser.py: report.html as a browser shows it. Trains a small model with `xent train`,
then loads report.html headless in Debian's chromium (inside a harness page that reads the report's
DOM once it has loaded) and checks that every picture loaded (complete, non-zero natural size),
that the headline test accuracy is metrics.json's final test_accuracy, that the final page does
not reload itself, and that the browser logged no console message (errors such as a missing
image or a script error are logged there). Skips (exit 77) when chromium is not installed.

    /usr/bin/python3 tests/train/test_report_browser.py PATH/TO/xent
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HARNESS = """<!doctype html><html><head><meta charset="utf-8"><title>harness</title></head><body>
<iframe id="f" src="report.html" style="width:1200px;height:900px"></iframe>
<pre id="result">pending</pre>
<script>
document.getElementById('f').addEventListener('load', () => {
  const d = document.getElementById('f').contentDocument;
  const imgs = Array.from(d.images);
  const wait = imgs.map(i => i.complete ? Promise.resolve() : new Promise(r => { i.onload = r; i.onerror = r; }));
  Promise.all(wait).then(() => {
    const h = d.getElementById('headline-accuracy');
    document.getElementById('result').textContent = JSON.stringify({
      images: imgs.map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0 && i.naturalHeight > 0})),
      headline: h ? h.getAttribute('data-value') : null,
      headline_text: h ? h.textContent : null,
      refresh: d.querySelector('meta[http-equiv="refresh"]') !== null,
      title: d.title,
    });
  });
});
</script></body></html>
"""


def write_idx(path, shape, data):
    head = struct.pack(">BBBB", 0, 0, 0x08, len(shape)) + b"".join(struct.pack(">I", d) for d in shape)
    with gzip.open(path, "wb") as f:
        f.write(head + bytes(data))


def synthetic(n, h, w, classes, seed):
    x = seed * 2654435761 % 2**32 + 1
    pixels, labels = [], []
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        c = x % classes
        labels.append(c)
        for r in range(h):
            for k in range(w):
                x = (x * 1103515245 + 12345) % 2**31
                pixels.append(min(255, (x % 90) + (120 if k % classes == c else 0)))
    return pixels, labels


def main():
    xent = sys.argv[1]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("skipped: chromium is not installed (scripts/install-deps.sh installs it)")
        return 77
    h, w, C = 8, 8, 4
    with tempfile.TemporaryDirectory() as tmp:
        for prefix, n, seed in (("train", 400, 1), ("t10k", 100, 2)):
            px, lab = synthetic(n, h, w, C, seed)
            write_idx(os.path.join(tmp, f"{prefix}-images-idx3-ubyte.gz"), (n, h, w), px)
            write_idx(os.path.join(tmp, f"{prefix}-labels-idx1-ubyte.gz"), (n,), lab)
        out = os.path.join(tmp, "run")
        subprocess.run([xent, "train", "--data", tmp, "--epochs", "3", "--batch-size", "32", "--val-split", "0.2",
                        "--out", out, "--quiet"], check=True)
        with open(os.path.join(out, "harness.html"), "w") as f:
            f.write(HARNESS)
        profile = os.path.join(tmp, "profile")
        r = subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                            "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
                            f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
                            "file://" + os.path.join(out, "harness.html")],
                           capture_output=True, text=True, timeout=120)
        dom = r.stdout
        start = dom.find('<pre id="result">')
        assert start >= 0, f"no result in the dumped DOM (exit {r.returncode}): {r.stderr[-2000:]}"
        text = dom[start + len('<pre id="result">'):dom.find("</pre>", start)]
        assert text != "pending", "the report never finished loading"
        res = json.loads(text.replace("&quot;", '"').replace("&amp;", "&"))
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        want = f"{metrics['final']['test_accuracy']:.6f}"
        failures = []
        if len(res["images"]) < 4:
            failures.append(f"expected at least 4 pictures, found {res['images']}")
        failures += [f"picture {i['src']} did not load" for i in res["images"] if not i["ok"]]
        if res["headline"] != want:
            failures.append(f"headline accuracy {res['headline']} ({res['headline_text']}), metrics.json has {want}")
        if res["refresh"]:
            failures.append("the final report still reloads itself")
        if res["title"].startswith("xent: softmax regression on /"):
            failures.append(f"the title is an absolute path: {res['title']}")
        console = [l for l in r.stderr.splitlines() if "CONSOLE" in l]
        failures += [f"console: {l}" for l in console]
        if failures:
            print("\n".join(failures))
            return 1
        print(f"ok: {len(res['images'])} pictures loaded, headline {want} = metrics.json, no console messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
