"""The face plugin: the `face` presets of cyclegan and pix2pix, `img2img prepare faces`, and the
convert pipeline that pastes translated faces back. Shown on the real face photos in
tests/data/faces: the detector finds them, eyes are levelled, pixels away from a face keep their
values exactly and the paste has no step at its edge, a prepared folder trains with the preset,
a photo without a face comes out unchanged with a warning, and `--faces largest` changes one
face of two."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import img2img
from img2img.cli import build_cli
from img2img.data.decode import read_native
from img2img.registry.catalog import build_catalog
from img2img.registry.catalog import TRAIN_FIELDS
from img2img.registry.loading import load_plugins
from img2img.testing import write_sample_images
from img2img_faces import PIPELINE
from img2img_faces.align import crop, crop_matrix, feather_mask, paste
from img2img_faces.detect import HaarDetector, YuNetDetector
from img2img_faces.pipeline import FacePipeline

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"
PLUGINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan,img2img_faces"}
TINY = ["--max-steps", "2", "--workers", "0", "--ngf", "8", "--ndf", "8", "--load-size", "36",
        "--crop-size", "32", "--batch-size", "2", "--device", "cpu", "--sample-every", "0"]


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True, env=PLUGINS))


def photo(name: str) -> np.ndarray:
    return read_native(FACES / name)


def in_scene(face: np.ndarray, shape=(384, 512), at=(64, 128), side=256, seed=0) -> np.ndarray:
    """`face` resized to `side` and placed at `at` (row, column) on a smooth colour background."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.integers(40, 220, (8, 10, 3)).astype(np.uint8), shape[::-1],
                       interpolation=cv2.INTER_CUBIC)
    top, left = at
    scene[top:top + side, left:left + side] = cv2.resize(face, (side, side),
                                                         interpolation=cv2.INTER_CUBIC)
    return scene


def invert(image: np.ndarray) -> np.ndarray:
    """A stand-in translator that changes every pixel a lot."""
    return 255 - image


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))
    return path


# -- presets ------------------------------------------------------------------------------------
def test_face_presets_for_cyclegan_and_pix2pix(cli):
    result = CliRunner().invoke(cli, ["presets"])
    assert result.exit_code == 0, result.output
    assert "face (cyclegan):" in result.output and "face (pix2pix):" in result.output
    catalog = build_catalog(load_plugins(strict=True, env=PLUGINS), TRAIN_FIELDS)
    cyclegan, pix2pix = catalog.preset("cyclegan", "face"), catalog.preset("pix2pix", "face")
    for preset in (cyclegan, pix2pix):
        assert preset.training == {"load_size": 256, "crop_size": 256, "scale_jitter": 0.05,
                                   "flip": True, "color_jitter": 0.1}
        assert preset.pipeline is PIPELINE
    assert cyclegan.options == {"lambda_identity": 0.5}
    help_text = CliRunner().invoke(cli, ["convert", "--help"]).output
    assert all(flag in help_text for flag in ("--faces", "--face-margin", "--face-size"))


def test_registering_and_building_the_cli_load_no_detector():
    HaarDetector._cascade.cache_clear()
    CliRunner().invoke(build_cli(load_plugins(strict=True, env=PLUGINS)), ["--help"])
    assert HaarDetector._cascade.cache_info().currsize == 0


# -- detection and alignment --------------------------------------------------------------------
def test_the_detector_finds_a_face_in_at_least_90_percent_of_the_photos():
    detector = HaarDetector()
    names = sorted(p.name for p in FACES.glob("*.jpg"))
    found = [name for name in names if detector(photo(name))]
    rate = len(found) / len(names)
    print(f"faces found in {len(found)} of {len(names)} photos ({rate:.0%})")
    assert len(names) >= 20 and rate >= 0.9, sorted(set(names) - set(found))


