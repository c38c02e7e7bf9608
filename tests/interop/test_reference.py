"""`img2img import` and reference `.pth` files: every case in tests/data/ref_weights (checkpoints
the reference implementation itself wrote, with its own outputs) imports with the model family
alone and reproduces the reference's outputs in both batch-norm behaviours; legacy quirks import;
broken or foreign files get one clear line; the imported run converts, evaluates, refuses
--resume and starts a fine-tuning run from its weights with a fresh optimiser."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import img2img
from img2img.cli import build_cli
from img2img.errors import Img2ImgError
from img2img.interop import reference
from img2img.registry.catalog import BUILTIN_COMMANDS, TRAIN_FIELDS, build_catalog
from img2img.registry.loading import load_plugins
from img2img.runs import checkpoints

DATA = Path(__file__).resolve().parents[1] / "data" / "ref_weights"
CASES = json.loads((DATA / "index.json").read_text())["cases"]
BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan"}
BEHAVIOURS = {"per-image": "out_per_image", "running": "out_eval"}
TOLERANCE = 1e-4


def family(case: str) -> str:
    """The model that trains each case's architecture: pix2pix for a U-Net, else CycleGAN."""
    return "pix2pix" if CASES[case]["netG"].startswith("unet") else "cyclegan"


def generator(case: str) -> Path:
    return DATA / case / CASES[case]["generator_file"]


def expected(case: str) -> dict[str, np.ndarray]:
    with np.load(DATA / case / "expected.npz") as found:
        return dict(found)


@pytest.fixture(scope="module")
def pm():
    return load_plugins(strict=True, env=BUILTINS)


@pytest.fixture(scope="module")
def catalog(pm):
    return build_catalog(pm, TRAIN_FIELDS, BUILTIN_COMMANDS)


@pytest.fixture(scope="module")
def cli(pm):
    return build_cli(pm)


@pytest.fixture
def run_cli(cli):
    def invoke(*args: str, ok: bool = True):
        result = CliRunner().invoke(cli, [str(a) for a in args])
        if ok:
            assert result.exit_code == 0, result.output
        return result
    return invoke


def output_of(translator, case: str) -> torch.Tensor:
    with torch.no_grad():
        return translator.model.translate(torch.from_numpy(expected(case)["input"]))


def max_difference(out: torch.Tensor, case: str, behaviour: str) -> float:
    return float((out - torch.from_numpy(expected(case)[BEHAVIOURS[behaviour]])).abs().max())


def paired_data(root: Path, size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for side in ("a", "b"):
        (root / side).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / side / f"{i}.png")
    return root


# -- every case, both behaviours ----------------------------------------------------------------
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_case_imports_and_reproduces_the_reference(case, behaviour, run_cli, catalog,
                                                         tmp_path):
    flags = [] if behaviour == "per-image" else ["--batch-stats", "running"]
    result = run_cli("import", generator(case), "--model-family", family(case),
                     "-o", tmp_path / "run", *flags)
    run = Path(result.stdout.strip())
    assert run == tmp_path / "run" and (run / "config.json").is_file()
    assert "imported generators.a_to_b" in (run / "index.html").read_text()
    translator = img2img.load(run, device="cpu", catalog=catalog)
    assert max_difference(output_of(translator, case), case, behaviour) < TOLERANCE


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_architecture_is_read_from_the_state_dict(case, catalog):
    info = CASES[case]
    model, record = reference.import_model([generator(case)], family=family(case),
                                           catalog=catalog)
    options = model.options
    blocks = {"resnet_9blocks": "resnet-9", "resnet_6blocks": "resnet-6",
              "unet_256": "unet-256", "unet_128": "unet-128"}
    assert (options.generator, options.ngf, options.norm) == (blocks[info["netG"]], info["ngf"],
                                                              info["norm"])
    assert model.spec.channels == info["input_nc"] == info["output_nc"]
    if info["netG"].startswith("resnet"):  # a U-Net's dropout leaves no trace in its weights
        assert options.dropout == info["dropout"]
    params = sum(p.numel() for p in model.generators["a_to_b"].parameters())
    assert params == info["generator_params"]
    assert record["imported"]["networks"] == {"generators.a_to_b": str(generator(case))}


