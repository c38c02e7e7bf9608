"""`img2img convert` (`img2img.inference.convert` behind the CLI): files, folders and globs in;
outputs that keep size, alpha and bit depth; one bad file reported while the rest convert; inputs
never overwritten; clear one-line errors for a missing run, a wrong direction, or a model that
generates rather than translates. Models are the contract test's 2-step runs, trained once."""
from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix
from torch import nn

import img2img
from img2img.cli import build_cli
from img2img.inference.translator import DEFAULT_TILE
from img2img.registry.catalog import build_catalog
from img2img.registry.catalog import BUILTIN_COMMANDS, TRAIN_FIELDS
from img2img.registry.loading import add_plugin, load_plugins
from img2img.testing import check_model

# Only the built-ins used here, strictly: another installed plugin's state is not this file's test.
BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan"}


@dataclasses.dataclass(frozen=True)
class NoiseOptions:
    width: int = dataclasses.field(default=4, metadata={"help": "noise vector length"})


class NoiseToImage(img2img.Model):
    """The smallest model that generates from noise: a linear map to a 4x4 image, upsampled."""

    name = "noisegen"
    data = "labelled"
    summary = "generates images from noise (test model)"
    Options = NoiseOptions
    directions = ()

    def build_generators(self):
        return {"g": nn.Linear(self.options.width, self.spec.channels * 16)}

    def build_discriminators(self):
        return {"d": nn.Conv2d(self.spec.channels, 1, 4, 4)}

    def _fake(self, n: int, device: torch.device) -> torch.Tensor:
        z = torch.randn(n, self.options.width, device=device)
        small = self.generators["g"](z).view(n, self.spec.channels, 4, 4)
        return F.interpolate(small, size=self.spec.size).tanh()

    def generate(self, batch):
        return {"fake": self._fake(batch["image"].shape[0], batch["image"].device)}

    def generator_losses(self, batch, fakes):
        return {"gan": self.adversary.generator_loss(self.discriminators["d"](fakes["fake"]))}

    def discriminator_losses(self, batch, fakes):
        return self.adversary.discriminator_losses(self.discriminators["d"], batch["image"],
                                                   fakes["fake"])

    def sample(self, labels, n=None):
        return self._fake(len(labels), labels.device)


@img2img.hookimpl
def register_models(register):
    register(NoiseToImage)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two OpenMP threads on a busy 2-core machine spin against each other and run ~100x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {name: check_model(cls, workdir=tmp_path_factory.mktemp(name))
            for name, cls in (("pix2pix", Pix2Pix), ("cyclegan", CycleGAN),
                              ("noisegen", NoiseToImage))}


@pytest.fixture(scope="module")
def cli():
    pm = load_plugins(strict=True, env=BUILTINS)
    add_plugin(pm, types.SimpleNamespace(register_models=register_models), "test_noise")
    return build_cli(pm)


@pytest.fixture
def convert(cli, runs):
    """`convert(*args, model="pix2pix")` -> click Result of `img2img convert --model RUN ...`."""
    def invoke(*args: str | Path, model: str | None = "pix2pix"):
        flags = ["--model", str(runs[model])] if model else []
        return CliRunner().invoke(cli, ["convert", *flags, *map(str, args)])
    return invoke


