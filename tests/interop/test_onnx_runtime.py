"""How the onnxruntime runtime sets up its session for a CUDA device, on a CPU machine: the
session class is stood in for, so the test sees the providers and options ONNX Runtime would
get, and what happens when the CUDA provider does not start."""
from __future__ import annotations

import pytest
import torch

from img2img import Img2ImgError
from img2img.interop.onnx_runtime import OnnxGraph

ort = pytest.importorskip("onnxruntime")
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class FakeSession:
    """Records what it was given; reports the providers it was told it got."""

    created: list[dict] = []
    started = [CUDA, CPU]

    def __init__(self, source, options, providers):
        FakeSession.created.append({"source": source, "providers": providers})

    def get_providers(self):
        return list(FakeSession.started)

    def get_inputs(self):
        return [type("Input", (), {"name": "image"})()]


@pytest.fixture
def session(monkeypatch):
    FakeSession.created, FakeSession.started = [], [CUDA, CPU]
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    return FakeSession


def test_the_cuda_provider_runs_on_the_gpu_asked_for_with_heuristic_search(session):
    OnnxGraph(b"graph", torch.device("cuda", 1))
    (provider, options), fallback = session.created[0]["providers"]
    assert provider == CUDA and fallback == CPU
    assert options == {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC"}


def test_plain_cuda_means_the_current_gpu(session, monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    OnnxGraph(b"graph", torch.device("cuda"))
    assert session.created[0]["providers"][0][1]["device_id"] == 2


def test_a_cuda_provider_that_did_not_start_is_refused(session):
    """ONNX Runtime falls back to the CPU without a word when the provider cannot load."""
    session.started = [CPU]
    with pytest.raises(Img2ImgError, match=r"--device cuda:0: ONNX Runtime could not start its "
                                           r"CUDA provider and would run on CPUExecutionProvider"):
        OnnxGraph(b"graph", torch.device("cuda", 0))


def test_a_build_without_cuda_is_refused_for_a_cuda_device(session, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    with pytest.raises(Img2ImgError, match="this onnxruntime build has no CUDA provider"):
        OnnxGraph(b"graph", torch.device("cuda", 0))
    assert session.created == []


def test_the_cpu_gets_the_cpu_provider_only(session):
    session.started = [CPU]
    OnnxGraph(b"graph", torch.device("cpu"))
    assert session.created[0]["providers"] == [CPU]
