"""The web page in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright."""

from __future__ import annotations

import importlib.util
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelnn.serve import create_app
from pixelnn.synth.pipeline import PixelNN
from serve_support import photo_folder, running

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOGS = {2, 3, 4}


def _missing() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install playwright)"
    return None


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def base(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    app = create_app(PixelNN.load(tiny_run[0]), val=photo_folder(root / "val", tiny_run[2][:4]), work=root / "work")
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base):
    # bypass_csp: the page's Content-Security-Policy forbids eval, which Playwright's polling
    # wait_for_function needs; the page's own scripts run as they do for a user
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # failed loads too
    page.goto(base + "/")
    page.wait_for_function("document.getElementById('model-info').textContent.includes('lowres')")
    yield page
    context.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def wait_for_result(page, count: int | None = None, labels=None) -> dict:
    """Wait until the page shows a finished synthesis (with `labels`, if given); returns its JSON."""
    page.wait_for_function(
        "([labels]) => !state.busy && state.result && "
        "JSON.stringify(state.result.request.labels) === JSON.stringify(labels)",
        arg=[labels],
    )
    result = page.evaluate("state.result")
    assert page.locator(".cand").count() == (count or len(result["candidates"]))
    assert "error" not in (page.locator("#status").get_attribute("class") or "")
    return result