def write(path: Path, image: np.ndarray) -> Path:
    """Write an RGB(A) or grey array with OpenCV (which wants BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = image[..., [2, 1, 0, 3][:image.shape[2]]]
    assert cv2.imwrite(str(path), image)
    return path


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"cannot read {path}"
    return image


def noise(shape: tuple[int, ...], dtype=np.uint8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype)


def one_line_error(result) -> str:
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    # "Using CHECKPOINT (model)" may come first; the error itself is one line.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("Using ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# -- sizes, channels, depth ---------------------------------------------------------------------
@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_odd_size_comes_back_the_same_size(convert, tmp_path, model):
    src = write(tmp_path / "odd.png", noise((333, 517, 3)))
    result = convert(src, "-o", tmp_path / "out.png", model=model)
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "out.png").shape == (333, 517, 3)


def test_grey_input_keeps_its_size(convert, tmp_path):
    src = write(tmp_path / "grey.png", noise((45, 70)))
    assert convert(src, "-o", tmp_path / "out").exit_code == 0
    assert read(tmp_path / "out" / "grey.png").shape[:2] == (45, 70)


def test_alpha_is_carried_over_unchanged(convert, tmp_path):
    image = noise((45, 70, 4))
    image[:10, :, 3] = 0  # a fully transparent band and a random alpha elsewhere
    src = write(tmp_path / "rgba.png", image)
    assert convert(src, "-o", tmp_path / "out.png").exit_code == 0
    out = read(tmp_path / "out.png")
    assert out.shape == (45, 70, 4)
    np.testing.assert_array_equal(out[..., 3], image[..., 3])


def test_sixteen_bit_png_stays_sixteen_bit_and_jpeg_is_eight(convert, tmp_path):
    src = write(tmp_path / "deep.png", noise((45, 70, 3), np.uint16))
    assert convert(src, "-o", tmp_path / "out.png").exit_code == 0
    assert convert(src, "-o", tmp_path / "out.jpg").exit_code == 0
    png, jpg = read(tmp_path / "out.png"), read(tmp_path / "out.jpg")
    assert png.dtype == np.uint16 and png.shape == (45, 70, 3)
    assert len(np.unique(png % 257)) > 1  # real 16-bit values
    assert jpg.dtype == np.uint8 and jpg.shape == (45, 70, 3)
    # The JPEG is the PNG's result at 8 bits, up to compression error.
    assert np.abs(jpg.astype(int) - png.astype(int) // 257).mean() < 8


def test_size_translates_smaller_and_resizes_back(convert, tmp_path):
    src = write(tmp_path / "big.png", noise((90, 130, 3)))
    assert convert(src, "--size", "32", "-o", tmp_path / "out.png").exit_code == 0
    assert read(tmp_path / "out.png").shape == (90, 130, 3)


def test_default_tile_bounds_what_the_model_sees(convert, tmp_path, monkeypatch):
    seen = []
    original = Pix2Pix.translate

    def recording(self, images, direction=None):
        seen.append(tuple(images.shape[-2:]))
        return original(self, images, direction)

    monkeypatch.setattr(Pix2Pix, "translate", recording)
    src = write(tmp_path / "large.png", noise((1100, 1500, 3)))
    result = convert(src, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "out.png").shape == (1100, 1500, 3)
    assert len(seen) > 1 and max(max(s) for s in seen) <= DEFAULT_TILE


# -- inputs and outputs -------------------------------------------------------------------------
def test_a_corrupt_file_is_reported_and_the_rest_convert(convert, tmp_path):
    for i in range(3):
        write(tmp_path / "in" / f"ok{i}.png", noise((40, 56, 3), seed=i))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG not really an image at all")
    result = convert(tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0.png", "ok1.png",
                                                                     "ok2.png"]
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "broken.png" in error
    assert "1 input(s) failed" in result.stderr


def test_out_file_for_one_input(convert, tmp_path):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    result = convert(src, "-o", tmp_path / "result.webp")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "result.webp")
    assert read(tmp_path / "result.webp").shape == (40, 56, 3)


def test_several_inputs_go_into_the_folder_by_name(convert, tmp_path):
    a = write(tmp_path / "a.png", noise((40, 56, 3), seed=1))
    b = write(tmp_path / "sub" / "b.jpg", noise((30, 20, 3), seed=2))
    result = convert(a, b, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "out" / "a.png").shape == (40, 56, 3)
    assert read(tmp_path / "out" / "b.jpg").shape == (30, 20, 3)


def test_globs_expand(convert, tmp_path):
    for name in ("x.png", "y.png", "z.jpg"):
        write(tmp_path / "in" / name, noise((40, 56, 3)))
    result = convert(str(tmp_path / "in" / "*.png"), "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png", "y.png"]


def test_same_name_from_two_folders_keeps_both(convert, tmp_path):
    first = write(tmp_path / "one" / "photo.png", noise((40, 56, 3), seed=1))
    second = write(tmp_path / "two" / "photo.png", noise((40, 56, 3), seed=2))
    result = convert(first, second, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == ["photo-2.png", "photo.png"]
    assert not np.array_equal(read(outputs[0]), read(outputs[1]))
    # Each output is its own input's result.
    alone = convert(second, "-o", tmp_path / "alone.png")
    assert alone.exit_code == 0
    np.testing.assert_array_equal(read(tmp_path / "alone.png"), read(outputs[0]))


def test_an_input_is_never_overwritten(convert, tmp_path):
    src = write(tmp_path / "in" / "keep.png", noise((40, 56, 3)))
    before = src.read_bytes()
    result = convert(src, "-o", src)
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.stderr and "keep.png" in result.stderr
    assert src.read_bytes() == before
    # Into the input's own folder: that input is refused, another input still converts there.
    elsewhere = write(tmp_path / "elsewhere" / "new.png", noise((40, 56, 3), seed=3))
    result = convert(src, elsewhere, "-o", tmp_path / "in")
    assert result.exit_code == 1
    assert src.read_bytes() == before
    assert read(tmp_path / "in" / "new.png").shape == (40, 56, 3)
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "keep.png" in error and "refusing to overwrite" in error


def test_out_file_with_several_inputs_is_refused(convert, tmp_path):
    a = write(tmp_path / "a.png", noise((40, 56, 3)))
    b = write(tmp_path / "b.png", noise((40, 56, 3)))
    line = one_line_error(convert(a, b, "-o", tmp_path / "result.png"))
    assert "names one image file" in line and "2 images" in line
    assert not (tmp_path / "result.png").exists()


def test_missing_input_is_reported(convert, tmp_path):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    result = convert(src, tmp_path / "nope.png", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert (tmp_path / "out" / "a.png").exists()
    assert "nope.png: no such file or folder" in result.stderr


def test_a_file_the_model_fails_on_is_reported_and_the_rest_convert(convert, tmp_path,
                                                                    monkeypatch):
    write(tmp_path / "in" / "fine.png", noise((40, 56, 3)))
    write(tmp_path / "in" / "huge.png", noise((48, 64, 3)))
    original = img2img.Translator.translate_many

    def out_of_memory(self, images, *args):
        if images[0].shape[0] == 48:
            raise RuntimeError("CUDA out of memory (pretend)")
        return original(self, images, *args)

    monkeypatch.setattr(img2img.Translator, "translate_many", out_of_memory)
    result = convert(tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["fine.png"]
    assert "huge.png: cannot translate: CUDA out of memory" in result.stderr


def test_decoding_reads_only_a_few_images_ahead(tmp_path, monkeypatch):
    import img2img.inference.convert as convert_module

    read = []
    monkeypatch.setattr(convert_module, "read_native", lambda path: read.append(path) or path)
    paths = [tmp_path / f"{i}.png" for i in range(50)]
    decoded = convert_module._decoded(paths)
    assert next(decoded)[0] == paths[0]
    assert len(read) <= convert_module.READ_AHEAD + 2  # not the whole folder into memory
    assert [p for p, _ in decoded] == paths[1:]


def test_batch_size_does_not_change_the_result(convert, tmp_path):
    for i in range(5):
        write(tmp_path / "in" / f"{i}.png", noise((40, 56, 3), seed=i))
    for batch in ("1", "4"):
        result = convert(tmp_path / "in", "--batch-size", batch, "-o", tmp_path / batch)
        assert result.exit_code == 0, result.output
    for i in range(5):
        one, four = read(tmp_path / "1" / f"{i}.png"), read(tmp_path / "4" / f"{i}.png")
        assert np.abs(one.astype(int) - four.astype(int)).max() <= 1  # float rounding only


# -- which model, which direction ---------------------------------------------------------------
def test_latest_is_the_newest_run_under_runs_dir(convert, runs, tmp_path):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    result = convert(src, "-o", tmp_path / "out.png", "--runs-dir", runs["cyclegan"].parent,
                     model=None)
    assert result.exit_code == 0, result.output
    assert "(cyclegan)" in result.stderr


def test_no_run_found_is_one_clear_line(convert, tmp_path):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    (tmp_path / "empty").mkdir()
    line = one_line_error(convert(src, "--runs-dir", tmp_path / "empty", model=None))
    assert "no trained run" in line and "empty" in line


def test_missing_model_path_is_one_clear_line(convert, tmp_path):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    line = one_line_error(convert(src, "--model", tmp_path / "nowhere", model=None))
    assert "no checkpoint at" in line and "nowhere" in line


def test_cyclegan_translates_both_ways(convert, tmp_path):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    for direction in ("a_to_b", "b_to_a"):
        result = convert(src, "--direction", direction, "-o", tmp_path / f"{direction}.png",
                         model="cyclegan")
        assert result.exit_code == 0, result.output
    assert not np.array_equal(read(tmp_path / "a_to_b.png"), read(tmp_path / "b_to_a.png"))


@pytest.mark.parametrize("model, direction", [("cyclegan", "sideways"), ("pix2pix", "b_to_a")])
def test_unknown_direction_is_one_clear_line(convert, tmp_path, model, direction):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    line = one_line_error(convert(src, "--direction", direction, "-o", tmp_path / "out",
                                  model=model))
    assert f"no direction '{direction}'" in line and "a_to_b" in line
    assert not (tmp_path / "out").exists()


def test_a_model_that_generates_is_refused(convert, runs, tmp_path):
    src = write(tmp_path / "a.png", noise((40, 56, 3)))
    line = one_line_error(convert(src, "-o", tmp_path / "out", model="noisegen"))
    assert "generates images from noise" in line and "does not translate" in line
    assert not (tmp_path / "out").exists()


def test_the_python_api_refuses_a_model_that_generates(runs):
    pm = load_plugins(strict=True, env=BUILTINS)
    add_plugin(pm, types.SimpleNamespace(register_models=register_models), "test_noise")
    translator = img2img.load(runs["noisegen"], device="cpu",
                              catalog=build_catalog(pm, TRAIN_FIELDS, BUILTIN_COMMANDS))
    with pytest.raises(img2img.Img2ImgError, match="generates images from noise"):
        translator(noise((32, 32, 3)))
    assert translator.sample([0, 1]).shape == (2, 3, 32, 32)


def test_latest_run_is_found_under_img2img_runs_dir(cli, runs, tmp_path, monkeypatch):
    """`train` puts runs under $IMG2IMG_RUNS_DIR; `convert` (and every command with --model
    latest) looks there too, and `--help` says so."""
    runs_dir = runs["pix2pix"].parent
    monkeypatch.setenv("IMG2IMG_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("IMG2IMG_DEVICE", "cpu")
    image = write(tmp_path / "in.png", noise((32, 32, 3)))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["convert", str(image), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "in.png").is_file()
    monkeypatch.setenv("IMG2IMG_RUNS_DIR", str(tmp_path / "no-runs-here"))
    result = CliRunner().invoke(cli, ["convert", str(image), "--out", str(out)])
    assert result.exit_code != 0 and "no-runs-here" in result.output
    assert "IMG2IMG_RUNS_DIR" in CliRunner().invoke(cli, ["convert", "--help"]).output


# -- --precision ----------------------------------------------------------------------------------
def test_bf16_precision_autocasts_and_stays_close_to_fp32(runs, monkeypatch):
    from img2img.inference import translator as inference

    image = noise((32, 32, 3), seed=3)
    exact = img2img.load(runs["cyclegan"], device="cpu")
    reduced = img2img.load(runs["cyclegan"], device="cpu", precision="bf16")
    assert reduced.runtime.dtype is torch.bfloat16 and exact.runtime.dtype is None
    seen = []
    real = inference.translate_indexed
    monkeypatch.setattr(inference, "translate_indexed",
                        lambda *a: seen.append(torch.get_autocast_dtype("cpu")
                                               if torch.is_autocast_enabled("cpu") else None)
                        or real(*a))
    a, b = exact(image), reduced(image)
    assert seen == [None, torch.bfloat16]
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
    diff = np.abs(a.astype(int) - b.astype(int))
    assert 0 < diff.max() <= 16 and diff.mean() < 2  # bf16 rounding, not another result


def test_auto_precision_follows_the_device(monkeypatch):
    from img2img.inference import translator as inference

    cpu = torch.device("cpu")
    monkeypatch.setattr(inference, "native_bf16", lambda device: False)
    assert inference.inference_dtype("auto", cpu) is None
    assert inference.inference_dtype("fp32", cpu) is None
    monkeypatch.setattr(inference, "native_bf16", lambda device: True)
    assert inference.inference_dtype("auto", cpu) is torch.bfloat16


def test_bf16_without_native_support_warns(monkeypatch, caplog):
    from img2img.inference import translator as inference

    monkeypatch.setattr(inference, "native_bf16", lambda device: False)
    with caplog.at_level("WARNING", logger="img2img"):
        assert inference.inference_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert "no native bfloat16" in caplog.text and "--precision auto" in caplog.text


def test_precision_errors_are_one_line(convert, runs, tmp_path):
    image = write(tmp_path / "in.png", noise((32, 32, 3)))
    line = one_line_error(convert(image, "-o", tmp_path / "out.png", "--precision", "fp16",
                                  "--device", "cpu"))
    assert "--precision fp16 needs a CUDA device" in line and "bf16" in line
    assert not (tmp_path / "out.png").exists()
    result = convert(image, "--precision", "int4")
    assert result.exit_code == 2 and "--precision" in result.output
    with pytest.raises(img2img.Img2ImgError, match="applies to the torch runtime"):
        img2img.load(runs["pix2pix"], runtime="onnxruntime", precision="bf16")


def test_convert_says_which_precision_it_uses(convert, tmp_path):
    image = write(tmp_path / "in.png", noise((32, 32, 3)))
    result = convert(image, "-o", tmp_path / "out.png", "--precision", "bf16", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "bfloat16)" in result.stderr.splitlines()[0]
    assert read(tmp_path / "out.png").shape == (32, 32, 3)