def test_the_two_behaviours_really_differ_on_batch_norm():
    """Otherwise the parity test above could not tell them apart."""
    found = expected("pix2pix_unet256_batch_dropout")
    assert np.abs(found["out_eval"] - found["out_per_image"]).max() > 100 * TOLERANCE


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if "discriminator_file" in CASES[c]])
def test_discriminators_import_too(case, catalog):
    info = CASES[case]
    name = "b"  # pix2pix's one discriminator; for CycleGAN the reference's D_A judges domain b
    d_file = DATA / case / info["discriminator_file"]
    model, record = reference.import_model([generator(case)], family=family(case),
                                           discriminators=[(name, d_file)], catalog=catalog)
    state = torch.load(d_file, weights_only=True)
    ours = model.discriminators[name].state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in state.values()]
    assert all(torch.equal(a, b) for a, b in zip(ours.values(), state.values()))
    assert model.discriminators[name].model[0].in_channels == info["discriminator_input_nc"]
    assert f"discriminators.{name}" in record["imported"]["networks"]


# -- legacy quirks ------------------------------------------------------------------------------
def _instance_norms(state) -> dict[str, int]:
    """Where the ResNet's instance norms sit (right after every conv but the last, one index
    on) and their channels (the conv's bias)."""
    convs = sorted({k.rsplit(".", 1)[0] for k in state if state[k].dim() == 4},
                   key=lambda k: [int(p) if p.isdigit() else p for p in k.split(".")])
    return {".".join([*c.split(".")[:-1], str(int(c.split(".")[-1]) + 1)]):
            state[f"{c}.bias"].shape[0] for c in convs[:-1]}


@pytest.mark.parametrize("quirk", ["module.", "_orig_mod.", "legacy-instance-norm"])
def test_legacy_files_import(quirk, catalog, tmp_path):
    case = "cyclegan_resnet9_instance"
    state = torch.load(generator(case), weights_only=True)
    if quirk == "legacy-instance-norm":  # what PyTorch < 0.4 saved on InstanceNorm2d
        for at, channels in _instance_norms(state).items():
            state[f"{at}.running_mean"] = torch.zeros(channels)
            state[f"{at}.running_var"] = torch.ones(channels)
            state[f"{at}.num_batches_tracked"] = torch.tensor(0)
    else:
        state = {quirk + k: v for k, v in state.items()}
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    model, _ = reference.import_model([path], family="cyclegan", catalog=catalog)
    with torch.no_grad():
        out = model.translate(torch.from_numpy(expected(case)["input"]))
    assert max_difference(out, case, "per-image") < TOLERANCE


def test_resnet_dropout_is_read_from_where_the_second_conv_sits(catalog, tmp_path):
    """With --use_dropout the reference's blocks hold a Dropout before their second conv, which
    moves it from index 5 to 6; the weights are the same."""
    state = torch.load(generator("cyclegan_resnet6_instance"), weights_only=True)
    path = tmp_path / "latest_net_G.pth"
    torch.save({k.replace("conv_block.5.", "conv_block.6."): v for k, v in state.items()}, path)
    model, _ = reference.import_model([path], family="cyclegan", catalog=catalog)
    assert model.options.dropout is True
    with torch.no_grad():
        out = model.translate(torch.from_numpy(expected("cyclegan_resnet6_instance")["input"]))
    assert max_difference(out, "cyclegan_resnet6_instance", "per-image") < TOLERANCE


# -- files that are not reference checkpoints ---------------------------------------------------
def _truncated(path: Path) -> None:
    path.write_bytes(generator("cyclegan_resnet6_instance").read_bytes()[:5000])


def _random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _other_network(path: Path) -> None:
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2)).state_dict(),
               path)


