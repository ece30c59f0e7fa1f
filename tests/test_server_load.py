"""The drawing demo's server under load and abuse.

``digitnet serve`` runs in a subprocess on a free port of 127.0.0.1 and is driven by httpx and raw
sockets: thousands of predictions at once, oversized, malformed and stalled uploads. Its stderr
goes to a file, so each test can read the log lines its requests caused.

Latency and throughput are measured, never asserted: each load run writes its figures to
``artifacts/server-load-<digits>.json`` at the top of the repository (git ignores it) and to the
test's properties (``pytest --junitxml``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from digitnet import datasets, imaging, modelfile, runner, training  # noqa: E402
from digitnet.model import Model  # noqa: E402
from digitnet.web.app import MAX_BODY  # noqa: E402


def run_async(coroutine: Any) -> Any:
    """Run a coroutine to its end on a thread of its own.

    The session's browser keeps Playwright's event loop running on the main thread,
    where ``asyncio.run`` refuses to start a second one.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


HOST = "127.0.0.1"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
N_REQUESTS = 2000
CONCURRENCY = 16
LOAD_TIMEOUT = 120.0  # seconds for the whole load run; it ends by itself long before
START_TIMEOUT = 60.0
# What `digitnet serve` logs for each refused request: one line on stderr.
LOG_LINE = re.compile(r"WARNING:  POST /api/predict -> (\d{3}): (.+)")


# -- the server -------------------------------------------------------------------------------


