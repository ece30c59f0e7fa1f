"""The Train panel in a real browser: Debian's Chromium driven by Playwright, training on the
real MNIST through a uvicorn server on 127.0.0.1.

A screenshot of the page in the middle of a run is saved as ``artifacts/train-mid-run.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from browsers import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.mnist]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LONG_WAIT = 180_000  # ms a step of a run may take on a busy two-core machine
# Records a checksum of the first weight tile each time the page draws it: the test can then
# tell whether the tiles changed between epochs, however fast the epochs come.
WATCH_TILES = """
window.tileSums = [];
const put = CanvasRenderingContext2D.prototype.putImageData;
CanvasRenderingContext2D.prototype.putImageData = function (image, ...rest) {
  put.call(this, image, ...rest);
  const box = this.canvas.parentElement;
  if (box && box.id === 'train-units' && box.firstElementChild === this.canvas) {
    let sum = 0;
    for (let i = 0; i < image.data.length; i += 4) {
      sum = (sum * 31 + image.data[i] * 3 + image.data[i + 2]) % 1000000007;
    }
    window.tileSums.push(sum);
  }
};
"""
POINTS = "document.querySelectorAll('#chart-loss circle.point').length"
IDLE = "document.body.dataset.training === '0'"

if not CHROMIUM.exists():
    pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed")

from digitnet import datasets, runner, training  # noqa: E402
from digitnet.web.app import create_app  # noqa: E402
from digitnet.web.runs import TrainSettings  # noqa: E402


@pytest.fixture(scope="module")
def first_model(mnist_dir):
    return runner.train_on_dataset(training.make_config("default", epochs=2), mnist_dir,
                                     download=False)


@pytest.fixture
def site(first_model, mnist_dir, serving) -> Iterator[str]:
    samples = datasets.load("mnist", "test", mnist_dir, download=False)
    app = create_app(first_model, samples, training=TrainSettings(data_dir=mnist_dir))
    with serving(app) as (host, port):
        yield f"http://{host}:{port}"
        app.state.training_runs.close()


def open_page(browser, url: str, width: int = 1280, height: int = 1000):
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(WATCH_TILES)
    page = context.new_page()
    page.requests, page.errors = [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === '1' && "
                           "document.body.dataset.trainReady === '1'")
    return page


def draw_a_one(page) -> None:
    page.locator("#pad").scroll_into_view_if_needed()  # the mouse reaches the viewport alone
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 45)
    page.mouse.down()
    for y in (140, 235):
        page.mouse.move(box["x"] + 138, box["y"] + y, steps=12)
    page.mouse.up()


def test_train_draw_with_it_then_stop_a_second_run(browser, site):
    page = open_page(browser, site + "/")
    assert page.inner_text("#model-line").startswith("784-10-10 network")
    page.fill("#knob-hidden", "16")
    page.fill("#knob-epochs", "3")
    hash_ = page.evaluate("location.hash")
    assert hash_ == "#preset=default&hidden=16&epochs=3", hash_  # the settings in the URL
    page.click("#train-start")
    page.wait_for_function(f"{POINTS} >= 3", timeout=LONG_WAIT)
    page.wait_for_function(IDLE, timeout=LONG_WAIT)
    status = page.inner_text("#train-status")
    assert re.match(r"done: test accuracy \d\d\.\d\d%", status), status
    sums = page.evaluate("window.tileSums")
    assert len(sums) == 3 and len(set(sums)) == 3, sums  # new weights after every epoch
    assert page.locator("#train-units canvas").count() == 16
    assert "all 16 units" in page.inner_text("#train-tiles-note")
    assert page.locator("#chart-accuracy circle.point").count() >= 6  # train and validation
    assert page.locator("#chart-lr polyline").count() == 1
    assert page.get_attribute("#train-download", "href").endswith("/model")

    page.click("#train-use")
    page.wait_for_function("document.querySelector('#train-status').textContent"
                           ".startsWith('the pad now reads')")
    assert page.inner_text("#model-line").startswith("784-16-10 network · default preset")
    assert "test accuracy" in page.inner_text("#model-line")
    assert page.locator("#units .unit").count() == 16
    draw_a_one(page)
    page.wait_for_function("document.body.dataset.busy === '0' && "
                           "document.querySelector('#predicted').dataset.label !== undefined")
    assert page.inner_text("#predicted") == "1"
    assert page.locator("#units .unit").count() == 16

    # A second, long run, stopped part of the way; both stay on the curves.
    page.fill("#knob-epochs", "100")
    page.click("#train-start")
    # The points drawn are the latest run's.
    page.wait_for_function(f"document.querySelectorAll('#train-runs .run').length === 2 && "
                           f"{POINTS} >= 3", timeout=LONG_WAIT)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "train-mid-run.png", full_page=True)
    assert "left" in page.inner_text("#train-status")
    page.click("#train-stop")
    page.wait_for_function(IDLE, timeout=LONG_WAIT)
    assert page.inner_text("#train-status").startswith("stopped at epoch")
    runs = page.locator("#train-runs .run")
    assert runs.count() == 2
    assert [runs.nth(k).get_attribute("data-state") for k in range(2)] == ["stopped", "done"]
    assert "epochs 100" in runs.nth(0).inner_text()
    assert "epochs 3" in runs.nth(1).inner_text()
    drawn = page.evaluate("""() => new Set([...document.querySelectorAll(
        '#chart-loss polyline')].map((line) => line.dataset.run)).size""")
    assert drawn == 2
    assert page.locator("#chart-loss polyline.old").count() == 2  # the first run, train and val

    assert not page.errors, page.errors
    assert all(url.startswith(site) for url in page.requests), page.requests


def test_a_link_sets_the_knobs_and_the_panel_fits_a_phone(browser, site):
    page = open_page(browser, site + "/#preset=seed&hidden=4", width=390, height=844)
    assert page.input_value("#knob-preset") == "seed"
    assert page.input_value("#knob-hidden") == "4"
    assert page.input_value("#knob-optimizer") == "gd"
    assert page.input_value("#knob-iterations") == "500"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("#train-card").bounding_box()["width"] <= 390
    page.click("#knob-hidden + .why, .knob[data-name=hidden] .why")
    assert page.is_visible(".knob[data-name=hidden] .hint")
    # A bad value is named by the server and marked on its knob.
    page.fill("#knob-hidden", "300")
    page.click("#train-start")
    page.wait_for_selector(".knob[data-name=hidden].bad")
    assert "hidden = 300" in page.inner_text("#train-status")
    # Chromium logs the refused request itself; nothing else went wrong.
    assert all("status of 422" in error for error in page.errors), page.errors


def test_the_panel_says_why_training_is_off(browser, first_model, serving):
    app = create_app(first_model, training=TrainSettings.for_host("0.0.0.0", False))
    with serving(app) as (host, port):
        page = open_page(browser, f"http://{host}:{port}/")
        assert page.is_visible("#train-off")
        assert "--allow-train" in page.inner_text("#train-off")
        assert page.is_disabled("#train-start")
        page.context.close()
