"""Several outputs per input from a run trained with a noise input (`--noise-dim`): `load(run)
(image, seed=...)` and `.variants(image, n)` in Python, `convert --variants/--seed/--interpolate/
--sheet` on the command line, one clear usage error for a run without noise, and exported ONNX
and TorchScript graphs that take the noise as a second input and give PyTorch's output. Runs are
the contract test's 2-step, 32 px pix2pix, with and without noise, trained once."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from img2img_pix2pix import Pix2Pix

import img2img
from img2img.cli import build_cli
from img2img.errors import Img2ImgError
from img2img.interop.export import export_model
from img2img.registry.catalog import BUILTIN_COMMANDS, TRAIN_FIELDS, build_catalog
from img2img.registry.loading import load_plugins
from img2img.testing import check_model

BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"}


@pytest.fixture(scope="module")
def catalog():
    return build_catalog(load_plugins(strict=True, env=BUILTINS), TRAIN_FIELDS, BUILTIN_COMMANDS)


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True, env=BUILTINS))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {"noisy": check_model(Pix2Pix, workdir=tmp_path_factory.mktemp("noisy"),
                                 noise_dim=4, mode_seeking=1.0),
            "plain": check_model(Pix2Pix, workdir=tmp_path_factory.mktemp("plain"))}


@pytest.fixture(scope="module")
def translator(runs, catalog):
    return img2img.load(runs["noisy"], device="cpu", catalog=catalog)


def picture(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)


def test_a_seed_picks_one_output_and_variants_start_at_it(translator):
    image = picture()
    assert translator.noise_dim == 4
    three, again, four = (translator(image, seed=s) for s in (3, 3, 4))
    assert np.array_equal(three, again)
    assert not np.array_equal(three, four)
    # Without a seed: zero noise (what training fits to the targets), not seed 0's draw.
    assert np.array_equal(translator(image), translator(image, noise=torch.zeros(4)))
    assert not np.array_equal(translator(image), translator(image, seed=0))
    variants = translator.variants(image, 3, seed=3)
    assert len(variants) == 3 and np.array_equal(variants[0], three)
    assert np.array_equal(variants[1], four)


def test_interpolation_walks_from_one_seed_to_the_next(translator):
    image = picture(1)
    walk = translator.variants(image, 4, seed=3, interpolate=True)
    assert np.array_equal(walk[0], translator(image, seed=3))
    # slerp lands on seed 4's noise to float rounding: the 8-bit images agree within 1 level.
    assert np.abs(walk[-1].astype(int) - translator(image, seed=4).astype(int)).max() <= 1
    assert not np.array_equal(walk[1], walk[0])


def test_a_run_without_noise_refuses_a_seed_in_python(runs, catalog):
    plain = img2img.load(runs["plain"], device="cpu", catalog=catalog)
    assert plain.noise_dim == 0
    with pytest.raises(Img2ImgError, match="--noise-dim"):
        plain(picture(), seed=1)


def _convert(cli, runs, *args):
    return CliRunner().invoke(cli, ["convert", *map(str, args)], catch_exceptions=False)


def test_convert_writes_the_same_variants_for_the_same_seed(cli, runs, tmp_path):
    source = tmp_path / "sketch.png"
    cv2.imwrite(str(source), picture(2))
    outputs = {}
    for name in ("first", "second"):
        result = _convert(cli, runs, source, "--model", runs["noisy"], "--variants", 3,
                          "--seed", 3, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        outputs[name] = sorted((tmp_path / name).iterdir())
        assert [p.name for p in outputs[name]] == ["sketch_v0.png", "sketch_v1.png",
                                                   "sketch_v2.png"]
    assert [p.read_bytes() for p in outputs["first"]] == [p.read_bytes() for p in outputs["second"]]
    assert outputs["first"][0].read_bytes() != outputs["first"][1].read_bytes()
    alone = _convert(cli, runs, source, "--model", runs["noisy"], "--seed", 4,
                     "-o", tmp_path / "alone.png")
    assert alone.exit_code == 0, alone.output
    assert np.array_equal(cv2.imread(str(tmp_path / "alone.png")),
                          cv2.imread(str(outputs["first"][1])))


def test_convert_sheet_puts_the_variants_side_by_side(cli, runs, tmp_path):
    source = tmp_path / "sketch.png"
    cv2.imwrite(str(source), picture(3))
    result = _convert(cli, runs, source, "--model", runs["noisy"], "--variants", 3, "--sheet",
                      "--interpolate", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    sheet = cv2.imread(str(tmp_path / "out" / "sketch.png"))
    assert sheet.shape == (32, 96, 3)


@pytest.mark.parametrize("args, message", [
    (["--variants", "3"], "--variants: .* was trained without a noise input"),
    (["--seed", "2"], "--seed: .* was trained without a noise input"),
])
def test_a_run_without_noise_is_a_usage_error(cli, runs, tmp_path, args, message):
    source = tmp_path / "sketch.png"
    cv2.imwrite(str(source), picture())
    result = _convert(cli, runs, source, "--model", runs["plain"], *args, "-o", tmp_path / "o")
    assert result.exit_code == 2
    assert len([line for line in result.output.splitlines() if "Error" in line]) == 1
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--interpolate"], "--interpolate needs --variants"),
    (["--sheet"], "--sheet needs --variants"),
    (["--variants", "1", "--interpolate"], "--variants 2 or more"),
])
def test_flag_mistakes_are_usage_errors(cli, runs, tmp_path, args, message):
    source = tmp_path / "sketch.png"
    cv2.imwrite(str(source), picture())
    result = _convert(cli, runs, source, "--model", runs["noisy"], *args)
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_an_exported_graph_takes_the_noise_and_matches_pytorch(translator, catalog, tmp_path,
                                                               suffix):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / f"noisy{suffix}"
    contract = export_model(translator, path)
    assert contract.noise_dim == 4
    assert any("noise   'noise': float32 (batch, 4)" in line for line in contract.describe())
    loaded = img2img.load(path, catalog=catalog)
    assert loaded.noise_dim == 4
    _assert_seeds_match(loaded, translator, (2, 3, 32, 64))


def _assert_seeds_match(loaded, translator, shape, direction=None):
    """The exported graph `loaded` gives `translator`'s outputs for seeds 3 and 4, and they
    differ."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    outputs = []
    for seed in (3, 4):
        with torch.inference_mode():
            got = loaded.translate(x, noise=loaded.noise(seed))
            expected = translator.translate(x, direction, noise=translator.noise(seed))
        # Float rounding only: ONNX Runtime and PyTorch order the convolutions' sums differently.
        assert (got - expected).abs().max().item() < 1e-4
        outputs.append(got)
    assert not torch.equal(*outputs)