@dataclass
class Server:
    """A running ``digitnet serve`` and the file its stderr goes to."""

    process: subprocess.Popen[bytes]
    port: int
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_mark(self) -> int:
        """Where the log ends now; :meth:`log_since` reads the lines written after it."""
        return self.stderr.stat().st_size

    def log_since(self, mark: int) -> list[str]:
        with self.stderr.open("rb") as log:
            log.seek(mark)
            return log.read().decode().splitlines()

    def wait_for_log(self, mark: int, n_lines: int, timeout: float = 30.0) -> list[str]:
        """The lines after ``mark`` once there are ``n_lines`` of them (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while len(lines := self.log_since(mark)) < n_lines and time.monotonic() < deadline:
            time.sleep(0.02)
        return lines

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"the server exited: {self.stderr.read_text()}"
        assert "Traceback" not in self.stderr.read_text()


def digitnet_command() -> list[str]:
    script = Path(sys.executable).with_name("digitnet")
    if script.exists():
        return [str(script)]
    found = shutil.which("digitnet")
    if found:
        return [found]
    return [sys.executable, "-c", "from digitnet.cli import main; main()"]


@contextmanager
def serving(model_path: Path, folder: Path, nofile: int | None = None) -> Iterator[Server]:
    """Run ``digitnet serve model_path`` on a free port of 127.0.0.1 until the block ends,
    with at most ``nofile`` file descriptors when given."""
    stderr, stdout = folder / "serve-stderr.log", folder / "serve-stdout.log"
    env = {k: v for k, v in os.environ.items() if k != "DIGITNET_DATA"}
    env.update(OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    # --port 0: the system picks a free port and uvicorn logs which; no port is ever guessed.
    command = [*digitnet_command(), "serve", str(model_path), "--host", HOST, "--port", "0",
               "--data-dir", str(folder / "no-data")]
    with stderr.open("wb") as err, stdout.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env,
                                   preexec_fn=None if nofile is None else _limit_fds(nofile))
    try:
        port = _started_port(process, stderr)
        yield Server(process, port, stderr)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _limit_fds(n: int) -> Any:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return limit


def _started_port(process: subprocess.Popen[bytes], stderr: Path) -> int:
    started = re.compile(rf"Uvicorn running on http://{re.escape(HOST)}:(\d+)")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if match := started.search(stderr.read_text()):
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"digitnet serve did not start: {stderr.read_text()}")


# -- digits -----------------------------------------------------------------------------------


def drawn_digit(label: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """A typeset digit, light ink on black, as a (side, side) uint8 array: size, place, stroke
    and slant vary with ``rng``."""
    image = Image.new("L", (side, side), 0)
    font = ImageFont.load_default(size=round(side * rng.uniform(0.55, 0.8)))
    centre = side / 2 + rng.uniform(-0.1, 0.1, 2) * side
    ImageDraw.Draw(image).text(tuple(centre), str(label), fill=255, font=font, anchor="mm",
                               stroke_width=int(rng.integers(0, 2)), stroke_fill=255)
    return np.asarray(image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR))


def drawn_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    return np.stack([drawn_digit(int(k), 28, rng) for k in labels]), labels


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode("ascii")


def as_canvas(digit: np.ndarray) -> bytes:
    """The PNG the page sends: a 280x280 canvas, transparent but for the ink."""
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = np.kron(digit, np.ones((10, 10), np.uint8))
    return png(rgba)


@dataclass
class Case:
    """One prediction request and what the model gives in-process for the same input."""

    kind: str
    request: dict[str, Any]
    input28: np.ndarray
    label: int
    probabilities: np.ndarray
    true_label: int


def cases(model: Model, digits: np.ndarray, labels: np.ndarray) -> list[Case]:
    """Requests of four kinds, taking turns: 784 pixel values, a PNG data URL, a larger PNG of
    dark ink on light paper as a data URL, and the raw 280x280 canvas PNG the page sends."""
    made = []
    for i, (digit, true_label) in enumerate(zip(digits, labels, strict=True)):
        kind = ("pixels", "data-url", "data-url-dark", "canvas")[i % 4]
        if kind == "pixels":
            values = digit.reshape(-1).tolist()
            request: dict[str, Any] = {"json": {"pixels": values}}
            input28 = imaging.from_values(values)
        else:
            if kind == "canvas":
                data = as_canvas(digit)
                request = {"content": data, "headers": {"Content-Type": "image/png"}}
            else:
                image = digit if kind == "data-url" else 255 - np.kron(digit, np.ones((4, 4),
                                                                                      np.uint8))
                data = png(image)
                request = {"json": {"image": data_url(data)}}
            input28 = imaging.preprocess(data)
        probabilities = model.predict_proba(input28[None])[0]
        label = int(model.predict(input28[None])[0])
        made.append(Case(kind, request, input28, label, probabilities, int(true_label)))
    return made


GOOD = drawn_digit(7, 28, np.random.default_rng(7))


def good_request(client: httpx.Client, model: Model) -> None:
    """A prediction that must succeed, with the label the model gives in-process."""
    response = client.post("/api/predict", json={"pixels": GOOD.reshape(-1).tolist()})
    assert response.status_code == 200, response.text
    expected = model.predict(imaging.from_values(GOOD.reshape(-1))[None])[0]
    assert response.json()["label"] == expected


# -- fixtures ---------------------------------------------------------------------------------


def trained_on_drawn_digits() -> Model:
    images, labels = drawn_digits(1000, seed=0)
    mnist_style = np.stack([imaging.to_mnist(image) for image in images])
    config = training.make_config("default", epochs=5, val_size=200, seed=0)
    return training.train(config, mnist_style, labels)


@pytest.fixture(scope="module")
def model() -> Model:
    """A network trained in a second on typeset digits: it reads them, and it is enough to
    check the server's answers against."""
    return trained_on_drawn_digits()


