"""Finding faces and their eyes in an image. The default detector is OpenCV's Haar cascades for
faces and eyes, which ship inside the opencv-python wheel (4.x), so nothing is downloaded; a
user with a YuNet ONNX model can pass it for `cv2.FaceDetectorYN`. Models load on first use,
never at import."""
from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import cv2
import numpy as np

import img2img

# Detection runs on a copy whose short side is at least WORK_MIN (the cascade's 24 px windows
# miss faces in small photos) and whose long side is at most WORK_MAX (speed on camera photos).
WORK_MIN, WORK_MAX = 192, 1600
# A black border of this fraction of the long side: tightly cropped portraits fill the frame,
# and the cascade only finds a face whose whole window fits inside the image.
BORDER = 0.25
MIN_SCORE = 1.0  # the cascade's level weight below which a hit is mostly texture, not a face
MIN_FACE = 1 / 30  # smallest face searched for, as a fraction of the photo's short side
MAX_EYE_TILT = 25.0  # degrees; a steeper "eye line" is a wrong pair (the cascade finds upright faces)


@dataclasses.dataclass(frozen=True)
class Face:
    """One face in image pixels: `box` (x, y, w, h), `eyes` ((x, y) left in the image, then
    right) when both were found, and the detector's confidence `score`."""

    box: tuple[float, float, float, float]
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None
    score: float = 0.0

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2, y + h / 2)

    @property
    def size(self) -> float:
        return max(self.box[2], self.box[3])

    @property
    def angle(self) -> float:
        """Tilt of the eye line in degrees (positive: the right-hand eye is lower); 0 without eyes."""
        if self.eyes is None:
            return 0.0
        (lx, ly), (rx, ry) = self.eyes
        return math.degrees(math.atan2(ry - ly, rx - lx))


def grey8(image: np.ndarray) -> np.ndarray:
    """HxW uint8 luminance of an HxW[xC] uint8/uint16 image (alpha, if any, ignored)."""
    array = image if image.ndim == 3 else image[..., None]
    if array.dtype == np.uint16:
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    colour = array[..., :3] if array.shape[2] >= 3 else array[..., :1]
    if colour.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(colour[..., 0])


