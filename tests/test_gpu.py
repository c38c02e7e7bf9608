"""GPU checks: mixed precision (bf16, and fp16 with a gradient scaler) through the real trainer
for every registered model. Skipped on machines without CUDA."""
from __future__ import annotations

import pytest
import torch

from img2img.registry.catalog import build_catalog
from img2img.registry.catalog import TRAIN_FIELDS
from img2img.registry.loading import load_plugins
from img2img.testing import check_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MODELS = sorted(build_catalog(load_plugins(strict=True), TRAIN_FIELDS).models.items())


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("name,model_cls", MODELS, ids=[n for n, _ in MODELS])
def test_model_trains_on_cuda(name, model_cls, precision, tmp_path):
    check_model(model_cls, workdir=tmp_path, device="cuda", precision=precision, steps=3)


@pytest.mark.parametrize("name,model_cls", MODELS, ids=[n for n, _ in MODELS])
def test_speed_switches_on_cuda(name, model_cls, tmp_path):
    check_model(model_cls, workdir=tmp_path, device="cuda", steps=3, compile=True,
                channels_last="on", augment_on="device")
