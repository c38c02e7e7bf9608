"""FID/KID through torch-fidelity's FID Inception network: `img2img eval --inception-weights`
with a small stand-in for the network (no weights needed), the protocol in eval.json, the clear
errors for a missing extra or a missing or wrong weights file, and the distances on features
with known answers."""
from __future__ import annotations

import hashlib
import json
import sys

import pytest
import torch
from click.testing import CliRunner

from img2img.cli import build_cli
from img2img.evaluation import fid
from img2img.registry.loading import load_plugins
from img2img.testing import check_model, write_sample_images
from img2img_pix2pix import Pix2Pix

pytest.importorskip("torch_fidelity")


class StandIn(torch.nn.Module):
    """Built like torch-fidelity's FeatureExtractorInceptionV3: a name, the feature layers and
    a weights path it loads; takes uint8 Bx3xHxW and returns a tuple of (B, D) features."""

    seen: list[torch.Tensor] = []

    def __init__(self, name, features_list, feature_extractor_weights_path=None):
        super().__init__()
        assert features_list == ["2048"]
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                                       torch.nn.Flatten())
        self.load_state_dict(torch.load(feature_extractor_weights_path, weights_only=True))

    def forward(self, x):
        StandIn.seen.append(x)
        return (self.net(x.float() / 255),)


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return check_model(Pix2Pix, workdir=tmp_path_factory.mktemp("p2p"))


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "stand-in.pth"
    torch.save(_fresh_state(), weights)
    monkeypatch.setattr(fid, "_extractor_class", lambda: StandIn)
    StandIn.seen = []
    return weights


def _fresh_state():
    module = torch.nn.Module()
    module.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                                     torch.nn.Flatten())
    return module.state_dict()


def test_eval_reports_fid_kid_and_the_protocol(cli, run, stand_in, tmp_path):
    folders = write_sample_images("paired", tmp_path / "held_out", n=3, size=40, seed=5)
    result = CliRunner().invoke(cli, ["eval", str(run), "--data", str(folders["data"]),
                                      "--inception-weights", str(stand_in)])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "eval.json").read_text())
    assert record["fid"] > 0 and "kid" in record and "fid" in result.stdout
    protocol = record["fid_protocol"]
    assert protocol["generated_images"] == protocol["real_images"] == 3
    assert protocol["library"].startswith("torch-fidelity ")
    assert protocol["library"] != "torch-fidelity unknown"
    assert protocol["feature_layer"].startswith("2048") and "299x299 bilinear" in protocol["resize"]
    assert protocol["weights"] == str(stand_in)
    assert protocol["weights_sha256"] == hashlib.sha256(stand_in.read_bytes()).hexdigest()
    assert protocol["real_folders"] == record["data"]
    assert protocol["kid"]["subset_size"] == 3
    # The network sees what the published protocol feeds it: 8-bit RGB at the model's size.
    assert all(x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32) for x in StandIn.seen)


def test_grey_images_reach_the_network_as_three_channels(stand_in):
    extract = fid.inception(stand_in, torch.device("cpu"))
    features = extract(torch.zeros(2, 1, 16, 16))
    assert features.shape == (2, 8) and StandIn.seen[-1].shape == (2, 3, 16, 16)
    assert int(StandIn.seen[-1][0, 0, 0, 0]) == 128  # 0 in [-1, 1] is mid-grey


def test_missing_and_wrong_weights_files_are_one_clear_line(cli, run, tmp_path):
    folders = write_sample_images("paired", tmp_path / "held_out", n=2, size=40)
    not_weights = tmp_path / "notes.pth"
    not_weights.write_text("not a weights file")
    other_network = tmp_path / "inception_v3_google.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other_network)  # loads, but is not the FID net
    for weights in (tmp_path / "missing.pth", not_weights, other_network):
        result = CliRunner().invoke(cli, ["eval", str(run), "--data", str(folders["data"]),
                                          "--inception-weights", str(weights)])
        assert result.exit_code == 2, result.output
        message = result.output.strip()
        assert "\n" not in message and "Traceback" not in message
        assert f"--inception-weights {weights}" in message
        assert fid.WEIGHTS in message and "pip install 'img2img[fid]'" in message


def test_a_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as if not installed
    with pytest.raises(fid.FidError, match=r"pip install 'img2img\[fid\]'"):
        fid.inception(tmp_path / "weights.pth", torch.device("cpu"))


def test_frechet_distance_matches_the_closed_form_on_gaussians():
    g = torch.Generator().manual_seed(0)
    d, n = 4, 100_000
    scale_a = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    scale_b = torch.tensor([0.5, 1.0, 1.0, 3.0], dtype=torch.float64)
    mu_b = torch.tensor([1.0, 0.0, -2.0, 0.5], dtype=torch.float64)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) * scale_a
    b = torch.randn(n, d, generator=g, dtype=torch.float64) * scale_b + mu_b
    # Independent axes: FID = |mu|^2 + sum (s_a - s_b)^2 with s the standard deviations.
    expected = float(mu_b.pow(2).sum() + (scale_a - scale_b).pow(2).sum())
    assert fid.distances(a, b, kid_subsets=1)["fid"] == pytest.approx(expected, rel=0.02)
    assert fid.distances(a, a, kid_subsets=1)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_kernel_distance_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(600, 8, generator=g)
    b = torch.randn(600, 8, generator=g)
    assert abs(fid.distances(a, b, kid_subsets=5)["kid"]) < 0.02
    assert fid.distances(a, b + 1.0, kid_subsets=5)["kid"] > 0.2
    with pytest.raises(fid.FidError, match="at least two"):
        fid.distances(a[:1], b)


def test_the_library_network_takes_our_images_and_gives_pool3_features(tmp_path, monkeypatch):
    """torch-fidelity's own Inception class, with freshly initialised weights of the published
    shapes written to a file (the real file is 91 MB and not needed to check the wiring)."""
    extractor_class = fid._extractor_class()
    with monkeypatch.context() as patch:  # built once without a file: PyTorch's initial weights
        patch.setattr(torch.nn.Module, "load_state_dict", lambda self, state, *a, **k: None)
        patch.setattr(torch, "load", lambda *a, **k: {})
        initial = extractor_class("inception-v3-compat", ["2048"],
                                  feature_extractor_weights_path="unused").state_dict()
    weights = tmp_path / fid.WEIGHTS
    torch.save(initial, weights)
    extract = fid.inception(weights, torch.device("cpu"))
    features = extract(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
