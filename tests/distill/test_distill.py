"""`img2img distill`: a tiny teacher distils into a narrower student that agrees with it better
than an untrained student and than one trained on the data alone for as many steps; paired and
unpaired teachers (both CycleGAN directions, CUT) and an imported reference checkpoint; the
student run is an ordinary run (convert, resume exactly); bad input gets one line, a non-zero
exit code and no run folder."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import img2img
from img2img.cli import build_cli
from img2img.distill import Distillation, distill
from img2img.distill.model import Options
from img2img.evaluation.metrics import psnr
from img2img.networks import ResnetGenerator, init_weights
from img2img.runs import checkpoints
from img2img.testing import check_model, write_sample_images

SIZE = 32
TINY = dict(load_size=SIZE, crop_size=SIZE, batch_size=2, workers=0, log_every=1,
            sample_every=0, checkpoint_every=0, progress=False)


def _teacher(root: Path, model: str, steps: int = 4, **options) -> Path:
    kind = "paired" if model == "pix2pix" else "unpaired"
    data = write_sample_images(kind, root / "data", n=6, size=SIZE + 8)
    return img2img.train(model, **data, **options, max_steps=steps, runs_dir=root / "runs",
                         name="teacher", **TINY)


def _inverted_pairs(root: Path) -> Path:
    """Smooth random colours (a) and their negatives (b): a mapping a tiny U-Net learns in a
    few dozen steps, so the teacher's outputs are far from an untrained network's."""
    rng = np.random.default_rng(0)
    for i in range(6):
        a = cv2.resize(rng.integers(0, 256, (10, 10, 3), np.uint8), (SIZE + 8, SIZE + 8))
        for side, image in (("a", a), ("b", 255 - a)):
            (root / side).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / side / f"{i}.png"), image)
    return root


@pytest.fixture(scope="module")
def pix2pix_teacher(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("p2p")
    return img2img.train("pix2pix", data=_inverted_pairs(root / "data"), generator="unet-32",
                         ngf=16, ndf=8, lr=2e-3, max_steps=40, runs_dir=root / "runs",
                         name="teacher", **{**TINY, "log_every": 20})


@pytest.fixture(scope="module")
def cli():
    return build_cli()


def _inputs() -> torch.Tensor:
    torch.manual_seed(1)  # held-out inputs: smooth colours like, but not among, the training's
    return F.interpolate(torch.rand(6, 3, 8, 8) * 2 - 1, size=SIZE, mode="bilinear")


def _agreement(student, teacher, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(psnr(student.translate(x), teacher.translate(x)).mean())


def _student(tmp_path: Path, teacher_run: Path, name: str = "student", **settings) -> Path:
    settings = {"width": 4, "max_steps": 3, **settings}
    run, _ = distill(teacher_run, tmp_path / name, device="cpu", eval_limit=4, workers=0,
                     log_every=1, sample_every=0, progress=False, **settings)
    return run


def test_a_student_agrees_with_its_teacher_better_than_untrained_or_data_trained(
        pix2pix_teacher, tmp_path):
    steps = 30
    run, record = distill(pix2pix_teacher, tmp_path / "student", width=4, max_steps=steps,
                          device="cpu", workers=0, log_every=10, sample_every=0, progress=False,
                          lr=2e-3)
    teacher = img2img.load(pix2pix_teacher, device="cpu").model
    student = img2img.load(run, device="cpu").model
    untrained = Distillation(student.options, spec=student.spec).eval()
    data = Path(json.loads((pix2pix_teacher / "config.json").read_text())["training"]["data"])
    alone = img2img.load(img2img.train(
        "pix2pix", data=data, generator="unet-32", ngf=4, ndf=8, max_steps=steps, lr=2e-3,
        runs_dir=tmp_path, name="alone", **{**TINY, "log_every": 10}), device="cpu").model
    x = _inputs()
    distilled = _agreement(student, teacher, x)
    # Measured: 18.8 dB distilled, 14.5 untrained, 17.7 trained on the data alone. The
    # margins are far above what other fp32 kernels (AVX2 vs AVX-512) change in a seeded run.
    assert distilled > _agreement(untrained, teacher, x) + 3
    assert distilled > _agreement(alone, teacher, x) + 0.5
    # distill.json: both models' cost and speed, and agreement on the data
    saved = json.loads((run / "distill.json").read_text())
    assert saved == record
    assert record["student"]["ngf"] == 4 and record["teacher"]["ngf"] == 16
    assert record["macs_ratio"] > 8 and record["student"]["parameters"] < \
        record["teacher"]["parameters"]
    assert record["teacher"]["images_per_second"] > 0 and record["student"]["images_per_second"] > 0
    assert record["agreement"]["held_out"] is False and record["agreement"]["psnr"] > 10
    assert "task" not in record  # no test split: the task metric would score training data


def test_the_student_run_records_its_teacher_and_converts_without_it(pix2pix_teacher, tmp_path):
    run = _student(tmp_path, pix2pix_teacher)
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "distill"
    weights = checkpoints.resolve_checkpoint(pix2pix_teacher)
    options = config["options"]
    assert Path(options["teacher"]) == weights.absolute()
    assert options["teacher_sha256"] == __import__("hashlib").sha256(weights.read_bytes()).hexdigest()
    assert options["teacher_model"] == "pix2pix" and options["generator"] == "unet-32"
    assert options["features"].startswith("down1=down1:16")
    # the checkpoint alone rebuilds the student: no teacher is loaded to convert
    restored = checkpoints.model_from_checkpoint(
        Distillation, checkpoints.resolve_checkpoint(run))
    assert "teacher" not in dict(restored.named_modules())
    out = img2img.load(run, device="cpu")(torch.zeros(3, SIZE, SIZE))
    assert out.shape == (3, SIZE, SIZE)


@pytest.mark.parametrize("model,options", [
    ("cyclegan", {"generator": "resnet-6", "ngf": 8, "ndf": 8, "pool_size": 2}),
    ("cut", {"generator": "resnet-6", "ngf": 8, "ndf": 8, "nce_patches": 8,
             "nce_head_units": 8}),
])
def test_unpaired_teachers_distil_every_direction(model, options, tmp_path):
    teacher_run = _teacher(tmp_path, model, **options)
    run = _student(tmp_path, teacher_run)
    teacher = img2img.load(teacher_run, device="cpu").model
    loaded = img2img.load(run, device="cpu")
    assert loaded.model.directions == teacher.directions
    assert loaded.model.data == "unpaired"
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    for direction in teacher.directions:
        assert loaded.model.translate(x, direction).shape == x.shape
    record = json.loads((run / "distill.json").read_text())
    assert set(record["agreement"]) >= {f"psnr_{d}" for d in teacher.directions}


def test_an_imported_reference_checkpoint_teaches(cli, tmp_path):
    net = init_weights(ResnetGenerator(3, 3, 8, 6, "instance"))
    pth = tmp_path / "latest_net_G_A.pth"  # the reference's keys: model.N..., conv_block
    torch.save({f"model.{k}".replace(".body.", ".conv_block."): v
                for k, v in net.model.state_dict().items()}, pth)
    imported = tmp_path / "imported"
    result = CliRunner().invoke(cli, ["import", str(pth), "--model-family", "cyclegan",
                                      "--size", str(SIZE), "-o", str(imported)])
    assert result.exit_code == 0, result.output
    data = write_sample_images("unpaired", tmp_path / "data", n=4, size=SIZE + 8)
    result = CliRunner().invoke(cli, [
        "distill", str(imported), "-o", str(tmp_path / "student"), "--width", "4",
        "--max-steps", "2", "--data", str(data["a"].parent), "--workers", "0",
        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "fewer MACs" in result.output
    student = img2img.load(tmp_path / "student", device="cpu").model
    assert student.directions == ("a_to_b",)  # the one generator the import holds


def test_resume_is_exact(pix2pix_teacher, tmp_path):
    straight = _student(tmp_path, pix2pix_teacher, "straight", max_steps=4)
    halves = _student(tmp_path, pix2pix_teacher, "halves", max_steps=2)
    img2img.train("distill", resume=halves, max_steps=4, progress=False)
    a = checkpoints.load_weights(checkpoints.resolve_checkpoint(straight))
    b = checkpoints.load_weights(checkpoints.resolve_checkpoint(halves))
    assert a.keys() == b.keys() and any(k.startswith("auxiliary.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_model_honours_the_contract(pix2pix_teacher, tmp_path):
    options = Options(teacher=str(pix2pix_teacher), ngf=4, ndf=8)
    check_model(Distillation, options, workdir=tmp_path)


def test_macs_choose_the_widest_student_within_the_budget(pix2pix_teacher, tmp_path):
    run = _student(tmp_path, pix2pix_teacher, width=None, macs=1e6, max_steps=1)
    record = json.loads((run / "distill.json").read_text())
    assert record["student"]["macs"] <= 1e6
    wider = Distillation(Options(teacher=str(pix2pix_teacher),
                                 ngf=record["student"]["ngf"] + 1),
                         spec=img2img.load(run, device="cpu").model.spec)
    from img2img.networks.macs import count_macs
    assert count_macs(wider.generators["a_to_b"], (3, SIZE, SIZE)) > 1e6


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory) -> Path:
    from img2img_cgan.model import ConditionalGAN
    return check_model(ConditionalGAN, workdir=tmp_path_factory.mktemp("cgan"))


@pytest.mark.parametrize("case,args,code,words", [
    ("noise model", ["{cgan}"], 1, "generates images from noise"),
    ("not narrower", ["{teacher}", "--width", "16"], 2, "not smaller than the teacher's"),
    ("size multiple", ["{teacher}", "--generator", "unet-256"], 2, "multiple of 256"),
    ("missing teacher", ["{tmp}/nowhere"], 1, "nowhere"),
    ("both widths", ["{teacher}", "--width", "4", "--macs", "1M"], 2, "give one"),
    ("bad count", ["{teacher}", "--macs", "lots"], 2, "is not a count"),
    ("existing output", ["{teacher}", "-o", "{tmp}"], 1, "already exists"),
])
def test_bad_input_gets_one_line_and_no_run_folder(case, args, code, words, cli, pix2pix_teacher,
                                                   cgan_run, tmp_path):
    out = tmp_path / "student"
    given = [a.format(cgan=cgan_run, teacher=pix2pix_teacher, tmp=tmp_path) for a in args]
    if "-o" not in given:
        given += ["-o", str(out)]
    result = CliRunner().invoke(cli, ["distill", *given, "--max-steps", "1", "--device", "cpu"])
    assert result.exit_code == code, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
