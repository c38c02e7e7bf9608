"""`img2img export` and the onnxruntime runtime: one exported ONNX or TorchScript file gives the
PyTorch output (within 1e-4) at two sizes and batch sizes, for pix2pix, both CycleGAN directions
and each style of a styled pix2pix; the contract is in the file; `convert --runtime onnxruntime`
and `convert --model model.onnx` write the images the default runtime writes, tiles and alpha
included; cgan, wrong flags and a missing extra get one clear line. Models are the contract
test's 2-step, 32 px runs (and a random styled pix2pix), exported once per module."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from img2img_cgan import ConditionalGAN
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix

import img2img
from img2img.cli import build_cli
from img2img.inference.translator import Translator, translate_indexed
from img2img.interop import export as export_module
from img2img.interop.export import TORCHSCRIPT_METADATA, export_model
from img2img.model import ImageSpec
from img2img.registry.catalog import BUILTIN_COMMANDS, TRAIN_FIELDS, build_catalog
from img2img.registry.loading import load_plugins
from img2img.testing import check_model

BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan,img2img_cgan"}
# (model, direction, style): every generator a built-in translating model exports
CASES = [("pix2pix", "a_to_b", None), ("cyclegan", "a_to_b", None),
         ("cyclegan", "b_to_a", None), ("styled", "a_to_b", "bold"),
         ("styled", "a_to_b", "neat")]
SIZES = [(2, 3, 32, 32), (1, 3, 64, 96)]  # two batch sizes and shapes through one file


@pytest.fixture(scope="module")
def catalog():
    return build_catalog(load_plugins(strict=True, env=BUILTINS), TRAIN_FIELDS, BUILTIN_COMMANDS)


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True, env=BUILTINS))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {name: check_model(cls, workdir=tmp_path_factory.mktemp(name))
            for name, cls in (("pix2pix", Pix2Pix), ("cyclegan", CycleGAN))}


@pytest.fixture(scope="module")
def translators(runs, catalog):
    loaded = {name: img2img.load(run, device="cpu", catalog=catalog) for name, run in runs.items()}
    torch.manual_seed(0)  # random weights: the style embeddings differ, which is what matters
    styled = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options),
                     spec=ImageSpec(3, 32, ("bold", "neat"))).eval()
    loaded["styled"] = Translator(styled, Path("random-weights"), torch.device("cpu"))
    return loaded


@pytest.fixture(scope="module")
def exported(translators, tmp_path_factory):
    """{(format, model, direction, style): the exported file}."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    folder = tmp_path_factory.mktemp("exported")
    files = {}
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        for name, direction, style in CASES:
            path = folder / f"{name}-{direction}-{style}{suffix}"
            export_model(translators[name], path, direction=direction, label=style)
            files[fmt, name, direction, style] = path
    return files


def reference(translator: Translator, x: torch.Tensor, direction: str, style: str | None):
    with torch.inference_mode():
        return translate_indexed(translator.model, x, direction,
                                 translator.model.resolve_label(style))


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


# -- one file, any size, same output -----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(filter(None, case)))
def test_exported_graph_matches_pytorch_at_two_sizes(exported, translators, catalog, fmt, case):
    name, direction, style = case
    loaded = img2img.load(exported[(fmt, *case)], catalog=catalog)
    assert loaded.runtime.name == {"onnx": "onnxruntime", "torchscript": "torch"}[fmt]
    for seed, shape in enumerate(SIZES):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        with torch.inference_mode():
            out = loaded.runtime(x, direction, None)
        expected = reference(translators[name], x, direction, style)
        assert out.shape == expected.shape
        assert (out - expected).abs().max().item() < 1e-4


def test_the_baked_in_style_is_the_one_asked_for(exported, translators):
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    bold = img2img.load(exported["onnx", "styled", "a_to_b", "bold"]).runtime(x, "a_to_b", None)
    neat = img2img.load(exported["onnx", "styled", "a_to_b", "neat"]).runtime(x, "a_to_b", None)
    assert (bold - neat).abs().max().item() > 1e-2  # the label reaches the output
    assert (neat - reference(translators["styled"], x, "a_to_b", "neat")).abs().max() < 1e-4


