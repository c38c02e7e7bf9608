"""Tests of the colorize plugin: the img2img model contract (a few training steps at 32 px
through the real trainer, then a checkpoint round trip), plus what is special about colorize."""
import pytest
import torch

import img2img
from img2img import ImageSpec
from img2img.testing import check_model
from img2img_colorize import FAST, Colorize, to_grey


def test_colorize_honours_the_model_contract(tmp_path):
    run_dir = check_model(Colorize, workdir=tmp_path)
    assert (run_dir / "config.json").exists()


def test_grey_is_the_luminance_and_grey_input_passes_through():
    red, green = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    red[:, 0], green[:, 1] = 1.0, 1.0
    assert torch.allclose(to_grey(red), torch.full((1, 1, 2, 2), 0.299))
    assert torch.allclose(to_grey(green), torch.full((1, 1, 2, 2), 0.587))
    grey = torch.rand(2, 1, 4, 4)
    assert to_grey(grey) is grey


def test_translate_takes_grey_or_colour_and_returns_colour():
    model = Colorize(Colorize.Options(**Colorize.smoke_options), spec=ImageSpec(3, 32)).eval()
    photo = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        from_colour = model.translate(photo)
        from_grey = model.translate(to_grey(photo))
    assert from_colour.shape == (2, 3, 32, 32)
    assert torch.allclose(from_colour, from_grey)


def test_grey_training_data_is_refused_with_a_clear_error():
    with pytest.raises(img2img.Img2ImgError, match="--channels 3"):
        Colorize(Colorize.Options(**Colorize.smoke_options), spec=ImageSpec(1, 32))


def test_fast_preset_sets_real_options():
    options = Colorize.Options(**FAST.options)
    assert options.generator == "unet-128" and FAST.training["crop_size"] == 128
