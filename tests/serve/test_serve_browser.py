"""The page `img2img serve` shows, in a real headless Chromium (the system browser, driven by
Selenium; see the `chromium` fixture): the real command on a free loopback port, a bundled photo
uploaded through the file input, the result shown beside it at the input's size, a cgan sample
grid drawn from the class picker, and the page at phone width. Screenshots are saved in the
test's tmp folder and, when IMG2IMG_SCREENSHOTS=DIR is set, copied to DIR (how docs/serve.png
is made)."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="the serve extra (pip install 'img2img[serve]')")
from img2img_cgan import ConditionalGAN
from img2img_pix2pix import Pix2Pix

from img2img.testing import check_model

PHOTO = Path(__file__).parents[1] / "data" / "faces" / "caltech_photo_000.jpg"
PLUGINS = "img2img_pix2pix,img2img_cgan"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`img2img serve` serving a pix2pix and a cgan run on a free loopback port; its URL."""
    root = tmp_path_factory.mktemp("browser")
    runs = []
    for name, cls in (("faces-pix2pix", Pix2Pix), ("digits-cgan", ConditionalGAN)):
        run = check_model(cls, workdir=root / f"work-{name}")
        runs.append(Path(shutil.move(run, root / "runs" / name)))
    env = {**os.environ, "IMG2IMG_LOAD_PLUGINS": PLUGINS, "OMP_NUM_THREADS": "1",
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    command = [sys.executable, "-m", "img2img", "serve", "--port", "0", "--threads", "1",
               "--log-level", "warning"] + [flag for run in runs for flag in ("--model", str(run))]
    log = (root / "server.log").open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (root / "server.log").read_text()
        deadline = time.monotonic() + 120
        while not _ready(url):
            assert process.poll() is None and time.monotonic() < deadline, \
                (root / "server.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def _image_bytes(driver, element_id: str) -> bytes:
    """The bytes of an <img> the page shows (a blob: URL), fetched inside the page."""
    encoded = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById(arguments[0]).src).then((r) => r.blob()).then((blob) => {
          const reader = new FileReader();
          reader.onload = () => done(reader.result.split(",")[1]);
          reader.readAsDataURL(blob);
        });""", element_id)
    return base64.b64decode(encoded)


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    wanted = os.environ.get("IMG2IMG_SCREENSHOTS")
    if wanted:  # a deliberate step: how docs/serve.png (docs/guides/serve.md) is made
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / name)
    return path


def test_upload_shows_the_result_beside_the_input(chromium, server, tmp_path):
    from selenium.webdriver.common.by import By

    chromium.get(server)
    _wait(chromium, lambda d: "is ready" in d.find_element(By.ID, "status").text)
    details = chromium.find_element(By.ID, "details").text
    assert "pix2pix" in details and "a_to_b" in details
    # one direction and no styles: nothing to choose, so no selector is shown
    assert not chromium.find_element(By.ID, "direction").is_displayed()
    assert not chromium.find_element(By.ID, "style").is_displayed()
    chromium.find_element(By.ID, "file").send_keys(str(PHOTO.resolve()))
    _wait(chromium, lambda d: d.find_element(By.ID, "result").get_attribute("data-state")
          in ("done", "failed"))
    status = chromium.find_element(By.ID, "status").text
    assert chromium.find_element(By.ID, "result").get_attribute("data-state") == "done", status
    photo = cv2.imread(str(PHOTO), cv2.IMREAD_UNCHANGED)
    size = chromium.execute_script(
        "const r = document.getElementById('result');"
        "return [r.naturalHeight, r.naturalWidth];")
    assert tuple(size) == photo.shape[:2]
    result = cv2.imdecode(np.frombuffer(_image_bytes(chromium, "result"), np.uint8),
                          cv2.IMREAD_UNCHANGED)
    assert result.shape == photo.shape
    assert np.abs(result.astype(int) - photo.astype(int)).mean() > 5  # it was translated
    download = chromium.find_element(By.ID, "download")
    assert download.is_displayed() and download.get_attribute("download").endswith(".jpg")
    # side by side on a desktop window
    left = chromium.find_element(By.ID, "input").rect
    right = chromium.find_element(By.ID, "result").rect
    assert right["x"] > left["x"] + left["width"] - 1 and abs(right["y"] - left["y"]) < 2
    _screenshot(chromium, tmp_path, "serve.png")


def test_a_cgan_run_draws_a_grid_for_the_chosen_class(chromium, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    chromium.get(server)
    _wait(chromium, lambda d: "is ready" in d.find_element(By.ID, "status").text)
    Select(chromium.find_element(By.ID, "model")).select_by_value("digits-cgan")
    assert chromium.find_element(By.ID, "sample-panel").is_displayed()
    assert not chromium.find_element(By.ID, "translate-panel").is_displayed()
    Select(chromium.find_element(By.ID, "label")).select_by_visible_text("class_1")
    count = chromium.find_element(By.ID, "count")
    count.clear()
    count.send_keys("4")
    chromium.find_element(By.ID, "sample").click()
    _wait(chromium, lambda d: d.find_element(By.ID, "grid").get_attribute("data-state")
          in ("done", "failed"))
    assert chromium.find_element(By.ID, "grid").get_attribute("data-state") == "done", \
        chromium.find_element(By.ID, "status").text
    size = chromium.execute_script(
        "const g = document.getElementById('grid'); return [g.naturalWidth, g.naturalHeight];")
    assert tuple(size) == (64, 64)  # 2x2 samples of 32 px
    assert chromium.find_element(By.ID, "grid-download").is_displayed()
    _screenshot(chromium, tmp_path, "serve-cgan.png")


def test_the_page_fits_a_phone(chromium, server, tmp_path):
    from selenium.webdriver.common.by import By

    chromium.set_window_size(375, 812)
    chromium.get(server)
    _wait(chromium, lambda d: "is ready" in d.find_element(By.ID, "status").text)
    chromium.find_element(By.ID, "file").send_keys(str(PHOTO.resolve()))
    _wait(chromium, lambda d: d.find_element(By.ID, "result").get_attribute("data-state")
          == "done")
    width = chromium.execute_script("return window.innerWidth")
    assert chromium.execute_script("return document.documentElement.scrollWidth") <= width
    # stacked: the result below the input
    top = chromium.find_element(By.ID, "input").rect
    below = chromium.find_element(By.ID, "result").rect
    assert below["y"] >= top["y"] + top["height"] - 1
    _screenshot(chromium, tmp_path, "serve-phone.png")


def _clip(path: Path, frames: int = 12) -> Path:
    """A small H.264 MP4 of a face photo panning sideways, as browsers play."""
    import av

    photo = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    photo = cv2.resize(photo, (96 + 2 * frames, 64))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[:, 2 * i:2 * i + 96]),
                                                 format="rgb24")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


def test_a_video_upload_plays_beside_its_translation(chromium, server, tmp_path):
    from selenium.webdriver.common.by import By

    chromium.get(server)
    _wait(chromium, lambda d: "is ready" in d.find_element(By.ID, "status").text)
    clip = _clip(tmp_path / "pan.mp4")
    chromium.find_element(By.ID, "file").send_keys(str(clip.resolve()))
    assert chromium.find_element(By.ID, "stabilize").is_displayed()  # offered for videos only
    assert not chromium.find_element(By.ID, "input").is_displayed()
    plays = chromium.execute_script(
        "return document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.640028\"')")
    result = chromium.find_element(By.ID, "result-video")
    if not plays:  # a Chromium built without H.264: the page still gets the translated clip
        _wait(chromium, lambda d: d.find_element(By.ID, "download").is_displayed() or
              "error" in (d.find_element(By.ID, "status").get_attribute("class") or ""))
        assert chromium.find_element(By.ID, "download").is_displayed()
        return
    _wait(chromium, lambda d: d.find_element(By.ID, "result-video").get_attribute("data-state")
          in ("done", "failed"))
    status = chromium.find_element(By.ID, "status").text
    assert result.get_attribute("data-state") == "done", status
    for element in ("input-video", "result-video"):  # both decoded by the browser, full size
        size = chromium.execute_script(
            f"const v = document.getElementById('{element}');"
            "return [v.videoHeight, v.videoWidth, v.duration];")
        assert size[:2] == [64, 96] and abs(size[2] - 1.0) < 0.2, (element, size)
    download = chromium.find_element(By.ID, "download")
    assert download.get_attribute("download").endswith(".mp4")
    left = chromium.find_element(By.ID, "input-video").rect
    right = result.rect
    assert right["x"] > left["x"] + left["width"] - 1
    _screenshot(chromium, tmp_path, "serve-video.png")
