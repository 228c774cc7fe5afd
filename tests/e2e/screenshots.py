"""Regenerate the README's screenshots of the three tabs (each after a short generation).

    python tests/e2e/screenshots.py [docs/screenshots]

Same browser set-up as the e2e tests: Debian's Chromium, offline, against the app launched in this process.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from playwright.sync_api import sync_playwright  # noqa: E402

from test_app_browser import ARGS, CHROMIUM  # noqa: E402

TABS = [("portrait", "Portrait animation"), ("identity", "ID-driven generation"), ("orbit", "Free-viewpoint orbit")]


def _fill(page, prefix, portrait, speech):
    page.locator(f"#{prefix}-image input[type=file]").set_input_files(portrait)
    page.locator(f"#{prefix}-aligned input").check()
    if speech and prefix != "orbit":
        page.locator(f"#{prefix}-audio input[type=file]").set_input_files(speech)
    page.wait_for_selector(f"#{prefix}-crop img", state="attached", timeout=30000)
    if prefix == "orbit":
        page.locator("#orbit-seconds input[type=number]").fill("1.2")
        page.locator("#orbit-seconds input[type=number]").press("Enter")
        page.locator("#camera-preset input").click()
        page.get_by_role("option", name="oscillation").click()
    page.locator(f"#{prefix}-run").click()
    page.wait_for_selector(f"#{prefix}-mp4 a", timeout=300000)
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('#{prefix}-video video'); return v && v.readyState >= 2; }}",
        timeout=60000)


def main(out="docs/screenshots"):
    import app
    from ui import examples

    os.makedirs(out, exist_ok=True)
    portrait, speech = examples.portraits()[0], examples.speech()[0]
    demo = app.launch(port=None, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1050})
            page.goto(demo.local_url)
            for i, (prefix, name) in enumerate(TABS, 1):
                page.get_by_role("tab", name=name).click()
                _fill(page, prefix, portrait, speech)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=os.path.join(out, f"{i}_{prefix}.png"))
                print("wrote", os.path.join(out, f"{i}_{prefix}.png"))
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
