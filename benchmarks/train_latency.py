"""How the Train panel costs the drawing page: /api/predict latency idle and while a run trains,
and the seconds from starting a run to its first curve point.

A real ``digitnet serve`` runs in its own process; this script is its client. It sends the
page's kind of request (a 280x280 PNG of a test digit) one after another, first with the server
idle, then while a run of the chosen preset trains, and reports p50 and p99 of each. It times a
run's first ``epoch`` event from the POST, twice: the first run of a server (which loads the
training images) and a second one. With ``--browser`` it also presses Train in Chromium and
times the first point drawn on the loss curve.

    DIGITNET_DATA=... python benchmarks/train_latency.py [--preset default] [--browser] [--json]

The figures depend on the machine and on what else it runs; repeat them before trusting them.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from digitnet import datasets, modelfile, runner, training

CHROMIUM = Path("/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def digit_png(image: np.ndarray) -> bytes:
    """A test digit as the page sends it: white on black, 280x280 pixels."""
    big = Image.fromarray(image).resize((280, 280), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    return buffer.getvalue()


def predict_latencies(client: httpx.Client, pngs: list[bytes], until) -> list[float]:
    """Milliseconds of each /api/predict, sent one after another while ``until()`` is False."""
    times = []
    k = 0
    while not until():
        t0 = time.perf_counter()
        response = client.post("/api/predict", content=pngs[k % len(pngs)],
                               headers={"Content-Type": "image/png"})
        times.append(1000 * (time.perf_counter() - t0))
        response.raise_for_status()
        k += 1
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"requests": len(times), "p50_ms": round(float(np.percentile(times, 50)), 2),
            "p99_ms": round(float(np.percentile(times, 99)), 2),
            "max_ms": round(max(times), 2)}


def run_and_watch(client: httpx.Client, options: dict, pngs: list[bytes]) -> dict:
    """Start a run, time its first epoch event, and measure predicts until it ends."""
    ended = threading.Event()
    first: list[float] = []
    closing: list[dict] = []
    t0 = time.perf_counter()
    response = client.post("/api/train", json=options)
    response.raise_for_status()
    run = response.json()["run"]

    def follow() -> None:
        with httpx.Client(base_url=client.base_url, timeout=None) as events:
            with events.stream("GET", f"/api/train/{run}/events") as stream:
                kind = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and kind == "epoch" and not first:
                        first.append(time.perf_counter() - t0)
                    elif line.startswith("data:") and kind in ("done", "stopped", "error"):
                        closing.append({"event": kind, **json.loads(line[5:])})
                        break
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    during = predict_latencies(client, pngs, ended.is_set)
    metrics = closing[0].get("metrics", {}) if closing else {}
    return {"first_epoch_s": round(first[0], 3) if first else None,
            "run_s": round(time.perf_counter() - t0, 2), "closing": closing[0]["event"],
            "test_accuracy": metrics.get("test_accuracy"), "predict": summary(during)}


def browser_first_point(url: str, preset: str) -> list[float]:
    """Seconds from pressing Train to the first point on the loss curve, for two runs."""
    from playwright.sync_api import sync_playwright

    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu",
                                                   "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{url}/#preset={preset}")
        page.wait_for_function("document.body.dataset.trainReady === '1'")
        for n in (1, 2):
            page.evaluate("""(n) => { window.pressed = performance.now(); new MutationObserver(
                (_, observer) => {
                  if (document.querySelectorAll('#train-runs .run').length === n &&
                      document.querySelector('#chart-loss circle.point')) {
                    window.firstPoint = performance.now(); observer.disconnect(); }
                }).observe(document.querySelector('#chart-loss'), {childList: true}); }""", n)
            page.click("#train-start")
            page.wait_for_function("window.firstPoint !== undefined", timeout=300_000)
            seconds.append(round(page.evaluate("(window.firstPoint - window.pressed) / 1000"), 3))
            page.evaluate("window.firstPoint = undefined")
            page.wait_for_function("document.body.dataset.training === '0'", timeout=600_000)
        browser.close()
    return seconds


@contextmanager
def serving(model_path: Path) -> Iterator[str]:
    """A fresh ``digitnet serve`` in its own process; yields its address."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "digitnet.cli", "serve", str(model_path), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--idle-requests", type=int, default=300)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    test_images, _ = datasets.load("mnist", "test", download=False)
    pngs = [digit_png(test_images[k]) for k in range(50)]
    with tempfile.TemporaryDirectory() as folder:
        model_path = Path(folder) / "served.safetensors"
        config = training.make_config("default", epochs=2)
        modelfile.save(runner.train_on_dataset(config, download=False), model_path)
        with serving(model_path) as url, httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(20):  # warm up
                client.post("/api/predict", content=pngs[0],
                            headers={"Content-Type": "image/png"})
            count = iter(range(args.idle_requests))
            idle = predict_latencies(client, pngs, lambda: next(count, None) is None)
            first = run_and_watch(client, {"preset": args.preset}, pngs)
            second = run_and_watch(client, {"preset": args.preset}, pngs)
        result = {"preset": args.preset, "idle": summary(idle), "first_run": first,
                  "second_run": second}
        if args.browser and CHROMIUM.exists():
            with serving(model_path) as url:
                result["browser_first_point_s"] = browser_first_point(url, args.preset)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"preset {args.preset}")
    print(f"  predict idle:           {result['idle']}")
    for name in ("first_run", "second_run"):
        run = result[name]
        print(f"  {name}: first epoch event {run['first_epoch_s']} s after POST, run "
              f"{run['run_s']} s, {run['closing']}, test {run['test_accuracy']}")
        print(f"    predict during run:   {run['predict']}")
    if "browser_first_point_s" in result:
        print(f"  browser: Train pressed -> first curve point {result['browser_first_point_s']} s "
              "(a fresh server's first run, then a second)")


if __name__ == "__main__":
    main()
