"""The Train panel's API (digitnet.web.train_api): runs on the real MNIST, followed as
server-sent events from a real uvicorn server, and every refusal.

Runs that must still be going when the test looks (409, stop, a client going away) ask for 100
epochs, which take minutes, and are stopped as soon as the test has seen what it needs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from digitnet import datasets, modelfile, network  # noqa: E402
from digitnet.cli import app as cli_app  # noqa: E402
from digitnet.model import Model, Preprocessing  # noqa: E402
from digitnet.web.app import create_app  # noqa: E402
from digitnet.web.runs import Limits, TrainSettings, is_loopback  # noqa: E402

SHORT = {"preset": "default", "hidden": 8, "epochs": 2}
LONG = {"preset": "default", "hidden": 32, "epochs": 100}
WAIT = 120  # seconds a test waits for a run's event before it fails


def served_model() -> Model:
    params = network.init_params((784, 10, 10), np.random.default_rng(1))
    return Model(params, Preprocessing(1 / 255, 0.13, 0.31), {"preset": "default"})


def seven_pixels() -> list[int]:
    image = np.zeros((28, 28), np.uint8)
    image[5:8, 6:22] = 255
    for row in range(8, 24):
        col = 21 - (row - 8) * 10 // 16
        image[row, col - 1:col + 2] = 255
    return image.reshape(-1).tolist()


@pytest.fixture
def server(mnist_dir, serving):
    """A real server over a random model that trains on the real MNIST; yields a client and
    the app (whose ``state.training_runs`` is the run manager)."""

    @contextmanager
    def start(**settings) -> Iterator[tuple[httpx.Client, object]]:
        settings.setdefault("data_dir", mnist_dir)
        app = create_app(served_model(), training=TrainSettings(**settings))
        with serving(app) as (host, port):
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=WAIT) as client:
                try:
                    yield client, app
                finally:
                    app.state.training_runs.close()

    return start


def events(client: httpx.Client, run: str, headers: dict | None = None,
           limit: int | None = None) -> Iterator[tuple[int, str, dict]]:
    """The run's server-sent events as (id, kind, data), to the closing one or ``limit``."""
    with client.stream("GET", f"/api/train/{run}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        seen = 0
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "event" not in fields:
                continue
            yield int(fields["id"]), fields["event"], json.loads(fields["data"])
            seen += 1
            if fields["event"] in ("done", "stopped", "error") or seen == limit:
                return
            fields = {}


def start_run(client: httpx.Client, options: dict) -> str:
    response = client.post("/api/train", json=options)
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"run"} and len(body["run"]) >= 20
    return body["run"]


def wait_idle(client: httpx.Client) -> None:
    for _ in range(WAIT * 20):
        if not client.get("/api/train").json()["busy"]:
            return
        time.sleep(0.05)
    pytest.fail("the run did not end")


def assert_refused(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "field"} and body["error"]
    for word in words:
        assert word in body["error"], body
    return body


# -- a whole run ------------------------------------------------------------------------------


