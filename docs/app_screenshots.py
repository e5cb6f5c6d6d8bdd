"""The screenshots in docs/app.md, taken by the browser the tests use (Debian's
Chromium through Playwright) on `genact app` with the shipped models:

    make demo                                   # runs and results to look inside
    genact app --runs demo --port 7870 &
    python docs/app_screenshots.py http://127.0.0.1:7870/ demo
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

OUT = Path(__file__).parent / "images"


def main(url: str, demo: str) -> None:
    clip = sorted(Path.home().glob(".cache/genact/app-examples/*.mp4"))[1]
    run = str(Path(demo).resolve() / "runs" / "rest")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#video-in input[type=file]").set_input_files(str(clip))
        page.click("#run-button")
        expect(page.locator("#video-caption textarea")).not_to_have_value("", timeout=60000)
        page.screenshot(path=OUT / "app-try.png", full_page=True)
        page.click("#tab-run-button")
        page.locator("#run-pick input").click()
        page.locator("ul[role=listbox] li", has_text=run).filter(has_not_text="-").first.click()
        expect(page.locator("#run-message")).to_contain_text("REST", timeout=60000)
        page.click("#show-button")
        expect(page.locator("#history")).to_contain_text("retrieved", timeout=60000)
        page.wait_for_timeout(1500)  # the frame strip
        page.screenshot(path=OUT / "app-run.png", full_page=True)
        page.locator("#run-pick input").click()
        result = str(Path(demo).resolve() / "results" / "rest")
        page.locator("ul[role=listbox] li", has_text=result).filter(has_not_text="-").first.click()
        expect(page.locator("#run-message")).to_contain_text("evaluation", timeout=60000)
        page.wait_for_timeout(1500)
        page.screenshot(path=OUT / "app-eval.png", full_page=True)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