def test_odd_sizes_pad_and_crop_like_the_run(exported, translators):
    image = noise((45, 70, 3))
    expected = translators["cyclegan"](image, "b_to_a").astype(int)
    for fmt in ("onnx", "torchscript"):
        out = img2img.load(exported[fmt, "cyclegan", "b_to_a", None])(image)
        assert out.shape == (45, 70, 3) and np.abs(out.astype(int) - expected).max() <= 1


# -- the contract in the file ------------------------------------------------------------------
def test_onnx_file_records_its_contract_and_dynamic_axes(exported):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(exported["onnx", "styled", "a_to_b", "neat"]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["img2img.model"] == "pix2pix" and meta["img2img.label"] == "neat"
    assert meta["img2img.required_multiple"] == "32" and meta["img2img.minimum_size"] == "32"
    assert meta["img2img.in_channels"] == meta["img2img.out_channels"] == "3"
    assert meta["img2img.value_range"] == "[-1, 1]" and meta["img2img.version"]
    (image,) = proto.graph.input
    dims = image.type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and all(dims[i].dim_param for i in (0, 2, 3))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TorchScript is deprecated, still works
def test_torchscript_file_records_its_contract(exported):
    extra = {TORCHSCRIPT_METADATA: ""}
    torch.jit.load(str(exported["torchscript", "cyclegan", "b_to_a", None]), _extra_files=extra)
    meta = json.loads(extra[TORCHSCRIPT_METADATA])
    assert meta["img2img.direction"] == "b_to_a" and meta["img2img.required_multiple"] == "4"
    assert meta["img2img.minimum_size"] == "8" and meta["img2img.format"] == "torchscript"


def test_an_exported_file_refuses_what_it_does_not_hold(exported):
    loaded = img2img.load(exported["onnx", "styled", "a_to_b", "neat"])
    with pytest.raises(img2img.Img2ImgError, match="exported with style/label 'neat' baked in"):
        loaded(noise((32, 32, 3)), label="bold")
    loaded = img2img.load(exported["onnx", "cyclegan", "b_to_a", None])
    with pytest.raises(img2img.Img2ImgError, match="holds the b_to_a generator"):
        loaded(noise((32, 32, 3)), "a_to_b")
    with pytest.raises(img2img.Img2ImgError, match="runs with runtime 'onnxruntime'"):
        img2img.load(exported["onnx", "cyclegan", "b_to_a", None], runtime="torch")


# -- the command line --------------------------------------------------------------------------
def test_export_prints_the_contract_and_the_file_converts(cli, runs, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "g.onnx"
    result = CliRunner().invoke(cli, ["export", str(runs["cyclegan"]), "-o", str(out),
                                      "--direction", "b_to_a"])
    assert result.exit_code == 0, result.output
    assert "cyclegan b_to_a" in result.stdout and "multiples of 4, at least 8" in result.stdout
    assert "in [-1, 1]" in result.stdout and out.is_file()
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), noise((45, 70, 3)))
    results = {}
    for key, flags in (("file", ["--model", str(out)]),
                       ("run", ["--model", str(runs["cyclegan"]), "--direction", "b_to_a"])):
        dst = tmp_path / f"{key}.png"
        result = CliRunner().invoke(cli, ["convert", str(src), "-o", str(dst), *flags])
        assert result.exit_code == 0, result.output
        results[key] = cv2.imread(str(dst)).astype(int)
    assert np.abs(results["file"] - results["run"]).max() <= 1


