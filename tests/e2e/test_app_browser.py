"""The demo in a real browser: Debian's Chromium driven by Playwright, offline, against the launched app.

Opens the page, checks the three tabs, edits the camera path (preset, table, dragging a keyframe in the top view) and
sees the figure redraw, renders a short silent orbit and waits for the streamed video to play, stops a long one and
reads where it stopped, and clicks an example, whose cached (not streamed) video must play in the same player.
Examples come from a small stand-in ``assets/`` folder and are sampled with one step, so the first click is quick.
Screenshots go to ``tmp_path``, or to ``docs/screenshots/`` with ``STARCASTER_SCREENSHOTS=docs/screenshots``.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
ARGS = ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking", "--disable-component-update", "--no-first-run"]
TABS = ["Portrait animation", "ID-driven generation", "Free-viewpoint orbit"]
PLOT = "#camera-plot .sc-cam-plot"


@pytest.fixture(scope="module")
def small_assets(tmp_path_factory):
    """One portrait (the first bundled one, or noise) and 0.6 s of speech: examples that take seconds to sample."""
    import wave

    from PIL import Image

    from ui import examples

    root = tmp_path_factory.mktemp("assets")
    for sub in ("portraits", "audio", "cameras"):
        (root / sub).mkdir()
    (root / "cameras" / "sweep.json").write_text(json.dumps({"num_frames": 15, "fps": 25, "keyframes": [
        {"frame": 0, "azimuth": -50, "elevation": 10}, {"frame": 14, "azimuth": 50, "elevation": -10}]}))
    bundled = examples.portraits()
    if bundled:
        shutil.copy(bundled[0], root / "portraits" / "face.png")
    else:
        Image.fromarray((np.random.default_rng(1).random((128, 128, 3)) * 255).astype(np.uint8)).save(
            root / "portraits" / "face.png")
    t = np.arange(9600) / 16000
    with wave.open(str(root / "audio" / "speech.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((0.4 * np.sin(2 * np.pi * 160 * t) * (0.5 + 0.5 * np.sin(8 * np.pi * t)) * 32767)
                      .astype("<i2").tobytes())
    return root


@pytest.fixture(scope="module")
def server(small_assets, tmp_path_factory):
    import app
    from ui import example_cache, examples

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(examples, "ASSETS", str(small_assets))
        mp.setattr(example_cache, "CACHE_ROOT", str(tmp_path_factory.mktemp("example_cache")))
        mp.setitem(example_cache.EXAMPLE_SAMPLING, "steps", 1)
        demo = app.launch(port=None, block=False)
        yield demo
        demo.close()


@pytest.fixture(scope="module")
def page(server):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.request.get(server.local_url + "gradio_api/info")  # the API answers before the page is driven
        pg.goto(server.local_url)
        pg.errors = errors
        yield pg
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    target = os.environ.get("STARCASTER_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def portrait_png(small_assets):
    return str(small_assets / "portraits" / "face.png")


def _quality_steps(page, prefix: str, steps: int):
    """Quality with ``steps`` steps (Fast is the CPU default; test_fast_streaming.py drives it)."""
    if not page.locator(f"#{prefix}-sampler").is_visible():
        page.get_by_text("Sampling").last.click()
    page.locator(f"#{prefix}-sampler").get_by_text("Quality", exact=True).click()
    field = page.locator(f"#{prefix}-steps input[type=number]")
    field.fill(str(steps))
    field.press("Enter")


def _revision(page) -> int:
    return int(page.get_attribute(PLOT, "data-revision"))


def _wait_redraw(page, after: int):
    page.wait_for_function(f"() => Number(document.querySelector('{PLOT}').dataset.revision) > {after}", timeout=20000)


def test_three_tabs(page, shots):
    for name in TABS:
        tab = page.get_by_role("tab", name=name)
        sync_api.expect(tab).to_be_visible(timeout=30000)
        tab.click()
        sync_api.expect(page.get_by_role("tab", name=name, selected=True)).to_be_visible()
        page.screenshot(path=str(shots / f"tab_{TABS.index(name) + 1}.png"))
    assert not page.errors, page.errors


def _box(page, selector):
    page.locator(selector).first.scroll_into_view_if_needed()
    return page.evaluate("s => { const r = document.querySelector(s).getBoundingClientRect();"
                         " return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; }", selector)


def test_the_result_is_in_view_beside_the_editor_not_below_it(page):
    page.get_by_role("tab", name="Free-viewpoint orbit").click()
    page.wait_for_selector(f"{PLOT} .main-svg", timeout=30000)
    video, plot = _box(page, "#orbit-video"), _box(page, "#camera-plot")
    assert video["y"] < page.viewport_size["height"] - 100, f"the result starts {video['y']:.0f} px down the page"
    assert video["y"] < plot["y"] + plot["h"], "the result sits below the camera editor"


def test_the_editors_titles_stand_apart_at_any_width(page):
    page.get_by_role("tab", name="Free-viewpoint orbit").click()
    size = page.viewport_size
    try:
        for width in (1400, 1000):
            page.set_viewport_size({"width": width, "height": size["height"]})
            page.wait_for_timeout(800)  # Plotly redraws on resize
            titles = [page.locator("#camera-plot").get_by_text(t, exact=False).first for t in ("3D view", "Top view")]
            left, right = (t.bounding_box() for t in titles)
            apart = left["x"] + left["width"] + 12 <= right["x"] or left["y"] + left["height"] <= right["y"]
            assert apart, f"at {width} px the titles touch: {left} {right}"
    finally:
        page.set_viewport_size(size)


def test_the_top_views_keyframes_show_their_numbers(page):
    page.get_by_role("tab", name="Free-viewpoint orbit").click()
    page.wait_for_selector(f"{PLOT} .shapelayer path", timeout=30000)
    # Each draggable circle has its number on top of it: a text inside the circle, painted after it.
    numbered = page.evaluate(f"""() => {{
      const root = document.querySelector('{PLOT}');
      const texts = [...root.querySelectorAll('text')];
      return [...root.querySelectorAll('.shapelayer path')].map((circle, i) => {{
        const c = circle.getBoundingClientRect();
        return texts.some(t => {{
          const r = t.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
          return t.textContent.trim() === String(i + 1) && r.width > 0 && x > c.left && x < c.right
            && y > c.top && y < c.bottom && (circle.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING);
        }});
      }});
    }}""")
    assert numbered and all(numbered), numbered


def test_camera_editor_redraws_on_edits(page):
    page.get_by_role("tab", name="Free-viewpoint orbit").click()
    page.wait_for_selector(f"{PLOT} .main-svg", timeout=30000)  # Plotly loaded from the pip package and drew
    figure = lambda: page.evaluate(f"() => document.querySelector('{PLOT}').data.map(t => t.x && t.x.length)")  # noqa: E731
    start, before = _revision(page), figure()

    # A preset.
    page.locator("#camera-preset input").click()
    page.get_by_role("option", name="oscillation").click()
    _wait_redraw(page, start)
    assert figure() != before or _revision(page) > start
    path_x = lambda: page.evaluate(f"() => document.querySelector('{PLOT}').data[2].x")  # noqa: E731
    oscillation = path_x()

    # Dragging keyframe 2 in the top view moves that camera (the table follows).
    rev = _revision(page)
    table_before = page.locator("#camera-keyframes").inner_text()
    handle = page.locator("#camera-plot .shapelayer path").nth(1).bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 45, y + 35, steps=8)
    page.mouse.up()
    _wait_redraw(page, rev)
    assert path_x() != oscillation
    page.wait_for_function(
        "t => document.querySelector('#camera-keyframes').innerText !== t", arg=table_before, timeout=10000)
    assert not page.errors, page.errors


def test_orbit_generation_plays(page, shots, portrait_png):
    page.get_by_role("tab", name="Free-viewpoint orbit").click()
    page.locator("#orbit-image input[type=file]").set_input_files(portrait_png)
    page.locator("#orbit-aligned input").check()
    page.wait_for_selector("#orbit-crop img", state="attached", timeout=20000)  # the crop preview the model will see
    page.locator("#orbit-seconds input[type=number]").fill("0.6")
    page.locator("#orbit-seconds input[type=number]").press("Enter")
    _quality_steps(page, "orbit", 1)
    stop = page.locator("#orbit-stop")
    sync_api.expect(stop).to_be_disabled()  # nothing runs: nothing to stop
    page.locator("#orbit-run").click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#orbit-video video');"
        " return v && v.readyState >= 2 && v.currentTime > 0; }", timeout=90000)
    page.wait_for_selector("#orbit-mp4 a", timeout=60000)  # the complete mp4 to download
    assert "Done" in page.locator("#orbit-status").inner_text()
    sync_api.expect(stop).to_be_disabled(timeout=10000)
    page.locator("#orbit-video").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "orbit_generated.png"), full_page=True)
    assert not page.errors, page.errors


def test_stop_says_where_the_generation_stopped(page, portrait_png):
    page.get_by_role("tab", name="Free-viewpoint orbit").click()
    page.locator("#orbit-image input[type=file]").set_input_files(portrait_png)
    page.locator("#orbit-aligned input").check()
    page.locator("#orbit-seconds input[type=number]").fill("10")  # 16 segments: Stop comes long before the end
    page.locator("#orbit-seconds input[type=number]").press("Enter")
    _quality_steps(page, "orbit", 1)
    status, stop, run = page.locator("#orbit-status"), page.locator("#orbit-stop"), page.locator("#orbit-run")
    for attempt in range(2):  # Stop must come back for the next run, not only for the first
        sync_api.expect(run).to_be_enabled(timeout=20000)  # once the previous run's cancel is confirmed
        run.click()
        sync_api.expect(stop).to_be_enabled(timeout=20000)
        sync_api.expect(run).to_be_disabled()  # one job per page at a time
        sync_api.expect(status).to_contain_text("Segment 1 of 16", timeout=90000)
        assert stop.is_enabled(), f"Stop was switched off during run {attempt + 1}"
        stop.click()
        sync_api.expect(status).to_contain_text("Stopped during segment", timeout=20000)
        assert "of 16" in status.inner_text()
        sync_api.expect(stop).to_be_disabled(timeout=10000)
    sync_api.expect(run).to_be_enabled(timeout=20000)
    assert not page.errors, page.errors


def test_example_click_shows_its_cached_video(page, shots):
    page.get_by_role("tab", name="Portrait animation").click()
    page.locator("#portrait-examples").get_by_text("face + speech").click()
    page.wait_for_selector("#portrait-crop img", state="attached", timeout=30000)  # the inputs were filled
    sync_api.expect(page.locator("#portrait-status")).to_contain_text("It is cached", timeout=120000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#portrait-video video'); return v && v.readyState >= 2; }",
        timeout=30000)
    page.wait_for_selector("#portrait-mp4 a", timeout=10000)
    sync_api.expect(page.locator("#portrait-stop")).to_be_disabled(timeout=10000)  # the example's run has ended
    sync_api.expect(page.locator("#portrait-run")).to_be_enabled()
    page.screenshot(path=str(shots / "portrait_example.png"), full_page=True)
    assert not page.errors, page.errors


def test_orbit_example_redraws_the_editor_at_once_and_plays(page):
    page.get_by_role("tab", name="Free-viewpoint orbit").click()
    rev = _revision(page)
    page.locator("#orbit-examples").get_by_text("sweep camera").click()
    _wait_redraw(page, rev)  # the editor shows the example's path before its video is generated
    assert page.evaluate(f"() => document.querySelector('{PLOT}').dataset.numFrames") == "15"
    sync_api.expect(page.locator("#orbit-status")).to_contain_text("It is cached", timeout=120000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#orbit-video video'); return v && v.readyState >= 2; }",
        timeout=30000)
    assert not page.errors, page.errors


def test_an_unreadable_photo_gets_the_apps_message(page, tmp_path):
    """Gradio's preprocessing used to answer a corrupt upload with "Could not preprocess input component..."."""
    bad = tmp_path / "garbage.png"
    bad.write_bytes(bytes(np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8)))
    page.get_by_role("tab", name="Portrait animation").click()
    page.locator("#portrait-image input[type=file]").set_input_files(str(bad))
    toast = page.get_by_text("Could not read the photo", exact=False).first
    sync_api.expect(toast).to_be_visible(timeout=30000)
    assert page.get_by_text("preprocess", exact=False).count() == 0
    assert not page.errors, page.errors
