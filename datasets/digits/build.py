"""Build `datasets/digits/`: the UCI "Optical Recognition of Handwritten Digits" test set (1797
digits, 8x8, grey levels 0..16) as one PNG per digit in one folder per class, `0/` .. `9/`.

scikit-learn bundles the set inside its package, so this needs no network, only a one-off
`pip install scikit-learn` (img2img itself does not depend on it). Pixels are scaled from 0..16
to 0..255 (white ink on black, as published) and kept at their native 8x8; the labelled loader
resizes them to the training size. Run from anywhere: `python datasets/digits/build.py`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write 0/ .. 9/ into")
    args = parser.parse_args()
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("this script needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    for index, (image, label) in enumerate(zip(images, digits.target)):
        folder = args.out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        # Optimal PNG compression: 1797 files of ~100 bytes keep the checkout small.
        cv2.imwrite(str(folder / f"{index:04d}.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    counts = np.bincount(digits.target, minlength=10)
    print(f"wrote {len(images)} digits into {args.out}/0..9 ({', '.join(map(str, counts))})")


if __name__ == "__main__":
    main()
