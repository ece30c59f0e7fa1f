"""Tests of the drawing demo's API (digitnet.web.app) with FastAPI's TestClient: no port, no
browser. The model is a small random network; what is tested is the API's contract."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from digitnet import modelfile, network  # noqa: E402
from digitnet.cli import app as cli_app  # noqa: E402
from digitnet.model import Model, Preprocessing  # noqa: E402
from digitnet.web import app as web  # noqa: E402


def random_model(hidden: int = 10, seed: int = 0) -> Model:
    params = network.init_params((784, hidden, 10), np.random.default_rng(seed))
    meta = {"preset": "default", "metrics": {"test_accuracy": 0.9, "dev_accuracy": float("nan")},
            "config": {"dataset": "mnist"}}
    return Model(params, Preprocessing(1 / 255, 0.13, 0.31), meta)


def seven(side: int = 28) -> np.ndarray:
    """A '7', light ink on black, as a (side, side) uint8 array."""
    image = Image.new("L", (side, side), 0)
    s = side / 28
    ImageDraw.Draw(image).line([(6 * s, 5 * s), (21 * s, 5 * s), (11 * s, 23 * s)], 255,
                               max(1, round(3 * s)))
    return np.asarray(image)


def png(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode("ascii")


@pytest.fixture
def samples() -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([seven(), np.zeros((28, 28), np.uint8) + 7, seven()])
    return images, np.array([7, 1, 7], dtype=np.uint8)


@pytest.fixture
def client(samples) -> TestClient:
    app = web.create_app(random_model(), samples, rng=np.random.default_rng(0))
    return TestClient(app, raise_server_exceptions=True)


def post_json(client: TestClient, payload: object):
    return client.post("/api/predict", json=payload)


def post_raw(client: TestClient, body: bytes, content_type: str = "application/json"):
    return client.post("/api/predict", content=body, headers={"Content-Type": content_type})


def assert_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    for word in words:
        assert word in body["error"], body["error"]
    return body["error"]


# -- good paths -------------------------------------------------------------------------------


def test_pixels_png_data_url_and_raw_png_give_the_same_answer(client):
    digit = seven()
    by_pixels = post_json(client, {"pixels": digit.reshape(-1).tolist()})
    by_url = post_json(client, {"image": data_url(png(digit))})
    by_raw = post_raw(client, png(digit), "image/png")
    for response in (by_pixels, by_url, by_raw):
        assert response.status_code == 200, response.text
    answers = [r.json() for r in (by_pixels, by_url, by_raw)]
    assert answers[0]["label"] == answers[1]["label"] == answers[2]["label"]
    assert answers[0]["input28"] == answers[1]["input28"] == answers[2]["input28"]
    np.testing.assert_allclose(answers[0]["probabilities"], answers[1]["probabilities"])


def test_prediction_matches_the_model_on_the_preprocessed_input(client):
    from digitnet import imaging

    digit = seven(280)  # a large drawing, as the page sends it
    answer = post_raw(client, png(digit, "RGBA"), "image/png").json()
    expected_input = imaging.to_mnist(digit.astype(np.float32))
    assert np.array_equal(np.array(answer["input28"]), expected_input)
    assert np.array(answer["input28"]).shape == (28, 28)
    probabilities = np.array(answer["probabilities"])
    assert probabilities.shape == (10,)
    assert probabilities.sum() == pytest.approx(1, abs=1e-5)
    assert answer["label"] == int(np.argmax(probabilities))
    assert answer["class_name"] == str(answer["label"])
    assert len(answer["hidden"]) == 10 and min(answer["hidden"]) >= 0


def test_the_answer_is_the_models_forward_pass():
    model = random_model(seed=3)
    client = TestClient(web.create_app(model))
    digit = seven()
    answer = client.post("/api/predict", json={"pixels": digit.reshape(-1).tolist()}).json()
    fwd = model.forward(np.array(answer["input28"], dtype=np.uint8).reshape(1, 784))
    np.testing.assert_allclose(answer["probabilities"], fwd.probabilities[0], atol=1e-6)
    np.testing.assert_allclose(answer["hidden"], fwd.A[1][0], atol=1e-4)


def test_dark_ink_on_light_paper_reads_like_light_on_dark(client):
    digit = seven(140)
    light = post_raw(client, png(digit), "image/png").json()
    dark = post_raw(client, png(255 - digit), "image/png").json()
    assert light["input28"] == dark["input28"]


def test_model_weights_health_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/model").json()
    assert info["sizes"] == [784, 10, 10]
    assert info["class_names"] == [str(k) for k in range(10)]
    assert info["preset"] == "default" and info["samples"] is True
    assert info["metrics"]["dev_accuracy"] is None  # NaN is not JSON
    weights = client.get("/api/weights").json()
    assert len(weights["units"]) == 10
    unit = weights["units"][0]
    assert np.array(unit["weights"]).shape == (28, 28)
    assert len(unit["outgoing"]) == 10
    assert weights["limit"] > 0
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200


def test_weights_are_the_columns_of_W1():
    model = random_model(seed=5)
    weights = TestClient(web.create_app(model)).get("/api/weights").json()
    W1 = model.params.W[0]
    for j, unit in enumerate(weights["units"]):
        np.testing.assert_allclose(np.array(unit["weights"]).reshape(-1), W1[:, j], atol=1e-4)
        np.testing.assert_allclose(unit["outgoing"], model.params.W[1][j], atol=1e-5)


def test_the_page_loads_nothing_from_other_hosts():
    for path in web.STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path.name
        assert "//cdn" not in text, path.name


def test_sample_digits(client, samples):
    images, labels = samples
    answer = client.get("/api/sample").json()
    assert 0 <= answer["index"] < len(images)
    assert len(answer["pixels"]) == 784
    assert answer["label"] == labels[answer["index"]]
    chosen = client.get("/api/sample", params={"index": 1}).json()
    assert chosen["label"] == 1 and set(chosen["pixels"]) == {7}
    assert_error(client.get("/api/sample", params={"index": 3}), 422, "out of range")
    assert_error(client.get("/api/sample", params={"index": "x"}), 422, "index")


def test_without_samples_the_sample_endpoint_answers_404():
    client = TestClient(web.create_app(random_model()))
    assert_error(client.get("/api/sample"), 404, "no test digits")
    assert client.get("/api/model").json()["samples"] is False


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    {"pixels": [0] * 784},
    {"pixels": [255] * 784},
    {"pixels": [30] * 783 + [40]},  # faint noise, no digit
    {"image": data_url(png(np.zeros((280, 280), np.uint8)))},
    {"image": data_url(png(np.full((280, 280), 255, np.uint8), "RGBA"))},
])
def test_an_empty_drawing_says_draw_a_digit(client, payload):
    response = post_json(client, payload)
    assert_error(response, 422, "draw a digit")
    assert "label" not in response.json()


def test_an_empty_raw_png_says_draw_a_digit(client):
    assert_error(post_raw(client, png(np.zeros((50, 50), np.uint8)), "image/png"), 422,
                 "draw a digit")


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, ["empty"]),
    (b"pixels=1,2,3", 400, ["not valid JSON"]),
    (b'{"pixels": [1, 2', 400, ["not valid JSON"]),
    (b"\xff\xfe\x00", 400, ["UTF-8"]),
    (b"[1, 2, 3]", 422, ["pixels"]),
    (b'{"picture": []}', 422, ["pixels"]),
    (b'{"pixels": [], "image": ""}', 422, ["pixels"]),
    (b'{"pixels": "0,0,0"}', 422, ["list"]),
    (b'{"pixels": [1, 2, 3]}', 422, ["784", "got 3"]),
    (json.dumps({"pixels": [0] * 785}).encode(), 422, ["784", "got 785"]),
    (json.dumps({"pixels": [[0] * 28] * 28}).encode(), 422, ["784", "shape (28, 28)"]),
    (b'{"pixels": [' + b"0, " * 783 + b"NaN]}", 422, ["NaN", "finite"]),
    (b'{"pixels": [Infinity' + b", 0" * 783 + b"]}", 422, ["Infinity", "finite"]),
    (b'{"pixels": [-Infinity' + b", 0" * 783 + b"]}", 422, ["Infinity", "finite"]),
    (b'{"pixels": [1e999' + b", 0" * 783 + b"]}", 422, ["pixels", "index 0", "finite"]),
    (json.dumps({"pixels": [0] * 783 + [256]}).encode(), 422,
     ["pixels", "index 783", "outside 0..255"]),
    (json.dumps({"pixels": [-1] + [0] * 783}).encode(), 422,
     ["pixels", "index 0", "outside 0..255"]),
    (json.dumps({"pixels": [0] * 10 + ["9"] + [0] * 773}).encode(), 422,
     ["pixels[10]", "not a number"]),
    (json.dumps({"pixels": [True] * 784}).encode(), 422, ["pixels[0]", "not a number"]),
    (json.dumps({"pixels": [None] * 784}).encode(), 422, ["pixels[0]", "not a number"]),
    (json.dumps({"image": 5}).encode(), 422, ["data URL"]),
    (json.dumps({"image": "iVBORw0KGgo="}).encode(), 422, ["data URL"]),
    (json.dumps({"image": "data:image/png,abc"}).encode(), 422, ["base64"]),
    (json.dumps({"image": "data:image/png;base64,not base64!"}).encode(), 422, ["base64"]),
    (json.dumps({"image": "data:image/jpeg;base64,/9j/4AAQ"}).encode(), 415, ["PNG"]),
    (json.dumps({"image": data_url(b"GIF89a" + bytes(40))}).encode(), 415, ["not a PNG"]),
    (json.dumps({"image": data_url(b"\x89PNG\r\n\x1a\n" + bytes(30))}).encode(), 422, []),
])
def test_bad_json_bodies_are_refused_with_a_json_error(client, body, status, words):
    assert_error(post_raw(client, body), status, *words)


def test_a_non_png_upload_is_refused(client):
    buffer = io.BytesIO()
    Image.fromarray(seven()).save(buffer, format="JPEG")
    assert_error(post_raw(client, buffer.getvalue(), "image/png"), 415, "not a PNG")
    assert_error(post_raw(client, b"hello", "image/png"), 415, "not a PNG")
    truncated = png(seven(100))[:60]
    assert_error(post_raw(client, truncated, "image/png"), 422)


def test_other_content_types_are_refused(client):
    assert_error(post_raw(client, b"abc", "text/plain"), 415, "application/json", "image/png")
    response = client.post("/api/predict", content=b'{"pixels": []}', headers={})
    assert_error(response, 415)


def test_a_png_too_large_to_decode_is_refused_before_decoding(client):
    # A 4000x4000 black PNG compresses to a few kilobytes: it is the stated size that counts.
    huge = png(np.zeros((4000, 4000), np.uint8))
    assert len(huge) < web.MAX_BODY
    assert_error(post_raw(client, huge, "image/png"), 422, "4000x4000")
    tiny = png(np.full((5, 5), 255, np.uint8))
    assert_error(post_raw(client, tiny, "image/png"), 422, "too small")


def test_a_body_over_the_limit_is_refused_with_413():
    client = TestClient(web.create_app(random_model(), max_body=10_000))
    big = json.dumps({"pixels": [0.123456789] * 784}).encode()
    assert len(big) > 10_000
    assert_error(post_raw(client, big), 413, "limit")
    # No Content-Length: the body arrives in chunks and is cut off as it passes the limit.
    chunks = (b"x" * 4096 for _ in range(100))
    response = client.post("/api/predict", content=chunks,
                           headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "limit")
    # The default limit is 2 MB.
    default = TestClient(web.create_app(random_model()))
    assert_error(post_raw(default, b" " * (web.MAX_BODY + 1)), 413)
    assert client.get("/healthz").status_code == 200


def test_a_lying_content_length_is_refused(client):
    response = client.post("/api/predict", content=b"{}",
                           headers={"Content-Type": "application/json",
                                    "Content-Length": "99999999"})
    assert_error(response, 413)


def test_unknown_paths_and_methods_answer_json(client):
    assert_error(client.get("/nowhere"), 404, "not found")
    assert_error(client.get("/static/nothing.js"), 404)
    assert_error(client.get("/api/predict"), 405)


def test_each_error_logs_one_line_and_the_server_keeps_serving(client, caplog):
    caplog.set_level(logging.WARNING, logger="digitnet.web")
    bad = [post_raw(client, b"nonsense"), post_json(client, {"pixels": [0] * 784}),
           post_raw(client, b"GIF89a", "image/png")]
    assert [r.status_code for r in bad] == [400, 422, 415]
    records = [r for r in caplog.records if r.name == "digitnet.web"]
    assert len(records) == 3
    for record in records:
        assert "\n" not in record.getMessage()
        assert "/api/predict" in record.getMessage()
    good = post_json(client, {"pixels": seven().reshape(-1).tolist()})
    assert good.status_code == 200


def test_create_app_refuses_a_model_that_does_not_take_784_inputs():
    params = network.init_params((100, 10, 10), np.random.default_rng(0))
    with pytest.raises(ValueError, match="784"):
        web.create_app(Model(params))


# -- digitnet serve ---------------------------------------------------------------------------


@pytest.fixture
def no_uvicorn(monkeypatch):
    """Record the server's runs instead of binding a port."""
    from digitnet.web import server

    calls = []
    monkeypatch.setattr(server, "run", lambda app, host, port, **kw: calls.append(
        (app, {"host": host, "port": port, **kw})))
    return calls