def _working_copy(grey: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The resized, bordered image detection runs on, its scale and its border in pixels."""
    height, width = grey.shape
    scale = max(WORK_MIN / min(height, width), 1.0)
    scale = min(scale, WORK_MAX / max(height, width)) if max(height, width) * scale > WORK_MAX \
        else scale
    if scale != 1.0:
        grey = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    border = round(BORDER * max(grey.shape))
    grey = cv2.copyMakeBorder(grey, border, border, border, border, cv2.BORDER_CONSTANT, value=0)
    return grey, scale, border


def _to_image(x: float, y: float, scale: float, border: int) -> tuple[float, float]:
    """A working-image point back in the caller's image pixels."""
    return ((x - border) / scale, (y - border) / scale)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area: a box inside another counts as a duplicate."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min(a[2] * a[3], b[2] * b[3])


def _suppress(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    """Strongest first; drop boxes overlapping a stronger one, and the cascade's false hits in
    hair and background: barely confident ones, far weaker ones than the best, and small weak
    ones beside a confident face. Faces in a group photo score 0.3-1 times the best (measured)
    and are kept."""
    order = [int(i) for i in np.argsort(-scores)]
    best = order[0]
    kept: list[int] = []
    for i in order:
        ratio = scores[i] / scores[best]
        weak = scores[i] < MIN_SCORE or ratio < 0.25 or \
            (ratio < 0.5 and boxes[i][2] < 0.5 * boxes[best][2])
        if not weak and all(_overlap(boxes[i], boxes[j]) < 0.3 for j in kept):
            kept.append(i)
    return kept


class HaarDetector:
    """OpenCV's frontal-face and eye cascades from `cv2.data.haarcascades`."""

    def __init__(self, min_neighbors: int = 5):
        self.min_neighbors = min_neighbors

    @staticmethod
    @functools.cache
    def _cascade(name: str) -> cv2.CascadeClassifier:
        folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if folder is None:
            raise img2img.Img2ImgError(
                "this OpenCV has no bundled Haar cascades (cv2.data.haarcascades; OpenCV 5 "
                "dropped them): install opencv-python-headless<5, or pass --detector YUNET.onnx")
        cascade = cv2.CascadeClassifier(str(Path(folder) / name))
        if cascade.empty():
            raise img2img.Img2ImgError(f"cannot load the Haar cascade {Path(folder) / name}")
        return cascade

    def __call__(self, image: np.ndarray) -> list[Face]:
        work, scale, border = _working_copy(grey8(image))
        work = cv2.equalizeHist(work)
        inner = min(work.shape) - 2 * border
        boxes, _, weights = self._cascade("haarcascade_frontalface_default.xml").detectMultiScale3(
            work, scaleFactor=1.1, minNeighbors=self.min_neighbors,
            minSize=(max(24, round(inner * MIN_FACE)),) * 2, outputRejectLevels=True)
        if len(boxes) == 0:
            return []
        boxes, weights = np.asarray(boxes, float), np.ravel(weights).astype(float)
        faces = []
        for i in _suppress(boxes, weights):
            eyes = self._eyes(work, boxes[i])
            x, y = _to_image(*boxes[i][:2], scale, border)
            faces.append(Face((x, y, boxes[i][2] / scale, boxes[i][3] / scale),
                              None if eyes is None else
                              (_to_image(*eyes[0], scale, border),
                               _to_image(*eyes[1], scale, border)),
                              float(weights[i])))
        return faces

    def _eyes(self, work: np.ndarray, box: np.ndarray) -> tuple | None:
        """The best pair of eyes in the upper part of a face box, in working-image pixels."""
        x, y, w, h = (round(v) for v in box)
        region = work[y:y + int(h * 0.6), x:x + w]
        found = self._cascade("haarcascade_eye.xml").detectMultiScale(
            region, scaleFactor=1.1, minNeighbors=3, minSize=(max(6, w // 10),) * 2,
            maxSize=(w // 2,) * 2)
        centres = [(x + ex + ew / 2, y + ey + eh / 2, ew) for ex, ey, ew, eh in found]
        left = [c for c in centres if c[0] < x + w / 2]
        right = [c for c in centres if c[0] >= x + w / 2]
        best, best_cost = None, math.inf
        for lx, ly, lw in left:
            for rx, ry, rw in right:
                tilt = abs(math.degrees(math.atan2(ry - ly, rx - lx)))
                spread = (rx - lx) / w
                if tilt > MAX_EYE_TILT or not 0.25 <= spread <= 0.75:
                    continue
                cost = tilt + 40 * abs(spread - 0.42) + 40 * abs(lw - rw) / w
                if cost < best_cost:
                    best, best_cost = ((lx, ly), (rx, ry)), cost
        return best


class YuNetDetector:
    """`cv2.FaceDetectorYN` with a user's YuNet ONNX model; it finds the eyes itself."""

    def __init__(self, model: Path, score_threshold: float = 0.7):
        self.model, self.threshold = Path(model), score_threshold
        self._net = None

    def _detector(self, size: tuple[int, int]):
        if self._net is None:
            if not self.model.is_file():
                raise img2img.Img2ImgError(f"--detector {self.model}: no such file")
            try:
                self._net = cv2.FaceDetectorYN.create(str(self.model), "", size,
                                                      self.threshold, 0.3, 5000)
            except cv2.error as exc:
                raise img2img.Img2ImgError(f"--detector {self.model}: OpenCV cannot load it as a "
                                           f"YuNet face detector: {exc.err or exc}") from None
        self._net.setInputSize(size)
        return self._net

    def __call__(self, image: np.ndarray) -> list[Face]:
        work, scale, border = _working_copy(grey8(image))
        bgr = cv2.cvtColor(work, cv2.COLOR_GRAY2BGR)
        if image.ndim == 3 and image.shape[2] >= 3:  # the network was trained on colour
            colour = image[..., :3] if image.dtype == np.uint8 else \
                ((image[..., :3].astype(np.uint32) + 128) // 257).astype(np.uint8)
            inner = cv2.resize(np.ascontiguousarray(colour[..., ::-1]),
                               (work.shape[1] - 2 * border, work.shape[0] - 2 * border))
            bgr[border:-border or None, border:-border or None] = inner
        _, rows = self._detector((bgr.shape[1], bgr.shape[0])).detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            eyes = sorted([_to_image(row[4], row[5], scale, border),
                           _to_image(row[6], row[7], scale, border)])
            x, y = _to_image(row[0], row[1], scale, border)
            faces.append(Face((x, y, row[2] / scale, row[3] / scale), (eyes[0], eyes[1]),
                              float(row[14])))
        return faces


def make_detector(model: Path | None = None):
    """A face detector: YuNet with a model file, else the bundled Haar cascades."""
    return HaarDetector() if model is None else YuNetDetector(model)


def choose(faces: list[Face], which: str) -> list[Face]:
    """`all` faces (largest first) or only the `largest`."""
    ranked = sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)
    return ranked[:1] if which == "largest" else ranked
