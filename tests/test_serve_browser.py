"""The page of `her2dlr serve` in a real Chromium (selenium, headless): upload, draw the box, predict, see the heat map."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import lesion_image, write_png

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
DEEP = "deep_densenet3block-signature"
# screenshots for people to look at, besides the one kept in the test's tmp folder
SCREENSHOT_DIR_ENV = "HER2DLR_SCREENSHOTS"


@pytest.fixture(scope="module")
def server(serve_models: Path) -> Iterator[str]:
    """The app under a real uvicorn on a free loopback port, in a thread."""
    pytest.importorskip("uvicorn", reason="the server needs uvicorn (pip install -e .)")
    import uvicorn

    from her2dlr.bench.serve_benches import free_port
    from her2dlr.serve import ServeSettings, create_app

    port = free_port()
    config = uvicorn.Config(create_app(ServeSettings(serve_models)), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not CHROMIUM or not DRIVER:
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1700", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_upload_draw_box_predict_and_show_heat_map(server: str, browser, serve_models: Path, tmp_path: Path):
    import os

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    from her2dlr.predict import Case, predict

    image = write_png(tmp_path / "case.png", lesion_image(4321, size=(240, 320), texture="rough"))
    driver, wait = browser, WebDriverWait(browser, 60)
    driver.get(server + "/")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 3)
    assert "not for diagnosis" in driver.find_element(By.ID, "notice").text
    Select(driver.find_element(By.ID, "model")).select_by_value(DEEP)
    assert "Threshold" in driver.find_element(By.ID, "card").text
    driver.find_element(By.ID, "image-file").send_keys(str(image))
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Image loaded"))
    shots = [tmp_path / "before.png", tmp_path / "after.png"]
    canvas = driver.find_element(By.ID, "canvas")
    # drag from 70 px left / 50 px above the centre to 70 px right / 50 px below (canvas pixels = image pixels here)
    ActionChains(driver).move_to_element_with_offset(canvas, -70, -50).click_and_hold().move_by_offset(70, 50) \
        .move_by_offset(70, 50).release().perform()
    box = [int(v) for v in driver.find_element(By.ID, "box").get_attribute("value").split(",")]
    assert len(box) == 4 and 120 <= box[2] <= 160 and 80 <= box[3] <= 120, box
    driver.save_screenshot(str(shots[0]))
    driver.find_element(By.ID, "predict").click()
    wait.until(ec.visibility_of_element_located((By.ID, "result")))
    wait.until(lambda d: d.find_element(By.ID, "probability").text.strip() != "")
    shown = float(driver.find_element(By.ID, "probability").text)
    heat = driver.find_element(By.ID, "heatmap")
    wait.until(lambda d: d.execute_script("const i = arguments[0]; return i.complete && i.naturalWidth;", heat))
    assert heat.is_displayed()
    width, height = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight];", heat)
    assert width >= 320 and height > 240  # the image with the heat, its caption and colour bar
    driver.save_screenshot(str(shots[1]))
    # the page shows what the prediction entry point says for the box drawn with the mouse
    want = predict(serve_models / DEEP, Case(image=image, box=tuple(box)), progress=False)[0]
    assert shown == pytest.approx(want.probability, abs=5e-4)
    assert driver.find_element(By.ID, "class").text.startswith(str(want.predicted_class))
    # the clinical model's fields come from its card: levels seen in training, the numeric range and unit
    Select(driver.find_element(By.ID, "model")).select_by_value("clinical-lr")
    shape = Select(driver.find_element(By.ID, "clin-Shape"))
    assert sorted(o.get_attribute("value") for o in shape.options) == ["", "irregular", "oval", "round"]
    age = driver.find_element(By.ID, "clin-Age")
    assert age.get_attribute("type") == "number" and float(age.get_attribute("min")) < float(age.get_attribute("max"))
    assert "Age (years)" in driver.find_element(By.ID, "clinical").text
    driver.get(server + "/docs")
    wait.until(ec.text_to_be_present_in_element((By.ID, "endpoints"), "POST /api/models/{model}/predict"))
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        for shot in shots:
            shutil.copyfile(shot, Path(keep) / f"serve_{shot.name}")
    assert all(s.stat().st_size > 10_000 for s in shots)