def test_serve_refuses_a_bad_model_file_before_binding(tmp_path: Path, no_uvicorn):
    runner = CliRunner()
    for content in (None, b"", b"not a model at all"):
        path = tmp_path / "model.safetensors"
        if content is not None:
            path.write_bytes(content)
        result = runner.invoke(cli_app, ["serve", str(path), "--port", "8123"])
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:")
        assert str(path) in lines[0]
        assert "Traceback" not in result.output
    assert no_uvicorn == []


def test_serve_starts_uvicorn_with_the_app(tmp_path: Path, no_uvicorn, monkeypatch):
    monkeypatch.delenv("DIGITNET_DATA", raising=False)
    path = modelfile.save(random_model(), tmp_path / "model.safetensors")
    result = CliRunner().invoke(cli_app, ["serve", str(path), "--port", "8123",
                                          "--data-dir", str(tmp_path / "nothing")])
    assert result.exit_code == 0, result.output
    (app, options), = no_uvicorn
    assert options["host"] == "127.0.0.1" and options["port"] == 8123
    assert TestClient(app).get("/healthz").json() == {"status": "ok"}


def test_serve_refuses_a_bad_port(tmp_path: Path, no_uvicorn):
    path = modelfile.save(random_model(), tmp_path / "model.safetensors")
    result = CliRunner().invoke(cli_app, ["serve", str(path), "--port", "70000"])
    assert result.exit_code == 1 and "port" in result.stderr
    assert no_uvicorn == []