def _missing_layer(path: Path) -> None:
    state = torch.load(generator("cyclegan_resnet6_instance"), weights_only=True)
    del state["model.13.conv_block.5.weight"]
    torch.save(state, path)


def _pickled_module(path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), path)


@pytest.mark.parametrize("make, words", [
    (_truncated, "not a readable PyTorch file"),
    (_random, "not a readable PyTorch file"),
    (_other_network, "'0.weight'"),
    (_missing_layer, "'model.13.conv_block.5.bias'"),
    (_pickled_module, "(torch.nn.modules.linear.Linear), not only tensors"),
])
def test_a_file_that_does_not_fit_gets_one_line_naming_it(make, words, run_cli, catalog,
                                                          tmp_path):
    path = tmp_path / "latest_net_G.pth"
    make(path)
    with pytest.raises(Img2ImgError) as caught:
        reference.import_model([path], family="cyclegan", catalog=catalog)
    assert str(path) in str(caught.value) and words in str(caught.value)
    result = run_cli("import", path, "--model-family", "cyclegan", "-o", tmp_path / "run",
                     ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 and str(path) in result.stderr
    assert not (tmp_path / "run").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_net_G.pth"]  # no leftovers


def test_the_user_is_told_what_the_file_cannot_say(run_cli, tmp_path):
    result = run_cli("import", generator("pix2pix_unet128_batch_dropout"), "-o",
                     tmp_path / "run", ok=False)
    assert result.exit_code == 1 and "--model-family, one of: cyclegan, pix2pix" in result.stderr
    result = run_cli("import", generator("cyclegan_resnet9_instance"), "--model-family",
                     "cyclegan", "--d", DATA / "cyclegan_resnet9_instance" / "latest_net_D.pth",
                     "-o", tmp_path / "run", ok=False)
    assert "discriminators a, b" in result.stderr and "--d NAME=" in result.stderr
    result = run_cli("import", DATA / "cyclegan_resnet9_instance" / "latest_net_D.pth",
                     "--model-family", "cyclegan", "-o", tmp_path / "run", ok=False)
    assert "holds a discriminator, not a generator" in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_existing_run_folder_is_never_overwritten(run_cli, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    result = run_cli("import", generator("cyclegan_resnet6_instance"), "--model-family",
                     "cyclegan", "-o", tmp_path / "run", ok=False)
    assert "already exists" in result.stderr
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]


# -- using the imported run ---------------------------------------------------------------------
def test_convert_takes_the_run_and_the_reference_file_alike(run_cli, tmp_path):
    case = "pix2pix_unet128_batch_dropout"
    run_cli("import", generator(case), "--model-family", "pix2pix", "-o", tmp_path / "run")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 52, 3), np.uint8)).save(photo)
    run_cli("convert", photo, "--model", tmp_path / "run", "-o", tmp_path / "from_run.png",
            "--device", "cpu")
    result = run_cli("convert", photo, "--model", generator(case), "-o",
                     tmp_path / "from_file.png", "--device", "cpu")
    assert "latest_net_G.pth (pix2pix" in result.stderr
    from_run, from_file = (np.asarray(Image.open(tmp_path / f"{n}.png"))
                           for n in ("from_run", "from_file"))
    assert from_run.shape == (40, 52, 3) and np.array_equal(from_run, from_file)


def test_a_one_way_cyclegan_import_translates_only_its_direction(run_cli, catalog, tmp_path):
    run_cli("import", generator("cyclegan_resnet6_instance"), "--model-family", "cyclegan",
            "--direction", "b_to_a", "-o", tmp_path / "run")
    translator = img2img.load(tmp_path / "run", device="cpu", catalog=catalog)
    assert translator.model.directions == ("b_to_a",)
    out = output_of(translator, "cyclegan_resnet6_instance")
    assert max_difference(out, "cyclegan_resnet6_instance", "per-image") < TOLERANCE
    with pytest.raises(Img2ImgError, match="no direction 'a_to_b'"):
        translator.model.resolve_direction("a_to_b")