def test_every_face_of_a_group_photo_is_found():
    rng = np.random.default_rng(1)
    group = cv2.resize(rng.integers(40, 220, (12, 18, 3)).astype(np.uint8), (1500, 1000),
                       interpolation=cv2.INTER_CUBIC)
    names = sorted(p.name for p in FACES.glob("caltech_*.jpg"))[:6]
    for i, name in enumerate(names):
        side = 150 + 40 * i  # faces of different sizes score very differently: all are kept
        top, left = 60 + (i // 3) * 480, 40 + (i % 3) * 490
        group[top:top + side, left:left + side] = cv2.resize(photo(name), (side, side))
    assert len(HaarDetector()(group)) == 6


@pytest.mark.parametrize("degrees", [-10, 10])
def test_the_crop_levels_the_eyes(degrees):
    scene = in_scene(photo("caltech_photo_003.jpg"))
    tilted = cv2.warpAffine(scene, cv2.getRotationMatrix2D((256, 192), degrees, 1.0), (512, 384),
                            borderMode=cv2.BORDER_REPLICATE)
    upright = HaarDetector()(scene)[0].angle
    (face,) = HaarDetector()(tilted)
    assert face.angle == pytest.approx(upright - degrees, abs=4)
    aligned = crop(tilted, crop_matrix(face, 256, 0.4), 256)
    (again,) = HaarDetector()(aligned)
    assert abs(again.angle) < 4


def test_a_yunet_model_is_read_in_image_pixels(tmp_path):
    """cv2.FaceDetectorYN rows (box, right eye, left eye, nose, mouth corners, score) are given
    in the working copy's pixels; a stand-in network shows they map back to the image's."""
    detector = YuNetDetector(tmp_path / "yunet.onnx")
    seen = {}

    class Net:
        def detect(self, bgr):
            seen["shape"] = bgr.shape
            scale, border = 192 / 128, 48  # 128 px photos are enlarged to 192, then bordered

            def work(*xy):
                return [v * scale + border for v in xy]
            row = [*work(30, 40), 60 * scale, 60 * scale, *work(75, 60), *work(45, 58),
                   *work(60, 75), *work(70, 85), *work(50, 85), 0.9]
            return 1, np.array([row], np.float32)

    detector._detector = lambda size: Net()
    (face,) = detector(photo("caltech_photo_000.jpg"))
    assert seen["shape"] == (288, 288, 3)
    assert face.box == pytest.approx((30, 40, 60, 60), abs=0.01)
    assert np.allclose(face.eyes, ((45, 58), (75, 60)), atol=0.01)  # left in the image first
    assert face.score == pytest.approx(0.9)


# -- paste-back ---------------------------------------------------------------------------------
def test_paste_back_keeps_far_pixels_and_has_no_step_at_the_mask_edge():
    scene = in_scene(photo("caltech_office_001.jpg"))
    (face,) = HaarDetector()(scene)
    out = FacePipeline().convert(invert, scene)
    change = np.abs(out.astype(int) - scene.astype(int)).max(axis=2)
    rows, cols = np.mgrid[0:scene.shape[0], 0:scene.shape[1]]
    distance = np.hypot(cols - face.center[0], rows - face.center[1])
    far = distance > 1.0 * face.size  # the mask ellipse reaches 0.9 face sizes from the centre
    assert far.mean() > 0.4 and (change[far] == 0).all()
    inside = distance < 0.3 * face.size
    assert change[inside].mean() > 40  # the face itself did change, a lot
    # Where the changed region meets unchanged pixels, the change is next to nothing.
    unchanged = change == 0
    touches = np.zeros_like(unchanged)
    touches[1:] |= unchanged[:-1]
    touches[:-1] |= unchanged[1:]
    touches[:, 1:] |= unchanged[:, :-1]
    touches[:, :-1] |= unchanged[:, 1:]
    edge = touches & ~unchanged
    assert edge.sum() > 100 and change[edge].max() <= 3, change[edge].max()


def test_the_blend_weight_rises_smoothly_from_exactly_zero():
    scene = in_scene(photo("caltech_office_001.jpg"))
    (face,) = HaarDetector()(scene)
    matrix = crop_matrix(face, 256, 0.4)
    weight = np.zeros(scene.shape[:2] + (1,), np.float32)
    paste(weight, np.ones((256, 256, 1), np.float32), matrix, feather_mask(256, 0.4))
    steps = max(np.abs(np.diff(weight[..., 0], axis=a)).max() for a in (0, 1))
    assert weight.max() == pytest.approx(1.0) and weight.min() == 0.0
    assert steps < 0.05, steps  # 20+ pixels from 0 to 1, no jump anywhere
    inner = crop(scene, matrix, 256)  # the crop is the face: its centre is the face box centre
    assert inner.shape == (256, 256, 3)


def test_a_photo_without_a_face_is_left_as_it_is_with_a_warning(caplog):
    flat = in_scene(np.full((8, 8, 3), 128, np.uint8), seed=3)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        out = FacePipeline().convert(invert, flat, source="holiday.jpg")
    assert out is flat
    assert any("no face" in r.message and "holiday.jpg" in r.message for r in caplog.records)


def test_largest_translates_only_the_largest_of_two_faces():
    scene = in_scene(photo("caltech_photo_001.jpg"), shape=(320, 560), at=(20, 10), side=280)
    scene[96:96 + 160, 380:540] = cv2.resize(photo("caltech_office_003.jpg"), (160, 160))
    assert len(HaarDetector()(scene)) == 2
    both = np.abs(FacePipeline().convert(invert, scene).astype(int) - scene).max(axis=2)
    largest = np.abs(FacePipeline().convert(invert, scene, faces="largest").astype(int)
                     - scene).max(axis=2)
    left, right = slice(0, 300), slice(360, 560)
    assert both[:, left].any() and both[:, right].any()
    assert largest[:, left].any() and not largest[:, right].any()


def test_grey_photos_and_alpha_keep_their_layout():
    grey = photo("orl_002.jpg")[..., :1]
    out = FacePipeline().convert(invert, np.ascontiguousarray(grey))
    assert out.shape == grey.shape and out.dtype == np.uint8 and not np.array_equal(out, grey)
    rgba = np.concatenate([photo("caltech_photo_000.jpg"), np.full((128, 128, 1), 200, np.uint8)],
                          axis=2)
    out = FacePipeline().convert(lambda im: 255 - im[..., :1], rgba)  # a grey model
    assert out.shape == (128, 128, 4) and (out[..., 3] == 200).all()


# -- prepare ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """trainA/: grey studio faces, trainB/: colour faces, plus a photo with two faces, one with
    none and a broken file."""
    src = tmp_path_factory.mktemp("photos")
    for name in sorted(FACES.glob("*.jpg")):
        folder = "trainA" if name.name.startswith("orl") else "trainB"
        (src / folder).mkdir(exist_ok=True)
        shutil.copy(name, src / folder / name.name)
    two = np.full((200, 420, 3), 90, np.uint8)
    two[20:180, 10:170] = cv2.resize(photo("caltech_photo_001.jpg"), (160, 160))
    two[30:170, 260:400] = cv2.resize(photo("caltech_office_003.jpg"), (140, 140))
    write(src / "trainB" / "two.png", two)
    write(src / "trainB" / "wall.png", in_scene(np.full((8, 8, 3), 128, np.uint8), seed=3))
    (src / "trainB" / "broken.jpg").write_bytes(b"not a jpeg")
    return src


@pytest.fixture(scope="module")
def prepared(cli, photos, tmp_path_factory):
    """`img2img prepare faces` on the photos, at 48 px: (the folder written, the CLI result)."""
    dst = tmp_path_factory.mktemp("prepared") / "faces"
    result = CliRunner().invoke(cli, ["prepare", "faces", str(photos), str(dst), "--size", "48"])
    assert result.exit_code == 0, result.output
    return dst, result


def test_prepare_faces_writes_aligned_crops_and_a_manifest(prepared):
    dst, result = prepared
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["images"] == 27 and manifest["size"] == 48 and manifest["faces"] == "all"
    assert manifest["no_face"] == ["trainB/wall.png"]
    assert manifest["several_faces"] == ["trainB/two.png"]
    assert [u["source"] for u in manifest["unreadable"]] == ["trainB/broken.jpg"]
    assert len(manifest["crops"]) == 24 + 2  # one per photo, two from two.png
    assert [c["face"] for c in manifest["crops"] if c["source"] == "trainB/two.png"] == [0, 1]
    for record in manifest["crops"]:
        assert read_native(dst / record["output"]).shape[:2] == (48, 48)
        assert set(record) >= {"source", "face", "box", "angle", "output"}
        assert record["output"].split("/")[0] == record["source"].split("/")[0]
    assert len(list((dst / "trainA").glob("*.png"))) == 8
    assert len(list((dst / "trainB").glob("*.png"))) == 18
    assert "Found faces in 25 of 27 image(s); wrote 26 crop(s)" in result.stderr
    assert "1 image(s) had no face: trainB/wall.png" in result.stderr
    assert "1 image(s) had several faces (kept all): trainB/two.png" in result.stderr
    assert "broken.jpg" in result.stderr and result.stdout.strip() == str(dst)


def test_prepare_keeps_only_the_largest_face_when_asked(cli, photos, tmp_path):
    result = CliRunner().invoke(cli, ["prepare", "faces", str(photos / "trainB" / "two.png"),
                                      str(tmp_path / "out"), "--size", "32", "--faces",
                                      "largest"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads((tmp_path / "out" / "manifest.json").read_text())["crops"]
    assert record["output"] == "two_0.png" and record["box"][0] < 170  # the left, larger face
    assert "(kept the largest)" in result.stderr


def test_prepare_refuses_a_detector_file_opencv_cannot_load(cli, photos, tmp_path):
    model = tmp_path / "yunet.onnx"
    model.write_bytes(b"not an onnx model")
    result = CliRunner().invoke(cli, ["prepare", "faces", str(photos / "trainA"),
                                      str(tmp_path / "out"), "--detector", str(model)])
    assert result.exit_code == 1 and "yunet.onnx" in result.output
    assert "internal error" not in result.output


# -- training and convert with the preset -------------------------------------------------------
@pytest.fixture(scope="module")
def face_run(cli, prepared, tmp_path_factory):
    """A cyclegan run trained for 2 steps with --preset face on the prepared folder."""
    root = tmp_path_factory.mktemp("face_run")
    result = CliRunner().invoke(cli, ["train", "cyclegan", "--preset", "face", "--data",
                                      str(prepared[0]), "--generator", "resnet-6", "--pool-size",
                                      "2", *TINY, "--runs-dir", str(root / "runs")])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1]), root


def test_a_prepared_folder_trains_with_the_face_preset(face_run):
    run, _ = face_run
    config = json.loads((run / "config.json").read_text())
    text = json.dumps(config)
    assert '"preset": "face"' in text
    assert '"color_jitter": 0.1' in text and '"lambda_identity": 0.5' in text
    assert '"crop_size": 32' in text  # a typed flag beats the preset
    assert list((run / "checkpoints").glob("*.safetensors"))


def test_convert_with_a_face_run_pastes_the_face_back(cli, face_run, caplog):
    run, root = face_run
    scene = in_scene(photo("caltech_office_005.jpg"))
    src = write(root / "scene.png", scene)
    wall = write(root / "wall.png", in_scene(np.full((8, 8, 3), 128, np.uint8), seed=3))
    with caplog.at_level(logging.WARNING, logger="img2img"):
        result = CliRunner().invoke(cli, ["convert", str(src), str(wall), "--model", str(run),
                                          "-o", str(root / "out"), "--face-size", "64"])
    assert result.exit_code == 0, result.output
    out = read_native(root / "out" / "scene.png")
    (face,) = HaarDetector()(scene)
    change = np.abs(out.astype(int) - scene).max(axis=2)
    rows, cols = np.mgrid[0:384, 0:512]
    far = np.hypot(cols - face.center[0], rows - face.center[1]) > 1.0 * face.size
    assert (change[far] == 0).all() and change[~far].max() > 10
    assert np.array_equal(read_native(root / "out" / "wall.png"), read_native(wall))
    warned = [r.getMessage() for r in caplog.records if "no face found" in r.getMessage()]
    assert warned == [f"no face found in {wall}; it is left as it is"]
    assert img2img.load(run, device="cpu").pipeline is PIPELINE


def test_pix2pix_trains_with_the_face_preset(cli, tmp_path):
    folders = write_sample_images("paired", tmp_path / "pairs", size=40)
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--preset", "face", "--data",
                                      str(folders["data"]), "--generator", "unet-32", *TINY,
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    assert '"preset": "face"' in (run / "config.json").read_text()
    assert img2img.load(run, device="cpu").pipeline is PIPELINE


def test_convert_hands_the_model_crops_of_the_size_it_trained_at(face_run, monkeypatch):
    run, root = face_run
    seen = []
    translator = img2img.load(run, device="cpu")
    original = type(translator).__call__

    def recording(self, image, *args, **kwargs):
        seen.append(image.shape[:2])
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(type(translator), "__call__", recording)
    translator.convert_image(in_scene(photo("caltech_office_005.jpg")))
    assert seen and all(shape == (32, 32) for shape in seen)  # the run's crop size, not 256
