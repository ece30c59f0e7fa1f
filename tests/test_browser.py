"""The drawing page in a real browser: Debian's Chromium driven by Playwright.

A network trained on the real MNIST is served by uvicorn on a free port of 127.0.0.1; the test
draws digits on the canvas with the mouse and reads what the page shows. A screenshot of each
drawing is saved under ``artifacts/`` at the top of the repository (git ignores it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from browsers import CHROMIUM

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SETTLED = ("document.body.dataset.busy === '0' && "
           "document.querySelector('#predicted').dataset.label !== undefined")

if not CHROMIUM.exists():
    pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed")

from digitnet import datasets, runner, training  # noqa: E402
from digitnet.web.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def mnist_model(mnist_dir):
    return runner.train_on_dataset(training.make_config("default"), mnist_dir,
                                     download=False)


@pytest.fixture(scope="module")
def base_url(mnist_model, mnist_dir, serving) -> Iterator[str]:
    samples = datasets.load("mnist", "test", mnist_dir, download=False)
    with serving(create_app(mnist_model, samples)) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture
def page(browser, base_url):
    """The drawing page, loaded, with every request and console error it makes recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.requests = []
    page.errors = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.goto(base_url + "/")
    page.wait_for_function("document.body.dataset.ready === '1'")
    yield page
    context.close()


def draw(page, *strokes: list[tuple[float, float]]) -> None:
    """Draw strokes on the pad with the mouse; points are in pad pixels (280 x 280)."""
    page.locator("#pad").scroll_into_view_if_needed()  # the mouse reaches the viewport alone
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=12)
        page.mouse.up()


def shown_probabilities(page) -> list[float]:
    values = page.locator("#bars .bar .value").all_inner_texts()
    return [float(v.rstrip("%")) / 100 for v in values]


def input_ink(page) -> int:
    """How many of the 28x28 input's pixels the page shows lit."""
    return page.evaluate("""() => {
        const data = document.querySelector('#input28').getContext('2d')
            .getImageData(0, 0, 28, 28).data;
        let lit = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] > 0) lit++;
        return lit;
    }""")


def assert_reads(page, digit: str) -> None:
    page.wait_for_function(SETTLED)
    assert page.inner_text("#predicted") == digit
    probabilities = shown_probabilities(page)
    assert len(probabilities) == 10
    assert sum(probabilities) == pytest.approx(1, abs=0.01)
    assert max(probabilities) == probabilities[int(digit)]
    assert page.locator("#bars .bar.top .label").inner_text() == digit
    assert input_ink(page) > 20
    assert page.inner_text("#message") == ""


def assert_cleared(page) -> None:
    assert page.inner_text("#predicted") == "–"
    assert "draw a digit" in page.inner_text("#message")
    assert page.locator("#bars .bar .value").all_inner_texts() == ["–"] * 10
    assert input_ink(page) == 0


def test_drawing_a_one_then_a_seven(page, base_url):
    assert_cleared(page)  # a fresh page asks for a digit
    draw(page, [(140, 45), (138, 140), (136, 235)])
    assert_reads(page, "1")
    assert page.locator("#units .unit").count() == 10
    assert page.locator("#units .unit.firing").count() >= 1

    page.click("#clear")
    assert_cleared(page)

    draw(page, [(70, 60), (210, 60)], [(210, 60), (165, 150), (125, 238)])
    assert_reads(page, "7")
    assert re.fullmatch(r"\d+\.\d% sure", page.inner_text("#confidence"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "web-seven.png", full_page=True)

    assert not page.errors
    assert all(url.startswith(base_url) for url in page.requests), page.requests


def test_an_empty_canvas_says_draw_a_digit(page):
    page.click("#clear")
    assert_cleared(page)
    # What the server answers for the empty pad, as the page would send it.
    status, error = page.evaluate("""async () => {
        const png = await new Promise((r) => document.querySelector('#pad').toBlob(r));
        const response = await fetch('/api/predict', {method: 'POST', body: png,
                                                      headers: {'Content-Type': 'image/png'}});
        return [response.status, (await response.json()).error];
    }""")
    assert status == 422 and "draw a digit" in error


def test_a_random_mnist_digit_is_loaded_and_compared(page):
    assert page.is_visible("#sample")
    page.click("#sample")
    page.wait_for_function(SETTLED)
    note = page.inner_text("#sample-note")
    match = re.match(r"MNIST test digit #(\d+), labelled (\d): the network (agrees|says (\d))",
                     note)
    assert match, note
    predicted = page.inner_text("#predicted")
    assert (match.group(3) == "agrees") == (predicted == match.group(2))
    assert sum(shown_probabilities(page)) == pytest.approx(1, abs=0.01)
    page.click("#clear")
    assert_cleared(page)
    assert not page.is_visible("#sample-note")


def test_drawing_with_a_finger(browser, base_url):
    context = browser.new_context(viewport={"width": 800, "height": 1000}, has_touch=True)
    page = context.new_page()
    page.goto(base_url + "/")
    page.wait_for_function("document.body.dataset.ready === '1'")
    box = page.locator("#pad").bounding_box()
    cdp = context.new_cdp_session(page)
    points = [(140, 45 + 10 * k) for k in range(20)]
    for n, (x, y) in enumerate(points):
        kind = "touchStart" if n == 0 else "touchMove"
        cdp.send("Input.dispatchTouchEvent", {
            "type": kind, "touchPoints": [{"x": box["x"] + x, "y": box["y"] + y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert_reads(page, "1")
    context.close()


def test_without_test_digits_the_page_hides_the_button(browser, mnist_model, serving):
    with serving(create_app(mnist_model)) as (host, port):
        url = f"http://{host}:{port}"
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.body.dataset.ready === '1'")
        assert not page.is_visible("#sample")
        assert page.is_visible("#clear")
        page.close()


def test_the_forward_pass_panel_explains_the_drawing(page):
    assert not page.is_visible("#explain-body")  # closed until asked
    page.click("#explain-panel summary")
    draw(page, [(140, 45), (138, 140), (136, 235)])
    assert_reads(page, "1")
    page.wait_for_selector("#explain-body table tr.sum")
    text = page.inner_text("#explain-body")
    assert "Z1 = x·W1 + b1" in text and "Softmax" in text
    assert page.locator("#explain-body table").count() == 3
    # The panel settles on the probability the bars show for the predicted class (its answer
    # for an earlier moment of the stroke may arrive first); 1 and 2 decimals of one value.
    page.wait_for_function("""() => {
        const bar = document.querySelector('#bars .bar.top .value');
        const cells = document.querySelectorAll('#explain-body td.top');
        if (!bar || !cells.length) return false;
        const shown = parseFloat(bar.innerText), explained = parseFloat(
            cells[cells.length - 1].innerText);
        return Math.abs(shown - explained) <= 0.051;
    }""")
    page.click("#clear")
    assert "draw a digit" in page.inner_text("#explain-body")
    assert not page.errors