def test_eval_takes_the_run_and_resume_explains_itself(run_cli, tmp_path):
    run_cli("import", generator("pix2pix_unet128_batch_dropout"), "--model-family", "pix2pix",
            "-o", tmp_path / "run")
    data = paired_data(tmp_path / "pairs")
    result = run_cli("eval", tmp_path / "run", "--data", data, "--device", "cpu")
    assert "psnr" in result.stdout and (tmp_path / "run" / "eval.json").is_file()
    result = run_cli("train", "pix2pix", "--data", data, "--resume", tmp_path / "run",
                     "--workers", "0", ok=False)
    assert result.exit_code == 1 and "weights only" in result.stderr
    assert "--init-from" in result.stderr and "Traceback" not in result.output


def test_training_starts_from_the_imported_weights(run_cli, tmp_path):
    case = "pix2pix_unet256_batch_dropout"
    d_file = DATA / case / CASES[case]["discriminator_file"]
    run_cli("import", generator(case), "--d", d_file, "--model-family", "pix2pix",
            "-o", tmp_path / "imported")
    result = run_cli("train", "pix2pix", "--data", paired_data(tmp_path / "pairs"),
                     "--init-from", tmp_path / "imported", "--max-steps", "1", "--workers", "0",
                     "--runs-dir", tmp_path / "runs", "--name", "tuned", "--device", "cpu")
    assert "Starting from the weights of" in result.stderr
    weights = checkpoints.resolve_checkpoint(tmp_path / "runs" / "tuned")
    tuned = checkpoints.load_weights(weights)
    imported = checkpoints.load_weights(checkpoints.resolve_checkpoint(tmp_path / "imported"))
    # One Adam step moves each weight by at most about the learning rate (2e-4); a fresh
    # initialisation would be ~0.02 away.
    for key in ("generators.a_to_b.model.down.0.weight", "discriminators.b.model.0.weight"):
        assert float((tuned[key] - imported[key]).abs().max()) < 3e-4
        assert not torch.equal(tuned[key], imported[key])
    state = checkpoints.load_state(weights)
    assert state["step"] == 1
    steps = [s["step"] for s in state["optimizers"]["g"]["state"].values()]
    assert steps and all(float(s) == 1 for s in steps)  # a fresh optimiser: its first step
    meta = checkpoints.read_metadata(weights)
    assert meta["options"]["ngf"] == 8 and meta["options"]["generator"] == "unet-256"


def test_init_from_a_mismatched_architecture_says_how_it_was_built(run_cli, tmp_path):
    run_cli("import", generator("pix2pix_unet128_batch_dropout"), "--model-family", "pix2pix",
            "-o", tmp_path / "imported")
    result = run_cli("train", "pix2pix", "--data", paired_data(tmp_path / "pairs"),
                     "--init-from", tmp_path / "imported", "--ngf", "16", "--max-steps", "1",
                     "--workers", "0", "--runs-dir", tmp_path / "runs", "--device", "cpu",
                     ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--init-from" in result.stderr and "--ngf 8" in result.stderr
    assert "generator 'a_to_b' does not fit" in result.stderr


def test_a_reference_resnet_file_converts_with_cut_installed_too():
    """CUT's generator is a ResNet-9 with instance norm, as close to the file as CycleGAN's, but
    anti-aliased, so the file does not fit it: the next closest model takes the file."""
    with_cut = load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS":
                                              "img2img_pix2pix,img2img_cyclegan,img2img_cut"})
    found = build_catalog(with_cut, TRAIN_FIELDS, BUILTIN_COMMANDS)
    assert "cut" in reference.importable(found)
    case = "cyclegan_resnet9_instance"
    model = reference.load_reference(generator(case), found)
    assert model.name == "cyclegan"
    x = torch.from_numpy(expected(case)["input"])
    with torch.no_grad():
        out = model.translate(x, model.directions[0])
    assert np.abs(out.numpy() - expected(case)["out_per_image"]).max() < TOLERANCE
