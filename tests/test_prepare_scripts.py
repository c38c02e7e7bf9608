"""datasets/prepare.py: split side-by-side pairs, join them back, hold out a test split."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "datasets" / "prepare.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_split_then_join_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "pairs"
    src.mkdir()
    originals = {}
    for i in range(3):
        image = rng.integers(0, 256, (20, 32, 3), np.uint8)
        cv2.imwrite(str(src / f"{i}.png"), image)
        originals[f"{i}"] = image
    (src / "broken.png").write_bytes(b"not an image")
    result = run("split", src, tmp_path / "ab")
    assert result.returncode == 1 and "broken.png" in result.stderr
    a = cv2.imread(str(tmp_path / "ab" / "a" / "1.png"))
    b = cv2.imread(str(tmp_path / "ab" / "b" / "1.png"))
    assert np.array_equal(a, originals["1"][:, :16]) and np.array_equal(b, originals["1"][:, 16:])

    (tmp_path / "ab" / "a" / "extra.png").write_bytes((tmp_path / "ab" / "a" / "0.png").read_bytes())
    result = run("join", tmp_path / "ab", tmp_path / "joined")
    assert result.returncode == 1 and "extra.png" in result.stderr  # no partner: reported
    for stem, image in originals.items():
        assert np.array_equal(cv2.imread(str(tmp_path / "joined" / f"{stem}.png")), image)


def test_holdout_keeps_pairs_together_and_is_repeatable(tmp_path):
    src = tmp_path / "data"
    for side in ("a", "b"):
        (src / side).mkdir(parents=True)
        for i in range(10):
            cv2.imwrite(str(src / side / f"{i:02d}.png"), np.full((8, 8), i, np.uint8))
    assert run("holdout", src, tmp_path / "s1", "--test", "0.3").returncode == 0
    assert run("holdout", src, tmp_path / "s2", "--test", "0.3").returncode == 0
    names = lambda root, split, side: sorted(p.name for p in (root / split / side).iterdir())
    test_a = names(tmp_path / "s1", "test", "a")
    assert len(test_a) == 3 and test_a == names(tmp_path / "s1", "test", "b")
    assert len(names(tmp_path / "s1", "train", "a")) == 7
    assert not set(test_a) & set(names(tmp_path / "s1", "train", "b"))
    assert test_a == names(tmp_path / "s2", "test", "a")  # same seed, same split


def test_refuses_to_write_into_a_non_empty_destination(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "x.png"), np.zeros((4, 8), np.uint8))
    dst = tmp_path / "dst" / "a"
    dst.mkdir(parents=True)
    (dst / "keep.png").write_bytes(b"precious")
    result = run("split", src, tmp_path / "dst")
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (dst / "keep.png").read_bytes() == b"precious"


def test_edges_pairs_each_photo_with_its_canny_edge_map(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    photo = np.zeros((32, 32, 3), np.uint8)
    photo[8:24, 8:24] = (40, 200, 90)  # a bright square on black: edges along its border
    cv2.imwrite(str(src / "square.png"), photo)
    grey16 = np.zeros((32, 32), np.uint16)
    grey16[:, 16:] = 60000
    cv2.imwrite(str(src / "deep.png"), grey16)
    (src / "broken.jpg").write_bytes(b"not an image")
    result = run("edges", src, tmp_path / "pairs")
    assert result.returncode == 1 and "broken.jpg" in result.stderr  # the rest are written
    pair = cv2.imread(str(tmp_path / "pairs" / "square.png"))
    assert pair.shape == (32, 64, 3) and np.array_equal(pair[:, 32:], photo)
    edges = pair[:, :32, 0]
    assert set(np.unique(edges)) == {0, 255}  # black lines on white
    assert edges[16, 16] == 255 and edges[2, 2] == 255  # inside and outside the square: blank
    assert (edges[6:26, 6:26] == 0).sum() > 40 and (edges[:5] == 0).sum() == 0
    deep = cv2.imread(str(tmp_path / "pairs" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (32, 64)
    assert set(np.unique(deep[:, :32])) == {0, 65535} and np.array_equal(deep[:, 32:], grey16)


def test_edges_refuses_bad_thresholds(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    cv2.imwrite(str(src / "x.png"), np.zeros((8, 8, 3), np.uint8))
    result = run("edges", src, tmp_path / "out", "--low", "150", "--high", "100")
    assert result.returncode == 2 and "--low 150 must be below --high 100" in result.stderr
    result = run("edges", src, tmp_path / "out", "--blur", "4")
    assert result.returncode == 2 and "odd" in result.stderr
    assert not (tmp_path / "out").exists()