def test_a_run_is_told_as_events_and_its_model_can_be_used(server, tmp_path, mnist_dir):
    with server() as (client, _app):
        assert client.get("/api/train").json()["missing_data"] is None
        run = start_run(client, SHORT)
        told = list(events(client, run))
        ids = [i for i, _, _ in told]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        kinds = [kind for _, kind, _ in told]
        assert kinds[0] == "start" and kinds[-1] == "done"
        start = told[0][2]
        assert start["config"]["hidden"] == 8 and start["total_steps"] == 2 * 860
        assert start["schedule"][0][0] == 0 and start["schedule"][-1][0] == 2 * 860
        epochs = [data for _, kind, data in told if kind == "epoch"]
        assert [e["epoch"] for e in epochs] == [1, 2]
        for e in epochs:
            assert set(e) >= {"epoch", "step", "loss", "train_accuracy", "val_accuracy", "lr",
                              "seconds"}
        assert epochs[1]["loss"] < epochs[0]["loss"]
        units = [data for _, kind, data in told if kind == "units"]
        assert len(units) == 2 and len(units[0]["units"]) == 8
        assert len(units[0]["units"][0]) == 784 and units[0]["total"] == 8
        assert units[0]["units"] != units[1]["units"]  # the weights moved
        done = told[-1][2]
        assert 0.85 < done["metrics"]["test_accuracy"] <= 1
        assert done["sizes"] == [784, 8, 10]

        # A client that comes after the end replays it: every epoch, the latest weights.
        replay = list(events(client, run))
        assert [k for _, k, _ in replay] == ["start", "epoch", "epoch", "units", "done"]
        assert replay[3][2] == units[-1]
        # One that reconnects after event 3 gets what followed it.
        resumed = list(events(client, run, headers={"Last-Event-ID": "3"}))
        assert resumed[0][0] > 3 and resumed[-1][1] == "done"

        download = client.get(f"/api/train/{run}/model")
        assert download.status_code == 200
        assert "attachment" in download.headers["content-disposition"]
        model = modelfile.from_bytes(download.content)
        assert model.sizes == (784, 8, 10)
        assert model.meta["metrics"]["test_accuracy"] == done["metrics"]["test_accuracy"]
        path = tmp_path / "run.safetensors"
        path.write_bytes(download.content)
        result = CliRunner().invoke(cli_app, ["evaluate", str(path), "--data-dir",
                                              str(mnist_dir), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["accuracy"] == pytest.approx(
            done["metrics"]["test_accuracy"])

        before = client.post("/api/predict", json={"pixels": seven_pixels()}).json()
        assert len(before["hidden"]) == 10
        used = client.post(f"/api/train/{run}/use")
        assert used.status_code == 200 and used.json()["sizes"] == [784, 8, 10]
        info = client.get("/api/model").json()
        assert info["sizes"] == [784, 8, 10]
        assert info["metrics"]["test_accuracy"] == done["metrics"]["test_accuracy"]
        assert len(client.get("/api/weights").json()["units"]) == 8
        after = client.post("/api/predict", json={"pixels": seven_pixels()}).json()
        assert len(after["hidden"]) == 8
        assert after["label"] == 7


def test_a_second_run_is_refused_while_one_goes_then_stopped(server):
    with server() as (client, app):
        run = start_run(client, LONG)
        assert client.get("/api/train").json()["busy"]
        assert_refused(client.post("/api/train", json=SHORT), 409, "one at a time")
        assert_refused(client.post(f"/api/train/{run}/use"), 409, "still training")
        assert_refused(client.get(f"/api/train/{run}/model"), 409, "still training")
        seen = []
        for _, kind, data in events(client, run):
            seen.append(kind)
            if kind == "epoch":
                # Drawing is answered while the network trains beside it.
                assert client.post("/api/predict", json={"pixels": seven_pixels()}) \
                    .status_code == 200
                if data["epoch"] == 1:
                    stopped = client.post(f"/api/train/{run}/stop")
                    assert stopped.status_code == 200 and stopped.json()["state"] == "stopping"
        assert seen[-1] == "stopped"
        assert seen.count("epoch") < 100
        runner = app.state.training_runs.get(run)
        runner.join(WAIT)
        assert not runner.thread.is_alive()
        # A stopped run keeps the weights it had, and the next run may start.
        assert client.post(f"/api/train/{run}/use").status_code == 200
        assert not client.get("/api/train").json()["busy"]
        start_run(client, SHORT)


# -- a client going away, the server going down -----------------------------------------------


def test_a_client_that_goes_away_mid_stream_leaves_a_run_that_ends(server):
    with server(abandon_after=0.5) as (client, app):
        run = start_run(client, LONG)
        got = list(events(client, run, limit=2))  # start, the first epoch; then hang up
        assert [k for _, k, _ in got] == ["start", "epoch"]
        wait_idle(client)  # nobody watches: the run stops by itself
        closing = list(events(client, run))[-1]
        assert closing[1] == "stopped" and "no page has watched" in closing[2]["message"]
        assert not app.state.training_runs.get(run).thread.is_alive()
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.post("/api/predict", json={"pixels": seven_pixels()}).status_code == 200


def test_a_client_that_goes_away_does_not_stop_a_run_it_returns_to(server):
    with server(abandon_after=60) as (client, _app):
        run = start_run(client, SHORT)
        assert len(list(events(client, run, limit=2))) == 2
        told = list(events(client, run))  # back, later: the whole run so far, then the end
        assert told[0][1] == "start" and told[-1][1] == "done"


def test_stopping_the_server_stops_a_run(mnist_dir):
    import socket

    import uvicorn

    app = create_app(served_model(), training=TrainSettings(data_dir=mnist_dir))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        time.sleep(0.01)
    host, port = sock.getsockname()
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=WAIT) as client:
        run = start_run(client, LONG)
        watching = threading.Event()

        def watch() -> None:  # an open stream, which must not hold the server up
            try:
                for _ in events(client, run):
                    watching.set()
            except httpx.HTTPError:  # the server went away under it
                pass

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert watching.wait(WAIT)
        server.should_exit = True
        thread.join(WAIT)
    sock.close()
    assert not thread.is_alive()
    runner = app.state.training_runs.get(run)
    assert not runner.thread.is_alive()
    assert runner.state == "stopped" and runner.stop_reason.endswith("shutting down")


# -- refusals -----------------------------------------------------------------------------------


@pytest.fixture
def offline(tmp_path, monkeypatch) -> TestClient:
    """An app with training on and no MNIST anywhere."""
    monkeypatch.delenv("DIGITNET_DATA", raising=False)
    monkeypatch.setenv("DIGITNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")
    (tmp_path / "empty").mkdir()
    app = create_app(served_model(), training=TrainSettings(data_dir=tmp_path / "empty"))
    return TestClient(app)


@pytest.mark.parametrize("options, field, words", [
    ({"hidden": 0}, "hidden", ["hidden = 0", ">= 1"]),
    ({"hidden": 257}, "hidden", ["hidden = 257", "1 to 256"]),
    ({"hidden": "ten"}, "hidden", ["hidden", "whole number"]),
    ({"hidden": 16.5}, "hidden", ["hidden", "whole number"]),
    ({"layers": 4}, "layers", ["layers = 4", "1 to 3"]),
    ({"epochs": 101}, "epochs", ["epochs = 101", "1 to 100"]),
    ({"preset": "seed", "iterations": 5000}, "iterations", ["iterations = 5000", "2000"]),
    ({"hidden": 256, "layers": 3, "epochs": 100}, "epochs", ["limit", "fewer epochs"]),
    ({"lr": -1}, "lr", ["lr = -1", "> 0"]),
    ({"optimizer": "sgd"}, "optimizer", ["optimizer 'sgd'", "adam"]),
    ({"schedule": 3}, "schedule", ["schedule must be a string"]),
    ({"preset": "fast"}, "preset", ["unknown preset 'fast'", "default"]),
    ({"preset": ["seed"]}, "preset", ["preset must be a string"]),
    ({"select_best": "yes"}, "select_best", ["true or false"]),
    ({"colour": "red"}, "colour", ["unknown option 'colour'", "hidden"]),
    ({"dataset": "cifar"}, "dataset", ["unknown dataset 'cifar'", "mnist"]),
    ({"val_size": 20000}, "val_size", ["val_size = 20000", "0 to 10000"]),
])
def test_a_bad_option_is_422_naming_it(offline, options, field, words):
    body = assert_refused(offline.post("/api/train", json=options), 422, *words)
    assert body["field"] == field


@pytest.mark.parametrize("body, status, words", [
    (b"{", 400, ["not valid JSON"]),
    (b"[1, 2]", 422, ["JSON object"]),
    (b'{"lr": NaN}', 422, ["NaN is not a finite number"]),
    (b"\xff\xfe", 400, ["UTF-8"]),
    (b"[" * 100_000 + b"]" * 100_000, 413, ["10,000"]),
])
def test_a_bad_body_is_refused_with_one_line(offline, body, status, words):
    response = offline.post("/api/train", content=body,
                            headers={"Content-Type": "application/json"})
    assert_refused(response, status, *words)


def test_without_training_data_a_run_is_503_saying_how_to_get_it(offline):
    info = offline.get("/api/train").json()
    assert info["allowed"] and "digitnet data" in info["missing_data"]
    assert_refused(offline.post("/api/train", json=SHORT), 503, "no training data",
                   "--data-dir", "digitnet data")


@pytest.mark.parametrize("path", ["/events", "/model"])
def test_an_unknown_run_is_404(offline, path):
    assert_refused(offline.get(f"/api/train/no-such-run{path}"), 404, "no training run")


@pytest.mark.parametrize("path", ["/stop", "/use"])
def test_stopping_or_using_an_unknown_run_is_404(offline, path):
    assert_refused(offline.post(f"/api/train/no-such-run{path}"), 404, "no training run")


def test_training_is_off_for_other_addresses_unless_allowed():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("example.org")
    assert TrainSettings.for_host("127.0.0.1", False).allowed
    assert TrainSettings.for_host("0.0.0.0", True).allowed
    settings = TrainSettings.for_host("0.0.0.0", False)
    assert not settings.allowed and "--allow-train" in settings.reason
    client = TestClient(create_app(served_model(), training=settings))
    info = client.get("/api/train").json()
    assert not info["allowed"] and "--allow-train" in info["reason"]
    assert_refused(client.post("/api/train", json=SHORT), 403, "--allow-train")
    # An app built without training settings does not train either.
    plain = TestClient(create_app(served_model()))
    assert not plain.get("/api/train").json()["allowed"]
    assert plain.post("/api/train", json=SHORT).status_code == 403


def test_limits_can_be_set_per_server(offline, tmp_path):
    app = create_app(served_model(), training=TrainSettings(
        data_dir=tmp_path / "empty", limits=Limits(hidden=32, epochs=5)))
    client = TestClient(app)
    assert client.get("/api/train").json()["limits"]["hidden"] == 32
    assert_refused(client.post("/api/train", json={"hidden": 33}), 422, "1 to 32")
    assert_refused(client.post("/api/train", json={"epochs": 6}), 422, "1 to 5")


def test_run_ids_are_random(server):
    with server() as (client, _app):
        first = start_run(client, {"preset": "default", "hidden": 2, "epochs": 1})
        wait_idle(client)
        second = start_run(client, {"preset": "default", "hidden": 2, "epochs": 1})
        wait_idle(client)
        assert first != second
        assert not set(first) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789-_")


@pytest.mark.parametrize("flags, allowed", [
    ([], True),
    (["--host", "127.0.0.1"], True),
    (["--host", "0.0.0.0"], False),
    (["--host", "0.0.0.0", "--allow-train"], True),
])
def test_serve_trains_on_loopback_and_elsewhere_only_with_allow_train(
        tmp_path, monkeypatch, flags, allowed):
    from digitnet.web import server

    calls = []
    monkeypatch.setattr(server, "run",
                        lambda app, host, port, **options: calls.append((app, options)))
    path = modelfile.save(served_model(), tmp_path / "model.safetensors")
    (tmp_path / "nothing").mkdir()
    result = CliRunner().invoke(cli_app, ["serve", str(path), "--port", "8123", "--data-dir",
                                          str(tmp_path / "nothing"), *flags])
    assert result.exit_code == 0, result.output
    (app, options), = calls
    assert options["timeout_graceful_shutdown"] > 0  # open streams do not hold Ctrl+C up
    info = TestClient(app).get("/api/train").json()
    assert info["allowed"] is allowed
    if not allowed:
        assert "--allow-train" in info["reason"] and "0.0.0.0" in info["reason"]
