"""`img2img serve` through Starlette's test client: every endpoint, every refusal with its JSON
error and status, a translation byte-identical to what `img2img convert` writes, a sample grid
identical to `img2img sample`'s, concurrent requests, the bounded queue, models still loading,
and the command line around it. Runs are the contract test's 2-step runs at 32 px."""
from __future__ import annotations

import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("starlette", reason="the serve extra (pip install 'img2img[serve]')")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (the test extra)")
from img2img_cgan import ConditionalGAN
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import img2img.serve.models as served_models
from img2img.cli import build_cli
from img2img.registry.catalog import build_catalog
from img2img.registry.loading import load_plugins
from img2img.serve import create_app, imaging
from img2img.testing import check_model

BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan,img2img_cgan"}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(strict=True, env=BUILTINS)


@pytest.fixture(scope="module")
def catalog(plugins):
    return build_catalog(plugins)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs named after their model, in one runs folder."""
    root = tmp_path_factory.mktemp("serve")
    found = {}
    for cls in (Pix2Pix, CycleGAN, ConditionalGAN):
        run = check_model(cls, workdir=root / f"work-{cls.name}")
        found[cls.name] = Path(shutil.move(run, root / "runs" / cls.name))
    return found


def client_for(catalog, *models, **settings) -> TestClient:
    app = create_app([str(m) for m in models], catalog=catalog, **settings)
    assert app.state.pool.wait(120)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(catalog, runs):
    with client_for(catalog, runs["pix2pix"], runs["cyclegan"], runs["cgan"]) as c:
        yield c


def png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = image[..., [2, 1, 0, 3][:image.shape[2]]]
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def noise(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype)


def decoded(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and body["error"] and "Traceback" not in body["error"]
    return body["error"]


def translate(client, data: bytes, name="in.png", **fields):
    return client.post("/api/translate", files={"image": (name, data)},
                       data={"model": "pix2pix", **fields})


def clip(frames: int = 6, size: tuple[int, int] = (32, 48), audio: bool = True) -> bytes:
    """A small H.264 MP4 of moving noise with a sine audio track, as bytes."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=10)
        video.height, video.width = size
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        base = noise((size[0], size[1] + frames, 3))
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, i:i + size[1]]),
                                                 format="rgb24")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        if sound is not None:
            wave = np.sin(np.arange(16000 * frames // 10) / 10).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return buffer.getvalue()


def video_frames(data: bytes) -> list[np.ndarray]:
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def translate_video(client, data: bytes, name="clip.mp4", **fields):
    return client.post("/api/translate-video", files={"video": (name, data)},
                       data={"model": "pix2pix", **fields})


# -- what is served ------------------------------------------------------------------------------
def test_models_describe_every_run(client, runs):
    body = client.get("/api/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert list(by_name) == ["pix2pix", "cyclegan", "cgan"] and body["loading"] is False
    assert by_name["pix2pix"]["family"] == "pix2pix" and by_name["pix2pix"]["kind"] == "translate"
    assert by_name["cyclegan"]["directions"] == ["a_to_b", "b_to_a"]
    assert by_name["cgan"]["kind"] == "sample"
    assert by_name["cgan"]["classes"] == ["class_0", "class_1"]
    assert all(m["status"] == "ready" and m["training_size"] == 32 for m in by_name.values())
    assert body["limits"]["max_bytes"] > 0 and body["limits"]["max_pixels"] > 0
    assert body["limits"]["max_frames"] == 600


def test_healthz_is_ready(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": {
        "pix2pix": "ready", "cyclegan": "ready", "cgan": "ready"}}


def test_openapi_schema_documents_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {"/api/models", "/api/translate", "/api/translate-video",
                                    "/api/sample", "/healthz"}
    responses = schema["paths"]["/api/translate"]["post"]["responses"]
    assert {"200", "400", "404", "413", "422", "503"} <= set(responses)


def test_the_page_and_its_assets_come_from_the_server(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'name="viewport"' in page.text
    assert "http://" not in page.text.split("<footer>")[0].replace("http://www.w3.org", "")
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "//cdn" not in response.text and "https://" not in response.text
        assert f'"{asset}"' in page.text


# -- translation is convert's ----------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_translation_is_byte_identical_to_convert(client, runs, plugins, tmp_path, suffix):
    src = tmp_path / f"photo{suffix}"
    assert cv2.imwrite(str(src), noise((45, 70, 3)))
    result = CliRunner().invoke(build_cli(plugins), ["convert", "--model", str(runs["pix2pix"]),
                                                    str(src), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    response = translate(client, src.read_bytes(), src.name)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == imaging.MEDIA_TYPES[suffix]
    assert response.content == (tmp_path / "out" / src.name).read_bytes()


def test_a_direction_is_convert_s_too(client, runs, plugins, tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(png(noise((40, 36, 3), seed=3)))
    CliRunner().invoke(build_cli(plugins), ["convert", "--model", str(runs["cyclegan"]), str(src),
                                           "--direction", "b_to_a", "-o", str(tmp_path / "o.png")])
    response = translate(client, src.read_bytes(), model="cyclegan", direction="b_to_a")
    assert response.status_code == 200, response.text
    assert response.content == (tmp_path / "o.png").read_bytes()
    other = translate(client, src.read_bytes(), model="cyclegan", direction="a_to_b")
    assert other.status_code == 200 and other.content != response.content


def test_a_styled_run_lists_its_styles_and_draws_the_one_asked_for(catalog):
    from img2img.inference.translator import Translator
    from img2img.model import ImageSpec

    torch.manual_seed(0)  # random weights: the style embeddings differ, which is what matters
    styled = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options),
                     spec=ImageSpec(3, 32, ("bold", "neat"))).eval()
    translator = Translator(styled, Path("hands.safetensors"), torch.device("cpu"))
    image = noise((32, 40, 3), seed=4)
    with TestClient(create_app([translator], catalog=catalog)) as c:
        [model] = c.get("/api/models").json()["models"]
        assert model["name"] == "hands" and model["styles"] == ["bold", "neat"]
        out = {style: decoded(translate(c, png(image), model="hands", style=style).content)
               for style in ("bold", "neat")}
        assert "unknown style 'messy'; this run knows: bold, neat" in error_of(
            translate(c, png(image), model="hands", style="messy"), 422)
    for style, result in out.items():
        np.testing.assert_array_equal(result[..., ::-1], translator(image, label=style))
    assert not np.array_equal(out["bold"], out["neat"])


def test_size_alpha_and_sixteen_bits_are_kept(client):
    image = noise((33, 51, 4), np.uint16)
    image[:5, :, 3] = 0
    response = translate(client, png(image))
    assert response.status_code == 200, response.text
    out = decoded(response.content)
    assert out.shape == (33, 51, 4) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[..., 3], image[..., 3])


def test_format_field_picks_the_encoding(client):
    response = translate(client, png(noise((33, 51, 4))), format="jpeg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert decoded(response.content).shape == (33, 51, 3)  # JPEG has no alpha
    assert 'filename="in.jpg"' in response.headers["content-disposition"]


def test_a_megabyte_upload_with_an_odd_name_translates(client):
    data = png(noise((600, 600, 3)))
    assert len(data) > 2**20  # larger than the multipart parser's in-memory part size
    response = translate(client, data, 'фото "1"\r\n.png')
    assert response.status_code == 200, response.text
    assert decoded(response.content).shape == (600, 600, 3)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('inline; filename="') and disposition.endswith('.png"')
    assert disposition.isascii() and "\n" not in disposition


def test_grey_input_comes_back_in_the_model_s_colour(client):
    out = decoded(translate(client, png(noise((20, 24)))).content)
    assert out.shape == (20, 24, 3)


# -- refusals --------------------------------------------------------------------------------
def test_not_an_image_is_400(client):
    message = error_of(translate(client, b"this is text, not pixels", "notes.txt"), 400)
    assert "'notes.txt' is not an image" in message
    assert "empty" in error_of(translate(client, b""), 400)


def test_a_request_without_an_image_is_400(client):
    assert "no 'image' file" in error_of(
        client.post("/api/translate", files={"other": ("x.png", b"1")}), 400)
    assert "multipart/form-data" in error_of(
        client.post("/api/translate", content=b"raw", headers={"content-type": "image/png"}), 400)


@pytest.mark.parametrize("kind, body", [
    ("multipart/form-data", b"no boundary"),
    ("multipart/form-data; boundary=zz", b"not a multipart body"),
    ("multipart/form-data; boundary=zz", b'--zz\r\nContent-Disposition: form-data; name="image"'),
])
def test_a_malformed_form_is_400(client, kind, body):
    error_of(client.post("/api/translate", content=body, headers={"content-type": kind}), 400)


def test_too_many_bytes_is_413(catalog, runs):
    with client_for(catalog, runs["pix2pix"], max_bytes=2000) as small:
        big = png(noise((64, 64, 3)))
        assert len(big) > 2000
        assert "2000 bytes (--max-bytes)" in error_of(translate(small, big, model=""), 413)
        # the same limit holds when the client does not say how long the body is
        response = small.post("/api/translate", content=iter([b"--x\r\n" * 20000]),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        error_of(response, 413)
        assert translate(small, png(noise((8, 8, 3))), model="").status_code == 200


def test_too_many_pixels_is_413_before_decoding(catalog, runs, monkeypatch):
    with client_for(catalog, runs["pix2pix"], max_pixels=1000) as small:
        decodes = []
        monkeypatch.setattr(imaging, "read_native",
                            lambda path: decodes.append(path) or np.zeros((1, 1, 3), np.uint8))
        message = error_of(translate(small, png(noise((40, 40, 3))), model=""), 413)
        assert "40x40 = 1600 pixels" in message and "at most 1000" in message
        assert decodes == []


def test_unknown_model_is_404(client):
    message = error_of(translate(client, png(noise((8, 8, 3))), model="nope"), 404)
    assert "unknown model 'nope'" in message and "pix2pix" in message


@pytest.mark.parametrize("fields, says", [
    ({"direction": "b_to_a"}, "has no direction 'b_to_a'; choose one of: a_to_b"),
    ({"style": "alice"}, "trained without styles"),
    ({"format": "gif"}, "unknown format 'gif'"),
    ({"model": "cgan"}, "does not translate them; use /api/sample"),
    ({"model": ""}, "several models are served"),
])
def test_bad_choices_are_422(client, fields, says):
    assert says in error_of(translate(client, png(noise((8, 8, 3))), **fields), 422)


def test_unknown_paths_and_methods_answer_json(client):
    assert "/nowhere" in error_of(client.get("/nowhere"), 404)
    error_of(client.get("/api/translate"), 405)


def test_a_failing_model_call_is_a_500_and_the_server_goes_on(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(imaging.Translator, "translate_many", broken)
    assert "out of memory (simulated)" in error_of(translate(client, png(noise((8, 8, 3)))), 500)
    monkeypatch.undo()
    assert translate(client, png(noise((8, 8, 3)))).status_code == 200


# -- sampling ----------------------------------------------------------------------------------
def test_a_sample_grid_is_img2img_sample_s(client, runs, plugins, tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(build_cli(plugins), [
        "sample", "--model", str(runs["cgan"]), "--label", "class_1", "-n", "4", "--seed", "5",
        "-o", str(out)])
    assert result.exit_code == 0, result.output
    response = client.post("/api/sample", data={"model": "cgan", "label": "class_1", "n": "4",
                                                "seed": "5"})
    assert response.status_code == 200, response.text
    assert response.headers["x-seed"] == "5" and response.content == out.read_bytes()
    assert decoded(response.content).shape == (64, 64, 3)  # 2x2 images of 32 px


def test_sampling_every_class_gives_one_row_each(client):
    response = client.post("/api/sample", files={"model": (None, "cgan"), "n": (None, "3")})
    assert response.status_code == 200, response.text
    assert decoded(response.content).shape == (2 * 32, 3 * 32, 3)
    assert int(response.headers["x-seed"]) >= 0


@pytest.mark.parametrize("fields, status, says", [
    ({"label": "class_9"}, 422, "unknown label 'class_9'; this model's classes: class_0"),
    ({"n": "0"}, 422, "n must be between 1 and 64"),
    ({"n": "many"}, 422, "'n' must be a whole number"),
    ({"model": "pix2pix"}, 422, "does not sample them; use /api/translate"),
    ({"model": "gone"}, 404, "unknown model 'gone'"),
])
def test_bad_sample_requests(client, fields, status, says):
    assert says in error_of(client.post("/api/sample", data={"model": "cgan", **fields}), status)


# -- concurrency, queue, loading ----------------------------------------------------------------
def test_concurrent_requests_all_get_their_own_result(catalog, runs, monkeypatch):
    images = [png(noise((36, 40, 3), seed=i)) for i in range(8)]
    running, peak, lock = [0], [0], threading.Lock()
    original = imaging.translate

    def counted(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the other worker to start its own call
            return original(*args)
        finally:
            with lock:
                running[0] -= 1

    with client_for(catalog, runs["pix2pix"], workers=2, queue=8) as c:
        alone = [translate(c, image, model="").content for image in images]
        monkeypatch.setattr(imaging, "translate", counted)
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda image: translate(c, image, model=""), images))
    assert [r.status_code for r in together] == [200] * 8
    assert [r.content for r in together] == alone
    assert peak[0] == 2  # two model calls at once, never more than --workers


def test_a_full_queue_answers_503_with_retry_after(catalog, runs, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    original = imaging.translate

    def slow(*args):
        entered.set()
        assert release.wait(30)
        return original(*args)

    monkeypatch.setattr(imaging, "translate", slow)
    with client_for(catalog, runs["pix2pix"], workers=1, queue=0) as c:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(translate, c, png(noise((8, 8, 3))), model="")
            assert entered.wait(30)
            busy = translate(c, png(noise((8, 8, 3))), model="")
            assert "busy" in error_of(busy, 503) and busy.headers["retry-after"] == "1"
            assert c.get("/api/models").status_code == 200  # the event loop is free
            release.set()
            assert first.result(30).status_code == 200
        assert translate(c, png(noise((8, 8, 3))), model="").status_code == 200


def test_503_while_a_model_loads_then_ready(catalog, runs, monkeypatch):
    release = threading.Event()
    original = served_models.load

    def slow_load(*args, **kwargs):
        assert release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(served_models, "load", slow_load)
    app = create_app([str(runs["pix2pix"])], catalog=catalog)
    with TestClient(app, raise_server_exceptions=False) as c:
        health = c.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert c.get("/api/models").json()["models"][0]["status"] == "loading"
        loading = translate(c, png(noise((8, 8, 3))), model="")
        assert "still loading" in error_of(loading, 503) and "retry-after" in loading.headers
        release.set()
        assert app.state.pool.wait(60)
        assert c.get("/healthz").status_code == 200
        assert translate(c, png(noise((8, 8, 3))), model="").status_code == 200


def test_a_run_that_fails_to_load_is_reported(catalog, tmp_path):
    (tmp_path / "broken" / "checkpoints").mkdir(parents=True)
    with client_for(catalog, tmp_path / "broken") as c:
        health = c.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        [model] = c.get("/api/models").json()["models"]
        assert model["status"] == "failed" and "no checkpoint" in model["error"]
        assert "could not be loaded" in error_of(translate(c, png(noise((8, 8, 3))),
                                                           model="broken"), 500)


def test_embedded_without_lifespan_loads_on_first_request(catalog, runs):
    outer = Starlette(routes=[Mount("/img2img", create_app([str(runs["cgan"])],
                                                              catalog=catalog))])
    c = TestClient(outer)  # no `with`: no lifespan events reach the mounted app
    deadline = time.monotonic() + 60
    while c.get("/img2img/healthz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert c.post("/img2img/api/sample", data={"n": "1"}).status_code == 200


def test_default_is_the_newest_run_under_runs_dir(catalog, runs):
    app = create_app(runs_dir=runs["cgan"].parent, catalog=catalog)
    assert list(app.state.pool.entries) == [max(runs, key=lambda k: (
        runs[k] / "config.json").stat().st_mtime)]


def test_served_models_may_be_loaded_ones(catalog, runs):
    import img2img

    translator = img2img.load(runs["pix2pix"], catalog=catalog)
    with TestClient(create_app([translator], catalog=catalog)) as c:
        assert [m["name"] for m in c.get("/api/models").json()["models"]] == ["pix2pix"]
        assert translate(c, png(noise((8, 8, 3))), model="pix2pix").status_code == 200


# -- the command line ----------------------------------------------------------------------------
def test_serve_help_explains(plugins):
    result = CliRunner().invoke(build_cli(plugins), ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--model", "--host", "--port", "--max-bytes", "--max-pixels", "--queue",
                 "--workers", "127.0.0.1", "8000"):
        assert flag in result.output


def test_serve_prints_the_url_and_warns_off_loopback(plugins, runs, monkeypatch):
    from img2img.serve import server

    calls = []
    monkeypatch.setattr(server, "run", lambda app, host, port, log_level, on_listening: (
        calls.append((app, host, port)), on_listening(f"http://{host}:{port}/")))
    cli = build_cli(plugins)
    result = CliRunner().invoke(cli, ["serve", "--model", str(runs["pix2pix"]), "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "http://127.0.0.1:8123/\n" and "warning" not in result.stderr
    assert "Serving pix2pix at http://127.0.0.1:8123/" in result.stderr
    result = CliRunner().invoke(cli, ["serve", "--model", str(runs["cgan"]), "--host", "0.0.0.0"])
    assert "reachable from the network and has no authentication" in result.stderr
    assert [c[1:] for c in calls] == [("127.0.0.1", 8123), ("0.0.0.0", 8000)]


def test_serve_without_a_run_is_one_line(plugins, tmp_path):
    result = CliRunner().invoke(build_cli(plugins), ["serve", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        (f"Error: no trained run under {tmp_path}/ to serve; train one with `img2img train "
         "<model>` or pass --model RUN|CHECKPOINT")]


def test_a_misspelled_model_is_one_line(plugins, tmp_path):
    result = CliRunner().invoke(build_cli(plugins), ["serve", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: --model {tmp_path / 'nope'}: no such run folder or checkpoint"]


def test_a_missing_extra_is_one_line_exit_2(plugins, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    result = CliRunner().invoke(build_cli(plugins), ["serve"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        ("Error: img2img serve needs the serve extra (uvicorn is not installed): "
         "pip install 'img2img[serve]'")]


def test_the_server_binds_a_free_loopback_port():
    from img2img.serve import server

    sock = server.bind("127.0.0.1", 0)
    try:
        url = server.url_of(sock)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
    finally:
        sock.close()
    assert server.is_loopback("::1") and server.is_loopback("localhost")
    assert not server.is_loopback("0.0.0.0")



# -- video ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stabilize", [None, "flow"])
def test_a_video_translation_is_convert_s(client, runs, plugins, tmp_path, stabilize):
    import av

    src = tmp_path / "clip.mp4"
    src.write_bytes(clip())
    flags = ["--stabilize", stabilize] if stabilize else []
    result = CliRunner().invoke(build_cli(plugins), ["convert", "--model", str(runs["pix2pix"]),
                                                    str(src), "-o", str(tmp_path / "out.mp4"),
                                                    *flags])
    assert result.exit_code == 0, result.output
    response = translate_video(client, src.read_bytes(), **(
        {"stabilize": stabilize} if stabilize else {}))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert 'filename="clip.mp4"' in response.headers["content-disposition"]
    served, converted = video_frames(response.content), video_frames(
        (tmp_path / "out.mp4").read_bytes())
    assert len(served) == len(converted) == 6
    for a, b in zip(served, converted):
        np.testing.assert_array_equal(a, b)
    import io

    with av.open(io.BytesIO(response.content)) as container:  # the audio came along
        assert [s.type for s in container.streams] == ["video", "audio"]


def test_a_video_with_too_many_frames_is_413(catalog, runs):
    with client_for(catalog, runs["pix2pix"], max_frames=4) as small:
        message = error_of(translate_video(small, clip(frames=6), model=""), 413)
        assert "6 frames" in message and "--max-frames" in message
        assert translate_video(small, clip(frames=3), model="").status_code == 200


def test_a_video_over_the_byte_limit_is_413(catalog, runs):
    data = clip(frames=6)
    with client_for(catalog, runs["pix2pix"], max_bytes=len(data) - 1) as small:
        assert "--max-bytes" in error_of(translate_video(small, data, model=""), 413)


@pytest.mark.parametrize("fields, status, says", [
    ({"stabilize": "wobble"}, 422, "unknown stabilize 'wobble'"),
    ({"direction": "b_to_a"}, 422, "no direction 'b_to_a'"),
])
def test_bad_video_choices_are_422(client, fields, status, says):
    assert says in error_of(translate_video(client, clip(), **fields), status)


def test_not_a_video_is_400(client):
    message = error_of(translate_video(client, b"hello, not a video"), 400)
    assert "'clip.mp4'" in message and "not a video" in message
    message = error_of(client.post("/api/translate-video", files={"image": ("x.mp4", clip())},
                                   data={"model": "pix2pix"}), 400)
    assert "no 'video' file" in message
