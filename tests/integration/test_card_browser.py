"""The model card's HTML in a real headless Chromium: every section drawn, every plot decoded
(naturalWidth > 0) under the page's own content security policy, nothing logged as an error,
and a full-page screenshot that is not blank.

Needs ``chromium`` and ``chromedriver`` (Debian: ``apt-get install chromium chromium-driver``,
as .ci/run does) and selenium (the ``test`` extras). Skips without them, unless
``RISKBRAIN_REQUIRE_BROWSER=1`` (as in CI), where a missing browser is a failure.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_card import CONFIG, SECTIONS, sample_report
from training import metrics
from training.governance.card import PLOTS, write_card
from training.governance.fairness import fairness_table
from training.governance.plots import save_evaluation_plots
from training.report import Report

pytestmark = pytest.mark.slow


def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    problem = None
    if chromium is None or driver is None:
        problem = (
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    else:
        try:
            import selenium  # noqa: F401
        except ImportError:
            problem = "selenium is not installed (pip install -e '.[test]')"
    if problem and os.environ.get("RISKBRAIN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"RISKBRAIN_REQUIRE_BROWSER=1 but {problem}")
    if problem:
        pytest.skip(problem)
    return chromium, driver


@pytest.fixture
def browser():
    chromium, driver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def _run_folder(tmp_path: Path) -> tuple[dict, Path]:
    """A report whose metrics, PSI and fairness table come from real predictions, and the
    plots training/governance/plots.py draws of the same predictions."""
    rng = np.random.default_rng(0)
    n = 4_000
    y = (rng.random(n) < 0.2).astype(np.int64)
    p = 1.0 / (1.0 + np.exp(-(rng.normal(-1.6, 1.0, n) + 1.2 * y)))
    sex = rng.choice(["1", "2"], size=n)
    report = sample_report()
    report["test"] = metrics.evaluate(y, p)
    report["psi_train_test"] = metrics.psi(rng.permutation(p)[: n // 2], p)
    report["fairness"] = fairness_table(y, p, {"SEX": sex})
    plots = tmp_path / "run" / "plots"
    save_evaluation_plots(y, p, plots, title="taiwan / tabm")
    return report, plots


def test_the_html_card_renders_with_its_plots(browser, tmp_path):
    report, plots = _run_folder(tmp_path)
    _, page = write_card(
        Report.from_dict(report), plots, plots.parent, config_text=CONFIG,
        command="python -m jobs.train", title="taiwan / tabm", commit="abc1234",
    )  # fmt: skip
    browser.get(page.resolve().as_uri())

    assert browser.title == "Model card: taiwan / tabm"
    headings = browser.execute_script(
        "return Array.from(document.querySelectorAll('section > h2'), h => h.textContent)"
    )
    assert headings == SECTIONS
    images = browser.execute_script(
        "return Array.from(document.images, i => "
        "[i.alt, i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])"
    )
    assert [alt for alt, *_ in images] == [caption for _, caption in PLOTS]
    for alt, complete, width, height, shown in images:
        # naturalWidth is 0 for an image the browser could not load or decode.
        assert complete and width > 100 and height > 100 and shown > 100, (alt, width, height)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # a blocked load (CSP) or a broken image is logged here

    from PIL import Image

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(height + 100, 8000))
    shot = tmp_path / "model_card.png"
    assert browser.save_screenshot(str(shot))
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.width >= 1000 and image.height >= 2000
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is blank"
    # The plots' red model curve (tab:red) is on the page, not only text and table lines.
    pixels = np.asarray(image)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 500
