"""Fixtures shared by the test files."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

# Read once, at import: tests that unset DIGITNET_DATA for isolation must not hide the real data
# from the tests that ask for it.
_DIGITNET_DATA = os.environ.get("DIGITNET_DATA")

# Examples per fuzzing target under `pytest --fuzz`; the default run uses 500 (see test_fuzz.py).
FUZZ_EXAMPLES = 10_000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz", action="store_true",
                     help=f"fuzz long: {FUZZ_EXAMPLES:,} hypothesis examples per target "
                          "(DIGITNET_FUZZ_EXAMPLES, when set, still decides)")


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("fuzz"):
        return
    from hypothesis import settings

    # Before the test modules are imported: they read the count when they are.
    os.environ.setdefault("DIGITNET_FUZZ_EXAMPLES", str(FUZZ_EXAMPLES))
    examples = int(os.environ["DIGITNET_FUZZ_EXAMPLES"])
    settings.register_profile("fuzz", max_examples=examples, deadline=None)
    settings.load_profile("fuzz")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder that holds the real ``mnist/`` (``DIGITNET_DATA``); skips the test otherwise."""
    if not _DIGITNET_DATA:
        pytest.skip("real MNIST not available: set DIGITNET_DATA to a folder holding mnist/")
    root = Path(_DIGITNET_DATA).expanduser()
    if not (root / "mnist").is_dir():
        pytest.skip(f"real MNIST not available: DIGITNET_DATA={root} holds no mnist/ folder")
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding a small learnable ``mnist/`` (300 training and 100 test digits around
    ten noisy prototypes), registered so that it verifies; away from the user's cache and
    ``DIGITNET_DATA``."""
    from tiny_data import mnist_contents, write_mnist

    monkeypatch.setenv("DIGITNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITNET_DATA", raising=False)
    return write_mnist(tmp_path / "data", mnist_contents(), monkeypatch)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, launched once for every browser test, through Playwright."""
    from browsers import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def _serving(app) -> Iterator[tuple[str, int]]:
    """Serve ``app`` with uvicorn in a thread on a free port of 127.0.0.1; yields the address."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.01)
    assert server.started, "the server did not start"
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="session")
def serving() -> Callable[..., AbstractContextManager[tuple[str, int]]]:
    """``with serving(app) as (host, port):`` runs an app on 127.0.0.1 for the block."""
    return _serving
