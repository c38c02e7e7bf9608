"""The model contract, run over every registered model: a new plugin is tested as soon as it
registers (its installed entry point is enough)."""
from __future__ import annotations

import pytest

from img2img.registry.catalog import build_catalog
from img2img.registry.catalog import TRAIN_FIELDS
from img2img.registry.loading import load_plugins
from img2img.testing import check_model


def _models():
    catalog = build_catalog(load_plugins(strict=True), TRAIN_FIELDS)
    return sorted(catalog.models.items())


MODELS = _models()


def test_the_builtin_models_are_registered():
    assert {"pix2pix", "cyclegan"} <= {name for name, _ in MODELS}


@pytest.mark.parametrize("name,model_cls", MODELS, ids=[name for name, _ in MODELS])
def test_model_honours_the_contract(name, model_cls, tmp_path):
    run_dir = check_model(model_cls, workdir=tmp_path)
    assert (run_dir / "config.json").exists()