# -- a real server ----------------------------------------------------------------------------


def stalled_upload(address: tuple[str, int]) -> socket.socket:
    """A client that sends headers and part of a body, then stops."""
    slow = socket.create_connection(address, timeout=10)
    slow.sendall(b"POST /api/predict HTTP/1.1\r\nHost: test\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                 b'{"pixels": [0, 0, ')
    return slow


def test_a_stalled_client_does_not_hold_up_others(serving):
    with serving(web.create_app(random_model())) as (host, port):
        slow = stalled_upload((host, port))
        try:
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=10) as others:
                assert others.get("/healthz").json() == {"status": "ok"}
                answer = others.post("/api/predict",
                                     json={"pixels": seven().reshape(-1).tolist()})
                assert answer.status_code == 200
                assert len(answer.json()["probabilities"]) == 10
        finally:
            slow.close()


def test_a_stalled_upload_is_answered_408(serving):
    with serving(web.create_app(random_model(), body_timeout=0.2)) as address:
        slow = stalled_upload(address)
        reply = b""
        try:
            while not reply.endswith(b"}"):
                chunk = slow.recv(4096)
                if not chunk:
                    break
                reply += chunk
        finally:
            slow.close()
    status_line, _, rest = reply.decode().partition("\r\n")
    assert status_line.startswith("HTTP/1.1 408")
    assert '{"error":"the body did not arrive within 0.2 seconds"}' in rest