def test_the_resnets_noise_branch_exports_and_matches_pytorch(tmp_path):
    """CycleGAN's ResNet takes its noise in a branch beside its last layer rather than as input
    channels: its exported ONNX graph takes the noise as well and gives PyTorch's outputs."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from img2img_cyclegan import CycleGAN

    catalog = build_catalog(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS":
                                                         "img2img_cyclegan"}),
                            TRAIN_FIELDS, BUILTIN_COMMANDS)
    run = check_model(CycleGAN, workdir=tmp_path / "run", noise_dim=3, mode_seeking=0.03)
    translator = img2img.load(run, device="cpu", catalog=catalog)
    contract = export_model(translator, tmp_path / "noisy.onnx", direction="a_to_b")
    assert contract.noise_dim == 3
    loaded = img2img.load(tmp_path / "noisy.onnx", catalog=catalog)
    _assert_seeds_match(loaded, translator, (2, 3, 32, 48), "a_to_b")


def test_onnx_metadata_names_the_noise_only_when_there_is_one(translator, runs, catalog,
                                                              tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    export_model(translator, tmp_path / "noisy.onnx")
    export_model(img2img.load(runs["plain"], device="cpu", catalog=catalog),
                 tmp_path / "plain.onnx")
    noisy, plain = (onnx.load(str(tmp_path / f"{n}.onnx")) for n in ("noisy", "plain"))
    assert [i.name for i in noisy.graph.input] == ["image", "noise"]
    assert [i.name for i in plain.graph.input] == ["image"]
    assert {p.key: p.value for p in noisy.metadata_props}["img2img.noise_dim"] == "4"
    assert "img2img.noise_dim" not in {p.key for p in plain.metadata_props}
