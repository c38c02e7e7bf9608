"""Geometry of an aligned face: the affine map from a photo to a square crop around a face (eyes
levelled, a margin around the face box), taking that crop without aliasing, and pasting a
translated crop back through the inverse map with a feathered elliptical mask. The mask is
exactly zero outside an ellipse inside the crop, so pixels away from the face keep their values,
and it falls to zero with a smoothstep, so the paste leaves no step at its edge."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .detect import Face

INNER = 0.6  # the mask is 1 inside this fraction of its ellipse, then fades out to the ellipse
MASK_AXES = (1.5, 1.8)  # ellipse half-width and half-height in face half-sizes (hair, chin)


def crop_matrix(face: Face, size: int, margin: float, level: bool = True) -> np.ndarray:
    """2x3 affine map from image pixels to a `size` px square crop: the face box plus `margin`
    of its size on every side, rotated so the eye line is horizontal when `level`."""
    side = face.size * (1 + 2 * margin)
    cx, cy = face.center
    # Pixel-centre coordinates: the box centre is x + w/2 - 0.5, the crop's is (size - 1)/2.
    matrix = cv2.getRotationMatrix2D((cx - 0.5, cy - 0.5), face.angle if level else 0.0,
                                     size / side)
    matrix[:, 2] += ((size - 1) / 2 - (cx - 0.5), (size - 1) / 2 - (cy - 0.5))
    return matrix


def _footprint(matrix: np.ndarray, size: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The image rectangle (x0, y0, x1, y1), clipped to the image, that the crop covers."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float)
    points = corners @ inverse.T
    x0, y0 = np.floor(points.min(0)).astype(int) - 2
    x1, y1 = np.ceil(points.max(0)).astype(int) + 2
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _keep_channels(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV drops a trailing channel axis of 1; put it back."""
    return result[..., None] if like.ndim == 3 and result.ndim == 2 else result


def crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The `size` px crop `matrix` describes, area-averaged first where it shrinks the face
    (a bilinear warp alone would alias a large face into a small crop)."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    source, m = image, matrix
    if scale < 0.8:
        x0, y0, x1, y1 = _footprint(matrix, size, image.shape)
        if x1 - x0 > 1 and y1 - y0 > 1:
            width, height = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            source = _keep_channels(cv2.resize(image[y0:y1, x0:x1], (width, height),
                                               interpolation=cv2.INTER_AREA), image)
            fx, fy = width / (x1 - x0), height / (y1 - y0)
            # small = f * (p - origin + 0.5) - 0.5, so image = small / f + origin - 0.5 / f + 0.5
            to_image = np.array([[1 / fx, 0, x0 + 0.5 - 0.5 / fx],
                                 [0, 1 / fy, y0 + 0.5 - 0.5 / fy], [0, 0, 1]])
            m = matrix @ to_image
    # Where the crop leaves the photo, edge pixels are repeated: mirroring would put a second,
    # mirrored face into the crops of tightly framed portraits.
    warped = cv2.warpAffine(source, m, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return _keep_channels(warped, image)


def feather_mask(size: int, margin: float) -> np.ndarray:
    """(size, size) float32 weights: 1 over the face, a smoothstep down to exactly 0 at an
    ellipse that stays inside the crop."""
    half = size / (2 * (1 + 2 * margin))  # the face box's half-size in crop pixels
    limit = size / 2 - 1
    ax, ay = min(MASK_AXES[0] * half, limit), min(MASK_AXES[1] * half, limit)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    radius = np.sqrt((xx / ax) ** 2 + (yy / ay) ** 2)
    t = np.clip((1 - radius) / (1 - INNER), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def paste(base: np.ndarray, patch: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> None:
    """Blend `patch` (a translated crop, float32 HxWxC like `base`) into `base` (float32 HxWxC,
    changed in place) through the inverse of `matrix`, weighted by `mask`. Only the crop's
    footprint is touched, and there only where the warped mask is above zero."""
    size = patch.shape[0]
    x0, y0, x1, y1 = _footprint(matrix, size, base.shape)
    if x1 <= x0 or y1 <= y0:
        return
    inverse = cv2.invertAffineTransform(matrix)
    inverse[:, 2] -= (x0, y0)
    shape = (x1 - x0, y1 - y0)
    enlarges = abs(np.linalg.det(inverse[:, :2])) > 1
    warped = _keep_channels(cv2.warpAffine(
        patch, inverse, shape, flags=cv2.INTER_CUBIC if enlarges else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE), patch)
    weight = cv2.warpAffine(mask, inverse, shape, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = base[y0:y1, x0:x1]
    region += weight[..., None] * (warped - region)