@pytest.fixture(scope="module")
def server(model: Model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    path = modelfile.save(model, folder / "model.safetensors")
    with serving(path, folder) as running:
        yield running
        running.assert_alive()


def assert_error(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    for word in words:
        assert word in body["error"], body["error"]
    return body["error"]


def assert_logged(lines: list[str], refused: list[tuple[int, str]]) -> None:
    """``lines`` are exactly one log line for each refused (status, error), in any order."""
    assert "Traceback" not in "\n".join(lines)
    logged = []
    for line in lines:
        match = LOG_LINE.fullmatch(line)
        assert match, f"not a log line of a refused request: {line!r}"
        logged.append((int(match.group(1)), match.group(2)))
    assert Counter(logged) == Counter(refused)


# -- 1. load ----------------------------------------------------------------------------------


async def post_all(url: str, requests: list[dict[str, Any]]) -> tuple[list[Any], float]:
    """POST each request to /api/predict, at most CONCURRENCY at a time. Each result is
    (seconds, status, answer) or (None, None, the transport error); also the wall time."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(request: dict[str, Any]) -> tuple[Any, ...]:
            async with semaphore:
                start = time.perf_counter()
                try:
                    response = await client.post("/api/predict", **request)
                except httpx.HTTPError as exc:
                    return None, None, repr(exc)
                seconds = time.perf_counter() - start
                return seconds, response.status_code, response.json()

        start = time.perf_counter()
        results = await asyncio.gather(*(one(request) for request in requests))
        return results, time.perf_counter() - start


def check_answers(made: list[Case], results: list[Any]) -> dict[str, list[str]]:
    """Every way an answer can be wrong, with the request numbers it happened to."""
    problems: dict[str, list[str]] = {"transport": [], "status": [], "label": [],
                                      "probabilities": [], "input28": []}
    for i, (result, case) in enumerate(zip(results, made, strict=True)):
        seconds, status, answer = result
        if seconds is None:
            problems["transport"].append(f"#{i}: {answer}")
        elif status != 200:
            problems["status"].append(f"#{i} {case.kind}: {status} {answer}")
        else:
            probabilities = np.array(answer["probabilities"])
            if answer["label"] != case.label:
                problems["label"].append(f"#{i} {case.kind}: {answer['label']} != {case.label}")
            if abs(probabilities.sum() - 1) > 1e-5 or \
                    not np.allclose(probabilities, case.probabilities, atol=2e-6, rtol=0):
                problems["probabilities"].append(f"#{i} {case.kind}: {probabilities}")
            if not np.array_equal(np.array(answer["input28"]), case.input28):
                problems["input28"].append(f"#{i} {case.kind}")
    return problems


def figures(results: list[Any], wall: float, made: list[Case], digits: str) -> dict[str, Any]:
    latencies = np.array([r[0] for r in results if r[0] is not None]) * 1000
    errors = sum(r[0] is None or r[1] != 200 for r in results)
    agree = [r[2]["label"] == c.true_label for r, c in zip(results, made, strict=True)
             if r[1] == 200]
    return {
        "digits": digits,
        "requests": len(results),
        "concurrency": CONCURRENCY,
        "kinds": dict(Counter(case.kind for case in made)),
        "errors": errors,
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(results) / wall, 1),
        "latency_ms": {q: round(float(np.percentile(latencies, p)), 2) for q, p in
                       (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "agree_with_true_label": round(float(np.mean(agree)), 4) if agree else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


@dataclass
class Target:
    """A server under load, the model it runs and 500 test digits to send it."""

    name: str
    digits: np.ndarray
    labels: np.ndarray
    model: Model
    server: Server


@pytest.fixture(scope="module")
def mnist_target(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The default preset trained for one epoch on the real MNIST, served, and its test digits."""
    config = training.make_config("default", epochs=1, seed=0)
    mnist_model = runner.train_on_dataset(config, mnist_dir, download=False)
    images, labels = datasets.load("mnist", "test", mnist_dir, download=False)
    folder = tmp_path_factory.mktemp("serve-mnist")
    path = modelfile.save(mnist_model, folder / "model.safetensors")
    with serving(path, folder) as server:
        yield Target("mnist", images[:500], labels[:500], mnist_model, server)
        server.assert_alive()


@pytest.fixture(params=["drawn", pytest.param("mnist", marks=pytest.mark.mnist)])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "mnist":
        return request.getfixturevalue("mnist_target")  # skips when the real MNIST is missing
    digits, labels = drawn_digits(500, seed=1)
    return Target("drawn", digits, labels, request.getfixturevalue("model"),
                  request.getfixturevalue("server"))


def test_2000_predictions_at_concurrency_16_all_match_the_model(target, record_property):
    server = target.server
    made = cases(target.model, target.digits, target.labels)
    assert len({case.label for case in made}) >= 5  # the answers are not all one digit
    order = [made[i % len(made)] for i in range(N_REQUESTS)]
    mark = server.log_mark()
    results, wall = run_async(asyncio.wait_for(
        post_all(server.url, [case.request for case in order]), LOAD_TIMEOUT))
    server.assert_alive()
    assert server.log_since(mark) == []  # no request was refused, so nothing is logged

    measured = figures(results, wall, order, target.name)
    for key, value in measured.items():
        record_property(key, value)
    ARTIFACTS.mkdir(exist_ok=True)
    artifact = ARTIFACTS / f"server-load-{target.name}.json"
    artifact.write_text(json.dumps(measured, indent=2) + "\n")

    problems = check_answers(order, results)
    assert {kind: len(found) for kind, found in problems.items()} == dict.fromkeys(problems, 0), \
        {kind: found[:5] for kind, found in problems.items() if found}
    assert measured["errors"] == 0


# -- 2. size limit ----------------------------------------------------------------------------


def test_a_50_mb_upload_is_refused_with_413_and_the_server_goes_on(server, model):
    fifty = 50_000_000
    mark = server.log_mark()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        stated = client.post("/api/predict", content=bytes(fifty),
                             headers={"Content-Type": "image/png"})
        first = assert_error(stated, 413, "50,000,000 bytes", f"{MAX_BODY:,}")
        # Without Content-Length the body streams in and is cut off as it passes the limit.
        streamed = client.post("/api/predict", content=(b" " * 1_000_000 for _ in range(50)),
                               headers={"Content-Type": "application/json"})
        assert "content-length" not in streamed.request.headers
        second = assert_error(streamed, 413, "limit")
        assert client.get("/healthz").json() == {"status": "ok"}
        good_request(client, model)
    assert_logged(server.log_since(mark), [(413, first), (413, second)])
    server.assert_alive()


# -- 3. malformed input -----------------------------------------------------------------------


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(GOOD).save(buffer, format="JPEG")
    return buffer.getvalue()


def _pixels(values: list[Any]) -> dict[str, Any]:
    return {"content": json.dumps({"pixels": values}).encode(),
            "headers": {"Content-Type": "application/json"}}


def _raw(body: bytes, media: str = "application/json") -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": media}}


ZEROS = [0] * 783
BAD = {
    "malformed-json": (_raw(b'{"pixels": [1, 2'), 400, "not valid JSON"),
    "not-json": (_raw(b"pixels=1,2,3"), 400, "not valid JSON"),
    "empty-body": (_raw(b""), 400, "empty"),
    "not-utf8": (_raw(b"\xff\xfe\x00{"), 400, "UTF-8"),
    "no-pixels-key": (_raw(b'{"picture": []}'), 422, "pixels"),
    "783-values": (_pixels(ZEROS), 422, "got 783"),
    "785-values": (_pixels(ZEROS + [0, 0]), 422, "got 785"),
    "28x28-nested": (_pixels([[0] * 28] * 28), 422, "(28, 28)"),
    "nan": (_raw(b'{"pixels": [NaN' + b", 0" * 783 + b"]}"), 422, "NaN"),
    "infinity": (_raw(b'{"pixels": [0' + b", 0" * 782 + b", Infinity]}"), 422, "Infinity"),
    "1e999": (_raw(b'{"pixels": [1e999' + b", 0" * 783 + b"]}"), 422, "finite"),
    "deeply-nested": (_raw(b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 400,
                      "nested too deeply"),
    "5000-digit-int": (_raw(b'{"pixels": [' + b"9" * 5000 + b", 0" * 783 + b"]}"), 422,
                       "too long"),
    "400-digit-int": (_pixels([10**400] + ZEROS), 422, "(401 characters), outside"),
    "256": (_pixels(ZEROS + [256]), 422, "outside 0..255"),
    "negative": (_pixels([-0.5] + ZEROS), 422, "outside 0..255"),
    "string-value": (_pixels(["9"] + ZEROS), 422, "not a number"),
    "blank-drawing": (_pixels(ZEROS + [0]), 422, "draw a digit"),
    "jpeg-as-png": (_raw(_jpeg(), "image/png"), 415, "not a PNG"),
    "text-as-png": (_raw(b"hello", "image/png"), 415, "not a PNG"),
    "truncated-png": (_raw(png(np.kron(GOOD, np.ones((4, 4), np.uint8)))[:80], "image/png"),
                      422, ""),
    "huge-png": (_raw(png(np.zeros((4000, 4000), np.uint8)), "image/png"), 422, "4000x4000"),
    "gif-data-url": ({"json": {"image": data_url(b"GIF89a" + bytes(40))}}, 415, "not a PNG"),
    "jpeg-data-url": ({"json": {"image": data_url(_jpeg(), "image/jpeg")}}, 415, "PNG"),
    "bad-base64": ({"json": {"image": "data:image/png;base64,not base64!"}}, 422, "base64"),
    "text-plain": (_raw(b"7", "text/plain"), 415, "application/json"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_gets_a_json_error_one_log_line_and_the_next_request_succeeds(
        server, model, name):
    request, status, words = BAD[name]
    mark = server.log_mark()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        error = assert_error(client.post("/api/predict", **request), status, words)
        good_request(client, model)
    assert_logged(server.log_since(mark), [(status, error)])


# -- 4. slow clients --------------------------------------------------------------------------


async def slow_upload(port: int, trickle: bool, stop: asyncio.Event) -> bytes:
    """Send headers promising a large body, then a byte every 50 ms (or nothing) until
    ``stop``; what the server sent back meanwhile is returned."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: " + str(MAX_BODY - 1).encode() + b"\r\n\r\n" + b'{"pixels": [')
    await writer.drain()
    while not stop.is_set():
        if trickle:
            writer.write(b"0")
            await writer.drain()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    received = b""
    with suppress(asyncio.TimeoutError):
        received = await asyncio.wait_for(reader.read(4096), 0.05)
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()
    return received


async def slow_half_headers(port: int, stop: asyncio.Event) -> None:
    """Send part of the request line and headers, a byte at a time, never finishing them."""
    _, writer = await asyncio.open_connection(HOST, port)
    for byte in b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ":
        if stop.is_set():
            break
        writer.write(bytes([byte]))
        await writer.drain()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    await stop.wait()
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()


async def others_while_slow(server: Server, model: Model, n_slow: int) -> tuple[list[Any], Any]:
    stop = asyncio.Event()
    uploads = [asyncio.create_task(slow_upload(server.port, trickle=k % 2 == 0, stop=stop))
               for k in range(n_slow)]
    headers = [asyncio.create_task(slow_half_headers(server.port, stop)) for _ in range(2)]
    await asyncio.sleep(0.3)  # every slow client is connected and sending
    pixels = GOOD.reshape(-1).tolist()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        answers = await asyncio.gather(*(
            client.post("/api/predict", json={"pixels": pixels}) for _ in range(50)))
    stop.set()
    await asyncio.gather(*headers)
    return await asyncio.gather(*uploads), answers


def test_slow_uploads_do_not_hold_up_other_clients(server, model):
    n_slow = 8
    mark = server.log_mark()
    while_slow = asyncio.wait_for(others_while_slow(server, model, n_slow), 60)
    slow_replies, answers = run_async(while_slow)
    expected = model.predict(imaging.from_values(GOOD.reshape(-1))[None])[0]
    assert [a.status_code for a in answers] == [200] * 50
    assert {a.json()["label"] for a in answers} == {expected}
    # The slow uploads were still going (nothing answered) while the others were served.
    assert slow_replies == [b""] * n_slow
    # Each went away mid-body: one line each, and the unfinished headers log nothing.
    went_away = "the client went away before sending the whole body"
    assert_logged(server.wait_for_log(mark, n_slow), [(400, went_away)] * n_slow)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        good_request(client, model)
    server.assert_alive()


# -- 5. logging under load --------------------------------------------------------------------


def test_a_burst_of_bad_requests_logs_one_line_each_and_good_ones_go_through(server, model):
    bad = [BAD[name] for name in ("malformed-json", "783-values", "nan", "256", "text-as-png",
                                  "gif-data-url", "blank-drawing", "empty-body")]
    good = {"json": {"pixels": GOOD.reshape(-1).tolist()}}
    requests = [bad[i // 2 % len(bad)][0] if i % 2 else good for i in range(200)]
    mark = server.log_mark()
    results, _ = run_async(asyncio.wait_for(post_all(server.url, requests), LOAD_TIMEOUT))
    assert all(seconds is not None for seconds, _, _ in results), results
    statuses = [status for _, status, _ in results]
    assert statuses[0::2] == [200] * 100
    assert statuses[1::2] == [bad[i % len(bad)][1] for i in range(100)]
    refused = [(status, answer["error"]) for _, status, answer in results if status != 200]
    assert_logged(server.wait_for_log(mark, len(refused)), refused)
    server.assert_alive()


# -- 6. idle connections and oversized images, under tight limits -----------------------------

N_IDLE = 1100
FD_LIMIT = 1024
RSS_LIMIT_MB = 500


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def _open_idle(port: int, n: int) -> list[Any]:
    import resource
    import socket

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        if hard != resource.RLIM_INFINITY and hard < n + 200:
            pytest.skip(f"this test needs {n + 200} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 200, hard))
    sockets = []
    for _ in range(n):
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def _closed_by_server(sockets: list[Any]) -> int:
    closed = 0
    for sock in sockets:
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def test_1100_idle_connections_under_1024_descriptors(model, tmp_path, record_property):
    path = modelfile.save(model, tmp_path / "model.safetensors")
    with serving(path, tmp_path, nofile=FD_LIMIT) as server:
        mark = server.log_mark()
        idle = _open_idle(server.port, N_IDLE)
        try:
            seconds = []
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for _ in range(20):
                    start = time.perf_counter()
                    assert client.get("/healthz").json() == {"status": "ok"}
                    good_request(client, model)
                    seconds.append(time.perf_counter() - start)
            open_fds = len(os.listdir(f"/proc/{server.process.pid}/fd"))
            closed = _closed_by_server(idle)
        finally:
            for sock in idle:
                sock.close()
        lines = server.log_since(mark)
        server.assert_alive()
        access = (tmp_path / "serve-stdout.log").read_text().splitlines()
    figures = {"idle_connections": N_IDLE, "fd_limit": FD_LIMIT,
               "closed_by_server": closed, "server_fds": open_fds,
               "healthz_and_predict_max_s": round(max(seconds), 4),
               "healthz_and_predict_median_s": round(float(np.median(seconds)), 4),
               "log_lines": len(lines), "access_log_lines": len(access)}
    for key, value in figures.items():
        record_property(key, value)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "server-idle-connections.json").write_text(json.dumps(figures, indent=1))
    assert len(lines) + len(access) < 100, lines[:5]
    assert "Traceback" not in "\n".join(lines)
    assert open_fds < FD_LIMIT
    assert closed >= N_IDLE - FD_LIMIT  # the ones over the limit were closed, not left to pile


def oversized_png(width: int, height: int) -> bytes:
    """A black PNG of width x height, its text chunk before IHDR: small on disk, enormous
    decoded, and the header not where a fixed-offset check would look."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body)))

    rows = zlib.compressobj(9)
    idat = b"".join(rows.compress(b"\0" + bytes(width)) for _ in range(height)) + rows.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"tEXt", b"Comment\0drawn") +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def largest_accepted_png() -> bytes:
    """The largest PNG the server decodes: 2048x2048 RGBA, a stroke on a transparent layer."""
    rgba = np.zeros((2048, 2048, 4), np.uint8)
    rgba[400:1600, 900:1100, 3] = 255
    return png(rgba)


def test_8_oversized_uploads_at_once_keep_the_server_small(model, tmp_path, record_property):
    path = modelfile.save(model, tmp_path / "model.safetensors")
    bombs = [oversized_png(7000, 7000), oversized_png(3000, 3000)]
    accepted = largest_accepted_png()
    assert max(len(b) for b in bombs) < 100_000

    async def upload_all(url: str, bodies: list[bytes]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/api/predict", content=body,
                            headers={"Content-Type": "image/png"}) for body in bodies))

    with serving(path, tmp_path) as server:
        before = _peak_rss_mb(server.process.pid)
        refused = run_async(upload_all(server.url, [bombs[i % 2] for i in range(8)]))
        after_bombs = _peak_rss_mb(server.process.pid)
        answered = run_async(upload_all(server.url, [accepted] * 8))
        after_largest = _peak_rss_mb(server.process.pid)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            good_request(client, model)
        server.assert_alive()
    for i, response in enumerate(refused):
        side = 7000 if i % 2 == 0 else 3000
        assert_error(response, 422, f"{side}x{side}", "limit")
    assert [r.status_code for r in answered] == [200] * 8
    figures = {"peak_rss_mb_at_start": round(before, 1),
               "peak_rss_mb_after_8_oversized": round(after_bombs, 1),
               "peak_rss_mb_after_8_largest_accepted": round(after_largest, 1)}
    for key, value in figures.items():
        record_property(key, value)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "server-oversized-uploads.json").write_text(json.dumps(figures, indent=1))
    assert after_largest < RSS_LIMIT_MB, figures