def test_convert_with_onnxruntime_writes_the_same_images(cli, runs, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "in"
    folder.mkdir()
    rgba = noise((45, 70, 4))
    rgba[:10, :, 3] = 0
    images = {"small.png": noise((40, 56, 3)), "rgba.png": rgba, "grey.png": noise((33, 47)),
              "large.png": noise((150, 200, 3), seed=1)}  # tiled: --tile 64
    for filename, image in images.items():
        cv2.imwrite(str(folder / filename), image)
    outputs = {}
    for runtime in ("torch", "onnxruntime"):
        result = CliRunner().invoke(cli, ["convert", str(folder), "-o", str(tmp_path / runtime),
                                          "--model", str(runs["pix2pix"]), "--tile", "64",
                                          "--runtime", runtime])
        assert result.exit_code == 0, result.output
        assert ("runtime onnxruntime" in result.stderr) == (runtime == "onnxruntime")
        outputs[runtime] = {f: cv2.imread(str(tmp_path / runtime / f), cv2.IMREAD_UNCHANGED)
                            for f in images}
    for filename, image in images.items():
        torch_out, ort_out = outputs["torch"][filename], outputs["onnxruntime"][filename]
        assert ort_out.shape[:2] == image.shape[:2] and ort_out.shape == torch_out.shape
        assert np.abs(ort_out.astype(int) - torch_out.astype(int)).max() <= 1, filename
    np.testing.assert_array_equal(outputs["onnxruntime"]["rgba.png"][..., 3], rgba[..., 3])


def test_cgan_is_refused_with_the_reason(cli, tmp_path):
    run = check_model(ConditionalGAN, workdir=tmp_path)
    result = CliRunner().invoke(cli, ["export", str(run), "-o", str(tmp_path / "g.onnx")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot export 'cgan': it generates images from noise" in result.stderr
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("args, message", [
    (["-o", "g.bin"], "name an .onnx (ONNX) or .pt (TorchScript) file"),
    (["-o", "g.pt", "--format", "onnx"], "does not fit --format onnx"),
    (["-o", "g.onnx", "--direction", "b_to_a"], "no direction 'b_to_a'"),
    (["-o", "g.onnx", "--style", "bold"], "trained without classes or styles"),
])
def test_export_mistakes_are_one_line(cli, runs, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["export", str(runs["pix2pix"]),
                                      *[str(tmp_path / a) if a.startswith("g.") else a
                                        for a in args]])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr and not list(tmp_path.iterdir())


def test_a_failed_export_leaves_no_file(translators, tmp_path, monkeypatch):
    pytest.importorskip("onnxscript")

    def fail(*args):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(export_module, "_dynamo", fail)
    monkeypatch.setattr(export_module, "_torchscript_onnx", fail)
    with pytest.raises(img2img.Img2ImgError, match="cannot export 'pix2pix' a_to_b to ONNX: "
                                                   "dynamo: RuntimeError: unsupported operator; "
                                                   "torchscript-based: RuntimeError"):
        export_model(translators["pix2pix"], tmp_path / "g.onnx")
    assert not list(tmp_path.iterdir())  # neither the file nor its temporary


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_a_missing_extra_says_how_to_install_it(runs, translators, tmp_path, monkeypatch,
                                                package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(img2img.Img2ImgError, match=r"pip install 'img2img\[onnx\]'"):
        if package == "onnxruntime":
            img2img.load(runs["pix2pix"], runtime="onnxruntime")
        else:
            export_model(translators["pix2pix"], tmp_path / "g.onnx")
    assert not list(tmp_path.iterdir())


# -- sub-pixel upsampling and int8 ------------------------------------------------------------
def test_onnx_graphs_hold_no_transposed_convolution_and_the_run_keeps_its_own(exported,
                                                                              translators):
    """Export writes upsampling as sub-pixel convolutions (what int8 can quantize); the
    parity tests above hold for those graphs; the loaded model is not rewritten."""
    import onnx

    graph = onnx.load(str(exported["onnx", "pix2pix", "a_to_b", None])).graph
    ops = {n.op_type for n in graph.node}
    assert "ConvTranspose" not in ops and {"Conv", "DepthToSpace"} <= ops
    generator = translators["pix2pix"].model.generators["a_to_b"]
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in generator.modules())


def _smooth_images(folder: Path, count: int, size: int = 40) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.GaussianBlur(image, (7, 7), 2))
    return folder


def test_int8_export_is_quantized_checked_and_converts_near_fp32(cli, runs, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    calibration = _smooth_images(tmp_path / "cal", 10)
    int8, fp32 = tmp_path / "g8.onnx", tmp_path / "g.onnx"
    result = CliRunner().invoke(cli, ["export", str(runs["pix2pix"]), "-o", str(int8), "--int8",
                                      "--calibration", str(calibration),
                                      "--calibration-images", "6"])
    assert result.exit_code == 0, result.output
    assert "int8:" in result.stdout and "dB PSNR from fp32 on 4 held-out images" in result.stdout
    assert "calibrating on up to 6 images" in result.stderr
    proto = onnx.load(str(int8))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["img2img.precision"] == "int8" and "dB PSNR" in meta["img2img.quality"]
    # every convolution but the first and last reads int8 weights (QDQ: a DequantizeLinear)
    dequantized = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    quantized = [all(i in dequantized for i in n.input[:2]) for n in convs]
    assert quantized[0] is False and quantized[-1] is False and all(quantized[1:-1])
    assert CliRunner().invoke(cli, ["export", str(runs["pix2pix"]), "-o",
                                    str(fp32)]).exit_code == 0
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), cv2.imread(str(calibration / "09.png")))
    outputs = {}
    for name, graph in (("int8", int8), ("fp32", fp32)):
        dst = tmp_path / f"{name}.png"
        result = CliRunner().invoke(cli, ["convert", str(src), "-o", str(dst), "--model",
                                          str(graph)])
        assert result.exit_code == 0, result.output
        outputs[name] = cv2.imread(str(dst)).astype(float)
    mse = np.mean((outputs["int8"] - outputs["fp32"]) ** 2)
    assert 0 < mse and 10 * np.log10(255 ** 2 / mse) > 30


def test_int8_that_strays_too_far_is_refused_and_nothing_written(cli, runs, tmp_path):
    pytest.importorskip("onnxruntime")
    calibration = _smooth_images(tmp_path / "cal", 3)
    out = tmp_path / "g8.onnx"
    result = CliRunner().invoke(cli, ["export", str(runs["pix2pix"]), "-o", str(out), "--int8",
                                      "--calibration", str(calibration), "--min-psnr", "200"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "dB PSNR from the fp32 graph's on 3 input images, under --min-psnr 200" \
        in result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cal"]


def test_int8_calibrates_on_the_runs_own_training_images_by_default(cli, runs, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "g8.onnx"
    result = CliRunner().invoke(cli, ["export", str(runs["cyclegan"]), "-o", str(out), "--int8",
                                      "--direction", "b_to_a", "--min-psnr", "0"])
    assert result.exit_code == 0, result.output
    assert "of the run's training data" in result.stderr and "int8:" in result.stdout
    assert out.is_file()


def test_int8_of_a_run_without_recorded_data_asks_for_a_folder(cli, tmp_path):
    from img2img.interop.quantize import training_images

    with pytest.raises(img2img.DataError, match="records no training data.*--calibration DIR"):
        training_images({"data": None, "a": None, "b": None}, "paired", "a", 3, 32, 4)
    with pytest.raises(img2img.DataError, match="training data cannot be read.*--calibration"):
        training_images({"data": str(tmp_path / "gone")}, "paired", "a", 3, 32, 4)


@pytest.mark.parametrize("args, code, message", [
    (["--calibration", "cal"], 2, "--calibration DIR is for --int8"),
    (["--int8", "--calibration", "missing"], 2, "missing does not exist: --calibration"),
    (["--int8", "--calibration", "empty"], 2, "no images in"),
    (["--int8", "--calibration", "cal", "-o", "g.pt"], 1, "--int8 quantizes ONNX graphs"),
])
def test_int8_mistakes_are_one_line(cli, runs, tmp_path, args, code, message):
    (tmp_path / "empty").mkdir()
    _smooth_images(tmp_path / "cal", 1)
    args = [str(tmp_path / a) if a in ("cal", "missing", "empty", "g.pt") else a for a in args]
    out = [] if "-o" in args else ["-o", str(tmp_path / "g.onnx")]
    result = CliRunner().invoke(cli, ["export", str(runs["pix2pix"]), *out, *args])
    assert result.exit_code == code and "Traceback" not in result.output, result.output
    assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal", "empty"]
