"""`img2img serve` with a run trained with a noise input: /api/models says how much noise it
takes, /api/translate's `seed` field gives `convert --seed`'s image (and is refused, 422, for a
run without noise), and the page shows a row of variants under the result with a "More" button
that adds another row (real headless Chromium, as test_serve_browser.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="the serve extra (pip install 'img2img[serve]')")
from click.testing import CliRunner
from img2img_pix2pix import Pix2Pix
from starlette.testclient import TestClient
from test_serve_browser import PHOTO, _ready, _wait

from img2img.cli import build_cli
from img2img.registry.catalog import build_catalog
from img2img.registry.loading import load_plugins
from img2img.serve import create_app
from img2img.testing import check_model

PLUGINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-variants")
    found = {}
    for name, noise in (("noisy", {"noise_dim": 4, "mode_seeking": 1.0}), ("plain", {})):
        run = check_model(Pix2Pix, workdir=root / f"work-{name}", **noise)
        found[name] = Path(shutil.move(run, root / "runs" / name))
    return found


@pytest.fixture(scope="module")
def client(runs):
    catalog = build_catalog(load_plugins(strict=True, env=PLUGINS))
    app = create_app([str(runs["noisy"]), str(runs["plain"])], catalog=catalog)
    assert app.state.pool.wait(120)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _png(seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def test_models_say_how_much_noise_each_run_takes(client):
    described = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert described["noisy"]["noise_dim"] == 4 and described["plain"]["noise_dim"] == 0


def test_a_seed_gives_convert_s_image_for_that_seed(client, runs, tmp_path):
    source = tmp_path / "in.png"
    source.write_bytes(_png())
    result = CliRunner().invoke(build_cli(load_plugins(strict=True, env=PLUGINS)), [
        "convert", str(source), "--model", str(runs["noisy"]), "--seed", "5",
        "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    answers = {seed: client.post("/api/translate", files={"image": ("in.png", _png())},
                                 data={"model": "noisy", "seed": str(seed)}) for seed in (5, 6)}
    assert answers[5].status_code == 200 and answers[5].headers["X-Seed"] == "5"
    assert answers[5].content == (tmp_path / "out.png").read_bytes()
    assert answers[6].content != answers[5].content


def test_a_seed_for_a_run_without_noise_is_422(client):
    response = client.post("/api/translate", files={"image": ("in.png", _png())},
                           data={"model": "plain", "seed": "1"})
    assert response.status_code == 422
    assert "without a noise input" in response.json()["error"]


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    """`img2img serve` on a free loopback port, serving the noisy run; its URL."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, **PLUGINS, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    command = [sys.executable, "-m", "img2img", "serve", "--port", "0", "--threads", "1",
               "--log-level", "warning", "--model", str(runs["noisy"])]
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), log_path.read_text()
        deadline = time.monotonic() + 120
        while not _ready(url):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_the_page_shows_a_row_of_variants_and_more_on_request(chromium, server):
    from selenium.webdriver.common.by import By

    chromium.get(server)
    _wait(chromium, lambda d: "is ready" in d.find_element(By.ID, "status").text)
    chromium.find_element(By.ID, "file").send_keys(str(PHOTO.resolve()))

    def shown(d):
        return d.find_elements(By.CSS_SELECTOR, "#variants img")

    def loaded(d, count):
        images = shown(d)
        return len(images) == count and all(
            d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
            for i in images)

    _wait(chromium, lambda d: loaded(d, 4), timeout=120)
    assert chromium.find_element(By.ID, "variants-panel").is_displayed()
    assert [i.get_attribute("data-seed") for i in shown(chromium)] == ["0", "1", "2", "3"]
    chromium.find_element(By.ID, "more").click()
    _wait(chromium, lambda d: loaded(d, 8), timeout=120)
    assert [i.get_attribute("data-seed") for i in shown(chromium)][4:] == ["4", "5", "6", "7"]
