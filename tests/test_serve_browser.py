"""The page of `her2dlr serve` in real browsers, headless: upload, draw the box, predict, see the heat map.

One scenario, two browsers: Chromium driven by selenium + Debian's chromedriver, Firefox driven by
Mozilla's own Marionette client (marionette-driver talks to Firefox directly, no geckodriver).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import lesion_image, write_png

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
DEEP = "deep_densenet3block-signature"
# screenshots for people to look at, besides the ones kept in the test's tmp folder
SCREENSHOT_DIR_ENV = "HER2DLR_SCREENSHOTS"


@contextlib.contextmanager
def _uvicorn(models: Path) -> Iterator[str]:
    """The app over ``models`` under a real uvicorn on a free loopback port, in a thread."""
    pytest.importorskip("uvicorn", reason="the server needs uvicorn (pip install -e .)")
    import uvicorn

    from her2dlr.bench.serve_benches import free_port
    from her2dlr.serve import ServeSettings, create_app

    port = free_port()
    config = uvicorn.Config(create_app(ServeSettings(models)), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(serve_models: Path) -> Iterator[str]:
    with _uvicorn(serve_models) as url:
        yield url


class Page:
    """What the scenario does to the page, whatever drives the browser."""

    def get(self, url: str) -> None:
        raise NotImplementedError

    def js(self, script: str, *args: Any) -> Any:
        raise NotImplementedError

    def element(self, css: str) -> Any:
        raise NotImplementedError

    def drag(self, element_id: str, start: tuple[int, int], end: tuple[int, int]) -> None:
        """Press the mouse at ``start`` and release it at ``end`` (pixels from the element's centre)."""
        raise NotImplementedError

    def screenshot(self, path: Path) -> None:
        raise NotImplementedError

    def text(self, element_id: str) -> str:
        return str(self.js("return document.getElementById(arguments[0]).innerText;", element_id))

    def value(self, element_id: str) -> str:
        return str(self.js("return document.getElementById(arguments[0]).value;", element_id))

    def choose(self, select_id: str, value: str) -> None:
        """Pick an option of a drop-down with the mouse, as a user does."""
        self.element(f"#{select_id} option[value='{value}']").click()
        self.until(lambda: self.value(select_id) == value)

    def until(self, condition: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = condition()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"the page did not get there within {timeout:.0f} s (status: "
                                     f"{self.text('status')!r})")
            time.sleep(0.1)


class SeleniumPage(Page):
    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def get(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def element(self, css: str) -> Any:
        return self.driver.find_element("css selector", css)

    def drag(self, element_id: str, start: tuple[int, int], end: tuple[int, int]) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        canvas = self.element(f"#{element_id}")
        mid = ((start[0] + end[0]) // 2 - start[0], (start[1] + end[1]) // 2 - start[1])
        ActionChains(self.driver).move_to_element_with_offset(canvas, *start).click_and_hold().move_by_offset(*mid) \
            .move_by_offset(end[0] - start[0] - mid[0], end[1] - start[1] - mid[1]).release().perform()

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))


class MarionettePage(Page):
    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, url: str) -> None:
        self.client.navigate(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.client.execute_script(script, script_args=list(args), sandbox=None)

    def element(self, css: str) -> Any:
        return self.client.find_element("css selector", css)

    def drag(self, element_id: str, start: tuple[int, int], end: tuple[int, int]) -> None:
        canvas = self.element(f"#{element_id}")
        mid = ((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
        mouse = self.client.actions.sequence("pointer", "mouse", {"pointerType": "mouse"})
        mouse.pointer_move(*start, origin=canvas).pointer_down()
        mouse.pointer_move(*mid, duration=100, origin=canvas).pointer_move(*end, duration=100, origin=canvas)
        mouse.pointer_up().perform()
        self.client.actions.release()

    def screenshot(self, path: Path) -> None:
        path.write_bytes(self.client.screenshot(format="binary", full=True))


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> Iterator[Page]:
    if not CHROMIUM or not DRIVER:
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1700", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield SeleniumPage(driver)
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def firefox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    if not FIREFOX:
        pytest.skip("Firefox is not installed (Debian: apt-get install firefox-esr)")
    marionette = pytest.importorskip("marionette_driver.marionette",
                                     reason="marionette-driver is not installed (pip install -e '.[dev]')")
    from her2dlr.bench.serve_benches import free_port

    client = marionette.Marionette(host="127.0.0.1", port=free_port(), bin=FIREFOX, headless=True,
                                   app_args=["-no-remote", "--width=1280", "--height=1700"], startup_timeout=120,
                                   gecko_log=str(tmp_path_factory.mktemp("gecko") / "gecko.log"))
    # never os.devnull: Marionette deletes an existing log file before starting (as root, /dev/null itself)
    try:
        client.start_session()
        client.timeout.page_load = 60
        yield MarionettePage(client)
    finally:
        client.cleanup()


def _scenario(page: Page, server: str, serve_models: Path, tmp_path: Path) -> list[Path]:
    """Choose the network model, upload an image, draw its box, predict: the page shows the entry point's answer
    and the heat map; the clinical model's fields come from its card. Returns the screenshots."""
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import Case, predict

    image = write_png(tmp_path / "case.png", lesion_image(4321, size=(240, 320), texture="rough"))
    page.get(server + "/")
    page.until(lambda: page.js("return document.querySelectorAll('#model option').length;") == 3)
    assert "not for diagnosis" in page.text("notice")
    page.choose("model", DEEP)
    assert "Threshold" in page.text("card")
    page.element("#image-file").send_keys(str(image))
    page.until(lambda: "Image loaded" in page.text("status"))
    shots = [tmp_path / "before.png", tmp_path / "after.png", tmp_path / "clinical.png"]
    # drag from 70 px left / 50 px above the centre to 70 px right / 50 px below (canvas pixels = image pixels here)
    page.drag("canvas", (-70, -50), (70, 50))
    box = [int(v) for v in page.value("box").split(",")]
    assert len(box) == 4 and 120 <= box[2] <= 160 and 80 <= box[3] <= 120, box
    page.screenshot(shots[0])
    page.element("#predict").click()
    page.until(lambda: page.text("probability").strip() != "")
    assert page.js("return !document.getElementById('result').hidden;")
    shown = float(page.text("probability"))
    loaded = "const i = document.getElementById('heatmap'); return i.complete && !i.hidden && i.naturalWidth;"
    page.until(lambda: page.js(loaded))
    width, height = page.js("const i = document.getElementById('heatmap'); return [i.naturalWidth, i.naturalHeight];")
    assert width >= 320 and height > 240  # the image with the heat, its caption and colour bar
    page.screenshot(shots[1])
    # the page shows what the prediction entry point says for the box drawn with the mouse
    want = predict(serve_models / DEEP, Case(image=image, box=tuple(box)), progress=False)[0]
    assert shown == pytest.approx(want.probability, abs=5e-4)
    assert page.text("class").startswith(str(want.predicted_class))
    # the clinical model's fields come from its card: levels seen in training, the numeric range and unit
    page.choose("model", "clinical-lr")
    levels = page.js("return [...document.querySelectorAll('#clin-Shape option')].map(o => o.value);")
    assert sorted(levels) == ["", "irregular", "oval", "round"]
    kind, low, high = page.js("const a = document.getElementById('clin-Age'); return [a.type, a.min, a.max];")
    assert kind == "number" and float(low) < float(high)
    assert "Age (years)" in page.text("clinical")
    trained = load_artefact(serve_models / "clinical-lr").card["training"]
    n_pos = trained["n_positive"]
    assert f"negative {trained['n_cases'] - n_pos}, positive {n_pos}" in page.text("card")
    page.screenshot(shots[2])
    page.get(server + "/docs")
    page.until(lambda: "POST /api/models/{model}/predict" in page.text("endpoints"))
    assert all(s.stat().st_size > 10_000 for s in shots)
    return shots


def _keep(shots: list[Path], prefix: str) -> None:
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        for shot in shots:
            shutil.copyfile(shot, Path(keep) / f"{prefix}_{shot.name}")


def test_chromium_upload_draw_box_predict_and_show_heat_map(server: str, chromium: Page, serve_models: Path,
                                                            tmp_path: Path):
    _keep(_scenario(chromium, server, serve_models, tmp_path), "serve")


def test_firefox_upload_draw_box_predict_and_show_heat_map(server: str, firefox: Page, serve_models: Path,
                                                           tmp_path: Path):
    _keep(_scenario(firefox, server, serve_models, tmp_path), "serve_firefox")


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_clip_streams_its_frames_and_shows_the_answer(browser: str, request: pytest.FixtureRequest, video_model,
                                                      tmp_path: Path):
    from conftest import video_clip
    from her2dlr.predict.video import predict_video
    from her2dlr.segment.data import mask_box
    from her2dlr.video.simulate import write_sweep

    page: Page = request.getfixturevalue(browser)
    sweep = video_clip(500, 1)
    clip = write_sweep(sweep, tmp_path / "clip.mp4")
    box = tuple(int(v) for v in mask_box(sweep.masks[sweep.key_frame]))
    models = tmp_path / "models"
    shutil.copytree(video_model[0], models / "video_tf-lr")
    with _uvicorn(models) as url:
        page.get(url + "/")
        page.until(lambda: page.js("return document.querySelectorAll('#model option').length;") == 1)
        assert page.js("return !document.getElementById('video-panel').hidden && document.getElementById('case-panel')"
                       ".hidden;")
        page.element("#clip-file").send_keys(str(clip))
        page.element("#key-frame").clear()
        page.element("#key-frame").send_keys(str(sweep.key_frame))
        page.element("#clip-box").send_keys(",".join(map(str, box)))
        page.element("#predict").click()
        page.until(lambda: "Done" in page.text("status") or "[" in page.text("status"))
        assert page.text("status").startswith("10 frames read"), page.text("status")
        shown = float(page.text("probability"))
        page.screenshot(tmp_path / "clip.png")
    want = predict_video(video_model[0], clip, key_box=box, key_frame=sweep.key_frame, progress=False)
    assert shown == pytest.approx(want.result.probability, abs=5e-4)
    assert page.text("class").startswith(str(want.result.predicted_class))
    _keep([tmp_path / "clip.png"], f"serve_{browser}")