# -- protocol and images as an adversary sends them -------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    crc = struct.pack(">I", zlib.crc32(kind + body))
    return struct.pack(">I", len(body)) + kind + body + crc


def text_first_png(width: int, height: int) -> bytes:
    """A black PNG whose text chunk comes before IHDR: the size is not at bytes 16-24."""
    import struct
    import zlib

    rows = zlib.compressobj(9)
    idat = b"".join(rows.compress(b"\0" + bytes(width)) for _ in range(height)) + rows.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"tEXt", b"Comment\0x") +
            _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


@pytest.mark.parametrize(("width", "height", "words"), [
    (7000, 7000, ["7000x7000", "limit"]),      # the case: 49 megapixels in 50 KB
    (2100, 2100, ["2100x2100", "limit"]),      # just over the pixel cap
    (4100, 10, ["4100x10", "largest accepted is 2048x2048"]),  # few pixels, too wide
])
def test_image_size_is_read_where_the_decoder_reads_it(client, width, height, words):
    data = text_first_png(width, height)
    assert_error(post_raw(client, data, "image/png"), 422, *words)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert_error(client.post("/api/predict", json={"image": url}), 422, *words)


@pytest.mark.parametrize("make_type", [5, 11], ids=["Make RATIONAL", "Make FLOAT"])
def test_malformed_exif_is_answered_not_500(client, make_type):
    from tiny_data import odd_exif

    image = Image.new("L", (80, 80), 255)
    ImageDraw.Draw(image).line([(40, 10), (40, 70)], fill=0, width=8)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=odd_exif(make_type))
    response = post_raw(client, buffer.getvalue(), "image/png")
    assert response.status_code == 200, response.text
    assert sum(response.json()["probabilities"]) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("path", ["/", "/healthz", "/api/model", "/api/weights",
                                  "/static/app.js"])