def fetch_json(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.loads(r.read())


def draw(page) -> None:
    box = page.locator("#sketch").bounding_box()
    x0, y0, w = box["x"], box["y"], box["width"]
    for (ax, ay), (bx, by) in [((0.2, 0.2), (0.8, 0.8)), ((0.2, 0.8), (0.8, 0.2)), ((0.5, 0.1), (0.5, 0.9))]:
        page.mouse.move(x0 + ax * w, y0 + ay * w)
        page.mouse.down()
        page.mouse.move(x0 + bx * w, y0 + by * w, steps=8)
        page.mouse.up()


def hover_pixel(page, index: int, px: int, py: int, size: int) -> dict:
    """Move the mouse over output pixel (py, px) of candidate `index`; returns the inspector's data."""
    page.locator(f'.cand[data-index="{index}"] img').scroll_into_view_if_needed()
    box = page.locator(f'.cand[data-index="{index}"] img').bounding_box()
    page.mouse.move(box["x"] + (px + 0.5) * box["width"] / size, box["y"] + (py + 0.5) * box["height"] / size)
    page.wait_for_function(
        "([i, x, y]) => { const d = document.getElementById('inspector').dataset; "
        "return d.candidate == i && d.px == x && d.py == y; }",
        arg=[index, px, py],
    )
    return page.evaluate("({...document.getElementById('inspector').dataset})")


def test_draw_on_the_canvas_and_synthesize(page, shots):
    draw(page)
    dark = page.evaluate(
        "(() => { const d = document.getElementById('sketch').getContext('2d').getImageData(0, 0, 256, 256).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++; return n; })()"
    )
    assert dark > 500  # the strokes are on the canvas
    page.click("#go")
    result = wait_for_result(page, count=10)  # the default 'quick' grid
    assert result["title"] == "drawing"
    assert page.locator("#input-img").get_attribute("src") == result["input"]
    assert page.locator("#detail").is_visible() and page.locator("#shares li").count() >= 1
    page.wait_for_function(
        "document.getElementById('figure').complete && document.getElementById('figure').naturalWidth > 0"
    )
    page.screenshot(path=str(shots / "draw.png"), full_page=True)
    assert (shots / "draw.png").stat().st_size > 10_000


def test_upload_an_image_through_the_file_input(page, tiny_run, tmp_path, shots):
    path = tmp_path / "photo.png"
    Image.fromarray(tiny_run[2][4]).save(path)
    page.click('button[data-tab="upload"]')
    assert page.is_checked('input[name="kind"][value="photo"]')
    page.set_input_files("#upload-file", str(path))  # choosing a file synthesizes
    result = wait_for_result(page)
    assert result["title"] == "uploaded photo" and result["original"]
    assert page.locator("#original-fig").is_visible()
    page.screenshot(path=str(shots / "upload.png"))


def test_hover_shows_the_source_exemplar_and_pixel(page, base, shots):
    page.click('button[data-tab="examples"]')
    page.click('#examples img[data-index="1"]')
    result = wait_for_result(page)
    size = result["size"]
    for index, (px, py) in [(4, (5, 7)), (9, (20, 3)), (0, (31, 31))]:
        seen = hover_pixel(page, index, px, py, size)
        corr = fetch_json(base, result["candidates"][index]["corr"])
        assert int(seen["exemplar"]) == corr["exemplar"][py][px]
        assert (int(seen["sy"]), int(seen["sx"])) == (corr["sy"][py][px], corr["sx"][py][px])
        ex = corr["exemplar"][py][px]
        assert page.locator("#source-photo").get_attribute("src") == f"/api/exemplars/{ex}/photo.png"
        assert f"exemplar #{ex}" in page.inner_text("#source-info")
        frame = page.locator("#source-frame").bounding_box()
        marker = page.locator("#source-marker").bounding_box()
        centre = (marker["x"] + marker["width"] / 2 - frame["x"], marker["y"] + marker["height"] / 2 - frame["y"])
        expected = (
            (corr["sx"][py][px] + 0.5) * frame["width"] / size,
            (corr["sy"][py][px] + 0.5) * frame["height"] / size,
        )
        assert np.allclose(centre, expected, atol=2.0), (centre, expected)
        assert page.locator(f'.cand[data-index="{index}"] .pixel-marker').is_visible()
    page.wait_for_function("document.getElementById('source-photo').complete")
    page.screenshot(path=str(shots / "hover.png"))


def test_label_choice_re_synthesizes_within_the_label(page, base, shots):
    page.click('button[data-tab="examples"]')
    page.click('#examples img[data-index="0"]')
    wait_for_result(page)
    page.select_option("#label", "dog")  # re-synthesizes the same input
    result = wait_for_result(page, labels=["dog"])
    assert {i for c in result["candidates"] for i, _ in c["shares"]} <= DOGS
    shown = {
        int(x)
        for x in page.eval_on_selector_all("#shares li[data-exemplar]", "els => els.map(e => e.dataset.exemplar)")
    }
    assert shown and shown <= DOGS
    for index in range(0, len(result["candidates"]), 3):
        assert int(hover_pixel(page, index, 10, 12, result["size"])["exemplar"]) in DOGS
    assert "label dog" in page.inner_text("#summary")
    page.screenshot(path=str(shots / "label.png"))


def test_copy_mode_choice_re_synthesizes_with_that_mode(page, base, shots):
    info = fetch_json(base, "/api/model")
    modes = page.eval_on_selector_all("#copy option", "els => els.map(e => e.value)")
    assert modes == info["copy_modes"] and page.input_value("#copy") == info["default_copy"]
    page.click('button[data-tab="examples"]')
    page.click('#examples img[data-index="1"]')
    first = wait_for_result(page)
    assert first["request"]["copy"] == info["default_copy"]
    page.click('.cand[data-index="0"]')
    assert f"voting {round(first['candidates'][0]['voted'] * 100)}%" in page.inner_text("#detail-title")
    page.select_option("#copy", "eq3")  # re-synthesizes the same input
    page.wait_for_function("() => !state.busy && state.result && state.result.request.copy === 'eq3'")
    result = wait_for_result(page)
    assert "copy eq3" in page.inner_text("#summary")
    with urllib.request.urlopen(base + result["candidates"][0]["npz"], timeout=30) as r:
        with np.load(io.BytesIO(r.read())) as z:
            assert "weights" not in z.files  # Eq. 3 keeps one source per pixel, no voting weights
    page.screenshot(path=str(shots / "copy.png"))
