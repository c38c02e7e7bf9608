"""The handwriting plugin: glyph normalisation and binarisation, `img2img prepare handwriting` on
the bundled handwritten glyphs, the preset training through the CLI to a model whose held-out
L1 beats the untrained one, `convert` through the glyph pipeline, `img2img write`, and pix2pix
style labels (style sub-folders, one embedding per style, `--style`)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from img2img_handwriting.glyphs import binarize, fit, ink_box, normalise_ink
from img2img_handwriting.prepare import prepare_handwriting
from img2img_pix2pix import Pix2Pix

import img2img
from img2img import ImageSpec
from img2img.cli import build_cli
from img2img.data import PairedDataset
from img2img.evaluation.evaluate import evaluate, load_eval_set
from img2img.registry.loading import load_plugins

BUNDLED = Path(__file__).resolve().parents[2] / "datasets" / "handwriting_print2hand"
TINY = ["--ngf", "16", "--ndf", "16"]
FAST = ["--workers", "0", "--batch-size", "4", "--sample-every", "0", "--checkpoint-every", "0",
        "--log-every", "50", "--device", "cpu"]


@pytest.fixture(scope="module")
def cli():
    pm = load_plugins(strict=True,
                      env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_handwriting"})
    return build_cli(pm)


def invoke(cli, *args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def train(cli, *args: str) -> Path:
    """Train through the CLI; the run folder is the last line on stdout."""
    result = CliRunner().invoke(cli, ["train", "pix2pix", *[str(a) for a in args]])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def hand_glyphs(folder: Path, letters: str = "abcdefghijklmnopqrstuvwxyz",
                samples: tuple[int, ...] = (0, 1, 2, 3)) -> Path:
    """The right halves of the bundled print|hand pairs: handwritten glyphs named <char>_<n>."""
    folder.mkdir(parents=True, exist_ok=True)
    for letter in letters:
        for n in samples:
            image = cv2.imread(str(BUNDLED / f"{letter}_{n}.png"), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(folder / f"{letter}_{n}.png"), image[:, image.shape[1] // 2:])
    return folder


def grey(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.ndim == 2, f"{path} is not a single-channel image"
    return image


# -- glyph images -------------------------------------------------------------------------------
def test_light_on_dark_glyphs_become_dark_ink_on_white():
    image = np.zeros((40, 30), np.uint8)
    cv2.line(image, (5, 5), (25, 35), 200, 3)
    ink = normalise_ink(image)
    assert ink[0, 0] == 255 and ink[20, 15] < 60
    assert np.array_equal(normalise_ink(ink), ink)  # already ink on paper: unchanged
    colour = np.dstack([255 - image] * 3)
    assert np.array_equal(normalise_ink(colour), ink)


def test_fit_centres_and_scales_the_ink_box():
    image = np.full((100, 200), 255, np.uint8)
    image[10:30, 150:190] = 0  # a 40 x 20 ink block far off centre
    canvas = fit(image, 64, 8).apply(image)
    x0, y0, x1, y1 = ink_box(canvas)
    assert (x0, x1) == (8, 56) and abs((y0 + y1) / 2 - 32) <= 1 and abs((y1 - y0) - 24) <= 1


def test_binarize_gives_pure_ink_and_paper():
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (8, 1))
    assert set(np.unique(binarize(ramp))) == {0, 255}


# -- prepare ------------------------------------------------------------------------------------
def test_prepare_pairs_each_handwritten_glyph_with_its_printed_counterpart(cli, tmp_path):
    glyphs = hand_glyphs(tmp_path / "glyphs", "abq", (0, 1))
    (glyphs / "z").mkdir()  # the folder-per-character layout too, light ink on dark
    image = cv2.imread(str(BUNDLED / "z_0.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(glyphs / "z" / "0.png"), 255 - image[:, 64:])
    invoke(cli, "prepare", "handwriting", glyphs, tmp_path / "pairs", "--jitter", "1")
    names = sorted(p.name for p in (tmp_path / "pairs" / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "pairs" / "b").iterdir())
    assert len(names) == 2 * 7 and "z_0.png" in names and "a_1-j1.png" in names
    for name in ("a_0.png", "q_1.png", "z_0.png"):
        printed, hand = grey(tmp_path / "pairs" / "a" / name), grey(tmp_path / "pairs" / "b" / name)
        assert printed.shape == hand.shape == (64, 64)
        for glyph in (printed, hand):  # both fitted the same way: longest ink side 48, centred
            x0, y0, x1, y1 = ink_box(glyph)
            assert abs(max(x1 - x0, y1 - y0) - 48) <= 2
            assert abs((x0 + x1) / 2 - 32) <= 2 and abs((y0 + y1) / 2 - 32) <= 2
            assert glyph[0, 0] == 255 and glyph.min() < 60
    # the printed side is the font's own letter: 'a' and 'q' differ, both samples of 'a' match
    a0, a1 = (grey(tmp_path / "pairs" / "a" / f"a_{n}.png") for n in (0, 1))
    assert np.array_equal(a0, a1)
    assert not np.array_equal(a0, grey(tmp_path / "pairs" / "a" / "q_0.png"))


def test_prepare_reports_an_empty_folder(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["prepare", "handwriting", str(tmp_path / "empty"),
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "no glyph images" in result.output


# -- the preset trains --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(cli, tmp_path_factory):
    """Samples 0-2 of every letter train the preset for 120 steps; sample 3 is held out."""
    root = tmp_path_factory.mktemp("handwriting")
    prepare_handwriting(hand_glyphs(root / "train_glyphs", samples=(0, 1, 2)), root / "train")
    prepare_handwriting(hand_glyphs(root / "test_glyphs", samples=(3,)), root / "test")
    run = train(cli, "--preset", "handwriting", "--data", root / "train", "--max-steps", "120",
                *TINY, *FAST, "--runs-dir", root / "runs", "--name", "hand")
    return run, root


def test_the_preset_trains_a_model_that_beats_the_untrained_one(trained):
    run, root = trained
    translator = img2img.load(run, device="cpu")
    assert translator.channels == 1 and translator.model.spec.size == 64
    assert translator.model.options.generator == "unet-64"
    held_out = load_eval_set(translator.model, root / "test")
    torch.manual_seed(0)
    untrained = Pix2Pix(translator.model.options, spec=ImageSpec(1, 64))
    l1_trained = evaluate(translator.model, held_out)["l1"]
    l1_untrained = evaluate(untrained, held_out)["l1"]
    assert l1_trained < 0.6 * l1_untrained, (l1_trained, l1_untrained)


def test_convert_fits_the_glyph_and_can_binarize(cli, trained, tmp_path):
    run, _ = trained
    big = cv2.resize(cv2.imread(str(BUNDLED / "k_3.png"), cv2.IMREAD_GRAYSCALE)[:, :64],
                     (150, 120))
    cv2.imwrite(str(tmp_path / "k.png"), 255 - big)  # light on dark, larger than 64 px
    for flag in ("--binarize", "--no-binarize"):
        out = tmp_path / f"k{flag}.png"
        invoke(cli, "convert", tmp_path / "k.png", "--model", run, "-o", out, flag)
        image = grey(out)
        assert image.shape == (120, 150) and image[0, 0] > 200
        if flag == "--binarize":
            assert set(np.unique(image)) == {0, 255}
        # the written glyph lands where the printed one was (fitted, translated, mapped back)
        ys, xs = np.nonzero(image < image.min() + 0.5 * (255 - image.min()))
        x0, y0, x1, y1 = ink_box(big)
        assert abs(xs.mean() - (x0 + x1) / 2) < 20 and abs(ys.mean() - (y0 + y1) / 2) < 20
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "k.png"), "--model", str(run),
                                      "-o", str(tmp_path / "x.png"), "--style", "neat"])
    assert result.exit_code == 1 and "trained without classes or styles" in result.output


# -- write --------------------------------------------------------------------------------------
def test_write_composes_one_glyph_per_character_on_one_baseline(cli, trained, tmp_path):
    run, _ = trained
    widths = {}
    for text in ("hi", "hello", "hello world"):
        out = tmp_path / f"{text.replace(' ', '_')}.png"
        output = invoke(cli, "write", text, "--model", run, "-o", out, "--binarize")
        image = grey(out)
        widths[text] = image.shape[1]
        assert f"Wrote {len(text.replace(' ', ''))} glyphs" in output
        assert set(np.unique(image)) <= {0, 255} and (image == 0).any()
    assert widths["hi"] < widths["hello"] < widths["hello world"]
    heights = {grey(p).shape[0] for p in tmp_path.glob("*.png")}
    assert len(heights) == 1  # one line height whatever the text


def test_write_line_places_glyphs_left_to_right_with_gaps_for_spaces(trained):
    from img2img_handwriting.write import write_line

    run, _ = trained
    line = write_line(img2img.load(run, device="cpu"), "ab  c")
    assert [c for c, _, _ in line.boxes] == ["a", "b", "c"]
    lefts = [left for _, left, _ in line.boxes]
    assert lefts == sorted(lefts) and lefts[2] - lefts[1] > lefts[1] - lefts[0]
    assert line.image.ndim == 2 and line.image.dtype == np.uint8
    for _, left, right in line.boxes:  # every character left ink in its own box
        assert line.image[:, left:right].min() < 200


# -- style labels -------------------------------------------------------------------------------
def write_styles(root: Path) -> Path:
    """Two hands from the same glyphs: as written, and in a broad pen (strokes thickened)."""
    glyphs = hand_glyphs(root / "neat", "abcdefgh", (0, 1))
    (root / "bold").mkdir()
    for path in glyphs.iterdir():
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(root / "bold" / path.name), cv2.erode(image, np.ones((5, 5), np.uint8)))
    return root


def test_style_folders_give_paired_items_a_style_label(tmp_path):
    prepare_handwriting(write_styles(tmp_path / "glyphs"), tmp_path / "pairs")
    dataset = PairedDataset(tmp_path / "pairs", channels=1)
    assert dataset.mode == "styles" and dataset.classes == ("bold", "neat")
    assert sorted(set(dataset.labels)) == [0, 1] and len(dataset) == 32
    assert {int(dataset[(i, 0)]["label"]) for i in range(len(dataset))} == {0, 1}
    assert "label" not in PairedDataset(tmp_path / "pairs" / "neat", channels=1)[(0, 0)]


def test_style_labels_change_the_output_for_the_same_input(cli, tmp_path):
    prepare_handwriting(write_styles(tmp_path / "glyphs"), tmp_path / "pairs")
    run = train(cli, "--preset", "handwriting", "--data", tmp_path / "pairs", "--max-steps", "40",
                *TINY, *FAST, "--runs-dir", tmp_path / "runs")
    translator = img2img.load(run, device="cpu")
    assert translator.model.spec.classes == ("bold", "neat")
    printed = grey(tmp_path / "pairs" / "neat" / "a" / "c_0.png")
    bold = translator(printed, label="bold").astype(float)
    neat = translator(printed, label="neat").astype(float)
    assert np.array_equal(translator(printed), translator(printed, label="bold"))  # the first
    # 40 steps only show that the label reaches the output; trained for 400 steps (2 min on a
    # busy 2-core CPU) the "bold" hand came out 6-13 grey levels darker than "neat" on average.
    assert np.abs(bold - neat).mean() > 0.25, "the style label made no difference"
    outputs = {}
    for style in ("bold", "neat"):
        outputs[style] = tmp_path / f"{style}.png"
        invoke(cli, "write", "abc", "--model", run, "-o", outputs[style], "--style", style)
    assert not np.array_equal(grey(outputs["bold"]), grey(outputs["neat"]))
    result = CliRunner().invoke(cli, ["write", "abc", "--model", str(run), "-o",
                                      str(tmp_path / "x.png"), "--style", "messy"])
    assert result.exit_code != 0 and "unknown style/label 'messy'" in result.output
    source = tmp_path / "pairs" / "neat" / "a" / "c_0.png"
    converted = {}
    for style in ("bold", "neat"):
        converted[style] = tmp_path / f"c_{style}.png"
        invoke(cli, "convert", str(source), "--model", run, "-o", converted[style],
               "--style", style)
    assert not np.array_equal(grey(converted["bold"]), grey(converted["neat"]))
    result = CliRunner().invoke(cli, ["convert", str(source), "--model", str(run), "-o",
                                      str(tmp_path / "y.png"), "--style", "messy"])
    assert result.exit_code == 1 and "unknown style/label 'messy'" in result.output
    assert not (tmp_path / "y.png").exists()
    # eval translates each held-out pair in its own style, matched to the run's by name
    invoke(cli, "eval", run, "--data", tmp_path / "pairs")
    (tmp_path / "pairs" / "neat").rename(tmp_path / "pairs" / "messy")
    result = CliRunner().invoke(cli, ["eval", str(run), "--data", str(tmp_path / "pairs")])
    assert result.exit_code == 2 and "styles messy are not among the run's (bold, neat)" \
        in result.output


def test_styles_leave_the_published_networks_unchanged():
    with torch.device("meta"):
        plain = Pix2Pix(Pix2Pix.Options(), spec=ImageSpec(3, 256))
        styled = Pix2Pix(Pix2Pix.Options(), spec=ImageSpec(3, 256, ("x", "y")))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(plain.generators) == 54_413_955
    assert count(styled.generators) == 54_413_955 + 2 * 512