def test_head_answers_like_get_without_a_body(client, path):
    head, get = client.head(path), client.get(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.parametrize("value", ["bytes=abc", "bytes=5-2", "items=0-1", "bytes=-", "bytes=é"])
def test_a_malformed_range_is_ignored(client, value):
    response = client.get("/", headers={"Range": value.encode("utf-8")})
    assert response.status_code == 200 and response.content.startswith(b"<!DOCTYPE html>")


@pytest.mark.parametrize("path", ["/", "/static/app.js"])
def test_an_unsatisfiable_range_is_a_json_error(client, path):
    assert_error(client.get(path, headers={"Range": "bytes=99999999-"}), 416, "Range")


def test_a_model_with_fewer_classes_than_the_samples_refuses_them():
    params = network.init_params((784, 10, 3), np.random.default_rng(0))
    three = Model(params, Preprocessing(), {"preset": "default"})
    with pytest.raises(ValueError, match="3 classes"):
        web.create_app(three, (np.zeros((2, 28, 28), np.uint8), np.array([1, 7])))


def test_serve_hides_the_sample_button_for_a_model_of_other_classes(tmp_path, no_uvicorn,
                                                                     mnist_dir):
    params = network.init_params((784, 10, 3), np.random.default_rng(0))
    path = modelfile.save(Model(params, Preprocessing(), {"preset": "default"}),
                          tmp_path / "three.safetensors")
    result = CliRunner().invoke(cli_app, ["serve", str(path), "--data-dir", str(mnist_dir)])
    assert result.exit_code == 0, result.output
    (app, _), = no_uvicorn
    client = TestClient(app)
    assert client.get("/api/model").json()["samples"] is False
    assert_error(client.get("/api/sample"), 404, "no test digits")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/healthz", "GET"), ("DELETE", "/", "GET"), ("GET", "/api/predict", "POST")])
def test_a_wrong_method_is_a_json_error_naming_the_right_one(client, method, path, allowed):
    assert_error(client.request(method, path), 405, f"{method} {path}", allowed)


@pytest.mark.parametrize("request_bytes", [b"GARBAGE\r\n\r\n",
                                           b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"])
def test_a_request_that_is_not_http_gets_a_json_400(request_bytes):
    from digitnet.web import server

    with serving_guarded() as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request_bytes)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert "malformed HTTP request" in json.loads(body)["error"]
    assert server.GuardedH11.header_timeout > 0


def serving_guarded():
    """The app under uvicorn with the guarded protocol, in a thread; yields the port."""
    import threading
    import time
    from contextlib import contextmanager

    import uvicorn

    from digitnet.web import server

    @contextmanager
    def run():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(web.create_app(random_model()), log_level="warning",
                                lifespan="off", http=server.GuardedH11)
        running = uvicorn.Server(config)
        thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        for _ in range(1000):
            if running.started:
                break
            time.sleep(0.01)
        try:
            yield sock.getsockname()[1]
        finally:
            running.should_exit = True
            thread.join(10)
            sock.close()

    return run()


def test_outputs_that_overflow_on_one_drawing_are_a_422_not_a_500():
    # Finite on a blank image, infinite where pixel 300 is lit: a model the load-time probe
    # could pass, built in memory.
    params = network.init_params((784, 10, 10), np.random.default_rng(0))
    params.W[0][:] = 0
    params.W[0][300, :] = 3e38
    params.W[1][:] = 10
    model = Model(params, Preprocessing(), {"preset": "default"})
    lit = np.zeros((28, 28), np.uint8)
    lit.flat[300] = 255
    assert web._prediction(model, np.zeros((28, 28), np.uint8))["label"] in range(10)
    with pytest.raises(web.ApiError, match="not finite") as caught:
        web._prediction(model, lit)
    assert caught.value.status == 422
