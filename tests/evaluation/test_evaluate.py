"""`img2img eval` and the evaluation behind it, on tiny trained runs."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from img2img.api import load
from img2img.cli import build_cli
from img2img.evaluation.evaluate import evaluate, load_eval_set, primary_metric
from img2img.registry.loading import load_plugins
from img2img.testing import check_model, write_sample_images
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True))


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
    return check_model(Pix2Pix, workdir=tmp_path_factory.mktemp("p2p"))


def test_eval_paired_writes_eval_json_and_prints_a_table(cli, pix2pix_run, tmp_path):
    folders = write_sample_images("paired", tmp_path / "held_out", n=3, size=40, seed=5)
    result = CliRunner().invoke(cli, ["eval", str(pix2pix_run), "--data", str(folders["data"])])
    assert result.exit_code == 0, result.output
    record = json.loads((pix2pix_run / "eval.json").read_text())
    assert record["items"] == 3
    assert 0 < record["psnr"] < 60 and -1 <= record["ssim"] <= 1 and 0 <= record["l1"] <= 1
    assert "psnr" in result.stdout and "ssim" in result.stdout
    assert "FID" in result.stderr  # says how to get FID rather than downloading anything


def test_eval_unpaired_reports_swd_both_ways(cli, tmp_path):
    run = check_model(CycleGAN, workdir=tmp_path / "cg")
    folders = write_sample_images("unpaired", tmp_path / "held_out", n=3, size=40, seed=6)
    out = tmp_path / "m.json"
    result = CliRunner().invoke(cli, ["eval", str(run), "--data", str(folders["a"].parent),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert {"swd", "swd_a_to_b", "swd_b_to_a"} <= record.keys()
    assert record["swd"] == pytest.approx((record["swd_a_to_b"] + record["swd_b_to_a"]) / 2)


def test_eval_errors_are_clear(cli, pix2pix_run, tmp_path):
    folders = write_sample_images("paired", tmp_path / "held_out", n=2, size=40)
    result = CliRunner().invoke(cli, ["eval", str(pix2pix_run), "--data", str(folders["data"]),
                                      "--inception-weights", str(tmp_path / "nope.pth")])
    assert result.exit_code == 2 and "nope.pth" in result.output
    assert "weights-inception-2015-12-05" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["eval", str(pix2pix_run), "--data", str(tmp_path / "x")])
    assert result.exit_code == 2 and "x" in result.output


def test_feature_distances_with_a_stand_in_network(pix2pix_run, tmp_path):
    translator = load(pix2pix_run, device="cpu")
    folders = write_sample_images("paired", tmp_path / "held_out", n=4, size=40, seed=7)
    eval_set = load_eval_set(translator.model, folders["data"])
    torch.manual_seed(0)
    stand_in = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten())
    results = evaluate(translator.model, eval_set, features=stand_in)
    assert results["fid"] > 0 and "kid" in results
    assert primary_metric(translator.model) == ("psnr", True)


def test_eval_scores_the_test_split_and_says_which_folders(cli, tmp_path):
    from img2img_cyclegan import CycleGAN

    run = check_model(CycleGAN, workdir=tmp_path / "work")
    root = tmp_path / "horse2zebra"  # the reference's layout: trainA/ trainB/ testA/ testB/
    root.mkdir()
    for split, seed, n in (("train", 1, 4), ("test", 2, 2)):
        folders = write_sample_images("unpaired", tmp_path / split, n=n, size=40, seed=seed)
        folders["a"].rename(root / f"{split}A")
        folders["b"].rename(root / f"{split}B")
    result = CliRunner().invoke(cli, ["eval", str(run), "--data", str(root)])
    assert result.exit_code == 0, result.output
    assert f"on {root / 'testA'}, {root / 'testB'}" in result.stderr
    record = json.loads((run / "eval.json").read_text())
    assert record["items"] == 2 and record["data"] == [str(root / "testA"), str(root / "testB")]
    only_test = tmp_path / "only_test"
    only_test.mkdir()
    (root / "testA").rename(only_test / "testA")
    (root / "testB").rename(only_test / "testB")
    result = CliRunner().invoke(cli, ["eval", str(run), "--data", str(only_test)])
    assert result.exit_code == 0, result.output  # a folder with only the test split works
    result = CliRunner().invoke(cli, ["eval", str(run), "--a", str(only_test / "testA"),
                                      "--b", str(only_test / "testB")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["eval", str(run), "--data", str(root)])  # train only
    assert result.exit_code == 0 and "scoring the training folders" in result.stderr
