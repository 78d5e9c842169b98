"""How the report reads: the AUC forest plot draws AUC = 1 whole; wide tables fit a 1280 px browser window;
clinical columns that may stand in for the label are named beside the results."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.bench.synthetic_run import make_synthetic_run
from her2dlr.report.build import build_report
from her2dlr.report.figures.discrimination import plot_auc_forest

#: Model names as the fusions spell them: long and without spaces.
LONG = {"radiomics_us2d_mask-lr": "combined(radiomics_us2d_original_mask-lr,clinical_and_deep_features)-lr",
        "radiomics_us2d_mask-svm": "stack(radiomics_us2d_original_mask-svm,clinical_and_deep_features)-svm",
        "radiomics_us2d_mask+clinical-lr": "radiomics_us2d_original_mask+deep_densenet3block+clinical-lightgbm"}


def test_forest_plot_draws_a_perfect_auc_marker_whole() -> None:
    table = pd.DataFrame({"model": ["a", "b"], "view": ["test", "test"], "auc": [1.0, 0.8],
                          "ci_low": [1.0, 0.7], "ci_high": [1.0, 0.9]})
    fig = plot_auc_forest(table, {"a": "#1f77b4", "b": "#ff7f0e"})
    fig.canvas.draw()
    ax = fig.axes[0]
    right = ax.get_window_extent().x1
    markers = [line for line in ax.lines if line.get_marker() not in (None, "None", "", " ")]
    xs = [(line, float(x)) for line in markers for x in np.atleast_1d(line.get_xdata())]
    line, x = max(xs, key=lambda item: item[1])
    assert x == pytest.approx(1.0)
    half = line.get_markersize() * fig.dpi / 72 / 2
    centre = ax.transData.transform((x, 0.0))[0]
    assert centre + half <= right, "the marker at AUC = 1 is cut by the axes frame"
    assert max(t for t in ax.get_xticks()) <= 1.0  # no tick label beyond a possible AUC


def _rename_models(run: Path) -> None:
    """Give the synthetic run's models long names in every file that names them."""
    folder = run / "learn" / "radiomics_us2d_mask"
    pred = pd.read_parquet(folder / "predictions.parquet")
    pred["model"] = pred["model"].replace(LONG)
    pred.to_parquet(folder / "predictions.parquet")
    for path in folder.glob("*.csv"):
        table = pd.read_csv(path)
        table.rename(columns=LONG).replace(LONG).to_csv(path, index=False)


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs chromium and chromedriver (Debian packages chromium, chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic run with long model names and a learning stage that flagged a BIRADS column."""
    from her2dlr.evaluate.proxies import label_proxies

    run = make_synthetic_run(tmp_path_factory.mktemp("layout") / "run", n_cases=80, n_models=3, seed=5)
    _rename_models(run)
    y = np.arange(40) % 2
    clinical = pd.DataFrame({"BIRADS": np.where(y == 1, "5", "2"), "Age": np.linspace(30, 80, 40)})
    label_proxies(clinical, y, {"BIRADS": "categorical", "Age": "numeric"}).to_csv(
        run / "learn" / "radiomics_us2d_mask" / "label_proxies.csv", index=False)
    return build_report(run, progress=False, pdf=False, strict=True)


def test_label_proxies_are_named_beside_the_results(report) -> None:
    html = report.html.read_text(encoding="utf-8")
    discrimination = html[html.index('<section id="discrimination">'):html.index('<section id="calibration">')]
    assert "may stand in for the label: BIRADS" in discrimination
    assert "almost perfectly" in discrimination and "name suggests a verdict" in discrimination
    summary = html[html.index('<section class="summary"'):html.index('<section id="cohort">')]
    assert "Warning: clinical column(s) BIRADS may stand in for the label" in summary
    check = pd.read_csv(report.tables["label_proxies"])
    assert check.set_index("column").loc["BIRADS", "flagged"] and not check.set_index("column").loc["Age", "flagged"]


def test_wide_tables_fit_a_1280_px_window(report) -> None:
    res = report
    html = res.html.read_text(encoding="utf-8")
    assert LONG["radiomics_us2d_mask-lr"] in html
    browser = _browser()
    try:
        browser.set_window_size(1280, 900)
        browser.get(res.html.as_uri())
        scrolling = browser.execute_script(
            "return Array.from(document.querySelectorAll('.tablewrap'))"
            ".filter(w => w.scrollWidth > w.clientWidth + 1)"
            ".map(w => (w.querySelector('.tcap') || w).innerText.slice(0, 80));")
        page = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth];")
    finally:
        browser.quit()
    assert scrolling == [], scrolling
    assert page[0] <= page[1], page
