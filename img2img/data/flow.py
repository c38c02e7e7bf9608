"""Optical flow between consecutive video frames: where each pixel of a frame was in the frame
before it, and whether that is trustworthy. The flow is OpenCV's DIS (Kroeger et al., ECCV
2016): dense, on the CPU, deterministic and nothing to download. Pixels whose forward and
backward flows disagree (occluded, or badly tracked) are marked invalid, as Ruder et al. (GCPR
2016) and the warping error of Lai et al. (ECCV 2018) do. `--stabilize flow`
(`inference.stabilize`) and the warping error (`evaluation.temporal`) track with it."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np


def grey(image: np.ndarray) -> np.ndarray:
    """An HxW or HxWxC (RGB[A], uint8 or uint16) frame as the 8-bit grey image flow is computed on."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.shape[2] == 1:
        return np.ascontiguousarray(image[..., 0])
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)


@dataclasses.dataclass
class Track:
    """Where each pixel of the current frame was in the previous one: `map_x`, `map_y` (HxW
    float32, for `warp`) and `valid` (HxW bool: forward and backward flow agree, and the place
    lies inside the previous frame)."""

    map_x: np.ndarray
    map_y: np.ndarray
    valid: np.ndarray

    def warp(self, previous: np.ndarray) -> np.ndarray:
        """`previous` (HxW or HxWxC, any float or integer type) moved onto the current frame."""
        warped = cv2.remap(previous, self.map_x, self.map_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        return warped.reshape(previous.shape)


class FlowTracker:
    """Tracks pixels between two grey frames with DIS flow and a forward-backward check.

    A pixel x of the current frame lands at x + b(x) in the previous one (b: the backward flow);
    it is valid when following the forward flow from there comes back to x:
    |b(x) + f(x + b(x))|^2 <= 0.01 (|b|^2 + |f|^2) + 0.5 (Ruder et al.'s thresholds, in pixels).
    `max_side`: larger frames are tracked at this long side and the flow scaled up, which keeps
    the cost per frame bounded (DIS at 640x360 takes ~25 ms a direction on one CPU core)."""

    def __init__(self, max_side: int | None = 640,
                 preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
        self.max_side = max_side
        self.dis = cv2.DISOpticalFlow_create(preset)

    def track(self, previous: np.ndarray, current: np.ndarray) -> Track:
        """`previous` and `current`: HxW uint8 grey frames (see `grey`)."""
        height, width = current.shape
        scale = 1.0
        if self.max_side is not None and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(8, round(width * scale)), max(8, round(height * scale)))
            previous = cv2.resize(previous, size, interpolation=cv2.INTER_AREA)
            current = cv2.resize(current, size, interpolation=cv2.INTER_AREA)
        backward = self.dis.calc(current, previous, None)
        forward = self.dis.calc(previous, current, None)
        h, w = current.shape
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = xs + backward[..., 0], ys + backward[..., 1]
        forward_there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        error = ((backward + forward_there) ** 2).sum(-1)
        bound = 0.01 * ((backward ** 2).sum(-1) + (forward_there ** 2).sum(-1)) + 0.5
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        valid = (error <= bound) & inside
        if scale != 1.0:
            flow = cv2.resize(backward, (width, height), interpolation=cv2.INTER_LINEAR) / scale
            valid = cv2.resize(valid.astype(np.uint8), (width, height),
                               interpolation=cv2.INTER_NEAREST).astype(bool)
            xs, ys = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
            map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
        return Track(map_x.astype(np.float32), map_y.astype(np.float32), valid)
