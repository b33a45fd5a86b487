"""Time per image: the page in headless Chromium (onnxruntime-web, WASM) next to lrf.runtime
(onnxruntime, Python) on the same bundle, same steps, stepwise and fused, 1 and N threads.

    python web_demo/tests/bench.py BUNDLE [--threads 1,2] [--repeats 5] [--steps N]

Prints a Markdown table (median ms per image after one warm-up; seeds 1..repeats, label 0,
the bundle's default guidance). The page is served by serve.mjs (cross-origin isolated, so
onnxruntime-web may use several WASM threads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np

WEB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def browser(bundle: str, threads: str, repeats: int, steps: int | None) -> list[dict]:
    server = subprocess.Popen(["node", os.path.join(WEB, "serve.mjs"), "--port", "0",
                               "--bundle", bundle], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        cmd = ["node", os.path.join(WEB, "tests", "drive.mjs"), "bench", "--url", url,
               "--threads", threads, "--repeats", str(repeats), "--timeout-ms", "600000"]
        if steps:
            cmd += ["--steps", str(steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)["results"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def python(bundle: str, threads: int, repeats: int, steps: int | None, mode: str) -> dict:
    from lrf.runtime import Generator
    with Generator.load(bundle, threads=threads) as gen:
        n = steps or gen.default_steps
        gen.generate(0, seed=0, steps=n, mode=mode)
        ms = []
        for s in range(1, repeats + 1):
            t0 = time.perf_counter()
            gen.generate(0, seed=s, steps=n, mode=mode)
            ms.append((time.perf_counter() - t0) * 1e3)
    return {"steps": n, "mode": mode, "threads": threads, "median_ms": float(np.median(ms))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=None)
    a = p.parse_args(argv)
    rows = {}
    for r in browser(a.bundle, a.threads, a.repeats, a.steps):
        rows.setdefault((r["mode"], r["steps"]), {})[("browser", r["threads"])] = r.get("median_ms")
    for (mode, steps), row in rows.items():
        for t in (int(x) for x in a.threads.split(",")):
            row[("python", t)] = python(a.bundle, t, a.repeats, steps, mode)["median_ms"]
    cols = sorted({k for row in rows.values() for k in row})
    print("| mode | steps | " + " | ".join(f"{w} {t} thr (ms)" for w, t in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for (mode, steps), row in rows.items():
        print(f"| {mode} | {steps} | " + " | ".join(
            "n/a" if row.get(c) is None else f"{row[c]:.1f}" for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
